//! `activity` events: a dealer's touch points with the prospect (the Aimbase guide: Email, Phone Call,
//! Appointment, Quote, SMS, Note) and free-text comments.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::fields::Fields;
use super::status::{contact_ref, AimbaseEntry};
use super::{object, ContactRef, UpdateError};
use crate::lifecycle::{normalise, ActivityKind, LeadStatus};

/// HubSpot's longest note body; the other engagement bodies are held to the same.
pub const MAX_BODY_CHARS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the prospect to the dealer.
    Inbound,
    /// From the dealer to the prospect.
    Outbound,
}

/// One activity, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    #[serde(flatten)]
    pub contact: ContactRef,
    /// The sender's id of the activity: the idempotency key when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    pub kind: ActivityKind,
    /// When it happened (absent: when we received it).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `COMPLETED`, `NO_ANSWER`, `SCHEDULED`, ... (free text; copied to the engagement's outcome/status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The dealer user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// Parses our plain JSON shape or Aimbase's `{"ProspectActivity": {...}}` shape.
pub fn parse_activity(body: &[u8]) -> Result<Activity, UpdateError> {
    let mut f = Fields::new(object(body)?, "");
    let activity = match f.object(&["ProspectActivity", "prospectActivity"])? {
        Some(mut entry) => {
            let e = AimbaseEntry::read(&mut entry)?;
            entry.finish()?;
            let kind = match ActivityKind::parse(&e.entry_type) {
                Some(kind) => kind,
                None => return Err(not_an_activity(e.entry_type, "ProspectActivity.EntryType")),
            };
            let mut a = Activity {
                contact: e.contact,
                activity_id: e.entry_id,
                kind,
                occurred_at: e.date,
                subject: None,
                body: e.detail,
                direction: None,
                duration_ms: None,
                outcome: None,
                author: e.user,
            };
            if let Some(id) = f.text(&["HubSpotContactId", "ProspectExternalId"])? {
                a.contact.contact_id.get_or_insert(id);
            }
            a
        }
        None => parse_plain(&mut f)?,
    };
    f.finish()?;
    if activity.contact.is_empty() {
        return Err(UpdateError::MissingContact);
    }
    if activity.body.as_ref().is_some_and(|b| b.chars().count() > MAX_BODY_CHARS) {
        return Err(UpdateError::InvalidValue {
            field: "body".into(),
            message: format!("longer than HubSpot's {MAX_BODY_CHARS} characters"),
        });
    }
    Ok(activity)
}

fn parse_plain(f: &mut Fields) -> Result<Activity, UpdateError> {
    let contact = contact_ref(f)?;
    let kind_text =
        f.text(&["type", "kind", "activity_type", "activityType"])?.ok_or(UpdateError::MissingField("type".into()))?;
    let kind = ActivityKind::parse(&kind_text).ok_or_else(|| not_an_activity(kind_text, "type"))?;
    let direction = match f.text(&["direction"])? {
        None => None,
        Some(d) => Some(match normalise(&d).as_str() {
            "inbound" | "incoming" | "in" => Direction::Inbound,
            "outbound" | "outgoing" | "out" => Direction::Outbound,
            _ => {
                return Err(UpdateError::InvalidValue {
                    field: "direction".into(),
                    message: format!("`{d}` is not inbound or outbound"),
                })
            }
        }),
    };
    let seconds = f.number(&["duration_seconds", "durationSeconds", "duration"])?;
    let millis = f.number(&["duration_ms", "durationMs"])?;
    let duration_ms = match (seconds, millis) {
        (Some(_), Some(_)) => {
            return Err(UpdateError::InvalidValue {
                field: "duration_ms".into(),
                message: "given together with `duration_seconds`; send one".into(),
            })
        }
        (Some(s), None) => Some(duration(&s, 1000.0, "duration_seconds")?),
        (None, Some(ms)) => Some(duration(&ms, 1.0, "duration_ms")?),
        (None, None) => None,
    };
    Ok(Activity {
        contact,
        activity_id: f.text(&["activity_id", "activityId", "id"])?,
        kind,
        occurred_at: f.instant(&["occurred_at", "occurredAt", "timestamp", "time"])?,
        subject: f.text(&["subject", "title"])?,
        body: f.text(&["body", "text", "detail", "comment"])?,
        direction,
        duration_ms,
        outcome: f.text(&["outcome"])?,
        author: f.text(&["author", "dealership_user", "dealershipUser", "user"])?,
    })
}

fn duration(decimal: &str, scale: f64, field: &str) -> Result<u64, UpdateError> {
    match decimal.parse::<f64>() {
        Ok(x) if x >= 0.0 && x * scale < 1e15 => Ok((x * scale).round() as u64),
        _ => Err(UpdateError::InvalidValue { field: field.into(), message: "must be a non-negative number".into() }),
    }
}

fn not_an_activity(entry_type: String, field: &str) -> UpdateError {
    if LeadStatus::parse(&entry_type).is_some() || normalise(&entry_type).contains("status") {
        return UpdateError::WrongEndpoint { entry_type, endpoint: "/v1/leads/status" };
    }
    UpdateError::InvalidValue {
        field: field.into(),
        message: format!(
            "`{entry_type}` is not an activity type ({})",
            ActivityKind::ALL.iter().map(|k| k.label()).collect::<Vec<_>>().join(", ")
        ),
    }
}
