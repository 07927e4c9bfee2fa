//! `lead-captured`: POST /v1/leads behind API Gateway. Everything is built once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hubrelay::handler::lambda::init_json_logs();
    let app = hubrelay::handler::lambda::lead_captured_app().await?;
    lambda_http::run(app).await
}
