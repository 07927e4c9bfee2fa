//! `referral-event`: POST /v1/referrals/{hubspot,extole,impact} behind API Gateway. Everything is built once at
//! init; accepted webhooks are queued for the retry-worker.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hubrelay_aws::lambda::init_json_logs();
    let app = hubrelay_aws::lambda::referral_event_app().await?;
    lambda_http::run(app).await
}
