//! `status-update` events: lead status, lead-created date, dealer reassignment, Rollick score.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::fields::Fields;
use super::{object, ActivityKind, ContactRef, UpdateError};
use crate::dates::parse_lead_date;
use crate::lifecycle::{normalise, LeadStatus};

/// One status update, normalised. Every field but the contact is optional; at least one is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    #[serde(flatten)]
    pub contact: ContactRef,
    /// The sender's id of this update, when it has one (an idempotency key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LeadStatus>,
    /// As sent (checked to parse): HubSpot wants the sender's calendar day at midnight UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_created_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer_id: Option<String>,
    /// Decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollick_score: Option<String>,
    /// When the change happened at the sender: orders updates (absent: when we received it).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<OffsetDateTime>,
    /// The dealer user who made the change (Aimbase's `DealershipUser`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

impl StatusUpdate {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.lead_created_date.is_none()
            && self.dealer_name.is_none()
            && self.dealer_id.is_none()
            && self.rollick_score.is_none()
    }
}

/// Parses our plain JSON shape or Aimbase's `{"ProspectActivity": {...}}` disposition shape.
pub fn parse_status_update(body: &[u8]) -> Result<StatusUpdate, UpdateError> {
    let mut f = Fields::new(object(body)?, "");
    let update = match f.object(&["ProspectActivity", "prospectActivity"])? {
        Some(entry) => {
            let mut update = parse_prospect_activity(entry)?;
            // Aimbase sends the HubSpot id next to (or inside) the entry.
            if let Some(id) = f.text(&["HubSpotContactId", "ProspectExternalId"])? {
                update.contact.contact_id.get_or_insert(id);
            }
            update
        }
        None => parse_plain(&mut f)?,
    };
    f.finish()?;
    if update.contact.is_empty() {
        return Err(UpdateError::MissingContact);
    }
    if update.is_empty() {
        return Err(UpdateError::EmptyUpdate);
    }
    Ok(update)
}

fn parse_plain(f: &mut Fields) -> Result<StatusUpdate, UpdateError> {
    let mut u = StatusUpdate {
        contact: contact_ref(f)?,
        update_id: f.text(&["update_id", "updateId", "id"])?,
        changed_at: f.instant(&["changed_at", "changedAt", "occurred_at", "occurredAt", "timestamp"])?,
        rollick_score: f.number(&["rollick_score", "rollickScore", "score"])?,
        author: f.text(&["author", "dealership_user", "dealershipUser"])?,
        ..StatusUpdate::default()
    };
    if let Some(s) = f.text(&["status", "lead_status", "leadStatus"])? {
        u.status = Some(status(&s, "status")?);
    }
    if let Some(d) = f.text(&["lead_created_date", "leadCreatedDate"])? {
        u.lead_created_date = Some(created_date(d, "lead_created_date")?);
    }
    if let Some(mut dealer) = f.object(&["dealer"])? {
        u.dealer_name = dealer.text(&["name"])?;
        u.dealer_id = dealer.text(&["id"])?;
        dealer.finish()?;
    }
    if let Some(name) = f.text(&["dealer_name", "dealerName"])? {
        u.dealer_name = Some(name);
    }
    if let Some(id) = f.text(&["dealer_id", "dealerId"])? {
        u.dealer_id = Some(id);
    }
    Ok(u)
}

/// `contact_id` / `email` / `lead_id` and their aliases.
pub(super) fn contact_ref(f: &mut Fields) -> Result<ContactRef, UpdateError> {
    let contact_id =
        f.text(&["contact_id", "contactId", "hubspot_contact_id", "hubspotContactId", "HubSpotContactId"])?;
    let email = match f.text(&["email"])? {
        Some(e) => Some(
            crate::email::normalize_email(&e)
                .map_err(|e| UpdateError::InvalidValue { field: "email".into(), message: e.0 })?,
        ),
        None => None,
    };
    let lead_ids = f.text(&["lead_id", "leadId"])?.into_iter().collect();
    Ok(ContactRef { contact_id, email, lead_ids })
}

/// Aimbase's status/activity feed entry: `EntryDate`, `SourceProspectId`, `PCHProspectId`, `EntryType`,
/// `EntryDetail`, `DealershipUser`.
fn parse_prospect_activity(mut e: Fields) -> Result<StatusUpdate, UpdateError> {
    let entry = AimbaseEntry::read(&mut e)?;
    e.finish()?;
    let mut u = StatusUpdate {
        contact: entry.contact,
        update_id: entry.entry_id,
        changed_at: entry.date,
        author: entry.user,
        ..StatusUpdate::default()
    };
    let detail = entry.detail;
    let needs_detail = || UpdateError::MissingField("ProspectActivity.EntryDetail".into());
    match normalise(&entry.entry_type).as_str() {
        "status" | "leadstatus" | "statuschange" | "disposition" => {
            u.status = Some(status(&detail.ok_or_else(needs_detail)?, "ProspectActivity.EntryDetail")?);
        }
        "dealerreassignment" | "reassignment" | "reassigned" | "dealerassignment" => {
            u.dealer_name = Some(detail.ok_or_else(needs_detail)?);
        }
        "rollickscore" | "score" => {
            let raw = detail.ok_or_else(needs_detail)?;
            let x = raw.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or(UpdateError::InvalidType {
                field: "ProspectActivity.EntryDetail".into(),
                expected: "a number for a Rollick score",
            })?;
            u.rollick_score = Some(super::fields::decimal(x));
        }
        "leadcreated" | "leadcreateddate" | "created" => {
            let raw = detail.or(entry.date_text).ok_or_else(needs_detail)?;
            u.lead_created_date = Some(created_date(raw, "ProspectActivity.EntryDetail")?);
        }
        _ if LeadStatus::parse(&entry.entry_type).is_some() => u.status = LeadStatus::parse(&entry.entry_type),
        _ if ActivityKind::parse(&entry.entry_type).is_some() => {
            return Err(UpdateError::WrongEndpoint { entry_type: entry.entry_type, endpoint: "/v1/leads/activities" })
        }
        _ => {
            return Err(UpdateError::InvalidValue {
                field: "ProspectActivity.EntryType".into(),
                message: format!(
                    "`{}` is not a status entry (Status, Dealer Reassignment, Rollick Score, Lead Created)",
                    entry.entry_type
                ),
            })
        }
    }
    Ok(u)
}

/// The fields every Aimbase entry has.
pub(super) struct AimbaseEntry {
    pub contact: ContactRef,
    pub entry_id: Option<String>,
    pub entry_type: String,
    pub detail: Option<String>,
    pub date: Option<OffsetDateTime>,
    pub date_text: Option<String>,
    pub user: Option<String>,
}

impl AimbaseEntry {
    pub fn read(e: &mut Fields) -> Result<AimbaseEntry, UpdateError> {
        let date_text = match e.take(&["EntryDate"])? {
            Some((_, serde_json::Value::String(s))) => Some(s),
            Some((field, _)) => return Err(UpdateError::InvalidType { field, expected: "a date-time string" }),
            None => None,
        };
        let date = date_text
            .as_deref()
            .map(|s| {
                parse_lead_date(s).map(|d| super::to_millis(d.instant)).map_err(|err| UpdateError::InvalidValue {
                    field: "ProspectActivity.EntryDate".into(),
                    message: err.to_string(),
                })
            })
            .transpose()?;
        let lead_ids = [e.text(&["SourceProspectId"])?, e.text(&["PCHProspectId"])?].into_iter().flatten().collect();
        let contact = ContactRef {
            contact_id: e.text(&["HubSpotContactId", "ProspectExternalId"])?,
            email: e.text(&["Email", "EmailAddress"])?,
            lead_ids,
        };
        let entry_type =
            e.text(&["EntryType"])?.ok_or(UpdateError::MissingField("ProspectActivity.EntryType".into()))?;
        Ok(AimbaseEntry {
            contact,
            entry_id: e.text(&["EntryId", "ActivityId"])?,
            entry_type,
            detail: e.text(&["EntryDetail"])?,
            date,
            date_text,
            user: e.text(&["DealershipUser"])?,
        })
    }
}

fn status(s: &str, field: &str) -> Result<LeadStatus, UpdateError> {
    LeadStatus::parse(s).ok_or_else(|| UpdateError::InvalidValue {
        field: field.to_string(),
        message: format!(
            "`{s}` is not a lead status ({})",
            LeadStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    })
}

fn created_date(raw: String, field: &str) -> Result<String, UpdateError> {
    parse_lead_date(&raw)
        .map_err(|e| UpdateError::InvalidValue { field: field.to_string(), message: e.to_string() })?;
    Ok(raw)
}
