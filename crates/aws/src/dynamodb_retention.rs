//! The retention sweep on AWS (`HUBRELAY_PERSONAL_DATA_RETENTION`): event records older than the retention lose
//! their masked email and its hash, as `serve`'s worker does hourly. `event:` items are deleted by their TTL after
//! [`EVENT_TTL`] (15 days), but the key item of a lead delivered inline keeps its event record as long as its lead
//! link (400 days): the sweep clears records older than the retention or [`EVENT_TTL`], whichever is shorter.
//!
//! An hourly EventBridge schedule invokes the retry worker with a `Scheduled Event`; each invocation scans the
//! whole table (every tenant's scope) until its deadline and leaves a cursor item ([`CURSOR_ID`]) where it stopped,
//! so a table too large for one invocation is covered over several. A retention shorter than [`EVENT_TTL`] starts
//! a pass every hour; otherwise a pass starts a day after the last one finished.

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

/// How often a pass starts when the retention is [`EVENT_TTL`] or longer (only inline records outlive it).
const DAILY: time::Duration = time::Duration::days(1);

/// How often a pass starts for a retention shorter than [`EVENT_TTL`].
const HOURLY: time::Duration = time::Duration::hours(1);

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

/// An item's event record as stored (the JSON, compared when it is written back), the attribute holding it
/// (`record` on `event:` items, `event_record` on the key item of an event delivered inline) and the record.
pub(crate) struct StoredRecord<'a> {
    pub attribute: &'static str,
    pub json: &'a str,
    pub record: EventRecord,
}

pub(crate) fn stored_record(item: &Item) -> Option<StoredRecord<'_>> {
    for attribute in ["record", "event_record"] {
        if let Some(json) = item.get(attribute).and_then(|v| v.as_s().ok()) {
            let record = serde_json::from_str(json).ok()?;
            return Some(StoredRecord { attribute, json, record });
        }
    }
    None
}

impl DynamoIdempotencyStore {
    /// Replace the record `stored` of the item `id` (a full item id) with `record`, only if it is still the one
    /// read: a record rewritten since (a redrive, a key claimed and delivered again) or erased is left alone.
    pub(crate) async fn write_scrubbed(
        &self,
        id: AttributeValue,
        stored: &StoredRecord<'_>,
        record: &EventRecord,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", id)
            .update_expression("SET #r = :r")
            .condition_expression("#r = :old")
            .expression_attribute_names("#r", stored.attribute)
            .expression_attribute_values(":r", AttributeValue::S(json))
            .expression_attribute_values(":old", AttributeValue::S(stored.json.to_string()))
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
    /// No pass was due (the last one finished less than its interval ago): nothing was read.
    pub idle: bool,
    /// Items read (every item of the pages scanned).
    pub scanned: u64,
    /// Event records cleared.
    pub scrubbed: u64,
    /// The scan reached the end of the table (the next invocation starts a new pass).
    pub finished: bool,
}

impl SweepReport {
    /// The invocation's answer: `{"idle", "scanned", "scrubbed", "finished"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "idle": self.idle, "scanned": self.scanned, "scrubbed": self.scrubbed, "finished": self.finished
        })
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
    /// The sweep of `table` (the default tenant's store: the cursor is its item), keeping `retention`.
    pub fn new(table: DynamoIdempotencyStore, retention: Duration) -> Self {
        RetentionSweep { table, retention, page_size: 1000 }
    }

    /// Items per scanned page (1000 by default; tests use small pages to cover many).
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = items.max(1);
        self
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// How long records keep the person: the retention, or [`EVENT_TTL`] when that is shorter.
    fn cutoff(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.retention.min(EVENT_TTL)
    }

    /// How often a pass starts.
    fn interval(&self) -> time::Duration {
        if self.retention < EVENT_TTL {
            HOURLY
        } else {
            DAILY
        }
    }

    /// Scan from the cursor, clearing the records older than the cutoff, until the table ends or `deadline`
    /// passes (checked after each item, at least one item either way); then save where it stopped, or that the
    /// pass finished. Nothing is read when no pass is due.
    pub async fn run(&self, now: OffsetDateTime, deadline: Instant) -> Result<SweepReport, StoreError> {
        let cutoff = self.cutoff(now);
        let mut report = SweepReport::default();
        let mut start = match self.cursor(now).await? {
            Cursor::Due(start) => start,
            Cursor::Idle => return Ok(SweepReport { idle: true, ..report }),
        };
        'pages: loop {
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
            let items = out.items.unwrap_or_default();
            let last = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                report.scanned += 1;
                if let (Some(id), Some(stored)) = (item.get("id"), stored_record(item)) {
                    if let Some(record) = scrubbed(stored.record.clone(), cutoff) {
                        if self.table.write_scrubbed(id.clone(), &stored, &record).await? {
                            report.scrubbed += 1;
                        }
                    }
                }
                if i < last && Instant::now() >= deadline {
                    // Stop mid-page: the next invocation starts after this item.
                    start = item.get("id").map(|id| HashMap::from([("id".to_string(), id.clone())]));
                    break 'pages;
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

    /// Where the pass goes on from, or that none is due yet.
    async fn cursor(&self, now: OffsetDateTime) -> Result<Cursor, StoreError> {
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
        let Some(item) = out.item else { return Ok(Cursor::Due(None)) };
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        if number("expiration").is_some_and(|at| at < now.unix_timestamp()) {
            return Ok(Cursor::Due(None));
        }
        if let Some(next) = item.get("next").and_then(|v| v.as_s().ok()) {
            return Ok(Cursor::Due(Some(HashMap::from([("id".to_string(), AttributeValue::S(next.clone()))]))));
        }
        match number("finished_at") {
            Some(at) if at > (now - self.interval()).unix_timestamp() => Ok(Cursor::Idle),
            _ => Ok(Cursor::Due(None)),
        }
    }

    /// Where the pass stopped (`next`), or when it finished; kept [`CURSOR_TTL`] past the interval.
    async fn save_cursor(&self, next: Option<Item>, now: OffsetDateTime) -> Result<(), StoreError> {
        let expiration = (now + self.interval() + CURSOR_TTL).unix_timestamp();
        let mut put = self
            .table
            .client()
            .put_item()
            .table_name(self.table.table())
            .item("id", self.table.id(CURSOR_ID))
            .item("expiration", AttributeValue::N(expiration.to_string()));
        put = match next.as_ref().and_then(|k| k.get("id")).and_then(|v| v.as_s().ok()) {
            Some(next) => put.item("next", AttributeValue::S(next.clone())),
            None => put.item("finished_at", AttributeValue::N(now.unix_timestamp().to_string())),
        };
        put.send().await.map_err(|e| self.table.unavailable("PutItem", &e))?;
        Ok(())
    }
}

/// What the cursor item says.
enum Cursor {
    /// A pass is due: from this start key, or from the beginning.
    Due(Option<Item>),
    /// The last pass finished less than an interval ago.
    Idle,
}
