//! [`IdempotencyStore`] on DynamoDB, one item per idempotency key, in the style of Powertools for AWS Lambda.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `id` | S | the idempotency key (partition key) |
//! | `status` | S | `IN_PROGRESS` or `COMPLETED` (absent: a released key, free) |
//! | `idempotency_expiration` | N | epoch **seconds**; after it the key is free again |
//! | `expiration` | N | epoch seconds; the table's TTL attribute: the longest any attribute must be kept (never lowered) |
//! | `in_progress_expiration` | N | epoch **milliseconds**; after it an `IN_PROGRESS` record counts as orphaned |
//! | `validation` | S | hash of the payload; the same key with another hash is a conflict |
//! | `response_status`, `response_body` | N, S | the answer replayed to duplicates (`COMPLETED` only) |
//!
//! An event delivered on its first attempt leaves the rest on the same item, written by the completing update
//! (so a delivered lead costs two writes: the claim and this):
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `event_id`, `event_record` | S, S | its [`EventRecord`](hubrelay_core::store::EventRecord) (JSON), for `events` |
//! | `contact`, `applied_at` | S, N | [`contact_key`] of the lead's email and its `received_at` (epoch ms): the contact version, found through the `by_contact` index |
//! | `contact_id`, `linked_at` | S, N | the lead id's contact ([`LeadLinks`]); the key is [`sender_key`] of the lead id |
//!
//! A key claimed again after its window and delivered inline replaces the earlier event's record and version
//! with its own (the newer ones); the lead link is the same lead's. The event record is listed for
//! [`EVENT_TTL`] after its last update, however long the item lives for its link.
//!
//! Items written before this layout (`expiration` without `idempotency_expiration`) keep their meaning.
//! DynamoDB deletes expired items lazily (up to ~48 h after `expiration`), so every decision compares the
//! expiry attributes with `now` instead of trusting that expired items are gone.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use hubrelay_core::store::{
    contact_key, Begin, Delivered, IdempotencyStore, StoreError, StoredResponse, IDEMPOTENCY_TTL, IN_PROGRESS_TTL,
    UPDATE_STATE_TTL,
};
#[cfg(doc)]
use hubrelay_core::store::{sender_key, LeadLinks};
use hubrelay_core::tenant::TenantId;

const STATUS_IN_PROGRESS: &str = "IN_PROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// Claim condition: the key is free (no item, or released), its record has expired, or it is an orphaned
/// IN_PROGRESS record.
const CLAIM_CONDITION: &str = "attribute_not_exists(#status) OR idempotency_expiration < :now_s \
     OR (attribute_not_exists(idempotency_expiration) AND expiration < :now_s) \
     OR (#status = :inprogress AND in_progress_expiration < :now_ms)";

/// How long an inline-delivered event's record and contact version stay on its item (as `event:` items do).
pub(crate) const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 24 * 3600);

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoIdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// What every item id of this store starts with: empty for the default tenant, `t:<tenant>:` for a tenant.
    scope: String,
}

/// What a tenant's item ids start with; the default tenant's have no prefix (and none of its ids starts so).
pub const TENANT_SCOPE_PREFIX: &str = "t:";

impl DynamoIdempotencyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoIdempotencyStore { client, table: table.into(), scope: String::new() }
    }

    /// The same table seen by one tenant: its keys, events, versions, ledgers and lead links are its own.
    pub fn for_tenant(&self, tenant: &TenantId) -> Self {
        DynamoIdempotencyStore { scope: format!("{TENANT_SCOPE_PREFIX}{tenant}:"), ..self.clone() }
    }

    /// The item id of `key` in this store's scope.
    pub(crate) fn id(&self, key: &str) -> AttributeValue {
        AttributeValue::S(format!("{}{key}", self.scope))
    }

    /// A scan filter's condition selecting this scope's items (`:scope` in [`Self::scope_values`]).
    pub(crate) fn scope_condition(&self) -> &'static str {
        if self.scope.is_empty() {
            "NOT begins_with(id, :scope)"
        } else {
            "begins_with(id, :scope)"
        }
    }

    pub(crate) fn scope_value(&self) -> AttributeValue {
        AttributeValue::S(if self.scope.is_empty() { TENANT_SCOPE_PREFIX.to_string() } else { self.scope.clone() })
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

    /// The outcome of a conditional `UpdateItem` whose failed condition means the item is already as wanted
    /// (a newer version kept, a lease or claim already gone): done either way.
    pub(super) fn updated_or_already<R: std::fmt::Debug>(
        &self,
        result: Result<UpdateItemOutput, SdkError<UpdateItemError, R>>,
    ) -> Result<(), StoreError> {
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
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
            .key("id", self.id(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        Ok(out.item)
    }
}

impl DynamoIdempotencyStore {
    /// Raise the item's TTL to `ttl` (never lower it): a reclaimed key whose last retention ends sooner.
    async fn extend_ttl(&self, key: &str, ttl: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .update_expression("SET expiration = :ttl")
            .condition_expression("expiration < :ttl")
            .expression_attribute_values(":ttl", n(ttl))
            .send()
            .await;
        self.updated_or_already(result)
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
        // An update, not a put: a key claimed again after its window keeps what its last delivery left (the
        // lead link, the contact version, the event record) and never shortens its TTL. The TTL covers the
        // window from this claim plus the time to answer (the answer sets `idempotency_expiration` only).
        let ttl = epoch_seconds(now + IDEMPOTENCY_TTL + IN_PROGRESS_TTL);
        // A claim can lose a race with a `release` (condition fails, then the status is gone): try again.
        for _ in 0..3 {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("id", self.id(key))
                .update_expression(
                    "SET #status = :inprogress, validation = :v, idempotency_expiration = :exp, \
                     expiration = if_not_exists(expiration, :ttl), in_progress_expiration = :ipexp \
                     REMOVE response_status, response_body",
                )
                .condition_expression(CLAIM_CONDITION)
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":v", AttributeValue::S(payload_hash.to_owned()))
                .expression_attribute_values(":exp", n(epoch_seconds(now + IDEMPOTENCY_TTL)))
                .expression_attribute_values(":ttl", n(ttl))
                .expression_attribute_values(":ipexp", n(epoch_millis(now + IN_PROGRESS_TTL)))
                .expression_attribute_values(":now_s", n(epoch_seconds(now)))
                .expression_attribute_values(":now_ms", n(epoch_millis(now)))
                .expression_attribute_values(":inprogress", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let old_ttl = out
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get("expiration"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse::<i64>().ok());
                    if old_ttl.is_some_and(|old| old < ttl) {
                        self.extend_ttl(key, ttl).await?;
                    }
                    return Ok(Begin::Started);
                }
                Err(SdkError::ServiceError(ctx)) if ctx.err().is_conditional_check_failed_exception() => {
                    let old = match ctx.into_err() {
                        UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                        _ => None,
                    };
                    let old = match old {
                        Some(item) => Some(item),
                        None => self.current(key).await?,
                    };
                    match old {
                        Some(item) if item.contains_key("status") => return Self::classify(&item, payload_hash),
                        _ => continue,
                    }
                }
                Err(e) => return Err(self.unavailable("UpdateItem", &e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB UpdateItem on table {}: could not claim key {key} (record kept changing)",
            self.table
        )))
    }

    async fn complete(&self, key: &str, response: &StoredResponse, now: OffsetDateTime) -> Result<(), StoreError> {
        // Unconditional, like Powertools: the caller owns the key (it got `Started`). The TTL is the claim's.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .update_expression(
                "SET #status = :completed, response_status = :rs, response_body = :rb, \
                 idempotency_expiration = :exp REMOVE in_progress_expiration",
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

    /// One write: the answer, the event record, the contact version and the lead link on the key's item.
    async fn complete_delivered(
        &self,
        key: &str,
        response: &StoredResponse,
        delivered: &Delivered,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let record = serde_json::to_string(&delivered.event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let keep = if delivered.link.is_some() { UPDATE_STATE_TTL } else { EVENT_TTL.max(IDEMPOTENCY_TTL) };
        let mut sets = vec![
            "#status = :completed",
            "response_status = :rs",
            "response_body = :rb",
            "idempotency_expiration = :idexp",
            "expiration = :exp",
            "event_id = :eid",
            "event_record = :rec",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", AttributeValue::S(STATUS_COMPLETED.to_owned()))
            .expression_attribute_values(":rs", n(i64::from(response.status)))
            .expression_attribute_values(":rb", AttributeValue::S(response.body.clone()))
            .expression_attribute_values(":idexp", n(epoch_seconds(now + IDEMPOTENCY_TTL)))
            .expression_attribute_values(":exp", n(epoch_seconds(now + keep)))
            .expression_attribute_values(":eid", AttributeValue::S(delivered.event.event_id.clone()))
            .expression_attribute_values(":rec", AttributeValue::S(record));
        if let Some((email, received_at)) = &delivered.applied {
            sets.extend(["contact = :contact", "applied_at = :applied"]);
            request = request
                .expression_attribute_values(":contact", self.id(&contact_key(email)))
                .expression_attribute_values(":applied", n(epoch_millis(*received_at)));
        }
        if let Some((_lead_id, contact_id)) = &delivered.link {
            sets.extend(["contact_id = :cid", "linked_at = :linked"]);
            request = request
                .expression_attribute_values(":cid", AttributeValue::S(contact_id.clone()))
                .expression_attribute_values(":linked", n(epoch_millis(now)));
        }
        request
            .update_expression(format!("SET {} REMOVE in_progress_expiration", sets.join(", ")))
            .send()
            .await
            .map_err(|e| self.unavailable("UpdateItem", &e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        // Delete the claim, unless the item still holds what an earlier delivery left: then only the claim goes.
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .condition_expression("#status = :inprogress AND attribute_not_exists(event_record)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inprogress", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(()),
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_conditional_check_failed_exception() => {
                match ctx.into_err() {
                    DeleteItemError::ConditionalCheckFailedException(e) => e.item,
                    _ => None,
                }
            }
            Err(e) => return Err(self.unavailable("DeleteItem", &e)),
        };
        // Already gone or COMPLETED: nothing to give up.
        let in_progress = old
            .as_ref()
            .and_then(|item| item.get("status"))
            .and_then(|s| s.as_s().ok())
            .is_some_and(|s| s == STATUS_IN_PROGRESS);
        if !in_progress {
            return Ok(());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .update_expression("REMOVE #status, validation, in_progress_expiration, idempotency_expiration")
            .condition_expression("#status = :inprogress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inprogress", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
            .send()
            .await;
        self.updated_or_already(result)
    }
}
