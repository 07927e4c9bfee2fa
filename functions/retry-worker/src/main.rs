//! `retry-worker`: consumes the SQS retry queue (event source mapping with `ReportBatchItemFailures`).
//! Everything is built once at init; each batch is one `SqsWorker::handle` call.

use hubrelay_aws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_json_logs();
    lambda::run_retry_worker(lambda::retry_worker_app().await?).await
}
