//! `hubrelay serve`'s storage: one SQLite file for idempotency, the event log, the retry queue and the
//! dead letters ([`sqlite::SqliteStore`]), the worker that drains that queue ([`LocalWorker`]) and the
//! dead-letter operations on it ([`LocalDeadLetters`]).

use std::path::{Path, PathBuf};

mod claims;
mod dead_letters;
mod group_commit;
pub mod sqlite;
mod sqlite_dlq;
mod sqlite_events;
pub mod sqlite_imports;
mod sqlite_intents;
mod sqlite_privacy;
mod sqlite_updates;
pub mod tenants;
pub mod turn;
pub mod worker;

pub use dead_letters::LocalDeadLetters;
pub use group_commit::WriteStats;
pub use sqlite_dlq::DeadLetterRow;
pub use worker::{LocalWorker, TickReport, WakingQueue};

/// The SQLite file of a local data dir (what `hubrelay serve` opens).
pub fn local_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hubrelay.db")
}
