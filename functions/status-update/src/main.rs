//! `status-update`: POST /v1/leads/status behind API Gateway. Everything is built once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hubrelay_aws::lambda::init_json_logs();
    let app = hubrelay_aws::lambda::status_update_app().await?;
    lambda_http::run(app).await
}
