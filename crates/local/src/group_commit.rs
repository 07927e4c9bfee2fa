//! Group commit for the local store: one thread owns the writing SQLite connection and commits every write
//! that queued up while the previous commit was flushing in **one** transaction — one `fsync` for all of
//! them. Each caller hears its own result only after that commit, so an answer still means "on disk".
//!
//! Under no load a write commits alone at once (nothing waits for a tick); under load the batches grow by
//! themselves to what arrived during one flush. Each write runs inside its own savepoint, so a failing write
//! rolls back alone and the others of its batch still commit. Reads never queue here: they use their own
//! connections (WAL lets them read the last commit while the writer works), see [`ReadPool`].
//!
//! Idempotency claims do not come here at all: they are held in memory ([`crate::claims`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::Connection;

use hubrelay_core::store::StoreError;

/// Most writes one transaction takes (bounds the time a failing commit holds everyone).
const MAX_BATCH: usize = 512;
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// A write waiting for the writer: run it (in the batch's transaction), then hear how the commit went.
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

enum Reply<T> {
    Async(tokio::sync::oneshot::Sender<Result<T, StoreError>>),
    Blocking(mpsc::SyncSender<Result<T, StoreError>>),
}

struct Task<T, F> {
    write: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: Reply<T>,
}

impl<T, F> WriteJob for Task<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(write) = self.write.take() {
            self.result = Some(in_savepoint(conn, write));
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match (commit, self.result) {
            (Err(e), _) => Err(e.clone()),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Unavailable("sqlite: the write was not run".into())),
        };
        // A caller that stopped waiting (its request was cancelled) is no error: the write stands.
        match self.reply {
            Reply::Async(tx) => drop(tx.send(result)),
            Reply::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let exec = |sql: &str| exec(conn, sql);
    exec("SAVEPOINT job")?;
    let result = catch_unwind(AssertUnwindSafe(|| write(conn)))
        .unwrap_or_else(|_| Err(StoreError::Unavailable("sqlite: a write panicked".into())));
    let undone = if result.is_err() { exec("ROLLBACK TO job").map(drop) } else { Ok(()) };
    if let Err(e) = undone.and_then(|()| exec("RELEASE job").map(drop)) {
        // The savepoint can't be undone or ended, so this write can't be told apart from the batch's others:
        // drop the whole transaction (commit_batch sees it gone and fails every write of the batch).
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    result
}

/// A parameterless statement, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> Result<usize, StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map_err(crate::sqlite::sql_err)
}

/// The handle to the writer thread; the thread ends (closing its connection) when the handle is dropped.
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn WriteJob>>,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// How many transactions the writer committed (each flushed to disk) and how many writes they carried,
/// since the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    pub commits: u64,
    pub writes: u64,
}

impl GroupCommit {
    /// Hand `conn` (already configured and migrated) to a new writer thread.
    pub(crate) fn start(conn: Connection) -> Result<GroupCommit, StoreError> {
        let (jobs, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx, &counters))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the sqlite writer: {e}")))?;
        Ok(GroupCommit { jobs, stats })
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
        }
    }

    fn send(&self, job: Box<dyn WriteJob>) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("sqlite writer stopped".into()))
    }

    /// Run `write` in the next group commit and answer after it is on disk.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Box::new(Task { write: Some(write), result: None, reply: Reply::Async(tx) }))?;
        rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("sqlite writer stopped".into())))
    }

    /// [`GroupCommit::write`] for synchronous callers (the CLI, the worker's inspection): blocks this thread.
    pub(crate) fn write_blocking<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Box::new(Task { write: Some(write), result: None, reply: Reply::Blocking(tx) }))?;
        rx.recv().unwrap_or_else(|_| Err(StoreError::Unavailable("sqlite writer stopped".into())))
    }
}

fn writer(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>, stats: &Counters) {
    // The connection runs with `synchronous = FULL` (see SqliteStore::open): each commit is flushed.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = commit_batch(&conn, &mut batch);
        if commit.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        for job in batch {
            job.finish(commit.as_ref().map(|_| ()));
        }
    }
}

/// One transaction for the whole batch: `BEGIN IMMEDIATE` (waiting out another process's lock up to the busy
/// timeout), every write in its savepoint, one `COMMIT`. When the commit fails nothing of the batch is kept.
///
/// SQLite itself rolls the whole transaction back on some errors (`SQLITE_FULL`, `SQLITE_IOERR`, ...) and
/// [`in_savepoint`] does when a savepoint can't be undone. Once the transaction is gone no further write of
/// the batch runs (it would commit on its own, outside the batch) and the whole batch fails.
fn commit_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    begin(conn)?;
    for job in batch.iter_mut() {
        if conn.is_autocommit() {
            break;
        }
        job.run(conn);
    }
    if conn.is_autocommit() {
        return Err(StoreError::Unavailable("sqlite: the batch's transaction was rolled back".into()));
    }
    exec(conn, "COMMIT").map(drop).inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// `BEGIN IMMEDIATE`, first ending a transaction an earlier batch left open (its `COMMIT` and then its
/// `ROLLBACK` failed): without that every later batch would fail to begin.
fn begin(conn: &Connection) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(crate::sqlite::sql_err)?;
    }
    exec(conn, "BEGIN IMMEDIATE").map(drop)
}

/// Read connections, opened on demand and reused; each read sees the last commit.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> ReadPool {
        ReadPool { path, idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", self.path.display())))?;
        conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT).map_err(crate::sqlite::sql_err)?;
        conn.execute_batch("PRAGMA query_only = ON;").map_err(crate::sqlite::sql_err)?;
        Ok(conn)
    }

    /// Run `read` on the calling thread with a pooled connection (reads are short and never wait for the
    /// writer in WAL mode).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::sql_err;

    fn store() -> (tempfile::TempDir, GroupCommit, ReadPool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (v INTEGER UNIQUE);")
            .unwrap();
        (dir, GroupCommit::start(conn).unwrap(), ReadPool::new(path))
    }

    fn count(readers: &ReadPool) -> i64 {
        readers.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).map_err(sql_err)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_each_is_readable_once_answered() {
        let (_dir, writer, readers) = store();
        let writer = Arc::new(writer);
        let readers = Arc::new(readers);
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let (writer, readers) = (writer.clone(), readers.clone());
                tokio::spawn(async move {
                    writer
                        .write(move |c| c.execute("INSERT INTO t (v) VALUES (?1)", [i]).map_err(sql_err))
                        .await
                        .unwrap();
                    // Answered means committed: a reader on another connection sees it.
                    let seen: i64 = readers
                        .read(move |c| {
                            c.query_row("SELECT COUNT(*) FROM t WHERE v = ?1", [i], |r| r.get(0)).map_err(sql_err)
                        })
                        .unwrap();
                    assert_eq!(seen, 1);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(count(&readers), 400);
        let stats = writer.stats();
        assert_eq!(stats.writes, 400);
        assert!(stats.commits < 400, "writes arriving together share a commit: {stats:?}");
    }

    #[tokio::test]
    async fn a_failing_or_panicking_write_rolls_back_alone() {
        let (_dir, writer, readers) = store();
        writer.write(|c| c.execute("INSERT INTO t (v) VALUES (1)", []).map_err(sql_err)).await.unwrap();
        // Queued together, so one batch: the first inserts then fails, the second panics, the third stands.
        let failing = writer.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (2)", []).map_err(sql_err)?;
            c.execute("INSERT INTO t (v) VALUES (1)", []).map_err(sql_err) // UNIQUE: fails
        });
        let panicking = writer.write(|c| -> Result<(), StoreError> {
            c.execute("INSERT INTO t (v) VALUES (3)", []).map_err(sql_err)?;
            panic!("a bug in a write")
        });
        let fine = writer.write(|c| c.execute("INSERT INTO t (v) VALUES (4)", []).map_err(sql_err));
        let (failing, panicking, fine) = tokio::join!(failing, panicking, fine);
        assert!(failing.is_err());
        assert!(matches!(panicking, Err(StoreError::Unavailable(m)) if m.contains("panicked")));
        assert_eq!(fine.unwrap(), 1);
        let values: Vec<i64> = readers
            .read(|c| {
                let mut s = c.prepare("SELECT v FROM t ORDER BY v").map_err(sql_err)?;
                let rows = s.query_map([], |r| r.get(0)).map_err(sql_err)?;
                rows.collect::<Result<_, _>>().map_err(sql_err)
            })
            .unwrap();
        assert_eq!(values, [1, 4]);
        // The writer still works, from synchronous code too.
        writer.write_blocking(|c| c.execute("INSERT INTO t (v) VALUES (5)", []).map_err(sql_err)).unwrap();
        assert_eq!(count(&readers), 3);
    }

    /// Three writes queued behind a slow one (which writes nothing), so they share a batch; the second
    /// does `sabotage` after its insert.
    async fn batch_with(writer: &GroupCommit, sabotage: &'static str) -> [Result<(), StoreError>; 3] {
        let insert =
            |v: i64| move |c: &Connection| c.execute("INSERT INTO t (v) VALUES (?1)", [v]).map(drop).map_err(sql_err);
        let (slow, a, b, c) = tokio::join!(
            writer.write(|_| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok(())
            }),
            writer.write(insert(21)),
            writer.write(move |c| {
                insert(22)(c)?;
                c.execute_batch(sabotage).map_err(sql_err)
            }),
            writer.write(insert(23)),
        );
        drop(slow);
        [a, b, c]
    }

    #[tokio::test]
    async fn a_batch_whose_transaction_is_gone_fails_whole_and_commits_nothing() {
        // SQLite rolls the whole transaction back itself on SQLITE_FULL or SQLITE_IOERR; a write that ends its
        // savepoint leaves RELEASE nothing to end. Either way no write of the batch may stand or report success.
        for sabotage in ["ROLLBACK", "RELEASE job"] {
            let (_dir, writer, readers) = store();
            writer.write(|c| c.execute("INSERT INTO t (v) VALUES (1)", []).map_err(sql_err)).await.unwrap();
            let results = batch_with(&writer, sabotage).await;
            assert!(results.iter().all(|r| r.is_err()), "{sabotage}: {results:?}");
            assert_eq!(count(&readers), 1, "{sabotage}: nothing of the batch committed");
            // The writer goes on.
            writer.write(|c| c.execute("INSERT INTO t (v) VALUES (2)", []).map_err(sql_err)).await.unwrap();
            assert_eq!(count(&readers), 2, "{sabotage}");
        }
    }

    #[test]
    fn a_transaction_left_open_is_ended_before_the_next_batch_begins() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER); BEGIN; INSERT INTO t VALUES (1);").unwrap();
        begin(&conn).unwrap();
        assert!(!conn.is_autocommit());
        conn.execute_batch("INSERT INTO t VALUES (2); COMMIT;").unwrap();
        let values: i64 = conn.query_row("SELECT SUM(v) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(values, 2, "the open transaction was rolled back, the new one committed");
    }
}
