//! The console's audit trail: who did what, when, to which events (redrive, purge, reveal, sign-in). `serve` keeps
//! it as JSON lines in a file of the data dir (append-only, [`FileAudit`]); on AWS it is kept in the stack's table
//! (`hubrelay_aws::console`). Shown at `/console/audit` and written to the log too.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    pub operator: String,
    /// `sign_in`, `redrive`, `purge`, `reveal`.
    pub action: String,
    pub tenant: String,
    /// What it was done to (event ids, or the filter) and what came of it.
    pub detail: String,
}

/// Where entries go.
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    /// Keeps `entry` for good; `Err` when it could not (the console then refuses the action it was to record).
    async fn record(&self, entry: &AuditEntry) -> Result<(), String>;
    /// The newest `limit` entries, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, String>;
}

/// Entries as JSON lines in one file.
pub struct FileAudit {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl FileAudit {
    pub fn new(path: PathBuf) -> FileAudit {
        FileAudit { path, lock: Arc::new(Mutex::new(())) }
    }
}

#[async_trait::async_trait]
impl AuditLog for FileAudit {
    async fn record(&self, entry: &AuditEntry) -> Result<(), String> {
        let line = serde_json::to_string(entry).map_err(|e| e.to_string())? + "\n";
        let (path, lock) = (self.path.clone(), self.lock.clone());
        // A synced write: off the async threads.
        tokio::task::spawn_blocking(move || {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(line.as_bytes()).and_then(|()| file.sync_data()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("audit write: {e}"))?
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        Ok(text.lines().rev().filter_map(|l| serde_json::from_str(l).ok()).take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_kept_and_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let audit = FileAudit::new(dir.path().join("audit.jsonl"));
        assert!(audit.recent(10).await.unwrap().is_empty());
        for action in ["redrive", "purge"] {
            let entry = AuditEntry {
                at: "2026-12-07T10:00:00Z".into(),
                operator: "alice".into(),
                action: action.into(),
                tenant: "default".into(),
                detail: "evt_1".into(),
            };
            audit.record(&entry).await.unwrap();
        }
        let recent = audit.recent(10).await.unwrap();
        assert_eq!(recent.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["purge", "redrive"]);
        assert_eq!(audit.recent(1).await.unwrap().len(), 1);
    }
}
