//! Storage behind small traits: idempotency records and the retry / dead-letter queues.
//! Adapters: [`sqlite`] (local `hubrelay serve`), [`dynamodb`] and [`sqs`] (AWS).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{DeadLetterReason, RetryMessage};

pub mod dynamodb;
pub mod sqlite;
pub mod sqs;

/// How long a finished idempotency record lives: senders re-deliver for up to 3 days and our own retries
/// run ~75.6 h, so 4 days covers both with margin.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

/// How long an IN_PROGRESS record blocks others before it counts as orphaned (a crashed or timed-out
/// invocation) and may be taken over. Longer than the Lambda timeout.
pub const IN_PROGRESS_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// The HTTP answer stored with a completed request, replayed verbatim to duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was free (or its old record had expired): the caller owns it now and must `complete` or `release`.
    Started,
    /// Someone finished this key with the same payload: replay this answer.
    Completed(StoredResponse),
    /// Someone is working on this key right now (same payload).
    InProgress,
    /// The key was used with a different payload (hash).
    Conflict,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claim `key` for a request whose payload hashes to `payload_hash`, atomically (conditional write).
    async fn begin(&self, key: &str, payload_hash: &str, now: OffsetDateTime) -> Result<Begin, StoreError>;
    /// Mark `key` COMPLETED with the answer to replay; the record lives [`IDEMPOTENCY_TTL`] from `now`.
    async fn complete(&self, key: &str, response: &StoredResponse, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Give `key` up (the request failed before anything was accepted) so a re-delivery can try again.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

/// The retry queue and its dead-letter queue.
#[async_trait]
pub trait RetryQueue: Send + Sync {
    /// Put `message` on the retry queue durably, to be delivered no earlier than `message.not_before`.
    async fn enqueue(&self, message: &RetryMessage) -> Result<(), StoreError>;
    /// Put `message` in the dead-letter queue with the reason, keeping its history.
    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError>;
}
