//! Write intents on the local retry queue (schema v6): the write id a queued message's contact is being sent
//! with, stored before the HubSpot call. The message's fate replaces or removes its row, and with it the intent; a
//! row still holding one after a crash is read back into [`RetryMessage::write_intent`] by `due`, and the worker
//! reconciles it before writing again (see `hubrelay_core::worker::intents`).
//!
//! [`RetryMessage::write_intent`]: hubrelay_core::domain::RetryMessage::write_intent

use async_trait::async_trait;
use rusqlite::params;

use crate::sqlite::{sql_err, SqliteStore};
use hubrelay_core::store::StoreError;
use hubrelay_core::worker::WriteIntents;

pub(super) const SCHEMA_V6: &str = "ALTER TABLE retry_queue ADD COLUMN write_intent TEXT;";

#[async_trait]
impl WriteIntents for SqliteStore {
    async fn record_intents(&self, intents: &[(String, String)]) -> Result<(), StoreError> {
        if intents.is_empty() {
            return Ok(());
        }
        let intents = intents.to_vec();
        self.write(move |conn| {
            let mut stmt =
                conn.prepare_cached("UPDATE retry_queue SET write_intent = ?2 WHERE event_id = ?1").map_err(sql_err)?;
            for (event_id, write_id) in &intents {
                stmt.execute(params![event_id, write_id]).map_err(sql_err)?;
            }
            Ok(())
        })
        .await
    }
}
