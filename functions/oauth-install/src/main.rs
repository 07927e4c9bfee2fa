//! `oauth-install`: GET /oauth/install and GET /oauth/callback behind API Gateway. Everything is built once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hubrelay_aws::lambda::init_json_logs();
    let app = hubrelay_aws::lambda::oauth_install_app().await?;
    lambda_http::run(app).await
}
