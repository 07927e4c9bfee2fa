//! What happens to a lead after capture: status updates (`status-update`) and dealer activities
//! (`activity`), as the Aimbase guide (the Aimbase guide) describes them. This module holds the normalised events,
//! their parsers (our plain JSON and Aimbase's `ProspectActivity` shape) and their validation errors.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod activity;
mod changes;
mod deliver;
mod fields;
mod status;
#[cfg(test)]
mod tests;

pub use crate::lifecycle::{ActivityKind, LeadStatus};
pub use activity::{parse_activity, Activity, Direction, MAX_BODY_CHARS};
pub use changes::{activity_changes, engagement, status_changes, Change};
pub use deliver::{find_engagement, UpdateDelivery, UpdateOutcome, UpdateResult};
pub use status::{parse_status_update, StatusUpdate};

/// How an update names its contact. Resolution order: HubSpot contact id, then email, then the source
/// lead ids (`lead-captured` links each delivered lead id to its contact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lead_ids: Vec<String>,
}

impl ContactRef {
    pub fn is_empty(&self) -> bool {
        self.contact_id.is_none() && self.email.is_none() && self.lead_ids.is_empty()
    }
}

/// Why an update body was refused. Each maps to a 4xx with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("the request body is empty")]
    EmptyBody,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is not valid UTF-8: {0}")]
    InvalidEncoding(String),
    #[error("the key `{0}` is given twice")]
    DuplicateKey(String),
    #[error("`{0}` contains a NUL character (U+0000)")]
    NulCharacter(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("`{field}` must be {expected}")]
    InvalidType { field: String, expected: &'static str },
    #[error("`{field}`: {message}")]
    InvalidValue { field: String, message: String },
    #[error("`{0}` is required")]
    MissingField(String),
    #[error("the update names no contact: send contact_id, email or lead_id")]
    MissingContact,
    #[error("the update carries nothing to apply: send status, lead_created_date, dealer or rollick_score")]
    EmptyUpdate,
    #[error("`{entry_type}` entries belong on {endpoint}")]
    WrongEndpoint { entry_type: String, endpoint: &'static str },
}

impl UpdateError {
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::EmptyBody => "empty_body",
            UpdateError::MalformedJson(_) => "malformed_json",
            UpdateError::InvalidEncoding(_) => "invalid_encoding",
            UpdateError::DuplicateKey(_) => "duplicate_key",
            UpdateError::NulCharacter(_) => "nul_character",
            UpdateError::NotAnObject => "invalid_body",
            UpdateError::UnknownField(_) => "unknown_field",
            UpdateError::InvalidType { .. } => "invalid_type",
            UpdateError::InvalidValue { .. } => "invalid_value",
            UpdateError::MissingField(_) => "missing_field",
            UpdateError::MissingContact => "missing_contact_reference",
            UpdateError::EmptyUpdate => "empty_update",
            UpdateError::WrongEndpoint { .. } => "wrong_endpoint",
        }
    }

    /// The field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            UpdateError::UnknownField(f)
            | UpdateError::MissingField(f)
            | UpdateError::DuplicateKey(f)
            | UpdateError::NulCharacter(f) => Some(f),
            UpdateError::InvalidType { field, .. } | UpdateError::InvalidValue { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Syntax problems are 400; well-formed bodies that make no sense are 422.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self,
            UpdateError::EmptyBody
                | UpdateError::MalformedJson(_)
                | UpdateError::InvalidEncoding(_)
                | UpdateError::DuplicateKey(_)
                | UpdateError::NotAnObject
                | UpdateError::UnknownField(_)
        )
    }
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, UpdateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(UpdateError::EmptyBody);
    }
    use crate::json::{parse_strict, JsonError};
    let value = parse_strict(body).map_err(|e| match e {
        JsonError::InvalidEncoding(m) => UpdateError::InvalidEncoding(m),
        JsonError::Syntax(m) => UpdateError::MalformedJson(m),
        JsonError::DuplicateKey(path) => UpdateError::DuplicateKey(path),
        JsonError::NulCharacter(path) => UpdateError::NulCharacter(path),
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(UpdateError::NotAnObject),
    }
}

/// Truncated to whole milliseconds: what every store keeps, so comparisons agree after a round trip.
pub fn to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap_or(t)
}
