//! Storage behind small traits: idempotency records and the retry / dead-letter queues.
//! Adapters: [`sqlite`] (local `hubrelay serve`), [`dynamodb`] and [`sqs`] (AWS).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{DeadLetterReason, RetryMessage};

/// How long a finished idempotency record lives: senders re-deliver for up to 3 days and our own retries
/// run ~75.6 h, so 4 days covers both with margin.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

/// How long an IN_PROGRESS record blocks others before it counts as orphaned (a crashed or timed-out
/// invocation) and may be taken over. Longer than the Lambda timeout.
pub const IN_PROGRESS_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
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
    /// [`IdempotencyStore::complete`] for a request delivered on its first attempt, with what it leaves
    /// behind (its event record, the contact's version, the lead's link), all stored or none: the local
    /// store in one transaction, DynamoDB in one write.
    async fn complete_delivered(
        &self,
        key: &str,
        response: &StoredResponse,
        delivered: &Delivered,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Whether [`IdempotencyStore::complete_delivered`] also queues [`Delivered::follow_ups`] (in its transaction);
    /// otherwise the caller queues them after it.
    fn queues_follow_ups(&self) -> bool {
        false
    }
}

/// What a request delivered on its first attempt leaves behind besides its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub event: EventRecord,
    /// The contact's email and the lead's `received_at`, for [`ContactVersions`] (leads only).
    pub applied: Option<(String, OffsetDateTime)>,
    /// The sender's lead id and its contact, for [`LeadLinks`] (leads with an id).
    pub link: Option<(String, String)>,
    /// What the lead's mapping asks to follow it (a deal, a history note: [`crate::followups`]).
    pub follow_ups: Vec<crate::domain::RetryMessage>,
}

/// The retry queue and its dead-letter queue.
#[async_trait]
pub trait RetryQueue: Send + Sync {
    /// Put `message` on the retry queue durably, to be delivered no earlier than `message.not_before`.
    async fn enqueue(&self, message: &RetryMessage) -> Result<(), StoreError>;
    /// Put `message` in the dead-letter queue with the reason, keeping its history.
    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError>;
}

/// Where an accepted event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Delivered,
    /// Waiting on the retry queue for `next_attempt_at`.
    Retrying,
    DeadLettered,
    /// Not written: a newer lead for the same contact had already been applied.
    Superseded,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Delivered => "delivered",
            EventStatus::Retrying => "retrying",
            EventStatus::DeadLettered => "dead_lettered",
            EventStatus::Superseded => "superseded",
        }
    }
}

/// The fate of one accepted event, kept for `hubrelay events` and so a redrive never writes a delivered
/// event twice. Holds no personal data beyond the masked email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: String,
    pub function: crate::domain::FunctionName,
    pub status: EventStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    pub attempts: Vec<crate::domain::DeliveryAttempt>,
    pub contact_id: Option<String>,
    /// `j***@e***.com`
    pub email_masked: Option<String>,
    /// [`email_hash`] of the event's email: what a search by email matches, without the record holding the email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<String>,
    pub reason: Option<DeadLetterReason>,
}

/// Filter for [`EventLog::list_events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub function: Option<crate::domain::FunctionName>,
    /// Only events received at or after this time.
    pub received_after: Option<OffsetDateTime>,
    /// Only events received before this time.
    pub received_before: Option<OffsetDateTime>,
    /// Only the events of one email, given as its [`email_hash`].
    pub email_hash: Option<String>,
    pub limit: usize,
}

impl EventFilter {
    /// Whether `record` passes the filter's conditions (its limit aside): for stores that filter in memory.
    pub fn matches(&self, record: &EventRecord) -> bool {
        self.status.is_none_or(|s| s == record.status)
            && self.function.is_none_or(|f| f == record.function)
            && self.received_after.is_none_or(|after| record.received_at >= after)
            && self.received_before.is_none_or(|before| record.received_at < before)
            && self.email_hash.as_ref().is_none_or(|h| record.email_hash.as_ref() == Some(h))
    }
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Insert or replace the record of `record.event_id`.
    async fn put_event(&self, record: &EventRecord) -> Result<(), StoreError>;
    /// Insert or replace several records (the worker's whole pass); adapters may write them at once.
    async fn put_events(&self, records: &[EventRecord]) -> Result<(), StoreError> {
        for record in records {
            self.put_event(record).await?;
        }
        Ok(())
    }
    async fn get_event(&self, event_id: &str) -> Result<Option<EventRecord>, StoreError>;
    /// Newest first.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError>;
}

/// Which lead was applied last to a contact, so a retried older lead never overwrites a newer one.
/// Keyed by a hash of the lower-cased email (no personal data in the key).
#[async_trait]
pub trait ContactVersions: Send + Sync {
    /// `received_at` of the newest lead applied to `email`, if any.
    async fn last_applied(&self, email: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Record that a lead received at `received_at` was applied; keeps the maximum (conditional write).
    async fn record_applied(&self, email: &str, received_at: OffsetDateTime) -> Result<(), StoreError>;
    /// [`ContactVersions::record_applied`] for a batch's contacts; adapters may write them at once.
    async fn record_applied_all(&self, applied: &[(String, OffsetDateTime)]) -> Result<(), StoreError> {
        for (email, received_at) in applied {
            self.record_applied(email, *received_at).await?;
        }
        Ok(())
    }
}

/// The idempotency key of an event its sender identifies (`lead-captured:lead:<lead id>`): the sender's id wins
/// over any `Idempotency-Key` header, so a store can find a lead's key from its lead id.
pub fn sender_key(function: crate::domain::FunctionName, kind: &str, id: &str) -> String {
    format!("{}:{kind}:{id}", function.as_str())
}

/// The key of an event known by nothing but its content: `<function>:body:` + hex SHA-256 of its canonical form.
pub fn body_key(function: crate::domain::FunctionName, canonical: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{}:body:{}", function.as_str(), hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// The key under which [`ContactVersions`] stores an email: `contact:` + hex SHA-256 of the lower-cased email.
pub fn contact_key(email: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("contact:{}", hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes())))
}

/// The hex SHA-256 of an email as senders mean it ([`crate::email::normalize_email`]: NFC, lower-case, ASCII
/// domain; an address it refuses, trimmed and lower-cased): how records name a person's email without holding
/// it, and what a search by email matches.
pub fn email_hash(email: &str) -> String {
    use sha2::{Digest, Sha256};
    let normal = crate::email::normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    hex::encode(Sha256::digest(normal.as_bytes()))
}

/// The [`email_hash`] an operator's search for `email` matches; an input that is not an email is refused
/// (hashing it would only find nothing).
pub fn email_search_hash(email: &str) -> Result<String, crate::email::EmailError> {
    crate::email::normalize_email(email).map(|normal| email_hash(&normal))
}

/// The email an event names (`email`, or a referral deal's `contact_email`), if any.
pub fn event_email(event: &serde_json::Value) -> Option<&str> {
    ["email", "contact_email"]
        .iter()
        .find_map(|k| event.get(*k).and_then(|e| e.as_str()).filter(|e| !e.trim().is_empty()))
}

/// The version of one applied value group (see [`UpdateLedger`]): when the change happened at the sender,
/// and a fingerprint of the values (equal time and fingerprint = the same update again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedVersion {
    pub at: OffsetDateTime,
    pub fingerprint: String,
}

impl AppliedVersion {
    /// `<epoch ms>|<fingerprint>`, how adapters store it.
    pub fn encode(&self) -> String {
        format!("{}|{}", self.at.unix_timestamp_nanos().div_euclid(1_000_000), self.fingerprint)
    }

    pub fn decode(s: &str) -> Result<AppliedVersion, StoreError> {
        let (ms, fingerprint) =
            s.split_once('|').ok_or_else(|| StoreError::Corrupt(format!("applied version `{s}` without `|`")))?;
        let ms: i128 = ms.parse().map_err(|_| StoreError::Corrupt(format!("applied version `{s}`: bad time")))?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
            .map_err(|_| StoreError::Corrupt(format!("applied version `{s}`: time out of range")))?;
        Ok(AppliedVersion { at, fingerprint: fingerprint.to_string() })
    }
}

/// What [`UpdateLedger::lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the contact until it commits or releases (or the lease expires); here are the
    /// versions applied so far, by value group (`status`, `dealer`, ...).
    Granted(std::collections::BTreeMap<String, AppliedVersion>),
    /// Someone else is writing this contact right now.
    Busy,
}

/// Per-contact order for status updates and activities: a short lease serialises writers to one contact
/// (across Lambdas), and the versions of applied values make older updates no-ops.
#[async_trait]
pub trait UpdateLedger: Send + Sync {
    /// Take `contact_id` for `owner` until `now + ttl` (when free, expired or already `owner`'s).
    async fn lease(
        &self,
        contact_id: &str,
        owner: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;
    /// Record `applied` (value group → version) and release the lease.
    async fn commit(
        &self,
        contact_id: &str,
        owner: &str,
        applied: &std::collections::BTreeMap<String, AppliedVersion>,
    ) -> Result<(), StoreError>;
    /// Release the lease without recording anything.
    async fn release(&self, contact_id: &str, owner: &str) -> Result<(), StoreError>;
}

/// Source lead id → HubSpot contact id, recorded when `lead-captured` delivers a lead, so status updates
/// and activities that only know the lead id find their contact; and merged-away contact id → survivor, so a
/// link (or a sender's contact id) made stale by a merge in HubSpot leads to the contact that absorbed it.
#[async_trait]
pub trait LeadLinks: Send + Sync {
    async fn link(&self, lead_id: &str, contact_id: &str, now: OffsetDateTime) -> Result<(), StoreError>;
    async fn contact_for(&self, lead_id: &str) -> Result<Option<String>, StoreError>;
    /// `merged` was merged into `survivor` in HubSpot.
    async fn record_merge(&self, merged: &str, survivor: &str, now: OffsetDateTime) -> Result<(), StoreError>;
    /// The contact a merged-away id became, when a merge was recorded (one step; callers follow chains).
    async fn merged_into(&self, contact_id: &str) -> Result<Option<String>, StoreError>;
}

/// Lead links and applied versions must outlive a lead's life at the dealer (months), not the retry window.
pub const UPDATE_STATE_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_finds_an_email_however_it_was_spelled() {
        let stored = email_hash("Ana@Bücher.de");
        for spelling in [" ana@bücher.de", "ANA@XN--BCHER-KVA.DE", "ana@bu\u{308}cher.de"] {
            assert_eq!(email_search_hash(spelling).unwrap(), stored, "{spelling}");
        }
        assert_ne!(email_search_hash("ana@bucher.de").unwrap(), stored);
        assert!(email_search_hash("not an email").is_err());
        assert!(email_search_hash("ana\u{200b}@bücher.de").is_err(), "an invisible character is refused");
    }

    #[test]
    fn an_event_names_its_email_or_a_deals_contact_email() {
        assert_eq!(event_email(&serde_json::json!({"email": "a@b.co"})), Some("a@b.co"));
        assert_eq!(event_email(&serde_json::json!({"contact_email": "c@d.co"})), Some("c@d.co"));
        assert_eq!(event_email(&serde_json::json!({"email": " ", "contact_id": "1"})), None);
    }
}
