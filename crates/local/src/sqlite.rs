//! The local store for `hubrelay serve`: idempotency records, the retry queue and the dead-letter queue in
//! one SQLite file (WAL mode, `synchronous=FULL`, a busy timeout).
//!
//! Idempotency follows exactly the semantics of the DynamoDB adapter (see [`super::dynamodb`]):
//!
//! | column | meaning |
//! |---|---|
//! | `key` | the idempotency key (primary key) |
//! | `status` | `COMPLETED` (`IN_PROGRESS`: a claim in flight, as earlier versions wrote them) |
//! | `payload_hash` | hash of the payload; the same key with another hash is a conflict (NULL matches anything) |
//! | `response_status`, `response_body` | the answer replayed to duplicates (`COMPLETED` only) |
//! | `expires_at` | Unix **seconds**; after it the record counts as gone |
//! | `in_progress_expires_at` | Unix **milliseconds**; after it an `IN_PROGRESS` record counts as orphaned |
//!
//! One difference: a claim in flight is held in this process's memory ([`crate::claims`]), not written, so
//! a request's key costs one write, the one that stores its answer. `IN_PROGRESS` rows left by an earlier
//! version are still honoured, and freed at start-up like the claims of a killed run.
//!
//! Queue messages are stored as the JSON of [`RetryMessage`] (the same JSON that travels through SQS) plus
//! indexed columns. Every write goes to one writer thread that commits the writes arriving together in one
//! transaction ([`crate::group_commit`]): an async caller awaits its commit without blocking the runtime, and
//! however many requests are in flight the disk sees one flush per batch. Reads run on the calling thread on
//! their own connections (WAL readers never wait for the writer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::claims::{Claims, Take};
use crate::group_commit::{GroupCommit, ReadPool};
use time::OffsetDateTime;

use hubrelay_core::domain::{DeadLetterReason, RetryMessage};
use hubrelay_core::store::{
    contact_key, Begin, Delivered, IdempotencyStore, RetryQueue, StoreError, StoredResponse, IDEMPOTENCY_TTL,
};

const STATUS_IN_PROGRESS: &str = "IN_PROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// How long a statement waits for a lock held by another connection (e.g. the CLI) before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 6;

const SCHEMA_V1: &str = "
CREATE TABLE idempotency (
    key                    TEXT PRIMARY KEY NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED')),
    payload_hash           TEXT,
    response_status        INTEGER,
    response_body          TEXT,
    expires_at             INTEGER NOT NULL,
    in_progress_expires_at INTEGER
);
CREATE INDEX idempotency_expires_at ON idempotency (expires_at);

CREATE TABLE retry_queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    function    TEXT NOT NULL,
    not_before  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX retry_queue_due ON retry_queue (not_before, seq);

CREATE TABLE dead_letters (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    function         TEXT NOT NULL,
    reason_code      TEXT NOT NULL,
    dead_lettered_at INTEGER NOT NULL,
    message          TEXT NOT NULL
);
";

/// SQLite-backed [`IdempotencyStore`] and [`RetryQueue`]. Cheap to clone (one shared writer and read pool).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: GroupCommit,
    /// Idempotency claims in flight (see [`crate::claims`]).
    claims: Claims,
    /// `None` in memory: another connection would see another database, so reads go through the writer.
    readers: Option<ReadPool>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

pub(super) fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn epoch_seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(super) fn epoch_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, creating missing parent directories and the tables.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private in-memory database (tests, `--ephemeral` runs). Nothing survives a drop.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql_err)?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        // `journal_mode` answers with the mode in force ("memory" for in-memory databases).
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql_err)?;
        // Deleted content is zeroed in the file, so an erased person's data does not linger in free pages.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;").map_err(sql_err)?;
        migrate(&mut conn)?;
        let readers = path.clone().map(ReadPool::new);
        let inner = Inner { writer: GroupCommit::start(conn)?, claims: Claims::default(), readers, path };
        Ok(SqliteStore { inner: Arc::new(inner) })
    }

    /// Free every `IN_PROGRESS` claim. Only for the one process that owns the database (`serve` at start-up,
    /// holding the data dir's lock): a claim found then was left by a process that died mid-request, and
    /// its sender's retry should be delivered now, not wait out the claim's lease.
    pub async fn release_orphaned_claims(&self) -> Result<usize, StoreError> {
        let durable = self
            .write(|conn| {
                conn.execute("DELETE FROM idempotency WHERE status = ?1", params![STATUS_IN_PROGRESS]).map_err(sql_err)
            })
            .await?;
        Ok(durable + self.inner.claims.clear())
    }

    /// Transactions committed and writes they carried since this store opened (writes per commit is the
    /// group commit's gain).
    pub fn write_stats(&self) -> crate::group_commit::WriteStats {
        self.inner.writer.stats()
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `f` in the next group commit (atomically: it rolls back alone if it fails) and answers once that
    /// commit is on disk.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// [`SqliteStore::write`] for synchronous callers; blocks the calling thread until the commit.
    pub(super) fn write_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write_blocking(f)
    }

    /// Runs the read-only `f` on this thread with a read connection: it sees every write answered so far.
    pub(super) fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.inner.readers {
            Some(pool) => pool.read(f),
            None => self.write_blocking(f),
        }
    }

    /// The retry queue, oldest (first enqueued) first.
    pub fn queued(&self) -> Result<Vec<RetryMessage>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT message FROM retry_queue ORDER BY seq").map_err(sql_err)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err)?;
            rows.map(|r| decode(&r.map_err(sql_err)?)).collect()
        })
    }

    /// The dead-letter queue (each with `dead_letter_reason` set), oldest first.
    pub fn dead_letters(&self) -> Result<Vec<RetryMessage>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT message FROM dead_letters ORDER BY seq").map_err(sql_err)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err)?;
            rows.map(|r| decode(&r.map_err(sql_err)?)).collect()
        })
    }

    /// Up to `limit` queued messages whose `not_before <= now`, earliest `not_before` first (ties: oldest
    /// enqueue first). They stay queued until [`SqliteStore::remove_queued`] or a re-`enqueue`.
    pub fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<RetryMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT message, write_intent FROM retry_queue WHERE not_before <= ?1 \
                     ORDER BY not_before, seq LIMIT ?2",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![epoch_millis(now), limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(sql_err)?;
            rows.map(|r| {
                let (message, intent) = r.map_err(sql_err)?;
                let mut message = decode(&message)?;
                // Recorded before a HubSpot call whose fate was never stored (see `sqlite_intents`).
                if intent.is_some() {
                    message.write_intent = intent;
                }
                Ok(message)
            })
            .collect()
        })
    }

    /// Takes a message off the retry queue (delivered, or moved on). Absent ids are fine.
    pub fn remove_queued(&self, event_id: &str) -> Result<(), StoreError> {
        let id = event_id.to_owned();
        self.write_blocking(move |conn| {
            conn.execute("DELETE FROM retry_queue WHERE event_id = ?1", params![id]).map_err(sql_err)?;
            Ok(())
        })
    }

    /// Takes a message out of the dead-letter queue (e.g. after a redrive re-enqueued it). Absent ids are fine.
    pub fn remove_dead_letter(&self, event_id: &str) -> Result<(), StoreError> {
        let id = event_id.to_owned();
        self.write_blocking(move |conn| {
            conn.execute("DELETE FROM dead_letters WHERE event_id = ?1", params![id]).map_err(sql_err)?;
            Ok(())
        })
    }
}

fn decode(json: &str) -> Result<RetryMessage, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("queued message: {e}")))
}

fn encode(message: &RetryMessage) -> Result<String, StoreError> {
    serde_json::to_string(message).map_err(|e| StoreError::Corrupt(format!("cannot serialise message: {e}")))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_err)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "database schema version {version} is newer than this hubrelay supports ({SCHEMA_VERSION})"
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1).map_err(sql_err)?;
    }
    if version < 2 {
        tx.execute_batch(crate::sqlite_events::SCHEMA_V2).map_err(sql_err)?;
    }
    if version < 3 {
        tx.execute_batch(crate::sqlite_updates::SCHEMA_V3).map_err(sql_err)?;
    }
    if version < 4 {
        tx.execute_batch(crate::sqlite_updates::SCHEMA_V4).map_err(sql_err)?;
    }
    if version < 5 {
        tx.execute_batch(crate::sqlite_imports::SCHEMA_V5).map_err(sql_err)?;
    }
    if version < 6 {
        tx.execute_batch(crate::sqlite_intents::SCHEMA_V6).map_err(sql_err)?;
        tx.execute_batch(crate::sqlite_privacy::SCHEMA_V6).map_err(sql_err)?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)
}

/// The idempotency row as `begin` needs it.
struct Record {
    status: String,
    payload_hash: Option<String>,
    response_status: Option<i64>,
    response_body: Option<String>,
    expires_at: i64,
    in_progress_expires_at: Option<i64>,
}

/// The idempotency row stored under `key`, if any.
fn read_record(conn: &Connection, key: &str) -> Result<Option<Record>, StoreError> {
    conn.prepare_cached(
        "SELECT status, payload_hash, response_status, response_body, expires_at, \
         in_progress_expires_at FROM idempotency WHERE key = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![key], |r| {
            Ok(Record {
                status: r.get(0)?,
                payload_hash: r.get(1)?,
                response_status: r.get(2)?,
                response_body: r.get(3)?,
                expires_at: r.get(4)?,
                in_progress_expires_at: r.get(5)?,
            })
        })
        .optional()
    })
    .map_err(sql_err)
}

/// Past its retention: the record counts as gone.
fn expired(record: &Record, now: OffsetDateTime) -> bool {
    expired_at(record.expires_at, now)
}

/// Whether an idempotency record expiring at `expires_at` (Unix s) is gone by `now`.
pub(crate) fn expired_at(expires_at: i64, now: OffsetDateTime) -> bool {
    expires_at < epoch_seconds(now)
}

/// What the stored `record` means for a request claiming its key with `payload_hash`: `Started` when the
/// key is free (no record, an expired one, an orphaned `IN_PROGRESS` one).
fn decide(record: Option<Record>, payload_hash: &str, now: OffsetDateTime) -> Result<Begin, StoreError> {
    let now_ms = epoch_millis(now);
    let claimable = match &record {
        None => true,
        Some(r) => {
            expired(r, now) || (r.status == STATUS_IN_PROGRESS && r.in_progress_expires_at.is_none_or(|ms| ms < now_ms))
        }
    };
    if claimable {
        return Ok(Begin::Started);
    }
    let record = record.expect("an absent record is always claimable");

    // A record without a hash (written by `complete` after its record vanished) matches anything.
    if record.payload_hash.as_deref().is_some_and(|h| h != payload_hash) {
        return Ok(Begin::Conflict);
    }
    match record.status.as_str() {
        STATUS_COMPLETED => {
            let status = record
                .response_status
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| StoreError::Corrupt("completed idempotency record without response_status".into()))?;
            let body = record
                .response_body
                .ok_or_else(|| StoreError::Corrupt("completed idempotency record without response_body".into()))?;
            Ok(Begin::Completed(StoredResponse { status, body }))
        }
        STATUS_IN_PROGRESS => Ok(Begin::InProgress),
        other => Err(StoreError::Corrupt(format!("idempotency record with status {other:?}"))),
    }
}

/// Mark `key` COMPLETED, with the payload hash of the claim that held it. Unconditional, like the DynamoDB
/// adapter: the caller owns the key. Without a claim (its lease ran out) a record already there keeps its
/// hash, and a new one gets none (it matches any payload).
pub(crate) fn complete_row(
    conn: &Connection,
    key: &str,
    payload_hash: Option<&str>,
    response: &StoredResponse,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO idempotency \
         (key, status, payload_hash, response_status, response_body, expires_at, in_progress_expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL) \
         ON CONFLICT (key) DO UPDATE SET status = excluded.status, \
         payload_hash = coalesce(excluded.payload_hash, idempotency.payload_hash), \
         response_status = excluded.response_status, response_body = excluded.response_body, \
         expires_at = excluded.expires_at, in_progress_expires_at = NULL",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            key,
            STATUS_COMPLETED,
            payload_hash,
            i64::from(response.status),
            response.body,
            epoch_seconds(now + IDEMPOTENCY_TTL),
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    /// The claim in memory first (a live one makes this request wait or conflict), then the stored record:
    /// a key answered before replays. The record is read after the claim is taken, and a claim is freed only
    /// after its answer is committed, so a duplicate either waits or finds the answer.
    ///
    /// A request cancelled while its answer was being committed (its client went away) leaves its claim behind
    /// a stored answer: a duplicate finding a claim checks for a live answer too, ends that claim and replays.
    async fn begin(&self, key: &str, payload_hash: &str, now: OffsetDateTime) -> Result<Begin, StoreError> {
        let owned_key = key.to_owned();
        let stored = move || self.read(move |conn| read_record(conn, &owned_key));
        let (claim, held) = match self.inner.claims.take(key, payload_hash, epoch_millis(now)) {
            Take::Taken(claim) => (claim, None),
            Take::InProgress(other) => (other, Some(Begin::InProgress)),
            Take::Conflict(other) => (other, Some(Begin::Conflict)),
        };
        if let Some(held) = held {
            let record = stored()?;
            let answered = record.as_ref().is_some_and(|r| r.status == STATUS_COMPLETED && !expired(r, now));
            if !answered {
                return Ok(held);
            }
            self.inner.claims.give_back(key, claim);
            return decide(record, payload_hash, now);
        }
        let begin = stored().and_then(|r| decide(r, payload_hash, now));
        if !matches!(begin, Ok(Begin::Started)) {
            self.inner.claims.give_back(key, claim);
        }
        begin
    }

    async fn complete(&self, key: &str, response: &StoredResponse, now: OffsetDateTime) -> Result<(), StoreError> {
        let (owned_key, response) = (key.to_owned(), response.clone());
        let hash = self.inner.claims.payload_hash(key);
        self.write(move |conn| complete_row(conn, &owned_key, hash.as_deref(), &response, now)).await?;
        self.inner.claims.end(key);
        Ok(())
    }

    /// One write of the group commit: the answer, the event record, the contact version and the lead link.
    async fn complete_delivered(
        &self,
        key: &str,
        response: &StoredResponse,
        delivered: &Delivered,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (owned_key, response) = (key.to_owned(), response.clone());
        let hash = self.inner.claims.payload_hash(key);
        let event = crate::sqlite_events::EventRow::new(&delivered.event)?;
        let applied = delivered.applied.as_ref().map(|(email, at)| (contact_key(email), epoch_millis(*at)));
        let link = delivered.link.clone();
        let now_queued = OffsetDateTime::now_utc();
        let follow_ups =
            delivered.follow_ups.iter().map(|m| QueuedRow::new(m, now_queued)).collect::<Result<Vec<_>, _>>()?;
        self.write(move |conn| {
            event.write(conn)?;
            for row in &follow_ups {
                row.write(conn)?;
            }
            if let Some((contact, at)) = &applied {
                crate::sqlite_events::write_version(conn, contact, *at)?;
            }
            if let Some((lead_id, contact_id)) = &link {
                crate::sqlite_updates::write_link(conn, lead_id, contact_id, epoch_millis(now))?;
            }
            complete_row(conn, &owned_key, hash.as_deref(), &response, now)
        })
        .await?;
        self.inner.claims.end(key);
        Ok(())
    }

    fn queues_follow_ups(&self) -> bool {
        true
    }

    /// Frees the claim; nothing is written (claims are not, see [`crate::claims`]).
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.inner.claims.end(key);
        Ok(())
    }
}

#[async_trait]
impl RetryQueue for SqliteStore {
    /// Inserts the message, or replaces the queued one with the same `event_id` (which then counts as
    /// enqueued now for ordering).
    async fn enqueue(&self, message: &RetryMessage) -> Result<(), StoreError> {
        let row = QueuedRow::new(message, OffsetDateTime::now_utc())?;
        self.write(move |conn| row.write(conn)).await
    }

    /// Moves the message to the dead-letter queue (off the retry queue if it is there), with `reason` set
    /// on the stored message. A second dead-lettering of the same event replaces the first.
    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError> {
        let row = DeadRow::new(message, reason, OffsetDateTime::now_utc())?;
        self.write(move |conn| row.write(conn)).await
    }
}

/// One change to the queues; [`SqliteStore::settle`] applies many in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueChange {
    /// Off the retry queue (delivered, or superseded by a newer lead).
    Remove(String),
    /// Replace the queued message with this updated copy (attempt appended, `not_before` moved).
    Requeue(RetryMessage),
    /// Off the retry queue, into the dead-letter queue with the reason.
    DeadLetter(RetryMessage, DeadLetterReason),
}

impl SqliteStore {
    /// Applies `changes` atomically: after a crash either all of them are stored or none.
    pub async fn settle(&self, changes: Vec<QueueChange>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        enum Row {
            Remove(String),
            Queued(QueuedRow),
            Dead(DeadRow),
        }
        let rows = changes
            .into_iter()
            .map(|c| {
                Ok(match c {
                    QueueChange::Remove(id) => Row::Remove(id),
                    QueueChange::Requeue(m) => Row::Queued(QueuedRow::new(&m, now)?),
                    QueueChange::DeadLetter(m, reason) => Row::Dead(DeadRow::new(&m, &reason, now)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |conn| {
            for row in rows {
                match row {
                    Row::Remove(id) => {
                        conn.prepare_cached("DELETE FROM retry_queue WHERE event_id = ?1")
                            .and_then(|mut stmt| stmt.execute(params![id]))
                            .map_err(sql_err)?;
                    }
                    Row::Queued(q) => q.write(conn)?,
                    Row::Dead(d) => d.write(conn)?,
                }
            }
            Ok(())
        })
        .await
    }

    /// Makes every queued message due now, for when what held them back is gone (a tenant's portal connected
    /// again): in the writer's transaction, so a message the worker settled meanwhile is left as it settled it.
    pub async fn hasten_queue(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let now_ms = epoch_millis(now);
        self.write(move |conn| {
            let waiting: Vec<(String, String)> = {
                let mut stmt = conn
                    .prepare_cached("SELECT event_id, message FROM retry_queue WHERE not_before > ?1")
                    .map_err(sql_err)?;
                let rows = stmt.query_map(params![now_ms], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql_err)?;
                rows.collect::<Result<_, _>>().map_err(sql_err)?
            };
            for (event_id, json) in &waiting {
                let mut message = decode(json)?;
                message.not_before = now;
                let json = encode(&message)?;
                conn.prepare_cached("UPDATE retry_queue SET not_before = ?1, message = ?2 WHERE event_id = ?3")
                    .and_then(|mut stmt| stmt.execute(params![now_ms, json, event_id]))
                    .map_err(sql_err)?;
            }
            Ok(waiting.len())
        })
        .await
    }

    /// When the earliest queued message falls due, if any is queued.
    pub fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let ms: Option<i64> = self.read(|conn| {
            conn.query_row("SELECT MIN(not_before) FROM retry_queue", [], |r| r.get(0)).map_err(sql_err)
        })?;
        Ok(ms.map(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }))
    }

    /// How many messages wait on the retry queue.
    pub fn queued_count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.read(|conn| conn.query_row("SELECT COUNT(*) FROM retry_queue", [], |r| r.get(0)).map_err(sql_err))?;
        Ok(n as u64)
    }
}

/// A retry-queue row, encoded outside the lock.
pub(crate) struct QueuedRow {
    event_id: String,
    /// The event whose erasure also forbids this one: a lead's, for its follow-ups; else the event itself.
    origin: String,
    function: &'static str,
    not_before: i64,
    enqueued_at: i64,
    json: String,
}

impl QueuedRow {
    pub(crate) fn new(message: &RetryMessage, now: OffsetDateTime) -> Result<QueuedRow, StoreError> {
        let origin = match message.function {
            hubrelay_core::domain::FunctionName::LeadFollowUp => {
                message.event.get("lead_event_id").and_then(|v| v.as_str())
            }
            _ => None,
        };
        Ok(QueuedRow {
            origin: origin.unwrap_or(&message.event_id).to_string(),
            event_id: message.event_id.clone(),
            function: message.function.as_str(),
            not_before: epoch_millis(message.not_before),
            enqueued_at: epoch_millis(now),
            json: encode(message)?,
        })
    }

    pub(crate) fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.prepare_cached(
            // An erased event is never queued again (a worker pass that held it finishes after the erasure), nor is
            // the follow-up of an erased lead.
            "INSERT OR REPLACE INTO retry_queue (event_id, function, not_before, enqueued_at, message) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM erased_events WHERE event_id IN (?1, ?6))",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                self.event_id,
                self.function,
                self.not_before,
                self.enqueued_at,
                self.json,
                self.origin
            ])
        })
        .map_err(sql_err)?;
        Ok(())
    }
}

/// A dead-letter row (the message with its reason set), encoded outside the lock.
struct DeadRow {
    event_id: String,
    function: &'static str,
    code: String,
    at: i64,
    json: String,
}

impl DeadRow {
    fn new(message: &RetryMessage, reason: &DeadLetterReason, now: OffsetDateTime) -> Result<DeadRow, StoreError> {
        let mut message = message.clone();
        message.dead_letter_reason = Some(reason.clone());
        Ok(DeadRow {
            event_id: message.event_id.clone(),
            function: message.function.as_str(),
            code: reason.code.clone(),
            at: epoch_millis(now),
            json: encode(&message)?,
        })
    }

    /// Call inside a transaction (every write is one): the delete and the insert belong together.
    fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.execute("DELETE FROM retry_queue WHERE event_id = ?1", params![self.event_id]).map_err(sql_err)?;
        conn.execute(
            "INSERT OR REPLACE INTO dead_letters \
             (event_id, function, reason_code, dead_lettered_at, message) SELECT ?1, ?2, ?3, ?4, ?5 \
             WHERE NOT EXISTS (SELECT 1 FROM erased_events WHERE event_id = ?1)",
            params![self.event_id, self.function, self.code, self.at, self.json],
        )
        .map_err(sql_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::{AttemptOutcome, DeliveryAttempt, FunctionName};
    use hubrelay_core::store::IN_PROGRESS_TTL;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

    fn response(status: u16, body: &str) -> StoredResponse {
        StoredResponse { status, body: body.into() }
    }

    fn message(event_id: &str, not_before: OffsetDateTime) -> RetryMessage {
        RetryMessage {
            version: RetryMessage::UNSCOPED_VERSION,
            tenant: None,
            event_id: event_id.into(),
            function: FunctionName::LeadCaptured,
            idempotency_key: format!("key-{event_id}"),
            received_at: T0,
            event: serde_json::json!({"email": "jane@example.com"}),
            attempts: vec![DeliveryAttempt {
                attempt: 1,
                at: T0,
                outcome: AttemptOutcome::Retryable,
                system: None,
                status: Some(503),
                correlation_id: None,
                error_code: Some("hubspot_unavailable".into()),
                error: None,
            }],
            not_before,
            dead_letter_reason: None,
            schedule_offset: 0,
            redrives: 0,
            write_intent: None,
        }
    }

    fn ids(messages: &[RetryMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.event_id.as_str()).collect()
    }

    #[tokio::test]
    async fn begin_complete_replay() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        store.complete("k", &response(202, r#"{"ok":true}"#), T0).await.unwrap();
        assert_eq!(
            store.begin("k", "h1", T0 + Duration::from_secs(10)).await.unwrap(),
            Begin::Completed(response(202, r#"{"ok":true}"#))
        );
    }

    #[tokio::test]
    async fn other_payload_is_a_conflict() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        // While in progress...
        assert_eq!(store.begin("k", "h2", T0).await.unwrap(), Begin::Conflict);
        store.complete("k", &response(200, "done"), T0).await.unwrap();
        // ...and once completed.
        assert_eq!(store.begin("k", "h2", T0).await.unwrap(), Begin::Conflict);
    }

    #[tokio::test]
    async fn same_payload_while_in_progress() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        assert_eq!(store.begin("k", "h1", T0 + IN_PROGRESS_TTL).await.unwrap(), Begin::InProgress);
    }

    #[tokio::test]
    async fn release_orphaned_claims_frees_only_claims_in_progress() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("left", "h1", T0).await.unwrap(), Begin::Started);
        assert_eq!(store.begin("done", "h2", T0).await.unwrap(), Begin::Started);
        let answer = StoredResponse { status: 200, body: "{}".into() };
        store.complete("done", &answer, T0).await.unwrap();
        assert_eq!(store.release_orphaned_claims().await.unwrap(), 1);
        assert_eq!(store.begin("left", "h1", T0).await.unwrap(), Begin::Started, "the orphan is free at once");
        assert_eq!(store.begin("done", "h2", T0).await.unwrap(), Begin::Completed(answer));
    }

    #[tokio::test]
    async fn orphaned_in_progress_is_taken_over() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        let later = T0 + IN_PROGRESS_TTL + Duration::from_millis(1);
        assert_eq!(store.begin("k", "h1", later).await.unwrap(), Begin::Started);
        // The new owner's record blocks again (and takeover does not care about the old hash).
        assert_eq!(store.begin("k", "h1", later).await.unwrap(), Begin::InProgress);
        let much_later = later + IN_PROGRESS_TTL + Duration::from_millis(1);
        assert_eq!(store.begin("k", "h2", much_later).await.unwrap(), Begin::Started);
    }

    #[tokio::test]
    async fn expired_record_is_taken_over() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        store.complete("k", &response(200, "done"), T0).await.unwrap();
        // Just before expiry it still replays; one second after, the key is free (any payload).
        let last = T0 + IDEMPOTENCY_TTL;
        assert_eq!(store.begin("k", "h1", last).await.unwrap(), Begin::Completed(response(200, "done")));
        let after = T0 + IDEMPOTENCY_TTL + Duration::from_secs(1);
        assert_eq!(store.begin("k", "h2", after).await.unwrap(), Begin::Started);
    }

    #[tokio::test]
    async fn complete_extends_the_record_lifetime() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        let done_at = T0 + Duration::from_secs(30);
        store.complete("k", &response(200, "done"), done_at).await.unwrap();
        let t = T0 + IDEMPOTENCY_TTL + Duration::from_secs(10);
        assert_eq!(store.begin("k", "h1", t).await.unwrap(), Begin::Completed(response(200, "done")));
    }

    #[tokio::test]
    async fn release_frees_only_in_progress_keys() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("a", "h", T0).await.unwrap(), Begin::Started);
        store.release("a").await.unwrap();
        assert_eq!(store.begin("a", "h", T0).await.unwrap(), Begin::Started);

        assert_eq!(store.begin("b", "h", T0).await.unwrap(), Begin::Started);
        store.complete("b", &response(200, "done"), T0).await.unwrap();
        store.release("b").await.unwrap();
        assert_eq!(store.begin("b", "h", T0).await.unwrap(), Begin::Completed(response(200, "done")));

        store.release("never-seen").await.unwrap();
    }

    #[tokio::test]
    async fn a_claim_writes_nothing_and_its_answer_is_one_write_with_its_payload_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
        let before = store.write_stats();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::InProgress);
        store.release("k").await.unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        assert_eq!(store.write_stats(), before, "claims and releases go to no commit");
        let rows = |store: &SqliteStore| {
            store.read(|c| c.query_row("SELECT COUNT(*) FROM idempotency", [], |r| r.get::<_, i64>(0)).map_err(sql_err))
        };
        assert_eq!(rows(&store).unwrap(), 0);
        store.complete("k", &response(200, "done"), T0).await.unwrap();
        assert_eq!(store.write_stats().writes, before.writes + 1);
        let hash: Option<String> = store
            .read(|c| c.query_row("SELECT payload_hash FROM idempotency", [], |r| r.get(0)).map_err(sql_err))
            .unwrap();
        assert_eq!(hash.as_deref(), Some("h1"), "a later copy with another payload is a conflict");
    }

    #[tokio::test]
    async fn a_claim_left_behind_a_stored_answer_is_ended_by_the_next_copy() {
        // The request was cancelled (its client went away) after its answer's write was queued: the answer is
        // committed, the claim never ended.
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Started);
        store.write(|c| complete_row(c, "k", Some("h1"), &response(200, "done"), T0)).await.unwrap();
        assert_eq!(store.begin("k", "h2", T0).await.unwrap(), Begin::Conflict, "decided by the stored answer");
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::Completed(response(200, "done")));
        // A claim behind an expired answer is a live delivery of the key again: it still blocks.
        let later = T0 + IDEMPOTENCY_TTL + Duration::from_secs(1);
        assert_eq!(store.begin("k", "h1", later).await.unwrap(), Begin::Started);
        assert_eq!(store.begin("k", "h1", later).await.unwrap(), Begin::InProgress);
    }

    #[tokio::test]
    async fn an_in_progress_row_of_an_earlier_version_is_honoured_until_it_expires() {
        let store = SqliteStore::open_in_memory().unwrap();
        let lease_end = epoch_millis(T0 + IN_PROGRESS_TTL);
        store
            .write(move |c| {
                c.execute(
                    "INSERT INTO idempotency (key, status, payload_hash, expires_at, in_progress_expires_at) \
                     VALUES ('k', 'IN_PROGRESS', 'h1', ?1, ?2)",
                    params![epoch_seconds(T0 + IDEMPOTENCY_TTL), lease_end],
                )
                .map_err(sql_err)
            })
            .await
            .unwrap();
        assert_eq!(store.begin("k", "h1", T0).await.unwrap(), Begin::InProgress);
        assert_eq!(store.begin("k", "h2", T0).await.unwrap(), Begin::Conflict);
        let later = T0 + IN_PROGRESS_TTL + Duration::from_millis(1);
        assert_eq!(store.begin("k", "h2", later).await.unwrap(), Begin::Started);
        store.complete("k", &response(200, "done"), later).await.unwrap();
        assert_eq!(store.begin("k", "h2", later).await.unwrap(), Begin::Completed(response(200, "done")));
        assert_eq!(store.begin("k", "h1", later).await.unwrap(), Begin::Conflict, "the new claim's hash stands");
    }

    #[tokio::test]
    async fn complete_without_record_matches_any_payload() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.complete("k", &response(200, "done"), T0).await.unwrap();
        assert_eq!(store.begin("k", "anything", T0).await.unwrap(), Begin::Completed(response(200, "done")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_begins_start_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.begin("same-key", "h", T0).await.unwrap() })
            })
            .collect();
        let mut started = 0;
        for task in tasks {
            match task.await.unwrap() {
                Begin::Started => started += 1,
                Begin::InProgress => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(started, 1);
    }

    #[tokio::test]
    async fn enqueue_queued_due_remove() {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = message("evt_a", T0 + Duration::from_secs(300));
        let b = message("evt_b", T0 + Duration::from_secs(5));
        let c = message("evt_c", T0 + Duration::from_secs(3600));
        for m in [&a, &b, &c] {
            store.enqueue(m).await.unwrap();
        }
        // Oldest first, whole messages round-trip.
        let queued = store.queued().unwrap();
        assert_eq!(ids(&queued), ["evt_a", "evt_b", "evt_c"]);
        assert_eq!(queued[0], a);

        assert!(store.due(T0, 10).unwrap().is_empty());
        // Due: earliest not_before first; the boundary is inclusive.
        assert_eq!(ids(&store.due(T0 + Duration::from_secs(300), 10).unwrap()), ["evt_b", "evt_a"]);
        assert_eq!(ids(&store.due(T0 + Duration::from_secs(7200), 2).unwrap()), ["evt_b", "evt_a"]);
        assert_eq!(ids(&store.due(T0 + Duration::from_secs(7200), 0).unwrap()), Vec::<&str>::new());

        store.remove_queued("evt_b").unwrap();
        store.remove_queued("evt_missing").unwrap();
        assert_eq!(ids(&store.queued().unwrap()), ["evt_a", "evt_c"]);
    }

    #[tokio::test]
    async fn enqueue_replaces_by_event_id() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.enqueue(&message("evt_a", T0)).await.unwrap();
        store.enqueue(&message("evt_b", T0)).await.unwrap();
        let mut retried = message("evt_a", T0 + Duration::from_secs(1800));
        retried.attempts.push(DeliveryAttempt { attempt: 2, ..retried.attempts[0].clone() });
        store.enqueue(&retried).await.unwrap();
        let queued = store.queued().unwrap();
        assert_eq!(ids(&queued), ["evt_b", "evt_a"]);
        assert_eq!(queued[1], retried);
        assert_eq!(ids(&store.due(T0, 10).unwrap()), ["evt_b"]);
    }

    #[tokio::test]
    async fn dead_letter_moves_with_reason() {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = message("evt_a", T0);
        store.enqueue(&a).await.unwrap();
        store.enqueue(&message("evt_b", T0)).await.unwrap();
        let reason = DeadLetterReason {
            code: "property_doesnt_exist".into(),
            message: "Property \"budget_range\" does not exist".into(),
        };
        store.dead_letter(&a, &reason).await.unwrap();
        assert_eq!(ids(&store.queued().unwrap()), ["evt_b"]);
        let dlq = store.dead_letters().unwrap();
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].dead_letter_reason.as_ref(), Some(&reason));
        assert_eq!(dlq[0].attempts, a.attempts);
        // A message that was never queued can be dead-lettered too.
        store.dead_letter(&message("evt_c", T0), &reason).await.unwrap();
        assert_eq!(ids(&store.dead_letters().unwrap()), ["evt_a", "evt_c"]);
        store.remove_dead_letter("evt_a").unwrap();
        assert_eq!(ids(&store.dead_letters().unwrap()), ["evt_c"]);
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("hubrelay.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.path(), Some(path.as_path()));
            assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Started);
            store.complete("k", &response(201, "created"), T0).await.unwrap();
            store.enqueue(&message("evt_a", T0)).await.unwrap();
            let reason = DeadLetterReason { code: "rejected".into(), message: "no".into() };
            store.dead_letter(&message("evt_b", T0), &reason).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Completed(response(201, "created")));
        assert_eq!(ids(&store.queued().unwrap()), ["evt_a"]);
        assert_eq!(ids(&store.dead_letters().unwrap()), ["evt_b"]);
        let pragma = |sql: &'static str| {
            store
                .read(move |c| c.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)).map_err(sql_err))
                .unwrap()
        };
        let version = pragma("PRAGMA user_version");
        assert_eq!(version, rusqlite::types::Value::Integer(SCHEMA_VERSION));
        assert_eq!(pragma("PRAGMA journal_mode"), rusqlite::types::Value::Text("wal".into()));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hubrelay.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn corrupt_message_is_reported() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .write_blocking(|conn| {
                conn.execute(
                    "INSERT INTO retry_queue (event_id, function, not_before, enqueued_at, message) \
                     VALUES ('evt_x', 'lead-captured', 0, 0, 'not json')",
                    [],
                )
                .map_err(sql_err)
            })
            .unwrap();
        assert!(matches!(store.queued(), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn settle_applies_every_change_at_once() {
        let store = SqliteStore::open_in_memory().unwrap();
        for id in ["evt_a", "evt_b", "evt_c", "evt_d"] {
            store.enqueue(&message(id, T0)).await.unwrap();
        }
        assert_eq!(store.next_due().unwrap(), Some(T0));
        assert_eq!(store.queued_count().unwrap(), 4);
        let later = message("evt_b", T0 + Duration::from_secs(300));
        let reason = DeadLetterReason { code: "retries_exhausted".into(), message: "10 attempts failed".into() };
        store
            .settle(vec![
                QueueChange::Remove("evt_a".into()),
                QueueChange::Requeue(later.clone()),
                QueueChange::DeadLetter(message("evt_c", T0), reason.clone()),
                QueueChange::Remove("evt_never_queued".into()),
            ])
            .await
            .unwrap();
        assert_eq!(ids(&store.queued().unwrap()), ["evt_d", "evt_b"]);
        assert_eq!(store.queued().unwrap()[1], later);
        assert_eq!(store.next_due().unwrap(), Some(T0));
        let dlq = store.dead_letters().unwrap();
        assert_eq!(ids(&dlq), ["evt_c"]);
        assert_eq!(dlq[0].dead_letter_reason.as_ref(), Some(&reason));
        store.settle(vec![QueueChange::Remove("evt_d".into()), QueueChange::Remove("evt_b".into())]).await.unwrap();
        assert_eq!(store.next_due().unwrap(), None);
        assert_eq!(store.queued_count().unwrap(), 0);
    }
}
