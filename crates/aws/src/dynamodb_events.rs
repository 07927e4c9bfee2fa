//! The event log and contact versions on DynamoDB, in the idempotency table, so the stack keeps one table
//! with one TTL. An event queued or parked has its own item (`event:<id>`, rewritten at every attempt); one
//! delivered on its first attempt is on its idempotency key's item (`event_id`, `event_record`, written with the
//! answer). A contact's version is the newest of its `contact:<sha256 of email>` item (written by the retry
//! worker) and the `applied_at` of the key items the `by_contact` index finds for it (inline deliveries).
//!
//! Listing events, and showing one delivered inline, scans the table: fine for an on-call tool, not for a
//! request path. The request paths (the worker, redrive's check of the log) find their events' `event:`
//! items; only an event without one (delivered inline, or past its retention) costs them a scan.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::dynamodb::{DynamoIdempotencyStore, EVENT_TTL};
use hubrelay_core::store::{contact_key, ContactVersions, EventFilter, EventLog, EventRecord, StoreError};

/// Event records outlive the retry window and the DLQ's 14-day retention, so `events show` can explain
/// anything an operator can still redrive.
const EVENT_TTL_DAYS: i64 = 15;
/// The index of key items by contact (`contact` S, `applied_at` N; keys only), as template.yaml defines it.
pub const CONTACT_INDEX: &str = "by_contact";
/// Contact versions must outlive every retry of an older lead (≈ 3 days) and any redrive from the DLQ.
const VERSION_TTL_DAYS: i64 = 15;

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The record of an `event:` item (`record`) or of a key item (`event_record`).
fn decode(item: &HashMap<String, AttributeValue>) -> Result<EventRecord, StoreError> {
    let json = item
        .get("record")
        .or_else(|| item.get("event_record"))
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("event without record".into()))?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("event record: {e}")))
}

/// A key item's record is listed for [`EVENT_TTL`] after its last update, like an `event:` item (the item
/// itself may live longer, for its lead link).
fn listed(item: &HashMap<String, AttributeValue>, record: &EventRecord, now: OffsetDateTime) -> bool {
    item.contains_key("record") || record.updated_at + EVENT_TTL > now
}

/// Every item a filter expression selects, all pages (or up to the first, with `first_only`).
pub(crate) async fn scan_all(
    store: &DynamoIdempotencyStore,
    filter: &str,
    values: HashMap<String, AttributeValue>,
    first_only: bool,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let out = store
            .client()
            .scan()
            .table_name(store.table())
            .filter_expression(filter)
            .set_expression_attribute_values(Some(values.clone()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| store.unavailable("Scan", &e))?;
        items.extend(out.items.unwrap_or_default());
        if first_only && !items.is_empty() {
            return Ok(items);
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

impl DynamoIdempotencyStore {
    /// Which of `event_ids` are settled already (delivered or superseded, by their `event:` items): one consistent
    /// `BatchGetItem` per 100. SQS delivers a message at least once, and an import's resumed chunk is sent again;
    /// the worker drops the copies of settled events instead of writing them again.
    pub async fn settled_events(&self, event_ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut settled = std::collections::HashSet::new();
        for chunk in event_ids.chunks(100) {
            let mut wanted = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression("id, #s")
                .expression_attribute_names("#s", "status");
            let unique: std::collections::BTreeSet<&String> = chunk.iter().collect();
            for id in unique {
                wanted = wanted.keys(HashMap::from([("id".to_string(), self.id(&format!("event:{id}")))]));
            }
            let wanted = wanted.build().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut request = HashMap::from([(self.table().to_string(), wanted)]);
            // Keys DynamoDB left unprocessed (throttling) are asked again after a pause, a few times.
            for round in 0..4u32 {
                if round > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << round)).await;
                }
                let out = self
                    .client()
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| self.unavailable("BatchGetItem", &e))?;
                for item in out.responses.and_then(|mut r| r.remove(self.table())).unwrap_or_default() {
                    let status = item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str);
                    if matches!(status, Some("delivered" | "superseded")) {
                        let id = item.get("id").and_then(|v| v.as_s().ok());
                        if let Some(event_id) = id.and_then(|i| i.rsplit_once("event:")).map(|(_, e)| e) {
                            settled.insert(event_id.to_string());
                        }
                    }
                }
                match out.unprocessed_keys {
                    Some(rest) if !rest.is_empty() => request = rest,
                    _ => break,
                }
                if round == 3 {
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB BatchGetItem on table {}: event records stayed unprocessed",
                        self.table()
                    )));
                }
            }
        }
        Ok(settled)
    }
}

#[async_trait]
impl EventLog for DynamoIdempotencyStore {
    async fn put_event(&self, record: &EventRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expiration = (record.updated_at + time::Duration::days(EVENT_TTL_DAYS)).unix_timestamp();
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("id", self.id(&format!("event:{}", record.event_id)))
            .item("status", AttributeValue::S(record.status.as_str().into()))
            .item("function", AttributeValue::S(record.function.as_str().into()))
            .item("received_at", n(millis(record.received_at)))
            .item("record", AttributeValue::S(json))
            .item("expiration", n(expiration))
            // An erased event's tombstone stays: a pass that was in flight during the erasure writes nothing back.
            .condition_expression("attribute_not_exists(erased)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                tracing::info!(event_id = %record.event_id, "event erased meanwhile: its record is not written back");
                Ok(())
            }
            Err(e) => Err(self.unavailable("PutItem", &e)),
        }
    }

    async fn get_event(&self, event_id: &str) -> Result<Option<EventRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", self.id(&format!("event:{event_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        if let Some(item) = &out.item {
            if item.contains_key("erased") {
                return Ok(None);
            }
            return decode(item).map(Some);
        }
        // Delivered on its first attempt: on its key's item.
        let values = HashMap::from([
            (":id".to_string(), AttributeValue::S(event_id.into())),
            (":scope".to_string(), self.scope_value()),
        ]);
        let condition = format!("event_id = :id AND {}", self.scope_condition());
        let items = scan_all(self, &condition, values, true).await?;
        let now = OffsetDateTime::now_utc();
        for item in &items {
            let record = decode(item)?;
            if listed(item, &record, now) {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let values =
            HashMap::from([(":prefix".to_string(), self.id("event:")), (":scope".to_string(), self.scope_value())]);
        let condition =
            format!("(begins_with(id, :prefix) OR attribute_exists(event_record)) AND {}", self.scope_condition());
        let items = scan_all(self, &condition, values, false).await?;
        let now = OffsetDateTime::now_utc();
        let mut records = Vec::new();
        for item in items.iter().filter(|i| !i.contains_key("erased")) {
            let record = decode(item)?;
            if listed(item, &record, now) && filter.matches(&record) {
                records.push(record);
            }
        }
        records.sort_by(|a, b| b.received_at.cmp(&a.received_at).then_with(|| a.event_id.cmp(&b.event_id)));
        if filter.limit > 0 {
            records.truncate(filter.limit);
        }
        Ok(records)
    }
}

#[async_trait]
impl ContactVersions for DynamoIdempotencyStore {
    async fn last_applied(&self, email: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let key = contact_key(email);
        let recorded =
            self.client().get_item().table_name(self.table()).key("id", self.id(&key)).consistent_read(true).send();
        // Index reads are eventually consistent (typically well under a second behind): an older queued lead
        // the worker sends within that moment of a newer one's inline delivery may still overwrite it — the
        // same race as before, a little wider (in AWS nothing locks a contact across Lambdas).
        let inline = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(CONTACT_INDEX)
            .key_condition_expression("contact = :c")
            .expression_attribute_values(":c", self.id(&key))
            .scan_index_forward(false)
            .limit(1)
            .send();
        let (recorded, inline) = tokio::join!(recorded, inline);
        let recorded = recorded.map_err(|e| self.unavailable("GetItem", &e))?.item;
        let inline = inline.map_err(|e| self.unavailable("Query", &e))?.items.unwrap_or_default();
        let applied = |item: &HashMap<String, AttributeValue>| {
            item.get("applied_at").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok())
        };
        let newest = recorded.as_ref().and_then(applied).into_iter().chain(inline.iter().filter_map(applied)).max();
        Ok(newest.map(from_millis))
    }

    async fn record_applied(&self, email: &str, received_at: OffsetDateTime) -> Result<(), StoreError> {
        let expiration = (OffsetDateTime::now_utc() + time::Duration::days(VERSION_TTL_DAYS)).unix_timestamp();
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", self.id(&contact_key(email)))
            .update_expression("SET applied_at = :t, expiration = :exp")
            .condition_expression("attribute_not_exists(applied_at) OR applied_at < :t")
            .expression_attribute_values(":t", n(millis(received_at)))
            .expression_attribute_values(":exp", n(expiration))
            .send()
            .await;
        // A newer (or the same) lead already recorded fails the condition: keeping the maximum is the point.
        self.updated_or_already(result)
    }
}
