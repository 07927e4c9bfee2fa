//! What follows a delivered lead when its mapping profile asks for it: a deal in a pipeline and stage,
//! associated with the contact (`[deal]`), and a note on the contact's timeline listing what arrived
//! (`[history]`: a repeat lead shows as new data on its contact, as the Aimbase guide asks).
//!
//! Each is its own message on the retry queue (function `lead-follow-up`), queued with the lead's delivery —
//! in the same transaction on `serve`'s store — under an id derived from the lead's event id, so it is queued
//! once per lead and retried, parked and redriven on its own. Delivery is idempotent per lead: the deal's
//! description and the note's body name the lead's event, and an attempt first looks for what an earlier one
//! created (a create whose answer was lost included) before creating anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::delivery::Failure;
use crate::domain::{FunctionName, RetryMessage};
use crate::hubspot::{Engagement, EngagementKind, HubSpot};
use crate::lead::{FieldValue, Lead};
use crate::mapping::Mapping;

/// A lead's deal, or its history note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpKind {
    Deal,
    Note,
}

impl FollowUpKind {
    fn as_str(self) -> &'static str {
        match self {
            FollowUpKind::Deal => "deal",
            FollowUpKind::Note => "note",
        }
    }
}

/// A follow-up message's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub kind: FollowUpKind,
    /// The delivered lead's event id: what makes the deal or the note this lead's.
    pub lead_event_id: String,
    /// The contact's email (on top, where erasure and listings look for a message's person).
    pub email: String,
    /// The contact the lead was written to; empty for a lead superseded by a newer one (found by email).
    pub contact_id: String,
    /// When the lead was accepted: the note's time.
    #[serde(with = "time::serde::rfc3339")]
    pub lead_received_at: OffsetDateTime,
    /// The lead as it was queued (its normalised fields).
    pub lead: serde_json::Value,
}

/// The follow-up messages `mapping` asks for once the lead `lead` (event `event_id`, accepted at `received_at`)
/// was delivered to `contact_id` (empty: superseded, its contact found by email later); none when the profile asks
/// for none.
pub fn follow_ups(
    mapping: &Mapping,
    event_id: &str,
    lead: &serde_json::Value,
    received_at: OffsetDateTime,
    contact_id: &str,
    now: OffsetDateTime,
) -> Vec<RetryMessage> {
    let Some(email) = lead.get("email").and_then(|e| e.as_str()).filter(|e| !e.is_empty()) else {
        return Vec::new();
    };
    let mut kinds = Vec::new();
    if mapping.deal.is_some() {
        kinds.push(FollowUpKind::Deal);
    }
    if mapping.history.note {
        kinds.push(FollowUpKind::Note);
    }
    kinds
        .into_iter()
        .map(|kind| {
            let follow_up = FollowUp {
                kind,
                lead_event_id: event_id.to_string(),
                email: email.to_string(),
                contact_id: contact_id.to_string(),
                lead_received_at: received_at,
                lead: lead.clone(),
            };
            RetryMessage::new(
                FunctionName::LeadFollowUp,
                &format!("{event_id}_{}", kind.as_str()),
                &format!("lead-follow-up:{event_id}:{}", kind.as_str()),
                serde_json::to_value(&follow_up).unwrap_or_default(),
                now,
            )
        })
        .collect()
}

/// What names a lead's deal and note: `hubrelay lead evt_…`.
fn tag(event_id: &str) -> String {
    format!("hubrelay lead {event_id}")
}

/// How many of a contact's deals, newest first, are read to find an earlier attempt's (one read each; the
/// deal an attempt created is its contact's newest but for deals made since).
const SEARCHED: usize = 10;

/// Delivers `lead-follow-up` messages with today's mapping (a profile fixed, then a redrive, takes effect).
pub struct FollowUpDelivery {
    hubspot: Arc<dyn HubSpot>,
    mapping: Mapping,
}

impl FollowUpDelivery {
    pub fn new(hubspot: Arc<dyn HubSpot>, mapping: Mapping) -> Self {
        FollowUpDelivery { hubspot, mapping }
    }

    /// Creates the deal or the note (or finds the one an earlier attempt created); returns its id.
    pub async fn deliver_event(&self, event: &serde_json::Value) -> Result<String, Failure> {
        let follow_up: FollowUp =
            serde_json::from_value(event.clone()).map_err(|e| Failure::park("unreadable_event", e.to_string()))?;
        let lead: Lead = serde_json::from_value(follow_up.lead.clone())
            .map_err(|e| Failure::park("unreadable_event", format!("the lead: {e}")))?;
        let follow_up = self.with_contact(follow_up).await?;
        match follow_up.kind {
            FollowUpKind::Deal => self.deal(&follow_up, &lead).await,
            FollowUpKind::Note => self.note(&follow_up, &lead).await,
        }
    }

    /// A superseded lead's follow-up names no contact (the lead wrote none): the contact with its email, which its
    /// newer lead made or updated.
    async fn with_contact(&self, mut f: FollowUp) -> Result<FollowUp, Failure> {
        if !f.contact_id.is_empty() {
            return Ok(f);
        }
        let found = self.hubspot.read_contacts_by_email(std::slice::from_ref(&f.email), &[]).await?;
        let Some(contact) = found.into_iter().next() else {
            return Err(Failure::park(
                "contact_not_found",
                "no HubSpot contact has the lead's email (deleted or merged since?): redrive once it has",
            ));
        };
        f.contact_id = contact.id;
        Ok(f)
    }

    async fn deal(&self, f: &FollowUp, lead: &Lead) -> Result<String, Failure> {
        let Some(deal) = &self.mapping.deal else {
            return Err(Failure::park("not_configured", "the mapping profile has no [deal] section"));
        };
        let tag = tag(&f.lead_event_id);
        let deals = self.hubspot.associated_ids("contacts", &f.contact_id, "deals").await?;
        for id in deals.iter().rev().take(SEARCHED) {
            let found = self.hubspot.read_object("deals", id, &["description"], &[]).await?;
            if found.is_some_and(|d| d.properties.get("description").is_some_and(|v| v.contains(&tag))) {
                tracing::info!(deal_id = %id, "the lead's deal exists already");
                return Ok(id.clone());
            }
        }
        let mut properties = BTreeMap::from([
            ("dealname".to_string(), deal.name_for(lead)),
            ("pipeline".to_string(), deal.pipeline.clone()),
            ("dealstage".to_string(), deal.stage.clone()),
            ("description".to_string(), format!("Lead received {} ({tag})", when(f.lead_received_at))),
        ]);
        if let Some(amount) = deal.amount_for(lead) {
            properties.insert("amount".into(), amount);
        }
        if let Some(owner) = &deal.owner {
            properties.insert("hubspot_owner_id".into(), owner.clone());
        }
        let id = self.hubspot.create_deal(&properties, &f.contact_id).await?;
        tracing::info!(deal_id = %id, contact_id = %f.contact_id, "deal created for a lead");
        Ok(id)
    }

    async fn note(&self, f: &FollowUp, lead: &Lead) -> Result<String, Failure> {
        if !self.mapping.history.note {
            return Err(Failure::park("not_configured", "the mapping profile has no [history] note"));
        }
        let at = f
            .lead_received_at
            .replace_nanosecond(f.lead_received_at.millisecond() as u32 * 1_000_000)
            .unwrap_or(f.lead_received_at);
        let note = Engagement {
            kind: EngagementKind::Note,
            properties: BTreeMap::from([
                ("hs_timestamp".to_string(), at.format(&Rfc3339).unwrap_or_default()),
                ("hs_note_body".to_string(), summary(lead, f)),
            ]),
            contact_id: f.contact_id.clone(),
        };
        if let Some(id) = crate::updates::find_engagement(self.hubspot.as_ref(), &note).await? {
            tracing::info!(note_id = %id, "the lead's note exists already");
            return Ok(id);
        }
        Ok(self.hubspot.create_engagement(&note).await?)
    }
}

fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The note's body (HTML, as HubSpot keeps notes): when the lead came, each field it carried, and its tag.
fn summary(lead: &Lead, f: &FollowUp) -> String {
    let mut body = format!("<p><strong>Lead received</strong> {}</p><ul>", when(f.lead_received_at));
    for field in Lead::known_fields() {
        let value = match lead.field(field) {
            Some(FieldValue::Text(s)) => s,
            Some(FieldValue::Bool(b)) => b.to_string(),
            None => continue,
        };
        body.push_str(&format!("<li>{}: {}</li>", escape(field), escape(&value)));
    }
    for (name, value) in &lead.properties {
        body.push_str(&format!("<li>{}: {}</li>", escape(name), escape(value)));
    }
    body.push_str(&format!("</ul><p>{}</p>", tag(&f.lead_event_id)));
    body
}
