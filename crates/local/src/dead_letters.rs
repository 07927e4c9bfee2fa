//! [`DeadLetters`] on the local SQLite store of `hubrelay serve` (safe while `serve` runs: WAL, a busy
//! timeout, and one transaction per move).

use std::path::Path;

use async_trait::async_trait;

use crate::sqlite::SqliteStore;
use crate::DeadLetterRow;
use hubrelay_core::dlq::{DeadLetter, DeadLetters, Held, TakeError};
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::store::{EventLog, StoreError};

#[derive(Debug, Clone)]
pub struct LocalDeadLetters {
    store: SqliteStore,
}

impl LocalDeadLetters {
    pub fn new(store: SqliteStore) -> Self {
        LocalDeadLetters { store }
    }

    /// Opens the store of an existing data dir; a data dir without a store is an error (not created).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = crate::local_db_path(data_dir);
        if !path.is_file() {
            return Err(StoreError::Unavailable(format!(
                "no hubrelay store at {} (is --data-dir / HUBRELAY_DATA_DIR the folder `hubrelay serve` uses?)",
                path.display()
            )));
        }
        Ok(LocalDeadLetters { store: SqliteStore::open(&path)? })
    }

    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn rows(&self) -> Result<Vec<DeadLetterRow>, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.dead_letter_rows())
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
    }

    async fn take_row(&self, seq: i64, requeue: Option<RetryMessage>) -> Result<bool, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.take_dead_letter(seq, requeue.as_ref()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
    }
}

fn letter(row: DeadLetterRow) -> DeadLetter {
    DeadLetter { message: row.message, dead_lettered_at: Some(row.dead_lettered_at) }
}

#[async_trait]
impl DeadLetters for LocalDeadLetters {
    fn describe(&self) -> String {
        match self.store.path() {
            Some(p) => format!("local store {}", p.display()),
            None => "local in-memory store".into(),
        }
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self.rows().await?.into_iter().map(letter).collect())
    }

    async fn get(&self, event_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.get_row(event_id).await?.map(letter))
    }

    async fn purge(&self, event_id: &str) -> Result<usize, StoreError> {
        match self.get_row(event_id).await? {
            Some(row) => Ok(usize::from(self.take_row(row.seq, None).await?)),
            None => Ok(0),
        }
    }

    fn event_log(&self) -> Result<&dyn EventLog, StoreError> {
        Ok(&self.store)
    }

    async fn hold(&self) -> Result<Vec<Held>, StoreError> {
        Ok(self
            .rows()
            .await?
            .into_iter()
            .map(|row| Held { handle: row.seq.to_string(), letter: Ok(letter(row)) })
            .collect())
    }

    /// One transaction: the row goes, and the message joins the retry queue, or neither.
    async fn take(&self, held: &Held, requeue: Option<&RetryMessage>) -> Result<bool, TakeError> {
        let seq = held
            .handle
            .parse()
            .map_err(|_| TakeError::NotRequeued(StoreError::Corrupt(format!("dead-letter row `{}`", held.handle))))?;
        self.take_row(seq, requeue.cloned()).await.map_err(TakeError::NotRequeued)
    }

    /// Rows stay where they are until taken: nothing to let go of.
    async fn release(&self, _held: &[&Held]) {}
}

impl LocalDeadLetters {
    async fn get_row(&self, event_id: &str) -> Result<Option<DeadLetterRow>, StoreError> {
        let store = self.store.clone();
        let id = event_id.to_string();
        tokio::task::spawn_blocking(move || store.dead_letter_row(&id))
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
    }
}
