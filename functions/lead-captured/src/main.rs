//! `lead-captured`: POST /v1/leads behind API Gateway. Everything is built once at init.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_http(lambda::lead_captured_app().await?).await
}
