//! `status-update`: POST /v1/leads/status behind API Gateway. Everything is built once at init.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_http(lambda::status_update_app().await?).await
}
