//! `retry-worker`: consumes the SQS retry queue (event source mapping with `ReportBatchItemFailures`).
//! Everything is built once at init; each batch is one `SqsWorker::handle` call.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubrelay_aws::lambda::init_json_logs();
    let worker = Arc::new(hubrelay_aws::lambda::retry_worker_app().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move { Ok::<SqsBatchResponse, Error>(worker.handle(event.payload, OffsetDateTime::now_utc()).await) }
    }))
    .await
}
