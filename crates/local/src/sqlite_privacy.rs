//! Erasure and retention on the local store (schema v6; see `hubrelay_core::privacy`). One transaction finds every
//! record of the person — event records by email hash or contact id (and, from those, the other's), queued and
//! dead-lettered messages by their event's email, id or contact — and deletes them with the idempotency answers,
//! contact versions, lead links, ledger entries and merges they imply. Each erased event id stays in
//! `erased_events` (no personal data), so a worker pass that was in flight cannot write it back.
//!
//! Deleted bytes do not linger: the writer runs with `PRAGMA secure_delete = ON` (deleted content is zeroed in
//! the file), and after an erasure the write-ahead log is checkpointed and truncated, so its older frames (which
//! hold earlier versions of pages) are gone too.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{params, Connection};
use time::OffsetDateTime;

use crate::sqlite::{epoch_millis, sql_err, SqliteStore};
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::privacy::{ErasureCounts, ErasureReceipt, PersonalData, Subject};
use hubrelay_core::store::{contact_key, email_hash, event_email, EventRecord, StoreError};

pub(super) const SCHEMA_V6: &str = "
CREATE TABLE erased_events (
    event_id   TEXT PRIMARY KEY NOT NULL,
    erased_at  INTEGER NOT NULL,
    receipt_id TEXT NOT NULL
);
CREATE TABLE erasures (
    receipt_id TEXT PRIMARY KEY NOT NULL,
    at         INTEGER NOT NULL,
    receipt    TEXT NOT NULL
);
";

/// A message of the person's: by its event id, its event's email, the contact it names, or a lead id linked to
/// that contact (status updates and activities may name only the lead).
fn names_subject(m: &RetryMessage, subject: &SubjectSets) -> bool {
    let SubjectSets { events, hashes, contacts, lead_ids } = subject;
    if events.contains(&m.event_id) {
        return true;
    }
    let leads = m
        .event
        .get("lead_id")
        .into_iter()
        .chain(m.event.get("lead_ids").and_then(|v| v.as_array()).into_iter().flatten());
    if leads.filter_map(|v| v.as_str()).any(|id| lead_ids.contains(id)) {
        return true;
    }
    let emails = [event_email(&m.event), m.event.pointer("/properties/email").and_then(|e| e.as_str())];
    if emails.into_iter().flatten().any(|e| hashes.contains(&email_hash(e))) {
        return true;
    }
    // `object_id` names the contact of an outbound change; an erasure's own action uses it too, and is not erased.
    let erasing = m.event.get("action").and_then(|a| a.as_str()) == Some("erase_contact");
    let keys: &[&str] =
        if erasing { &["contact_id"] } else { &["contact_id", "hs_object_id", "objectId", "object_id"] };
    keys.iter()
        .filter_map(|k| m.event.get(*k))
        .filter_map(|v| v.as_str().map(String::from).or_else(|| v.as_u64().map(|n| n.to_string())))
        .any(|id| contacts.contains(&id))
}

/// What names the person: event ids, email hashes, contact ids and the lead ids linked to them.
struct SubjectSets {
    events: BTreeSet<String>,
    hashes: BTreeSet<String>,
    contacts: BTreeSet<String>,
    lead_ids: BTreeSet<String>,
}

/// Deletes the person's rows of one message table (`retry_queue` or `dead_letters`); returns how many, with
/// what they imply (event ids, idempotency keys, lead ids, emails).
fn erase_messages(conn: &Connection, table: &str, subject: &SubjectSets, found: &mut Found) -> Result<u64, StoreError> {
    let rows: Vec<(String, String)> = {
        let mut stmt = conn.prepare(&format!("SELECT event_id, message FROM {table}")).map_err(sql_err)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql_err)?;
        rows.collect::<Result<_, _>>().map_err(sql_err)?
    };
    let mut erased = 0;
    for (event_id, json) in rows {
        // A message that cannot be read is left alone (the DLQ tools show it); it cannot be matched either.
        let Ok(m) = serde_json::from_str::<RetryMessage>(&json) else { continue };
        if !names_subject(&m, subject) {
            continue;
        }
        if let Some(email) = event_email(&m.event) {
            found.emails.insert(email.to_string());
        }
        conn.execute(&format!("DELETE FROM {table} WHERE event_id = ?1"), params![event_id]).map_err(sql_err)?;
        erased += 1;
        found.keys.insert(m.idempotency_key.clone());
        if let Some(lead_id) = m.event.get("lead_id").and_then(|v| v.as_str()) {
            found.lead_ids.insert(lead_id.to_string());
        }
        found.events.insert(event_id);
    }
    Ok(erased)
}

#[derive(Default)]
struct Found {
    events: BTreeSet<String>,
    keys: BTreeSet<String>,
    lead_ids: BTreeSet<String>,
    /// The emails the erased messages held (their contact versions go too).
    emails: BTreeSet<String>,
}

/// The event records naming the person, growing the hashes and contact ids from what they hold (a record by
/// contact id gives its email hash, and that hash finds the records not yet delivered).
fn matching_events(
    conn: &Connection,
    hashes: &mut BTreeSet<String>,
    contacts: &mut BTreeSet<String>,
) -> Result<BTreeSet<String>, StoreError> {
    let rows: Vec<(String, Option<String>, Option<String>)> = {
        let mut stmt = conn
            .prepare(
                "SELECT event_id, json_extract(record, '$.email_hash'), json_extract(record, '$.contact_id') \
                 FROM events WHERE json_valid(record)",
            )
            .map_err(sql_err)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(sql_err)?;
        rows.collect::<Result<_, _>>().map_err(sql_err)?
    };
    let mut matched = BTreeSet::new();
    // Until nothing new: a record may name a hash or a contact id that finds more records.
    loop {
        let before = matched.len();
        for (id, hash, contact) in &rows {
            let hit = hash.as_ref().is_some_and(|h| hashes.contains(h))
                || contact.as_ref().is_some_and(|c| contacts.contains(c));
            if hit && matched.insert(id.clone()) {
                hashes.extend(hash.clone());
                contacts.extend(contact.clone());
            }
        }
        if matched.len() == before {
            return Ok(matched);
        }
    }
}

fn delete_in(conn: &Connection, sql: &str, values: &BTreeSet<String>) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
    let mut n = 0;
    for v in values {
        n += stmt.execute(params![v]).map_err(sql_err)? as u64;
    }
    Ok(n)
}

fn erase_in(conn: &Connection, subject: &Subject, receipt: &ErasureReceipt) -> Result<ErasureCounts, StoreError> {
    let mut hashes: BTreeSet<String> = subject.email.as_deref().map(email_hash).into_iter().collect();
    let mut contacts: BTreeSet<String> = subject.contact_id.clone().into_iter().collect();
    let records = matching_events(conn, &mut hashes, &mut contacts)?;
    let mut lead_ids = BTreeSet::new();
    {
        let mut stmt = conn.prepare_cached("SELECT lead_id FROM lead_links WHERE contact_id = ?1").map_err(sql_err)?;
        for contact in &contacts {
            let rows = stmt.query_map(params![contact], |r| r.get::<_, String>(0)).map_err(sql_err)?;
            lead_ids.extend(rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)?);
        }
    }
    let mut found = Found::default();
    let sets = SubjectSets { events: records, hashes, contacts, lead_ids };
    let queued_messages = erase_messages(conn, "retry_queue", &sets, &mut found)?;
    let dead_letters = erase_messages(conn, "dead_letters", &sets, &mut found)?;
    let SubjectSets { events: records, contacts, lead_ids, .. } = sets;
    found.events.extend(records);
    found.lead_ids.extend(lead_ids);

    let event_records = delete_in(conn, "DELETE FROM events WHERE event_id = ?1", &found.events)?;
    let at = epoch_millis(receipt.at);
    {
        let mut stmt = conn
            .prepare_cached("INSERT OR IGNORE INTO erased_events (event_id, erased_at, receipt_id) VALUES (?1, ?2, ?3)")
            .map_err(sql_err)?;
        for id in &found.events {
            stmt.execute(params![id, at, receipt.receipt_id]).map_err(sql_err)?;
        }
    }
    // Idempotency answers: the keys of the messages found, and every answer naming an erased event.
    let answered: Vec<(String, Option<String>)> = {
        let mut stmt = conn
            .prepare(
                "SELECT key, CASE WHEN json_valid(response_body) THEN json_extract(response_body, '$.event_id') END \
                 FROM idempotency",
            )
            .map_err(sql_err)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql_err)?;
        rows.collect::<Result<_, _>>().map_err(sql_err)?
    };
    for (key, event_id) in answered {
        if event_id.is_some_and(|id| found.events.contains(&id)) {
            found.keys.insert(key);
        }
    }
    let idempotency_records = delete_in(conn, "DELETE FROM idempotency WHERE key = ?1", &found.keys)?;
    let versions: BTreeSet<String> = subject.email.iter().chain(found.emails.iter()).map(|e| contact_key(e)).collect();
    let contact_versions = delete_in(conn, "DELETE FROM contact_versions WHERE contact_key = ?1", &versions)?;
    let lead_links = delete_in(conn, "DELETE FROM lead_links WHERE contact_id = ?1", &contacts)?
        + delete_in(conn, "DELETE FROM lead_links WHERE lead_id = ?1", &found.lead_ids)?;
    let ledger_entries = delete_in(conn, "DELETE FROM update_ledger WHERE contact_id = ?1", &contacts)?
        + delete_in(conn, "DELETE FROM contact_merges WHERE contact_id = ?1 OR survivor_id = ?1", &contacts)?;
    let counts = ErasureCounts {
        queued_messages,
        dead_letters,
        event_records,
        idempotency_records,
        contact_versions,
        lead_links,
        ledger_entries,
        // Locally messages are rows, deleted above: no keys to destroy.
        message_keys: 0,
    };
    let stored = ErasureReceipt { counts: counts.clone(), ..receipt.clone() };
    let json = serde_json::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO erasures (receipt_id, at, receipt) VALUES (?1, ?2, ?3)",
        params![receipt.receipt_id, at, json],
    )
    .map_err(sql_err)?;
    Ok(counts)
}

impl SqliteStore {
    /// Copies the write-ahead log into the database and truncates it, so no older page image with erased data
    /// stays in the `-wal` file. Through a connection of its own: the writer's run inside transactions.
    fn truncate_wal(&self) -> Result<(), StoreError> {
        let Some(path) = self.path() else { return Ok(()) };
        let conn = Connection::open(path).map_err(sql_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql_err)?;
        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql_err)?;
        if busy != 0 {
            tracing::warn!(log, done, "the write-ahead log could not be truncated after an erasure (readers busy)");
        }
        Ok(())
    }
}

#[async_trait]
impl PersonalData for SqliteStore {
    async fn erase(&self, subject: &Subject, receipt: &ErasureReceipt) -> Result<ErasureCounts, StoreError> {
        let (subject, receipt) = (subject.clone(), receipt.clone());
        let counts = self.write(move |conn| erase_in(conn, &subject, &receipt)).await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.truncate_wal())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(counts)
    }

    async fn update_receipt(&self, receipt: &ErasureReceipt) -> Result<(), StoreError> {
        let json = serde_json::to_string(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = receipt.receipt_id.clone();
        self.write(move |conn| {
            conn.execute("UPDATE erasures SET receipt = ?2 WHERE receipt_id = ?1", params![id, json])
                .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn receipts(&self, limit: usize) -> Result<Vec<ErasureReceipt>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT receipt FROM erasures ORDER BY at DESC, receipt_id DESC LIMIT ?1")
                .map_err(sql_err)?;
            let rows = stmt.query_map(params![limit], |r| r.get::<_, String>(0)).map_err(sql_err)?;
            rows.map(|r| {
                let json = r.map_err(sql_err)?;
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("erasure receipt: {e}")))
            })
            .collect()
        })
    }

    async fn scrub_events_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = epoch_millis(cutoff);
        self.write(move |conn| {
            let rows: Vec<(String, String)> = {
                let mut stmt = conn
                    .prepare(
                        "SELECT event_id, record FROM events WHERE received_at < ?1 AND status <> 'retrying' \
                         AND (json_extract(record, '$.email_masked') IS NOT NULL \
                              OR json_extract(record, '$.email_hash') IS NOT NULL)",
                    )
                    .map_err(sql_err)?;
                let rows = stmt.query_map(params![cutoff], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql_err)?;
                rows.collect::<Result<_, _>>().map_err(sql_err)?
            };
            let mut stmt = conn.prepare_cached("UPDATE events SET record = ?2 WHERE event_id = ?1").map_err(sql_err)?;
            for (id, json) in &rows {
                let mut record: EventRecord =
                    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("event record: {e}")))?;
                record.email_masked = None;
                record.email_hash = None;
                let json = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                stmt.execute(params![id, json]).map_err(sql_err)?;
            }
            Ok(rows.len() as u64)
        })
        .await
    }

    async fn is_erased(&self, event_id: &str) -> Result<bool, StoreError> {
        let id = event_id.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT 1 FROM erased_events WHERE event_id = ?1", params![id], |_| Ok(()))
                .map(|_| true)
                .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(false) } else { Err(sql_err(e)) })
        })
    }
}
