//! [`DeadLetters`] on the local SQLite store of `hubrelay serve` (safe while `serve` runs: WAL, a busy
//! timeout, and one transaction per move).

use std::path::Path;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::sqlite::SqliteStore;
use crate::DeadLetterRow;
use hubrelay_core::dlq::{
    check_log, missing_ids, restore_log, retrying_record, DeadLetter, DeadLetters, Progress, RedriveFailure,
    RedriveReport, Selection,
};
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

    async fn take(&self, seq: i64, requeue: Option<hubrelay_core::domain::RetryMessage>) -> Result<bool, StoreError> {
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

    async fn redrive(
        &self,
        selection: &Selection,
        dry_run: bool,
        now: OffsetDateTime,
        progress: Progress<'_>,
    ) -> Result<RedriveReport, StoreError> {
        let rows = self.rows().await?;
        let mut report = RedriveReport {
            dry_run,
            not_found: missing_ids(selection, rows.iter().map(|r| r.message.event_id.as_str())),
            ..Default::default()
        };
        let (selected, others): (Vec<DeadLetterRow>, Vec<DeadLetterRow>) =
            rows.into_iter().partition(|r| selection.matches(&letter(r.clone()), now));
        report.not_matched = others.len();
        let total = selected.len();
        progress(0, total);
        let events: &dyn EventLog = &self.store;
        for (i, row) in selected.into_iter().enumerate() {
            let event_id = row.message.event_id.clone();
            let result = async {
                let check = check_log(events, &event_id).await?;
                if check.delivered {
                    if dry_run || self.take(row.seq, None).await? {
                        report.already_delivered.push(event_id.clone());
                    }
                    return Ok(None);
                }
                if dry_run {
                    report.moved.push(event_id.clone());
                    return Ok(None);
                }
                let mut message = row.message.clone();
                message.redrive(now);
                events.put_event(&retrying_record(check.previous.as_ref(), &message, now)).await?;
                match self.take(row.seq, Some(message)).await {
                    Ok(true) => {
                        report.moved.push(event_id.clone());
                        Ok(None)
                    }
                    Ok(false) => {
                        restore_log(events, check.previous).await;
                        Ok(Some(
                            "the dead letter changed while redriving (purged or dead-lettered again): run again"
                                .to_string(),
                        ))
                    }
                    Err(e) => {
                        restore_log(events, check.previous).await;
                        Err(e)
                    }
                }
            }
            .await;
            match result {
                Ok(None) => {}
                Ok(Some(error)) => report.failed.push(RedriveFailure { event_id, error }),
                Err(e) => report.failed.push(RedriveFailure { event_id, error: e.to_string() }),
            }
            progress(i + 1, total);
        }
        Ok(report)
    }

    async fn purge(&self, event_id: &str) -> Result<usize, StoreError> {
        match self.get_row(event_id).await? {
            Some(row) => Ok(usize::from(self.take(row.seq, None).await?)),
            None => Ok(0),
        }
    }
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
