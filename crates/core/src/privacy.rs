//! Erasing a person from hubrelay's own records (GDPR art. 17): from an email (an operator's request) or a HubSpot
//! contact id (HubSpot's `contact.privacyDeletion` after a GDPR delete in the portal). The store behind
//! [`PersonalData`] deletes every record naming the person — queued and dead-lettered messages, event records,
//! idempotency answers, contact versions, lead links, the update ledger, merges — and keeps a tombstone per erased
//! event so a pass in flight cannot write it back. The [`ErasureReceipt`] names no one: counts, when, who asked.
//! Optionally HubSpot's own GDPR delete of the contact follows.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hubspot::HubSpot;
use crate::store::StoreError;

/// Who is erased: an email, a HubSpot contact id, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The email as given (the store matches it normalised, and by [`crate::store::email_hash`]).
    pub email: Option<String>,
    pub contact_id: Option<String>,
}

impl Subject {
    pub fn email(email: &str) -> Subject {
        Subject { email: Some(email.trim().to_string()), contact_id: None }
    }

    pub fn contact(id: &str) -> Subject {
        Subject { email: None, contact_id: Some(id.trim().to_string()) }
    }
}

/// What asked for an erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureSource {
    /// `POST /v1/privacy/erasure` (an operator's token).
    Api,
    /// `hubrelay privacy erase`.
    Cli,
    /// The console's privacy page (an operator signed in).
    Console,
    /// HubSpot's `contact.privacyDeletion` app webhook.
    #[serde(rename = "hubspot_privacy_deletion")]
    HubSpotPrivacyDeletion,
}

/// How many records of each kind an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureCounts {
    pub queued_messages: u64,
    pub dead_letters: u64,
    pub event_records: u64,
    pub idempotency_records: u64,
    pub contact_versions: u64,
    pub lead_links: u64,
    pub ledger_entries: u64,
    /// Message keys destroyed (AWS): the person's messages on SQS, wherever they are, can no longer be read.
    #[serde(default)]
    pub message_keys: u64,
}

/// What HubSpot's GDPR delete answered, when one was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum HubSpotErasure {
    /// Not asked for.
    NotRequested,
    /// HubSpot deleted the contact (204).
    Deleted,
    /// HubSpot has no such contact (404): nothing to delete there.
    NotFound,
    /// The call failed; hubrelay's own records are erased regardless. Ask again to retry it.
    Failed { code: String },
}

/// The record of one erasure: no email, no hash, no contact id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    pub receipt_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: ErasureSource,
    /// The operator who asked (console token name), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub counts: ErasureCounts,
    pub hubspot: HubSpotErasure,
}

/// A tenant's store of personal data.
#[async_trait]
pub trait PersonalData: Send + Sync {
    /// Deletes every record of `subject` and stores `receipt` (its counts filled in) in the same transaction; the
    /// erased events' ids stay as tombstones. Returns the counts.
    async fn erase(&self, subject: &Subject, receipt: &ErasureReceipt) -> Result<ErasureCounts, StoreError>;
    /// Replaces a receipt (once HubSpot's answer is known).
    async fn update_receipt(&self, receipt: &ErasureReceipt) -> Result<(), StoreError>;
    /// The receipts, newest first.
    async fn receipts(&self, limit: usize) -> Result<Vec<ErasureReceipt>, StoreError>;
    /// Clears what event records settled before `cutoff` hold of a person (masked email, email hash): the
    /// retention bound. Returns how many records it changed.
    async fn scrub_events_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError>;
    /// Whether `event_id` was erased (a pass in flight must not write it back).
    async fn is_erased(&self, event_id: &str) -> Result<bool, StoreError>;
}

/// Why an erasure was not done.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One tenant's erasures: its store, and its portal for HubSpot's GDPR delete.
pub struct Eraser {
    store: Arc<dyn PersonalData>,
    hubspot: Option<Arc<dyn HubSpot>>,
}

impl Eraser {
    pub fn new(store: Arc<dyn PersonalData>, hubspot: Option<Arc<dyn HubSpot>>) -> Eraser {
        Eraser { store, hubspot }
    }

    pub fn store(&self) -> &Arc<dyn PersonalData> {
        &self.store
    }

    /// Erase `subject` from the store, then (with `hubspot_gdpr_delete` and an email) ask HubSpot to GDPR-delete
    /// the contact. The local erasure never waits on HubSpot: its receipt is stored first.
    pub async fn erase(
        &self,
        subject: &Subject,
        source: ErasureSource,
        operator: Option<&str>,
        hubspot_gdpr_delete: bool,
    ) -> Result<ErasureReceipt, ErasureError> {
        if subject.email.as_deref().is_none_or(str::is_empty) && subject.contact_id.as_deref().is_none_or(str::is_empty)
        {
            return Err(ErasureError::Invalid("name the person: `email` or `contact_id`".into()));
        }
        if let Some(email) = subject.email.as_deref() {
            crate::email::normalize_email(email)
                .map_err(|e| ErasureError::Invalid(format!("`email` is not an email address: {e}")))?;
        }
        if hubspot_gdpr_delete && self.hubspot.is_none() {
            return Err(ErasureError::Invalid("HubSpot's GDPR delete is not available here".into()));
        }
        let mut receipt = ErasureReceipt {
            receipt_id: format!("era_{}", uuid::Uuid::now_v7().simple()),
            at: OffsetDateTime::now_utc(),
            source,
            operator: operator.map(String::from),
            counts: ErasureCounts::default(),
            hubspot: HubSpotErasure::NotRequested,
        };
        receipt.counts = self.store.erase(subject, &receipt).await?;
        tracing::info!(receipt_id = %receipt.receipt_id, ?source, "personal data erased");
        if hubspot_gdpr_delete {
            let id = subject.email.as_deref().map(|e| (e, true)).or(subject.contact_id.as_deref().map(|c| (c, false)));
            if let (Some(hubspot), Some((id, by_email))) = (&self.hubspot, id) {
                receipt.hubspot = match hubspot.gdpr_delete_contact(id, by_email).await {
                    Ok(true) => HubSpotErasure::Deleted,
                    Ok(false) => HubSpotErasure::NotFound,
                    Err(e) => {
                        tracing::warn!(receipt_id = %receipt.receipt_id, code = %e.code, "HubSpot GDPR delete failed");
                        HubSpotErasure::Failed { code: e.code }
                    }
                };
                self.store.update_receipt(&receipt).await?;
            }
        }
        Ok(receipt)
    }
}

/// `HUBRELAY_PERSONAL_DATA_RETENTION`'s default: as long as AWS keeps event records (their TTL).
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 24 * 3600);
