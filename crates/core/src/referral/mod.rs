//! Referral programs ⇄ HubSpot: pure parsers of what HubSpot, Extole and impact.com Advocate send us, and the
//! mapping of HubSpot contacts and deals to Extole events and impact.com conversions (seeds 001 and 004).
//!
//! - [`parse_hubspot`]: workflow "Send a webhook" bodies and app webhook batches → [`ReferralTrigger`]s;
//! - [`parse_extole`]: Extole share-link webhooks → [`ShareLink`] (a contact upsert);
//! - [`parse_advocate`]: SaaSquatch envelopes → [`AdvocateUpdate`] (contact properties);
//! - [`extole_signup`], [`extole_converted`], [`impact_conversion`]: what to send the partners.
//!
//! [`actions`] splits an accepted webhook into one stored action per target, [`deliver::ReferralDelivery`] sends
//! one (the only I/O here). The parsers do no I/O: triggers that lack data (app webhooks carry ids only) say so with `needs_lookup`, and
//! the caller reads the contact or deal from HubSpot before mapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub mod actions;
pub mod deliver;
mod hubspot;
mod inbound;
mod outbound;
pub mod participants;
pub mod properties;

#[cfg(test)]
mod tests;

pub use hubspot::{parse_hubspot, workflow_contact};
pub use inbound::{
    parse_advocate, parse_extole, AdvocateEvent, AdvocateUpdate, ExtoleInbound, ShareLink, ADVOCATE_ACCOUNT_ID,
    ADVOCATE_MESSAGE_LINKS, ADVOCATE_REFERRAL_CODE, ADVOCATE_REFERRAL_COOKIE, ADVOCATE_REFERRAL_STATUS,
    ADVOCATE_REFERRED_BY_CODE, ADVOCATE_SHARE_LINK, ADVOCATE_USER_ID,
};
pub use outbound::{extole_converted, extole_signup, impact_conversion, iso_datetime};

/// Deal properties the mappings read; what to ask HubSpot for when a trigger `needs_lookup`.
pub const DEAL_PROPERTIES: [&str; 9] = [
    "hs_object_id",
    "dealname",
    "dealstage",
    "amount",
    "deal_currency_code",
    "closedate",
    "hs_deal_stage_probability",
    "lastmodifieddate",
    "pipeline",
];

/// What to send where. Event names are per-program configuration at Extole; stages are HubSpot stage ids
/// (internal values, e.g. `closedwon`), not labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReferralConfig {
    /// Extole event for a contact carrying an advocate code (Extole's guide: `signed_up`).
    pub signup_event: String,
    /// Extole event for a deal reaching one of `stages` (Extole's guide: `converted`).
    pub converted_event: String,
    /// Deal stages that count as a conversion.
    pub stages: Vec<String>,
    /// The HubSpot contact property holding the referrer's code.
    pub advocate_code_property: String,
    /// The deal property sent to Extole as `product`.
    pub product_property: String,
    pub extole_enabled: bool,
    pub impact_enabled: bool,
    /// impact.com program (campaign) id; impact conversions cannot be built without it.
    pub impact_campaign_id: Option<String>,
    /// `EventTypeCode` template; `{stage}` is replaced by the deal stage (the impact.com Advocate guide: `deal_[deal stage]`).
    pub impact_event_type_template: String,
    /// `CurrencyCode` when the deal has no `deal_currency_code`.
    pub currency_code: String,
    /// HubSpot contacts are synced to impact.com Advocate participants (`IMPACT_ADVOCATE_*` configured).
    pub participant_sync: bool,
    /// The guide's switchable rule: a created (or unmapped, updated) contact creates a participant.
    pub create_participants: bool,
}

impl Default for ReferralConfig {
    fn default() -> Self {
        ReferralConfig {
            signup_event: "signed_up".into(),
            converted_event: "converted".into(),
            stages: vec!["closedwon".into()],
            advocate_code_property: "advocate_code".into(),
            product_property: "dealname".into(),
            extole_enabled: true,
            impact_enabled: true,
            impact_campaign_id: None,
            impact_event_type_template: "deal_{stage}".into(),
            currency_code: "USD".into(),
            participant_sync: false,
            create_participants: true,
        }
    }
}

impl ReferralConfig {
    pub fn is_conversion_stage(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s == stage)
    }

    pub fn event_type_code(&self, stage: &str) -> String {
        self.impact_event_type_template.replace("{stage}", stage)
    }
}

/// What a HubSpot webhook asks of the referral programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReferralTrigger {
    ContactSignup(ContactSignup),
    DealStage(DealStage),
    /// HubSpot merged contacts (`contact.merge`): the merged-away ids now live on in `survivor`.
    ContactMerge {
        survivor: String,
        merged: Vec<String>,
    },
    /// HubSpot GDPR-deleted a contact (`contact.privacyDeletion`): hubrelay erases what it holds of the person.
    PrivacyDeletion {
        contact_id: String,
    },
    /// Nothing to send (another property changed, a stage that is not configured, ...).
    Ignored {
        reason: String,
    },
}

/// A contact that (may) carry an advocate code → Extole `signed_up`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactSignup {
    pub contact_id: Option<String>,
    pub email: Option<String>,
    pub advocate_code: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
}

impl ContactSignup {
    /// True when the contact must be read from HubSpot (by `contact_id`) before mapping.
    pub fn needs_lookup(&self) -> bool {
        self.email.is_none() || self.advocate_code.is_none()
    }
}

/// A deal that reached a configured stage → Extole `converted` and/or an impact.com conversion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealStage {
    pub deal_id: String,
    pub stage: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    /// The deal's properties as received (all of them from a workflow, only `dealstage` from an app webhook).
    pub properties: BTreeMap<String, String>,
    /// The associated contact's email, when the webhook carried it.
    pub contact_email: Option<String>,
    pub contact_id: Option<String>,
    /// True when `properties` is only what an app webhook carries: read the deal before mapping.
    pub partial: bool,
}

impl DealStage {
    /// True when the deal (with [`DEAL_PROPERTIES`]) or its associated contact must be read from HubSpot first.
    pub fn needs_lookup(&self) -> bool {
        self.partial || self.contact_email.is_none()
    }
}

/// A webhook we cannot use. `code` is stable; `field` names the offending input when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ReferralError {
    /// `invalid_json`, `invalid_encoding`, `duplicate_key`, `nul_character`, `invalid_payload`, `missing_field`,
    /// `invalid_field`, `not_configured`.
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ReferralError {
    pub(crate) fn payload(message: impl Into<String>) -> Self {
        ReferralError { code: "invalid_payload", message: message.into(), field: None }
    }

    pub(crate) fn missing(field: &str, message: impl Into<String>) -> Self {
        ReferralError { code: "missing_field", message: message.into(), field: Some(field.to_owned()) }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        ReferralError { code: "invalid_field", message: message.into(), field: Some(field.to_owned()) }
    }
}

/// The email as [`crate::email::normalize_email`] makes it, or `invalid_field` naming `field`.
pub(crate) fn normalise_email(field: &str, raw: &str) -> Result<String, ReferralError> {
    crate::email::normalize_email(raw)
        .map_err(|e| ReferralError::invalid(field, format!("`{}`: {e}", crate::pii::mask_email(raw.trim()))))
}

/// The body through the strict reader ([`crate::json::parse_strict`]): `invalid_json`, `invalid_encoding`,
/// `duplicate_key` or `nul_character` (the last two naming the key path).
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ReferralError> {
    use crate::json::JsonError;
    crate::json::parse_strict(body).map_err(|e| {
        let (code, field) = match &e {
            JsonError::InvalidEncoding(_) => ("invalid_encoding", None),
            JsonError::Syntax(_) => ("invalid_json", None),
            JsonError::DuplicateKey(path) => ("duplicate_key", Some(path.clone())),
            JsonError::NulCharacter(path) => ("nul_character", Some(path.clone())),
        };
        let message = match e {
            JsonError::Syntax(m) => format!("body is not JSON: {m}"),
            other => other.to_string(),
        };
        ReferralError { code, message, field }
    })
}
