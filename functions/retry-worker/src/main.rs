//! `retry-worker`: consumes the SQS retry queue (event source mapping with `ReportBatchItemFailures`), and runs
//! the retention sweep when the hourly schedule invokes it. Everything is built once at init; each invocation is
//! one `SqsWorker::handle_invocation` call.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_retry_worker(lambda::retry_worker_app().await?).await
}
