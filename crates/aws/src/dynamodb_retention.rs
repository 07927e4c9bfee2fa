//! The retention sweep on AWS (`HUBRELAY_PERSONAL_DATA_RETENTION`): event records older than the retention lose
//! their masked email and its hash, as `serve`'s worker does hourly. Records are deleted by their TTL after
//! [`EVENT_TTL`] (15 days) anyway, so a retention that long or longer needs no sweep.
//!
//! An hourly EventBridge schedule invokes the retry worker with a `Scheduled Event`; each invocation scans the
//! whole table (every tenant's scope) a page at a time until its deadline and leaves a cursor item
//! ([`CURSOR_ID`]) where it stopped, so a table too large for one invocation is covered over several.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::dynamodb::{DynamoIdempotencyStore, EVENT_TTL};
use hubrelay_core::store::{EventRecord, EventStatus, StoreError};

type Item = HashMap<String, AttributeValue>;

/// The item holding where the last unfinished sweep stopped (the default scope's; no event or key is named so).
pub const CURSOR_ID: &str = "sweep:retention";

/// How long a cursor is kept: a sweep abandoned for longer starts again from the beginning.
const CURSOR_TTL: time::Duration = time::Duration::days(2);

/// `record` cleared of what it holds of a person, when it is older than `cutoff` and not still retrying.
pub(crate) fn scrubbed(mut record: EventRecord, cutoff: OffsetDateTime) -> Option<EventRecord> {
    if record.received_at >= cutoff || record.status == EventStatus::Retrying {
        return None;
    }
    if record.email_masked.is_none() && record.email_hash.is_none() {
        return None;
    }
    record.email_masked = None;
    record.email_hash = None;
    Some(record)
}

/// An item's event record and the attribute holding it (`record` on `event:` items, `event_record` on the key
/// item of an event delivered inline).
pub(crate) fn record_attribute(item: &Item) -> Option<(&'static str, EventRecord)> {
    for attribute in ["record", "event_record"] {
        if let Some(json) = item.get(attribute).and_then(|v| v.as_s().ok()) {
            return serde_json::from_str(json).ok().map(|r| (attribute, r));
        }
    }
    None
}

impl DynamoIdempotencyStore {
    /// Replace the record in `attribute` of the item `id` (a full item id) with `record`, if it is still there
    /// (an erasure may have made the item a tombstone meanwhile).
    pub(crate) async fn write_scrubbed(
        &self,
        id: AttributeValue,
        attribute: &str,
        record: &EventRecord,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", id)
            .update_expression("SET #r = :r")
            .condition_expression("attribute_exists(#r)")
            .expression_attribute_names("#r", attribute)
            .expression_attribute_values(":r", AttributeValue::S(json))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }
}

/// What one invocation of the sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Items read (every item of the pages scanned).
    pub scanned: u64,
    /// Event records cleared.
    pub scrubbed: u64,
    /// The scan reached the end of the table (the next invocation starts a new pass).
    pub finished: bool,
}

impl SweepReport {
    /// The invocation's answer: `{"scanned", "scrubbed", "finished"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"scanned": self.scanned, "scrubbed": self.scrubbed, "finished": self.finished})
    }
}

/// The sweep over one table, every scope of it.
#[derive(Debug, Clone)]
pub struct RetentionSweep {
    table: DynamoIdempotencyStore,
    retention: Duration,
    page_size: i32,
}

impl RetentionSweep {
    /// The sweep of `table` (the default tenant's store: the cursor is its item), or `None` when `retention` is
    /// at least [`EVENT_TTL`]: the records' TTL removes them first.
    pub fn new(table: DynamoIdempotencyStore, retention: Duration) -> Option<Self> {
        (retention < EVENT_TTL).then_some(RetentionSweep { table, retention, page_size: 1000 })
    }

    /// Items per scanned page (1000 by default; tests use small pages to cover many).
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = items.max(1);
        self
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Scan from the cursor, a page at a time, clearing the records older than the retention, until the table
    /// ends or `deadline` passes (at least one page either way); then save or clear the cursor.
    pub async fn run(&self, now: OffsetDateTime, deadline: Instant) -> Result<SweepReport, StoreError> {
        let cutoff = now - self.retention;
        let mut report = SweepReport::default();
        let mut start = self.cursor(now).await?;
        loop {
            let out = self
                .table
                .client()
                .scan()
                .table_name(self.table.table())
                .limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.table.unavailable("Scan", &e))?;
            for item in out.items.unwrap_or_default() {
                report.scanned += 1;
                let (Some(id), Some((attribute, record))) = (item.get("id"), record_attribute(&item)) else { continue };
                let Some(record) = scrubbed(record, cutoff) else { continue };
                if self.table.write_scrubbed(id.clone(), attribute, &record).await? {
                    report.scrubbed += 1;
                }
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                report.finished = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.save_cursor(start, now).await?;
        Ok(report)
    }

    async fn cursor(&self, now: OffsetDateTime) -> Result<Option<Item>, StoreError> {
        let out = self
            .table
            .client()
            .get_item()
            .table_name(self.table.table())
            .key("id", self.table.id(CURSOR_ID))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table.unavailable("GetItem", &e))?;
        let Some(item) = out.item else { return Ok(None) };
        let expired = item
            .get("expiration")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|at| at < now.unix_timestamp());
        let next = item.get("next").and_then(|v| v.as_s().ok()).filter(|_| !expired);
        Ok(next.map(|id| HashMap::from([("id".to_string(), AttributeValue::S(id.clone()))])))
    }

    async fn save_cursor(&self, next: Option<Item>, now: OffsetDateTime) -> Result<(), StoreError> {
        let client = self.table.client();
        match next.as_ref().and_then(|k| k.get("id")).and_then(|v| v.as_s().ok()) {
            Some(next) => {
                let expiration = (now + CURSOR_TTL).unix_timestamp();
                client
                    .put_item()
                    .table_name(self.table.table())
                    .item("id", self.table.id(CURSOR_ID))
                    .item("next", AttributeValue::S(next.clone()))
                    .item("expiration", AttributeValue::N(expiration.to_string()))
                    .send()
                    .await
                    .map_err(|e| self.table.unavailable("PutItem", &e))?;
            }
            None => {
                client
                    .delete_item()
                    .table_name(self.table.table())
                    .key("id", self.table.id(CURSOR_ID))
                    .send()
                    .await
                    .map_err(|e| self.table.unavailable("DeleteItem", &e))?;
            }
        }
        Ok(())
    }
}
