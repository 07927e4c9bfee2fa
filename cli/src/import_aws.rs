//! `hubrelay import … --stack S` (or `--table` and `--queue-url`): the checked rows onto the stack's SQS retry
//! queue in batches of ten, for the `retry-worker` Lambda to deliver within the shared HubSpot budget, with the
//! import's checkpoint in the stack's DynamoDB table (`hubrelay_aws::dynamodb_imports`). Run again, the same
//! command resumes after the last confirmed batch; finished, it queues nothing.

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::sqs::SqsRetryQueue;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::import::{Kind, Validated};
use hubrelay_core::tenant::TenantId;
use time::OffsetDateTime;

use crate::backend::{QueueArgs, StoreArgs};
use crate::CommandError;

/// Rows per `SendMessageBatch` and per checkpoint.
const CHUNK: usize = 10;

pub struct Target {
    pub stack: Option<String>,
    pub table: Option<String>,
    pub queue_url: Option<String>,
    pub tenant: Option<TenantId>,
}

pub async fn queue(
    target: Target,
    import_id: &str,
    import_key: &str,
    kind: Kind,
    v: &Validated,
) -> Result<(), CommandError> {
    let store_args =
        StoreArgs { data_dir: None, table: target.table, stack: target.stack, tenant: target.tenant.clone() };
    let queue_args = QueueArgs { queue_url: target.queue_url, dlq_url: None };
    let crate::backend::Target::Aws(aws) = crate::backend::resolve(&store_args, Some(&queue_args)).await? else {
        return Err("an import into AWS needs --stack, or --table and --queue-url".into());
    };
    let mut table = DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&aws.config), aws.table()?.to_string());
    // Rows are sealed with their people's keys, like every message the stack queues.
    let sealer = hubrelay_aws::sqs_seal::MessageSealer::new(table.clone());
    let mut queue = SqsRetryQueue::new(aws_sdk_sqs::Client::new(&aws.config), aws.queue_url()?, "").with_sealer(sealer);
    if let Some(tenant) = &target.tenant {
        table = table.for_tenant(tenant);
        queue = queue.for_tenant(tenant);
    }
    let now = OffsetDateTime::now_utc();
    let total = v.rows.len() as u64;
    let checkpoint = table.start_import(import_id, kind.as_str(), total, now).await.map_err(|e| e.to_string())?;
    if checkpoint.rows != total {
        return Err(
            format!("import {import_id} was started with {} rows, this file has {total}", checkpoint.rows).into()
        );
    }
    if checkpoint.cursor >= total {
        println!("import {import_id}: its {total} rows were queued by an earlier run");
        return Ok(());
    }
    let bar = crate::import_cmd::bar("queuing", total);
    bar.set_position(checkpoint.cursor);
    let mut cursor = checkpoint.cursor;
    for chunk in v.rows[cursor as usize..].chunks(CHUNK) {
        let messages: Vec<RetryMessage> = chunk
            .iter()
            .enumerate()
            .map(|(i, row)| crate::import_cmd::row_message(row, import_key, cursor + i as u64, now))
            .collect();
        queue.enqueue_many(&messages, now).await.map_err(|e| format!("{e} (run the same command again to resume)"))?;
        let next = cursor + chunk.len() as u64;
        table.advance_import(import_id, cursor, next).await.map_err(|e| e.to_string())?;
        cursor = next;
        bar.set_position(cursor);
    }
    bar.finish_and_clear();
    println!(
        "import {import_id}: {} rows queued on {}; the retry-worker delivers them \
         (each row is listed by `hubrelay events list --stack …` once the worker has tried it)",
        total - checkpoint.cursor,
        aws.queue_url()?
    );
    Ok(())
}
