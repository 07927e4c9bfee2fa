//! `oauth-install`: GET /oauth/install and GET /oauth/callback behind API Gateway. Everything is built once at init.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_http(lambda::oauth_install_app().await?).await
}
