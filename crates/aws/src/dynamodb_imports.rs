//! A backfill import's checkpoint on AWS: the item `import:<import id>` (in the tenant's scope) holding the
//! rows, the cursor (rows sent to the retry queue) and when it started. The importer sends a chunk of messages,
//! then moves the cursor conditionally on where it was, so two importers of one file never both advance it and a
//! resumed import goes on from the first row whose chunk was not confirmed. A crash between a chunk's send and
//! its checkpoint sends that chunk again on resume (at most one chunk: the worker writes its contacts by email
//! again, the same values). No row content is kept here.

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::store::StoreError;

/// How long a checkpoint item lives (its `expiration`): long past any import.
const CHECKPOINT_TTL: time::Duration = time::Duration::days(30);

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportCheckpoint {
    pub rows: u64,
    pub cursor: u64,
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> u64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

impl DynamoIdempotencyStore {
    /// The import's checkpoint, created at cursor 0 for `rows` rows when it is new.
    pub async fn start_import(
        &self,
        import_id: &str,
        kind: &str,
        rows: u64,
        now: OffsetDateTime,
    ) -> Result<ImportCheckpoint, StoreError> {
        let id = self.id(&format!("import:{import_id}"));
        let created = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("id", id.clone())
            .item("kind", AttributeValue::S(kind.to_string()))
            .item("rows", AttributeValue::N(rows.to_string()))
            .item("cursor", AttributeValue::N("0".into()))
            .item("started_at", AttributeValue::N(now.unix_timestamp().to_string()))
            .item("expiration", AttributeValue::N((now + CHECKPOINT_TTL).unix_timestamp().to_string()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match created {
            Ok(_) => return Ok(ImportCheckpoint { rows, cursor: 0 }),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(self.unavailable("PutItem", &e)),
        }
        let found = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", id)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        let item = found.item.unwrap_or_default();
        Ok(ImportCheckpoint { rows: number(&item, "rows"), cursor: number(&item, "cursor") })
    }

    /// Moves the cursor from `from` to `to` once a chunk is on the queue; `Err` when another importer moved it.
    pub async fn advance_import(&self, import_id: &str, from: u64, to: u64) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", self.id(&format!("import:{import_id}")))
            .update_expression("SET #cursor = :to")
            .condition_expression("#cursor = :from")
            .expression_attribute_names("#cursor", "cursor")
            .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::Unavailable(format!(
                    "import {import_id}: another importer moved the checkpoint past row {from}"
                )))
            }
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }
}
