//! A backfill import's progress in the tenant's store (schema v5): how far into its file it has queued, and what
//! came of the rows. Each chunk of rows is queued in one transaction with the cursor that says so: an importer
//! killed at any point resumes at the first row not queued, and never queues a row twice. The rows' contents live
//! in the queue and the event log like a live lead's; the `imports` row holds counts only.

use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::sqlite::{complete_row, epoch_millis, expired_at, sql_err, QueuedRow, SqliteStore};
use crate::sqlite_events::EventRow;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::store::{EventRecord, StoreError, StoredResponse};

pub(super) const SCHEMA_V5: &str = "
CREATE TABLE imports (
    import_id   TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    cursor      INTEGER NOT NULL,
    queued      INTEGER NOT NULL,
    already     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL
);
";

/// Where an import stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    pub import_id: String,
    pub kind: String,
    /// Valid rows in the file.
    pub rows: u64,
    /// Rows handled so far (queued, or found already imported), from the file's first valid row.
    pub cursor: u64,
    pub queued: u64,
    /// Rows whose key was known already: delivered live, or by an earlier import.
    pub already: u64,
    /// Unix ms.
    pub started_at: i64,
}

/// One row to queue: its idempotency key, its message, and its event record.
#[derive(Debug, Clone)]
pub struct ImportItem {
    pub key: String,
    pub message: RetryMessage,
    pub record: EventRecord,
}

impl SqliteStore {
    /// The import `import_id` (made with `rows` valid rows when new), as far as it got.
    pub async fn start_import(
        &self,
        import_id: &str,
        kind: &str,
        rows: u64,
        now: OffsetDateTime,
    ) -> Result<ImportProgress, StoreError> {
        let (id, kind, started) = (import_id.to_string(), kind.to_string(), epoch_millis(now));
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO imports (import_id, kind, rows, cursor, queued, already, started_at) \
                 VALUES (?1, ?2, ?3, 0, 0, 0, ?4)",
                params![id, kind, rows as i64, started],
            )
            .map_err(sql_err)?;
            read_progress(conn, &id)?.ok_or_else(|| StoreError::Corrupt(format!("import {id} not stored")))
        })
        .await
    }

    pub async fn import_progress(&self, import_id: &str) -> Result<Option<ImportProgress>, StoreError> {
        let id = import_id.to_string();
        self.read(move |conn| read_progress(conn, &id))
    }

    /// Queues `items` (the rows from `from` on) and moves the import's cursor past them, in one transaction. A
    /// row whose key is already answered is counted `already` and not queued. `Err` when the cursor is no longer
    /// `from` (another importer of the same file moved it): nothing is written then.
    pub async fn queue_import_chunk(
        &self,
        import_id: &str,
        from: u64,
        items: Vec<ImportItem>,
        now: OffsetDateTime,
    ) -> Result<ImportProgress, StoreError> {
        let id = import_id.to_string();
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let answer = serde_json::json!({
                "status": "queued",
                "event_id": item.message.event_id,
                "import": id,
            });
            let answer = StoredResponse { status: 202, body: answer.to_string() };
            rows.push((item.key, answer, QueuedRow::new(&item.message, now)?, EventRow::new(&item.record)?));
        }
        self.write(move |conn| {
            let mut queued = 0i64;
            for (key, answer, queued_row, event_row) in &rows {
                let known: Option<i64> = conn
                    .prepare_cached("SELECT expires_at FROM idempotency WHERE key = ?1")
                    .and_then(|mut stmt| stmt.query_row(params![key], |r| r.get(0)).optional())
                    .map_err(sql_err)?;
                if known.is_some_and(|expires| !expired_at(expires, now)) {
                    continue;
                }
                complete_row(conn, key, None, answer, now)?;
                queued_row.write(conn)?;
                event_row.write(conn)?;
                queued += 1;
            }
            let handled = rows.len() as i64;
            let moved = conn
                .execute(
                    "UPDATE imports SET cursor = cursor + ?1, queued = queued + ?2, already = already + ?3 \
                     WHERE import_id = ?4 AND cursor = ?5",
                    params![handled, queued, handled - queued, id, from as i64],
                )
                .map_err(sql_err)?;
            if moved != 1 {
                return Err(StoreError::Unavailable(format!(
                    "import {id}: another importer moved past row {from}; run the import again to resume"
                )));
            }
            read_progress(conn, &id)?.ok_or_else(|| StoreError::Corrupt(format!("import {id} not stored")))
        })
        .await
    }
}

/// What came of an import's queued rows so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportFates {
    /// Still on the retry queue (not yet attempted, or retrying).
    pub waiting: u64,
    pub delivered: u64,
    pub superseded: u64,
    /// Parked or dead-lettered: in the dead-letter queue, each with its reason.
    pub dead_lettered: u64,
}

/// The event ids of import `import_key` (16 hex digits) are `evt_<import_key><row, 16 hex digits>`: one range of
/// the queue's and the event log's keys.
pub fn import_event_id(import_key: &str, row: u64) -> String {
    format!("evt_{import_key}{row:016x}")
}

impl SqliteStore {
    /// The fates of import `import_key`'s rows, read off the queue and the event log by their event ids' range.
    pub fn import_fates(&self, import_key: &str) -> Result<ImportFates, StoreError> {
        let (low, high) = (format!("evt_{import_key}"), format!("evt_{import_key}~"));
        self.read(move |conn| {
            let waiting: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM retry_queue WHERE event_id >= ?1 AND event_id < ?2",
                    params![low, high],
                    |r| r.get(0),
                )
                .map_err(sql_err)?;
            let mut fates = ImportFates { waiting: waiting as u64, ..ImportFates::default() };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT status, COUNT(*) FROM events WHERE event_id >= ?1 AND event_id < ?2 GROUP BY status",
                )
                .map_err(sql_err)?;
            let rows = stmt.query_map(params![low, high], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)));
            for row in rows.map_err(sql_err)? {
                let (status, n) = row.map_err(sql_err)?;
                match status.as_str() {
                    "delivered" => fates.delivered = n as u64,
                    "superseded" => fates.superseded = n as u64,
                    "dead_lettered" => fates.dead_lettered = n as u64,
                    _ => {}
                }
            }
            Ok(fates)
        })
    }
}

fn read_progress(conn: &rusqlite::Connection, id: &str) -> Result<Option<ImportProgress>, StoreError> {
    conn.prepare_cached(
        "SELECT import_id, kind, rows, cursor, queued, already, started_at FROM imports WHERE import_id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![id], |r| {
            Ok(ImportProgress {
                import_id: r.get(0)?,
                kind: r.get(1)?,
                rows: r.get::<_, i64>(2)? as u64,
                cursor: r.get::<_, i64>(3)? as u64,
                queued: r.get::<_, i64>(4)? as u64,
                already: r.get::<_, i64>(5)? as u64,
                started_at: r.get(6)?,
            })
        })
        .optional()
    })
    .map_err(sql_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::FunctionName;
    use hubrelay_core::store::{EventLog, EventStatus, IdempotencyStore};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-07 08:00 UTC);

    fn item(n: u32) -> ImportItem {
        let event = serde_json::json!({"email": format!("row{n}@example.com")});
        let message =
            RetryMessage::new(FunctionName::LeadCaptured, &format!("evt_row{n}"), &format!("k{n}"), event, NOW);
        let record = hubrelay_core::worker::event_record(&message, EventStatus::Retrying, Some(NOW), None, None, NOW);
        ImportItem { key: format!("k{n}"), message, record }
    }

    #[tokio::test]
    async fn a_chunk_is_queued_with_its_cursor_and_never_twice() {
        let store = SqliteStore::open_in_memory().unwrap();
        // Row 2's lead came in live before the import.
        let live = StoredResponse { status: 200, body: "{}".into() };
        store.complete("k2", &live, NOW).await.unwrap();
        let started = store.start_import("imp_1", "leads", 3, NOW).await.unwrap();
        assert_eq!((started.cursor, started.queued), (0, 0));
        let progress = store.queue_import_chunk("imp_1", 0, vec![item(1), item(2)], NOW).await.unwrap();
        assert_eq!((progress.cursor, progress.queued, progress.already), (2, 1, 1));
        let fates = store.import_fates("row").unwrap();
        assert_eq!((fates.waiting, fates.delivered), (1, 0), "event ids evt_row… are this test's import's range");
        assert_eq!(store.queued_count().unwrap(), 1);
        assert_eq!(store.get_event("evt_row1").await.unwrap().unwrap().status, EventStatus::Retrying);
        assert!(store.get_event("evt_row2").await.unwrap().is_none(), "the live lead's row is not queued");

        // A second importer at the old cursor writes nothing; the resumed one goes on from row 3.
        assert!(store.queue_import_chunk("imp_1", 0, vec![item(1), item(2)], NOW).await.is_err());
        assert_eq!(store.queued_count().unwrap(), 1);
        let resumed = store.start_import("imp_1", "leads", 3, NOW).await.unwrap();
        assert_eq!(resumed.cursor, 2);
        let done = store.queue_import_chunk("imp_1", 2, vec![item(3)], NOW).await.unwrap();
        assert_eq!((done.cursor, done.queued, done.already, done.rows), (3, 2, 1, 3));
        // The queued row answers a later live post of the same lead as queued, with its event id.
        let answered = store.begin("k3", "h", NOW).await.unwrap();
        assert!(format!("{answered:?}").contains("evt_row3"), "{answered:?}");
    }
}
