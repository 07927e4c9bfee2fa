//! Dead-letter inspection and moves on the local SQLite store, for `hubrelay dlq` (see [`hubrelay_core::dlq`]).
//!
//! Each move is one write of the group commit (atomic), so the on-call tool is safe while `hubrelay serve` runs on the same file:
//! a redriven message leaves the dead-letter table and joins the retry queue atomically, and a row the worker
//! replaced in the meantime (its `seq` changed) is left alone.

use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::sqlite::{epoch_millis, sql_err, SqliteStore};
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::store::StoreError;

/// One row of the dead-letter table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    /// The row's identity: a re-dead-lettering of the same event gets a new one.
    pub seq: i64,
    pub dead_lettered_at: OffsetDateTime,
    pub message: RetryMessage,
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn decode(json: &str) -> Result<RetryMessage, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("dead letter: {e}")))
}

impl SqliteStore {
    /// The dead-letter table with each row's identity and time, oldest first.
    pub fn dead_letter_rows(&self) -> Result<Vec<DeadLetterRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, dead_lettered_at, message FROM dead_letters ORDER BY seq")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
                .map_err(sql_err)?;
            rows.map(|r| {
                let (seq, at, json) = r.map_err(sql_err)?;
                Ok(DeadLetterRow { seq, dead_lettered_at: from_millis(at), message: decode(&json)? })
            })
            .collect()
        })
    }

    /// The dead-letter row of `event_id`, if any.
    pub fn dead_letter_row(&self, event_id: &str) -> Result<Option<DeadLetterRow>, StoreError> {
        let event_id = event_id.to_owned();
        let row = self.read(move |conn| {
            conn.query_row(
                "SELECT seq, dead_lettered_at, message FROM dead_letters WHERE event_id = ?1",
                params![event_id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()
            .map_err(sql_err)
        })?;
        row.map(|(seq, at, json)| Ok(DeadLetterRow { seq, dead_lettered_at: from_millis(at), message: decode(&json)? }))
            .transpose()
    }

    /// In one transaction: delete dead-letter row `seq` and, when `requeue` is given, put that message on the
    /// retry queue (replacing a queued message of the same event, like `enqueue`). Returns false, changing
    /// nothing, when row `seq` is no longer there (purged, redriven or replaced meanwhile).
    pub fn take_dead_letter(&self, seq: i64, requeue: Option<&RetryMessage>) -> Result<bool, StoreError> {
        let requeue = requeue
            .map(|m| {
                serde_json::to_string(m)
                    .map(|json| (m, json))
                    .map_err(|e| StoreError::Corrupt(format!("cannot serialise message: {e}")))
            })
            .transpose()?;
        let requeue =
            requeue.map(|(m, json)| (m.event_id.clone(), m.function.as_str(), epoch_millis(m.not_before), json));
        let now = epoch_millis(OffsetDateTime::now_utc());
        self.write_blocking(move |conn| {
            let deleted = conn.execute("DELETE FROM dead_letters WHERE seq = ?1", params![seq]).map_err(sql_err)?;
            if deleted == 0 {
                return Ok(false);
            }
            if let Some((event_id, function, not_before, json)) = requeue {
                conn.execute(
                    "INSERT OR REPLACE INTO retry_queue (event_id, function, not_before, enqueued_at, message) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![event_id, function, not_before, now, json],
                )
                .map_err(sql_err)?;
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::{DeadLetterReason, FunctionName};
    use hubrelay_core::store::RetryQueue;
    use time::macros::datetime;

    fn message(id: &str) -> RetryMessage {
        RetryMessage {
            version: RetryMessage::UNSCOPED_VERSION,
            tenant: None,
            event_id: id.into(),
            function: FunctionName::LeadCaptured,
            idempotency_key: format!("key-{id}"),
            received_at: datetime!(2026-01-01 0:00 UTC),
            event: serde_json::json!({"email": "a@b.com"}),
            attempts: vec![],
            not_before: datetime!(2026-01-01 0:00 UTC),
            dead_letter_reason: None,
            schedule_offset: 0,
            redrives: 0,
            write_intent: None,
        }
    }

    #[tokio::test]
    async fn take_moves_atomically_and_only_the_row_read() {
        let store = SqliteStore::open_in_memory().unwrap();
        let reason = DeadLetterReason { code: "x".into(), message: "y".into() };
        store.dead_letter(&message("a"), &reason).await.unwrap();
        store.dead_letter(&message("b"), &reason).await.unwrap();
        let rows = store.dead_letter_rows().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].message.dead_letter_reason.as_ref(), Some(&reason));
        assert_eq!(store.dead_letter_row("b").unwrap().unwrap().seq, rows[1].seq);
        assert!(store.dead_letter_row("zzz").unwrap().is_none());

        // Re-dead-lettered meanwhile: the old seq no longer matches.
        store.dead_letter(&message("a"), &reason).await.unwrap();
        assert!(!store.take_dead_letter(rows[0].seq, Some(&message("a"))).unwrap());
        assert!(store.queued().unwrap().is_empty());

        let a = store.dead_letter_row("a").unwrap().unwrap();
        assert!(store.take_dead_letter(a.seq, Some(&message("a"))).unwrap());
        assert_eq!(store.queued().unwrap(), vec![message("a")]);
        assert!(store.take_dead_letter(rows[1].seq, None).unwrap());
        assert!(store.dead_letters().unwrap().is_empty());
        assert_eq!(store.queued().unwrap().len(), 1);
    }
}
