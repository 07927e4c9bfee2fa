//! [`IdempotencyStore`] on DynamoDB, one item per idempotency key, in the style of Powertools for AWS Lambda.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `id` | S | the idempotency key (partition key) |
//! | `status` | S | `IN_PROGRESS` or `COMPLETED` |
//! | `expiration` | N | epoch **seconds**; the table's TTL attribute |
//! | `in_progress_expiration` | N | epoch **milliseconds**; after it an `IN_PROGRESS` record counts as orphaned |
//! | `validation` | S | hash of the payload; the same key with another hash is a conflict |
//! | `response_status`, `response_body` | N, S | the answer replayed to duplicates (`COMPLETED` only) |
//!
//! DynamoDB deletes expired items lazily (up to ~48 h after `expiration`), so every decision compares the
//! expiry attributes with `now` instead of trusting that expired items are gone.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use hubrelay_core::store::{
    Begin, ContactVersions, Delivered, EventLog, IdempotencyStore, LeadLinks, StoreError, StoredResponse,
    IDEMPOTENCY_TTL, IN_PROGRESS_TTL,
};

const STATUS_IN_PROGRESS: &str = "IN_PROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// Claim condition: the key is free, its record has expired, or it is an orphaned IN_PROGRESS record.
const CLAIM_CONDITION: &str = "attribute_not_exists(id) OR expiration < :now_s \
     OR (#status = :inprogress AND in_progress_expiration < :now_ms)";

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoIdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoIdempotencyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoIdempotencyStore { client, table: table.into() }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) fn unavailable<E, R>(&self, operation: &str, err: &SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        StoreError::Unavailable(format!("DynamoDB {operation} on table {}: {}", self.table, DisplayErrorContext(err)))
    }

    /// What an existing (live) record means for a caller with `payload_hash`.
    fn classify(item: &Item, payload_hash: &str) -> Result<Begin, StoreError> {
        // A record without a validation hash (written by `complete` after its record vanished) matches anything.
        if let Some(validation) = item.get("validation") {
            let validation = validation
                .as_s()
                .map_err(|_| StoreError::Corrupt("idempotency record: `validation` is not a string".into()))?;
            if validation != payload_hash {
                return Ok(Begin::Conflict);
            }
        }
        match item.get("status").and_then(|s| s.as_s().ok()).map(String::as_str) {
            Some(STATUS_COMPLETED) => {
                let status = item
                    .get("response_status")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<u16>().ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt("completed idempotency record without response_status".into())
                    })?;
                let body =
                    item.get("response_body").and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| {
                        StoreError::Corrupt("completed idempotency record without response_body".into())
                    })?;
                Ok(Begin::Completed(StoredResponse { status, body }))
            }
            Some(STATUS_IN_PROGRESS) => Ok(Begin::InProgress),
            other => Err(StoreError::Corrupt(format!("idempotency record with status {other:?}"))),
        }
    }

    /// The current record, read consistently (fallback when a failed condition returned no item).
    async fn current(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        Ok(out.item)
    }
}

fn epoch_seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn epoch_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn begin(&self, key: &str, payload_hash: &str, now: OffsetDateTime) -> Result<Begin, StoreError> {
        // A claim can lose a race with a `release` (condition fails, then the item is gone): try again a few times.
        for _ in 0..3 {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", AttributeValue::S(key.to_owned()))
                .item("status", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
                .item("expiration", n(epoch_seconds(now + IDEMPOTENCY_TTL)))
                .item("in_progress_expiration", n(epoch_millis(now + IN_PROGRESS_TTL)))
                .item("validation", AttributeValue::S(payload_hash.to_owned()))
                .condition_expression(CLAIM_CONDITION)
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":now_s", n(epoch_seconds(now)))
                .expression_attribute_values(":now_ms", n(epoch_millis(now)))
                .expression_attribute_values(":inprogress", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Begin::Started),
                Err(SdkError::ServiceError(ctx)) if ctx.err().is_conditional_check_failed_exception() => {
                    let old = match ctx.into_err() {
                        PutItemError::ConditionalCheckFailedException(e) => e.item,
                        _ => None,
                    };
                    let old = match old {
                        Some(item) => Some(item),
                        None => self.current(key).await?,
                    };
                    match old {
                        Some(item) => return Self::classify(&item, payload_hash),
                        None => continue,
                    }
                }
                Err(e) => return Err(self.unavailable("PutItem", &e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB PutItem on table {}: could not claim key {key} (record kept changing)",
            self.table
        )))
    }

    async fn complete(&self, key: &str, response: &StoredResponse, now: OffsetDateTime) -> Result<(), StoreError> {
        // Unconditional, like Powertools: the caller owns the key (it got `Started`).
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .update_expression(
                "SET #status = :completed, response_status = :rs, response_body = :rb, expiration = :exp \
                 REMOVE in_progress_expiration",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", AttributeValue::S(STATUS_COMPLETED.to_owned()))
            .expression_attribute_values(":rs", n(i64::from(response.status)))
            .expression_attribute_values(":rb", AttributeValue::S(response.body.clone()))
            .expression_attribute_values(":exp", n(epoch_seconds(now + IDEMPOTENCY_TTL)))
            .send()
            .await
            .map_err(|e| self.unavailable("UpdateItem", &e))?;
        Ok(())
    }

    /// Today four writes, in this order: the contact version and the lead link (the worker's ordering and
    /// lookups need them first), the event record (every 2xx stands on one), then the answer.
    async fn complete_delivered(
        &self,
        key: &str,
        response: &StoredResponse,
        delivered: &Delivered,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some((email, received_at)) = &delivered.applied {
            self.record_applied(email, *received_at).await?;
        }
        if let Some((lead_id, contact_id)) = &delivered.link {
            self.link(lead_id, contact_id, now).await?;
        }
        self.put_event(&delivered.event).await?;
        self.complete(key, response, now).await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .condition_expression("#status = :inprogress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inprogress", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone or already COMPLETED: nothing to give up.
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(self.unavailable("DeleteItem", &e)),
        }
    }
}
