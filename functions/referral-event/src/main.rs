//! `referral-event`: POST /v1/referrals/{hubspot,extole,impact} behind API Gateway. Everything is built once at
//! init; accepted webhooks are queued for the retry-worker.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_http(lambda::referral_event_app().await?).await
}
