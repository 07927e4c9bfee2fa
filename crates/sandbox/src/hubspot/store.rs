//! SQLite persistence: contacts, custom properties, engagements and their contact associations.
//!
//! One connection behind the sandbox's mutex; every write runs in an immediate transaction, so a request
//! either stores everything it validated or nothing. File databases use WAL. Contact ids come from an
//! AUTOINCREMENT sequence seeded at 1000 (first id 1001) and are never reused, not even after a reset;
//! engagement ids likewise start at 50000001, deal ids at 9000001. Triggers copy each contact version into
//! `search_index`, from which searches answer as of a moment in the past (HubSpot's index lag, `search.rs`); a
//! contact's versions older than a minute are pruned but its newest.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::error::ApiError;
use super::properties::{self, Property, BUILTINS};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contact {
    pub id: u64,
    /// Set (non-empty) property values, `email` included (lowercased). System properties are derived.
    pub props: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Contact {
    pub fn email(&self) -> Option<&str> {
        self.props.get("email").map(String::as_str).filter(|e| !e.is_empty())
    }

    /// Applies validated values: `""` clears, anything else sets; a lifecycle stage never moves back on a plain
    /// write (HubSpot keeps the later stage without an error: clear it first to move it back).
    pub fn merge(&mut self, values: &BTreeMap<String, String>) {
        for (k, v) in values {
            if k == "lifecyclestage" && later_stage(self.props.get(k).map(String::as_str), v) {
                continue;
            }
            if v.is_empty() {
                self.props.remove(k);
            } else {
                self.props.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Whether `current` is a later default lifecycle stage than `wanted` (custom and `other` stages have no order).
fn later_stage(current: Option<&str>, wanted: &str) -> bool {
    const ORDER: [&str; 7] =
        ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s);
    match (current.and_then(rank), rank(wanted)) {
        (Some(now), Some(next)) => next < now,
        _ => false,
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'contacts', 1000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'contacts');
CREATE TABLE IF NOT EXISTS properties (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS engagements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object TEXT NOT NULL,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'engagements', 50000000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'engagements');
CREATE TABLE IF NOT EXISTS engagement_contacts (
    engagement_id INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    type_id INTEGER NOT NULL,
    PRIMARY KEY (engagement_id, contact_id)
);
CREATE INDEX IF NOT EXISTS engagement_contacts_by_contact ON engagement_contacts (contact_id, engagement_id);
CREATE TABLE IF NOT EXISTS deals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'deals', 9000000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deals');
CREATE TABLE IF NOT EXISTS deal_contacts (
    deal_id INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    PRIMARY KEY (deal_id, contact_id)
);
CREATE TABLE IF NOT EXISTS write_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL,
    marker TEXT
);
CREATE INDEX IF NOT EXISTS write_journal_by_marker ON write_journal (marker) WHERE marker IS NOT NULL;
CREATE TABLE IF NOT EXISTS archived_contacts (
    id INTEGER PRIMARY KEY,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    archived_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS search_index (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL,
    properties TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    indexed_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS search_index_by_contact ON search_index (contact_id, indexed_ms, seq);
INSERT INTO search_index (contact_id, properties, created_ms, updated_ms, indexed_ms)
    SELECT id, properties, created_ms, updated_ms, 0 FROM contacts c
    WHERE NOT EXISTS (SELECT 1 FROM search_index s WHERE s.contact_id = c.id);
CREATE TRIGGER IF NOT EXISTS contacts_indexed_on_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO search_index (contact_id, properties, created_ms, updated_ms, indexed_ms)
        VALUES (new.id, new.properties, new.created_ms, new.updated_ms, new.updated_ms);
END;
CREATE TRIGGER IF NOT EXISTS contacts_indexed_on_update AFTER UPDATE ON contacts
    WHEN old.properties IS NOT new.properties BEGIN
    INSERT INTO search_index (contact_id, properties, created_ms, updated_ms, indexed_ms)
        VALUES (new.id, new.properties, new.created_ms, new.updated_ms, new.updated_ms);
    DELETE FROM search_index WHERE contact_id = new.id AND indexed_ms < new.updated_ms - 60000
        AND seq < (SELECT MAX(seq) FROM search_index WHERE contact_id = new.id AND indexed_ms < new.updated_ms - 60000);
END;
CREATE TRIGGER IF NOT EXISTS contacts_indexed_on_delete AFTER DELETE ON contacts BEGIN
    INSERT INTO search_index (contact_id, properties, created_ms, updated_ms, indexed_ms)
        VALUES (old.id, NULL, old.created_ms, old.updated_ms, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
";

/// The write journal's totals (`GET /__sandbox/writes`).
pub(crate) struct WriteJournal {
    pub writes: u64,
    pub marked: u64,
    /// Markers written more than once, with how often.
    pub repeated: Vec<(String, i64)>,
}

/// The contact property hubrelay's retry worker marks each write with (its write id): the journal keeps it, so
/// a test can tell one write sent twice from two writes.
pub(crate) const WRITE_MARKER: &str = "hubrelay_write_id";

/// One batch-upsert write in the journal: the contact and the write's marker, never its values.
pub(crate) fn journal(conn: &Connection, contact_id: u64, marker: Option<&str>) -> Result<(), ApiError> {
    conn.prepare_cached("INSERT INTO write_journal (contact_id, marker) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute(params![contact_id as i64, marker]))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(())
}

pub(crate) struct Store {
    conn: Connection,
    /// Custom properties, in creation order (a cache of the `properties` table).
    custom: Vec<Property>,
}

fn contact_from_row(row: &Row<'_>) -> rusqlite::Result<Contact> {
    let id: i64 = row.get(0)?;
    let props: String = row.get(1)?;
    Ok(Contact {
        id: id as u64,
        props: serde_json::from_str(&props).unwrap_or_default(),
        created_ms: row.get(2)?,
        updated_ms: row.get(3)?,
    })
}

const SELECT: &str = "SELECT id, properties, created_ms, updated_ms FROM contacts";

pub(crate) fn by_id(conn: &Connection, id: u64) -> rusqlite::Result<Option<Contact>> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], contact_from_row).optional()
}

pub(crate) fn by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<Contact>> {
    conn.query_row(&format!("{SELECT} WHERE email = ?1"), [email.to_lowercase()], contact_from_row).optional()
}

/// Inserts a new contact with `props` (already validated and merged) and returns it with its id.
pub(crate) fn insert(conn: &Connection, props: BTreeMap<String, String>, now_ms: i64) -> rusqlite::Result<Contact> {
    let mut c = Contact { id: 0, props, created_ms: now_ms, updated_ms: now_ms };
    conn.execute(
        "INSERT INTO contacts (email, properties, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
        params![c.email(), props_json(&c), now_ms],
    )?;
    c.id = conn.last_insert_rowid() as u64;
    Ok(c)
}

/// Archives a contact (HubSpot's delete: gone from reads, writes and searches, its email free again, readable with
/// `archived=true` for 90 days). Returns the contact archived.
pub(crate) fn archive(conn: &Connection, id: u64, now_ms: i64) -> rusqlite::Result<Option<Contact>> {
    let Some(c) = by_id(conn, id)? else { return Ok(None) };
    conn.execute(
        "INSERT OR REPLACE INTO archived_contacts (id, properties, created_ms, updated_ms, archived_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.id as i64, props_json(&c), c.created_ms, c.updated_ms, now_ms],
    )?;
    conn.execute("DELETE FROM engagement_contacts WHERE contact_id = ?1", [c.id as i64])?;
    conn.execute("DELETE FROM deal_contacts WHERE contact_id = ?1", [c.id as i64])?;
    conn.execute("DELETE FROM contacts WHERE id = ?1", [c.id as i64])?;
    Ok(Some(c))
}

/// An archived contact and when it was archived (ms), while HubSpot keeps it (90 days).
pub(crate) fn archived_by_id(conn: &Connection, id: u64, now_ms: i64) -> rusqlite::Result<Option<(Contact, i64)>> {
    let Ok(id) = i64::try_from(id) else { return Ok(None) };
    const KEPT_MS: i64 = 90 * 24 * 3600 * 1000;
    conn.query_row(
        "SELECT id, properties, created_ms, updated_ms, archived_ms FROM archived_contacts \
         WHERE id = ?1 AND archived_ms > ?2",
        params![id, now_ms - KEPT_MS],
        |r| Ok((contact_from_row(r)?, r.get::<_, i64>(4)?)),
    )
    .optional()
}

pub(crate) fn update(conn: &Connection, c: &Contact) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE contacts SET email = ?1, properties = ?2, updated_ms = ?3 WHERE id = ?4",
        params![c.email(), props_json(c), c.updated_ms, c.id as i64],
    )?;
    Ok(())
}

fn props_json(c: &Contact) -> String {
    serde_json::to_string(&c.props).unwrap_or_else(|_| "{}".into())
}

impl Store {
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Store> {
        let conn = match path {
            Some(p) => {
                let conn = Connection::open(p)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(super::merge::SCHEMA)?;
        let custom = {
            let mut stmt = conn.prepare("SELECT definition FROM properties ORDER BY created_ms, rowid")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut custom = Vec::new();
            for def in rows {
                let def = def?;
                match serde_json::from_str::<Property>(&def) {
                    Ok(p) => custom.push(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "sandbox: skipping unreadable custom property")
                    }
                }
            }
            custom
        };
        Ok(Store { conn, custom })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one immediate transaction: committed when `f` succeeds, rolled back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// A built-in or custom property definition.
    pub fn property(&self, name: &str) -> Option<&Property> {
        properties::find_builtin(name).or_else(|| self.custom.iter().find(|p| p.def.name == name))
    }

    /// Built-ins first, then custom properties in creation order.
    pub fn properties(&self) -> impl Iterator<Item = &Property> {
        BUILTINS.iter().chain(self.custom.iter())
    }

    pub fn create_property(&mut self, p: Property) -> Result<(), ApiError> {
        if self.property(&p.def.name).is_some() {
            return Err(properties::already_exists(&p.def.name));
        }
        let json = serde_json::to_string(&p).map_err(|e| ApiError::internal(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO properties (name, definition, created_ms) VALUES (?1, ?2, ?3)",
            params![p.def.name, json, p.created_ms],
        )?;
        self.custom.push(p);
        Ok(())
    }

    /// Archives a custom property (HubSpot moves it to the recycling bin: gone from listings and writes).
    pub fn archive_property(&mut self, name: &str) -> Result<(), ApiError> {
        if properties::find_builtin(name).is_some() {
            return Err(ApiError::validation(format!("{name} is a HubSpot-defined property and cannot be archived")));
        }
        if !self.custom.iter().any(|p| p.def.name == name) {
            return Err(properties::not_found(name));
        }
        self.conn.execute("DELETE FROM properties WHERE name = ?1", params![name])?;
        self.custom.retain(|p| p.def.name != name);
        Ok(())
    }

    pub fn contact_count(&self) -> rusqlite::Result<u64> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Up to `limit` contacts with id ≥ `from`, by id.
    pub fn list(&self, from: u64, limit: usize) -> rusqlite::Result<Vec<Contact>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(&format!("{SELECT} WHERE id >= ?1 ORDER BY id LIMIT ?2"))?;
        let rows = stmt.query_map(params![from, limit as i64], contact_from_row)?;
        rows.collect()
    }

    pub fn engagement_count(&self) -> rusqlite::Result<u64> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM engagements", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// What the write journal holds: every batch-upsert write, and the markers written more than once.
    pub fn write_journal(&self) -> rusqlite::Result<WriteJournal> {
        let (writes, marked): (i64, i64) =
            self.conn
                .query_row("SELECT COUNT(*), COUNT(marker) FROM write_journal", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut stmt = self.conn.prepare(
            "SELECT marker, COUNT(*) FROM write_journal WHERE marker IS NOT NULL \
             GROUP BY marker HAVING COUNT(*) > 1 ORDER BY marker",
        )?;
        let repeated = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(WriteJournal { writes: writes as u64, marked: marked as u64, repeated })
    }

    /// Deletes contacts, custom properties and engagements (the id sequences keep counting).
    pub fn reset(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM engagement_contacts", [])?;
        tx.execute("DELETE FROM engagements", [])?;
        tx.execute("DELETE FROM deal_contacts", [])?;
        tx.execute("DELETE FROM deals", [])?;
        tx.execute("DELETE FROM contacts", [])?;
        tx.execute("DELETE FROM merged_contacts", [])?;
        tx.execute("DELETE FROM properties", [])?;
        tx.execute("DELETE FROM write_journal", [])?;
        tx.execute("DELETE FROM search_index", [])?;
        tx.execute("DELETE FROM archived_contacts", [])?;
        tx.commit()?;
        self.custom.clear();
        Ok(())
    }
}
