//! HubSpot as hubrelay sees it: the [`HubSpot`] trait, its error classification, the CRM types it moves.
//! The HTTP client is `hubrelay_clients::HubSpotClient`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AttemptOutcome, ContactUpsert, UpsertedContact};

pub mod engagements;
pub mod version;

pub use engagements::{Engagement, EngagementKind};
pub use version::{ApiVersion, AssociationRead, DEFAULT_API_VERSION};

/// HubSpot's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// A HubSpot contact property definition (`/crm/v3/properties/contacts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
    #[serde(default)]
    pub hidden: bool,
}

/// Why a HubSpot call failed, classified as HubSpot documents its errors (status, category, `policyName`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HubSpot {}: {message}", status.map(|s| s.to_string()).unwrap_or_else(|| "unreachable".into()))]
pub struct HubSpotError {
    /// HTTP status, `None` for network errors and timeouts.
    pub status: Option<u16>,
    /// Stable code: `hubspot_unreachable`, `hubspot_timeout`, `hubspot_unavailable`, `rate_limited`, `locked`,
    /// `property_doesnt_exist`, `invalid_option`, `invalid_date`, `validation_error`, `unauthorized`,
    /// `missing_scopes`, `object_not_found`, `conflict`, ...
    pub code: String,
    pub message: String,
    pub category: Option<String>,
    pub correlation_id: Option<String>,
    /// `policyName` of a 429 (`TEN_SECONDLY_ROLLING`, `SECONDLY`, `DAILY`).
    pub policy: Option<String>,
    /// `Retry-After` (seconds), when sent.
    pub retry_after_secs: Option<u64>,
    /// A `DAILY` 429: seconds until the portal's daily budget resets (the client works it out from the
    /// portal's time zone; `None`: UTC midnight is assumed).
    pub resets_in_secs: Option<u64>,
}

impl HubSpotError {
    /// An error without HubSpot's extras (category, correlation id, rate-limit policy).
    pub fn new(status: Option<u16>, code: impl Into<String>, message: impl Into<String>) -> Self {
        HubSpotError {
            status,
            code: code.into(),
            message: message.into(),
            category: None,
            correlation_id: None,
            policy: None,
            retry_after_secs: None,
            resets_in_secs: None,
        }
    }

    /// Retryable: network errors, timeouts, 423, 429 (not `DAILY`... which waits for the reset, still a retry),
    /// 477 and 5xx. Everything else needs a fix first.
    pub fn outcome(&self) -> AttemptOutcome {
        match self.status {
            None => AttemptOutcome::Retryable,
            Some(423 | 429 | 477) => AttemptOutcome::Retryable,
            Some(s) if s >= 500 => AttemptOutcome::Retryable,
            Some(_) => AttemptOutcome::Rejected,
        }
    }
}

/// A CRM object as read by [`HubSpot::read_object`]: its id, the asked-for properties that are set, and the
/// ids of associated objects by type (`contacts`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmObject {
    pub id: String,
    pub properties: BTreeMap<String, String>,
    pub associations: BTreeMap<String, Vec<String>>,
}

/// The contact property carrying the id of hubrelay's last worker write to the contact (see
/// `crate::worker::intents`): hubrelay's own bookkeeping, never sent anywhere else.
pub const WRITE_MARKER_PROPERTY: &str = "hubrelay_write_id";

/// An app-webhook event's type and object id: `contact.creation`, `contact.propertyChange`, … (the generic
/// `object.*` types of contacts, `objectTypeId` `0-1`, named as `contact.*`), and `objectId` as text. `None` when
/// the event names no type or no object.
pub fn app_event_target(event: &serde_json::Value) -> Option<(String, String)> {
    let kind = ["subscriptionType", "eventType"].iter().find_map(|k| event.get(*k).and_then(|v| v.as_str()))?;
    let kind = match event.get("objectTypeId").and_then(|v| v.as_str()) {
        Some("0-1") if kind.starts_with("object.") => kind.replacen("object.", "contact.", 1),
        _ => kind.to_string(),
    };
    let id = event.get("objectId")?;
    let id = id.as_u64().map(|n| n.to_string()).or_else(|| id.as_str().map(String::from))?;
    Some((kind, id))
}

/// One result per input of a batch upsert, in input order: HubSpot answers 207 with the inputs that
/// failed when each input carries an `objectWriteTraceId`, and stores the others.
pub type UpsertResults = Vec<Result<UpsertedContact, HubSpotError>>;

#[async_trait]
pub trait HubSpot: Send + Sync {
    /// Create-or-update contacts by email in one `batch/upsert` call (≤ 100 inputs, emails unique).
    /// `Err` when the whole call failed; otherwise one result per input, in input order.
    async fn upsert_contacts(&self, inputs: &[ContactUpsert]) -> Result<UpsertResults, HubSpotError>;
    /// One contact through [`HubSpot::upsert_contacts`].
    async fn upsert_contact(&self, input: &ContactUpsert) -> Result<UpsertedContact, HubSpotError> {
        let mut results = self.upsert_contacts(std::slice::from_ref(input)).await?;
        if results.len() != 1 {
            let message = format!("batch upsert of one input answered {} results", results.len());
            return Err(HubSpotError::new(Some(200), "unexpected_response", message));
        }
        results.remove(0)
    }
    /// All contact property definitions.
    async fn list_properties(&self) -> Result<Vec<PropertyDefinition>, HubSpotError>;
    /// Create one contact property.
    async fn create_property(&self, property: &PropertyDefinition) -> Result<(), HubSpotError>;
    /// `PATCH …/objects/…/contacts/{id}`: set (or, with `""`, clear) properties of one contact by id.
    async fn update_contact(&self, id: &str, properties: &BTreeMap<String, String>) -> Result<(), HubSpotError>;
    /// `POST …/objects/…/{notes|calls|...}` with the inline contact association; returns the new object's id.
    async fn create_engagement(&self, engagement: &Engagement) -> Result<String, HubSpotError>;
    /// `GET …/objects/…/contacts/{email}?idProperty=email`: the contact's id, `None` when there is none.
    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, HubSpotError>;
    /// `POST …/objects/…/contacts/batch/read` by email (≤ 100): the contacts found, each with `email` and the
    /// asked-for properties that are set. Emails without a contact are left out.
    async fn read_contacts_by_email(
        &self,
        emails: &[String],
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        let _ = (emails, properties);
        Err(HubSpotError::new(None, "unsupported", "this HubSpot client cannot read contacts by email in a batch"))
    }
    /// `POST …/objects/…/contacts/search` for contacts whose `property` equals `value` (at most 100), each with the
    /// asked-for properties that are set. HubSpot's search index lags writes by seconds: a contact written just
    /// now may be missing, so callers treat "none found" as "not yet" for a while, and never create on it.
    async fn search_contacts(
        &self,
        property: &str,
        value: &str,
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        let _ = (property, value, properties);
        Err(HubSpotError::new(None, "unsupported", "this HubSpot client cannot search contacts"))
    }
    /// `GET …/objects/…/contacts/{id}?archived=true`: a contact deleted in HubSpot, which keeps it archived (and
    /// restorable) for 90 days; `None` when there is no such archived contact.
    async fn read_archived_contact(&self, id: &str, properties: &[&str]) -> Result<Option<CrmObject>, HubSpotError> {
        let _ = (id, properties);
        Err(HubSpotError::new(None, "unsupported", "this HubSpot client cannot read archived contacts"))
    }
    /// `POST …/objects/…/deals` with `properties` and the inline association to `contact_id` (deal → contact,
    /// type 3); returns the new deal's id.
    async fn create_deal(
        &self,
        properties: &BTreeMap<String, String>,
        contact_id: &str,
    ) -> Result<String, HubSpotError> {
        let _ = (properties, contact_id);
        Err(HubSpotError::new(None, "unsupported", "this HubSpot client cannot create deals"))
    }
    /// `POST …/objects/…/contacts/gdpr-delete`: HubSpot permanently deletes the contact (by email when `by_email`,
    /// else by id) and blocks its email from being tracked. `Ok(false)` when HubSpot has no such contact.
    async fn gdpr_delete_contact(&self, id: &str, by_email: bool) -> Result<bool, HubSpotError> {
        let _ = (id, by_email);
        Err(HubSpotError::new(None, "unsupported", "this HubSpot client cannot GDPR-delete contacts"))
    }
    /// Every id of `to` objects associated with one `from` record (all pages; see [`AssociationRead`]).
    async fn associated_ids(&self, from: &str, id: &str, to: &str) -> Result<Vec<String>, HubSpotError>;
    /// The ids of a contact's engagements of one kind.
    async fn contact_engagements(&self, contact_id: &str, kind: EngagementKind) -> Result<Vec<String>, HubSpotError> {
        self.associated_ids("contacts", contact_id, kind.object_path()).await
    }
    /// Some properties of one engagement (`GET …/objects/…/{kind}/{id}?properties=...`).
    async fn engagement_properties(
        &self,
        kind: EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, String>, HubSpotError>;
    /// One object (`object`: `contacts`, `deals`) with some properties and its associated ids of each type in
    /// `associations` (every page); `None` when HubSpot has no such object.
    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError>;
}
