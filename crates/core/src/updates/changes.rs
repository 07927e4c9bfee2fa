//! What an update writes to HubSpot: contact property changes (grouped by the value they version) and
//! engagement objects.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Activity, ActivityKind, Direction, StatusUpdate};
use crate::dates::{hubspot_date, hubspot_datetime, parse_lead_date};
use crate::hubspot::{Engagement, EngagementKind};
use crate::mapping::{ActivityMapping, PropertyType, StatusMapping};

/// Contact properties that change together and are versioned together: an older update never overwrites
/// a newer one's values of the same `field` (status, dealer, ...), yet still applies the fields it is
/// newest for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `status`, `created_date`, `dealer`, `score`, `last_activity`, `comment`.
    pub field: &'static str,
    pub properties: BTreeMap<String, String>,
}

impl Change {
    /// Identifies the values, so an equal duplicate is recognised as one.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_string(&self.properties).unwrap_or_default();
        hex::encode(&Sha256::digest(json.as_bytes())[..12])
    }
}

fn change(field: &'static str, pairs: Vec<(&Option<String>, Option<String>)>) -> Option<Change> {
    let properties: BTreeMap<String, String> =
        pairs.into_iter().filter_map(|(property, value)| Some((property.clone()?, value?))).collect();
    (!properties.is_empty()).then_some(Change { field, properties })
}

/// Epoch milliseconds, what HubSpot datetime properties take.
fn millis(t: OffsetDateTime) -> String {
    t.unix_timestamp_nanos().div_euclid(1_000_000).to_string()
}

/// The contact property changes of a status update (`at`: when it changed, for `changed_at_property`).
pub fn status_changes(m: &StatusMapping, u: &StatusUpdate, at: OffsetDateTime) -> Vec<Change> {
    let mut out = Vec::new();
    if let Some(status) = u.status {
        let hs = (&Some("hs_lead_status".to_string()), m.hs_lead_status.get(&status).cloned());
        let stage = (&Some("lifecyclestage".to_string()), m.lifecyclestage.get(&status).cloned());
        let changed = (&m.changed_at_property, Some(millis(at)));
        out.extend(change("status", vec![(&m.status_property, Some(status.as_str().into())), hs, stage, changed]));
    }
    if let Some(raw) = &u.lead_created_date {
        // Checked when the update was accepted; a value that no longer parses is skipped, not guessed.
        let value = parse_lead_date(raw).ok().map(|d| match m.created_date_type {
            PropertyType::Datetime => hubspot_datetime(&d),
            _ => hubspot_date(&d),
        });
        out.extend(change("created_date", vec![(&m.created_date_property, value)]));
    }
    if u.dealer_name.is_some() || u.dealer_id.is_some() {
        out.extend(change(
            "dealer",
            vec![(&m.dealer_property, u.dealer_name.clone()), (&m.dealer_id_property, u.dealer_id.clone())],
        ));
    }
    out.extend(change("score", vec![(&m.score_property, u.rollick_score.clone())]));
    out
}

/// The contact property changes of an activity ("last activity" and the latest comment), if configured.
pub fn activity_changes(m: &ActivityMapping, a: &Activity, at: OffsetDateTime) -> Vec<Change> {
    let mut out = Vec::new();
    out.extend(change(
        "last_activity",
        vec![
            (&m.last_activity_date_property, Some(millis(at))),
            (&m.last_activity_type_property, Some(a.kind.label().to_string())),
        ],
    ));
    if a.kind == ActivityKind::Comment {
        out.extend(change("comment", vec![(&m.comment_property, a.body.clone())]));
    }
    out
}

/// The engagement an activity becomes, associated with `contact_id`; `at` is its time.
pub fn engagement(m: &ActivityMapping, a: &Activity, contact_id: &str, at: OffsetDateTime) -> Engagement {
    let kind = m.object_for(a.kind);
    let ts = at.format(&Rfc3339).unwrap_or_else(|_| millis(at));
    let mut p: BTreeMap<String, String> = BTreeMap::new();
    p.insert("hs_timestamp".into(), ts.clone());
    let mut set = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            p.insert(name.to_string(), v);
        }
    };
    let title = a.subject.clone().unwrap_or_else(|| a.kind.label().to_string());
    let outbound = a.direction != Some(Direction::Inbound);
    let upper = a.outcome.as_deref().map(|o| o.trim().to_ascii_uppercase().replace([' ', '-'], "_"));
    match kind {
        EngagementKind::Call => {
            set("hs_call_title", Some(title));
            set("hs_call_body", with_author(a.body.clone(), a));
            set("hs_call_direction", Some(if outbound { "OUTBOUND" } else { "INBOUND" }.into()));
            let status = upper.filter(|s| CALL_STATUS.contains(&s.as_str())).unwrap_or("COMPLETED".into());
            set("hs_call_status", Some(status));
            set("hs_call_duration", a.duration_ms.map(|d| d.to_string()));
        }
        EngagementKind::Email => {
            set("hs_email_direction", Some(if outbound { "EMAIL" } else { "INCOMING_EMAIL" }.into()));
            set("hs_email_subject", Some(title));
            set("hs_email_text", with_author(a.body.clone(), a));
            set("hs_email_status", Some("SENT".into()));
        }
        EngagementKind::Meeting => {
            set("hs_meeting_title", Some(title));
            set("hs_meeting_body", with_author(a.body.clone(), a));
            set("hs_meeting_start_time", Some(ts));
            let end = at + time::Duration::milliseconds(a.duration_ms.unwrap_or(3_600_000) as i64);
            set("hs_meeting_end_time", end.format(&Rfc3339).ok());
            let outcome = upper.filter(|s| MEETING_OUTCOME.contains(&s.as_str())).unwrap_or("SCHEDULED".into());
            set("hs_meeting_outcome", Some(outcome));
        }
        EngagementKind::Task => {
            set("hs_task_subject", Some(title));
            set("hs_task_body", with_author(a.body.clone(), a));
            set("hs_task_status", Some("NOT_STARTED".into()));
            set("hs_task_type", Some("TODO".into()));
        }
        EngagementKind::Communication => {
            set("hs_communication_channel_type", Some("SMS".into()));
            set("hs_communication_logged_from", Some("CRM".into()));
            set("hs_communication_body", with_author(a.body.clone(), a));
        }
        EngagementKind::Note => {
            let head = match &a.subject {
                Some(s) => format!("{}: {s}", a.kind.label()),
                None => a.kind.label().to_string(),
            };
            let body = match &a.body {
                Some(b) => format!("{head}\n{b}"),
                None => head,
            };
            set("hs_note_body", with_author(Some(body), a));
        }
    }
    Engagement { kind, properties: p, contact_id: contact_id.to_string() }
}

const CALL_STATUS: &[&str] = &["BUSY", "CANCELED", "COMPLETED", "FAILED", "MISSED", "NO_ANSWER"];
const MEETING_OUTCOME: &[&str] = &["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"];

/// The dealer user who logged it, on its own line (engagements have owners, not free-text authors).
fn with_author(body: Option<String>, a: &Activity) -> Option<String> {
    match (&a.author, body) {
        (Some(author), Some(b)) => Some(format!("{b}\n— {author}")),
        (Some(author), None) => Some(format!("— {author}")),
        (None, body) => body,
    }
}
