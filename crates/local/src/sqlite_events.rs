//! The event log and contact versions on the local SQLite store (schema v2).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::sqlite::{epoch_millis, sql_err, SqliteStore};
use hubrelay_core::store::{contact_key, ContactVersions, EventFilter, EventLog, EventRecord, StoreError};

pub(super) const SCHEMA_V2: &str = "
CREATE TABLE events (
    event_id    TEXT PRIMARY KEY NOT NULL,
    function    TEXT NOT NULL,
    status      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX events_status_received ON events (status, received_at);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE contact_versions (
    contact_key TEXT PRIMARY KEY NOT NULL,
    applied_at  INTEGER NOT NULL
);
";

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn decode(json: &str) -> Result<EventRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("event record: {e}")))
}

/// An `events` row, encoded outside the lock.
pub(crate) struct EventRow {
    id: String,
    function: &'static str,
    status: &'static str,
    received: i64,
    json: String,
}

impl EventRow {
    pub(crate) fn new(record: &EventRecord) -> Result<EventRow, StoreError> {
        Ok(EventRow {
            id: record.event_id.clone(),
            function: record.function.as_str(),
            status: record.status.as_str(),
            received: epoch_millis(record.received_at),
            json: serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }

    pub(crate) fn write(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        conn.prepare_cached(
            // An erased event's record is never written back (see `sqlite_privacy`).
            "INSERT INTO events (event_id, function, status, received_at, record) SELECT ?1, ?2, ?3, ?4, ?5 \
             WHERE NOT EXISTS (SELECT 1 FROM erased_events WHERE event_id = ?1) \
             ON CONFLICT (event_id) DO UPDATE SET status = excluded.status, record = excluded.record",
        )
        .and_then(|mut stmt| stmt.execute(params![self.id, self.function, self.status, self.received, self.json]))
        .map_err(sql_err)?;
        Ok(())
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn put_event(&self, record: &EventRecord) -> Result<(), StoreError> {
        let row = EventRow::new(record)?;
        self.write(move |conn| row.write(conn)).await
    }

    /// All records in one transaction.
    async fn put_events(&self, records: &[EventRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = records.iter().map(EventRow::new).collect::<Result<Vec<_>, _>>()?;
        self.write(move |conn| {
            for row in &rows {
                row.write(conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_event(&self, event_id: &str) -> Result<Option<EventRecord>, StoreError> {
        let id = event_id.to_string();
        self.read(move |conn| {
            let json: Option<String> = conn
                .prepare_cached("SELECT record FROM events WHERE event_id = ?1")
                .and_then(|mut stmt| stmt.query_row(params![id], |r| r.get(0)).optional())
                .map_err(sql_err)?;
            json.as_deref().map(decode).transpose()
        })
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let status = filter.status.map(|s| s.as_str().to_string());
        let function = filter.function.map(|f| f.as_str().to_string());
        let after = filter.received_after.map(epoch_millis).unwrap_or(i64::MIN);
        let limit = if filter.limit == 0 { i64::MAX } else { filter.limit as i64 };
        let before = filter.received_before.map(epoch_millis);
        let email_hash = filter.email_hash.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT record FROM events WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR function = ?2) \
                     AND received_at >= ?3 AND (?5 IS NULL OR json_extract(record, '$.email_hash') = ?5) \
                     AND (?6 IS NULL OR received_at < ?6) \
                     ORDER BY received_at DESC, event_id LIMIT ?4",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![status, function, after, limit, email_hash, before], |r| r.get::<_, String>(0))
                .map_err(sql_err)?;
            rows.map(|r| decode(&r.map_err(sql_err)?)).collect()
        })
    }
}

/// Record a lead received at `applied_at` (ms) as applied to the contact; keeps the newest.
pub(crate) fn write_version(conn: &rusqlite::Connection, contact_key: &str, applied_at: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO contact_versions (contact_key, applied_at) VALUES (?1, ?2) \
         ON CONFLICT (contact_key) DO UPDATE SET applied_at = max(applied_at, excluded.applied_at)",
    )
    .and_then(|mut stmt| stmt.execute(params![contact_key, applied_at]))
    .map_err(sql_err)?;
    Ok(())
}

#[async_trait]
impl ContactVersions for SqliteStore {
    async fn last_applied(&self, email: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let key = contact_key(email);
        self.read(move |conn| {
            let ms: Option<i64> = conn
                .prepare_cached("SELECT applied_at FROM contact_versions WHERE contact_key = ?1")
                .and_then(|mut stmt| stmt.query_row(params![key], |r| r.get(0)).optional())
                .map_err(sql_err)?;
            Ok(ms.map(from_millis))
        })
    }

    async fn record_applied(&self, email: &str, received_at: OffsetDateTime) -> Result<(), StoreError> {
        self.record_applied_all(&[(email.to_string(), received_at)]).await
    }

    /// All in one transaction.
    async fn record_applied_all(&self, applied: &[(String, OffsetDateTime)]) -> Result<(), StoreError> {
        if applied.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i64)> = applied.iter().map(|(e, t)| (contact_key(e), epoch_millis(*t))).collect();
        self.write(move |conn| {
            for (key, ms) in &rows {
                write_version(conn, key, *ms)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::FunctionName;
    use hubrelay_core::store::EventStatus;
    use time::macros::datetime;

    fn record(id: &str, status: EventStatus, received: OffsetDateTime) -> EventRecord {
        EventRecord {
            event_id: id.into(),
            function: FunctionName::LeadCaptured,
            status,
            received_at: received,
            updated_at: received,
            next_attempt_at: None,
            attempts: vec![],
            contact_id: None,
            email_masked: Some("j***@e***.com".into()),
            // Each record's own person: `<id>@example.com`.
            email_hash: Some(hubrelay_core::store::email_hash(&format!("{id}@example.com"))),
            reason: None,
        }
    }

    #[tokio::test]
    async fn events_are_replaced_and_filtered() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t0 = datetime!(2026-11-24 10:00 UTC);
        store.put_event(&record("a", EventStatus::Retrying, t0)).await.unwrap();
        store.put_event(&record("b", EventStatus::DeadLettered, t0 + time::Duration::hours(1))).await.unwrap();
        store.put_event(&record("a", EventStatus::Delivered, t0)).await.unwrap();
        assert_eq!(store.get_event("a").await.unwrap().unwrap().status, EventStatus::Delivered);
        assert!(store.get_event("zzz").await.unwrap().is_none());
        let all = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(all.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        let dead = EventFilter { status: Some(EventStatus::DeadLettered), ..Default::default() };
        assert_eq!(store.list_events(&dead).await.unwrap().len(), 1);
        let recent = EventFilter { received_after: Some(t0 + time::Duration::minutes(30)), ..Default::default() };
        assert_eq!(store.list_events(&recent).await.unwrap()[0].event_id, "b");
        let earlier = EventFilter { received_before: Some(t0 + time::Duration::minutes(30)), ..Default::default() };
        let found = store.list_events(&earlier).await.unwrap();
        assert_eq!(found.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["a"]);
        let by_email = |email: &str| EventFilter {
            email_hash: Some(hubrelay_core::store::email_hash(email)),
            ..Default::default()
        };
        let found = store.list_events(&by_email("A@Example.com ")).await.unwrap();
        assert_eq!(found.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(store.list_events(&by_email("c@example.com")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn versions_keep_the_newest() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = datetime!(2026-11-24 10:00 UTC);
        assert_eq!(store.last_applied("A@x.com").await.unwrap(), None);
        store.record_applied("a@x.com", t).await.unwrap();
        store.record_applied("A@X.com", t - time::Duration::minutes(5)).await.unwrap();
        assert_eq!(store.last_applied("a@x.com").await.unwrap(), Some(t));
        store.record_applied("a@x.com", t + time::Duration::seconds(1)).await.unwrap();
        assert_eq!(store.last_applied("a@x.com").await.unwrap(), Some(t + time::Duration::seconds(1)));
    }

    #[tokio::test]
    async fn batches_are_written_together() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = datetime!(2026-11-24 10:00 UTC);
        let records: Vec<_> = (0..3).map(|i| record(&format!("e{i}"), EventStatus::Delivered, t)).collect();
        store.put_events(&records).await.unwrap();
        store.put_events(&[]).await.unwrap();
        assert_eq!(store.list_events(&EventFilter::default()).await.unwrap().len(), 3);
        let applied = vec![
            ("a@x.com".to_string(), t),
            ("b@x.com".to_string(), t),
            ("A@x.com".to_string(), t - time::Duration::hours(1)),
        ];
        store.record_applied_all(&applied).await.unwrap();
        assert_eq!(store.last_applied("a@x.com").await.unwrap(), Some(t));
        assert_eq!(store.last_applied("b@x.com").await.unwrap(), Some(t));
    }
}
