//! The event log and contact versions on DynamoDB, in the idempotency table under their own key prefixes
//! (`event:<id>`, `contact:<sha256 of email>`), so the stack keeps one table with one TTL.
//!
//! Listing events scans the `event:` items: fine for an on-call tool over days of events, not for a
//! request path.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::store::{contact_key, ContactVersions, EventFilter, EventLog, EventRecord, StoreError};

/// Event records outlive the retry window and the DLQ's 14-day retention, so `events show` can explain
/// anything an operator can still redrive.
const EVENT_TTL_DAYS: i64 = 15;
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

fn decode(item: &HashMap<String, AttributeValue>) -> Result<EventRecord, StoreError> {
    let json = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("event without record".into()))?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("event record: {e}")))
}

#[async_trait]
impl EventLog for DynamoIdempotencyStore {
    async fn put_event(&self, record: &EventRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expiration = (record.updated_at + time::Duration::days(EVENT_TTL_DAYS)).unix_timestamp();
        self.client()
            .put_item()
            .table_name(self.table())
            .item("id", AttributeValue::S(format!("event:{}", record.event_id)))
            .item("status", AttributeValue::S(record.status.as_str().into()))
            .item("function", AttributeValue::S(record.function.as_str().into()))
            .item("received_at", n(millis(record.received_at)))
            .item("record", AttributeValue::S(json))
            .item("expiration", n(expiration))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    async fn get_event(&self, event_id: &str) -> Result<Option<EventRecord>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", AttributeValue::S(format!("event:{event_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        out.item.as_ref().map(decode).transpose()
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let mut expr = vec!["begins_with(id, :prefix)".to_string()];
        let mut values = HashMap::from([(":prefix".to_string(), AttributeValue::S("event:".into()))]);
        let mut names = HashMap::new();
        if let Some(status) = filter.status {
            expr.push("#status = :status".into());
            names.insert("#status".to_string(), "status".to_string());
            values.insert(":status".into(), AttributeValue::S(status.as_str().into()));
        }
        if let Some(function) = filter.function {
            expr.push("#function = :function".into());
            names.insert("#function".to_string(), "function".to_string());
            values.insert(":function".into(), AttributeValue::S(function.as_str().into()));
        }
        if let Some(after) = filter.received_after {
            expr.push("received_at >= :after".into());
            values.insert(":after".into(), n(millis(after)));
        }
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut scan = self
                .client()
                .scan()
                .table_name(self.table())
                .filter_expression(expr.join(" AND "))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take());
            if !names.is_empty() {
                scan = scan.set_expression_attribute_names(Some(names.clone()));
            }
            let out = scan.send().await.map_err(|e| self.unavailable("Scan", &e))?;
            for item in out.items() {
                records.push(decode(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
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
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", AttributeValue::S(contact_key(email)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| i.get("applied_at"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(from_millis))
    }

    async fn record_applied(&self, email: &str, received_at: OffsetDateTime) -> Result<(), StoreError> {
        let expiration = (OffsetDateTime::now_utc() + time::Duration::days(VERSION_TTL_DAYS)).unix_timestamp();
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", AttributeValue::S(contact_key(email)))
            .update_expression("SET applied_at = :t, expiration = :exp")
            .condition_expression("attribute_not_exists(applied_at) OR applied_at < :t")
            .expression_attribute_values(":t", n(millis(received_at)))
            .expression_attribute_values(":exp", n(expiration))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer (or the same) lead is already recorded: keeping the maximum is the point.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }
}
