//! `operator-console`: the operators' console (`/console/…`) on its own HTTP API, over the stack's table and
//! queues. Everything is built once at init.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_http(lambda::console_app().await?).await
}
