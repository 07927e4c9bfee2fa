//! Delivering status updates and activities to HubSpot, shared by the inline request path and the retry
//! worker: find the contact, take its lease, write only what is newer than what was applied, record it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{activity_changes, engagement, status_changes, Activity, Change, ContactRef, StatusUpdate};
use crate::delivery::Failure;
use crate::domain::FunctionName;
use crate::hubspot::{Engagement, EngagementKind, HubSpot};
use crate::lifecycle::lifecycle_rank;
use crate::mapping::Mapping;
use crate::pii::mask_email;
use crate::store::{AppliedVersion, LeadLinks, Lease, UpdateLedger};

/// How long a contact's lease lasts: longer than one PATCH, shorter than a sender's patience.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How many of a contact's newest engagements a retry checks for the one an earlier attempt may have made.
const DEDUPE_WINDOW: usize = 25;

/// What became of an update that reached its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Something was written.
    Delivered,
    /// Every value was older than what the contact already has: nothing written.
    Stale,
    /// The same values at the same time were applied before: nothing written.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateResult {
    pub outcome: UpdateOutcome,
    pub contact_id: String,
    /// Value groups written (`status`, `dealer`, ...).
    pub applied: Vec<&'static str>,
    /// Value groups left alone because the contact has newer (or the same) values.
    pub skipped: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_type: Option<&'static str>,
}

pub struct UpdateDelivery {
    hubspot: Arc<dyn HubSpot>,
    ledger: Arc<dyn UpdateLedger>,
    links: Arc<dyn LeadLinks>,
    mapping: Mapping,
    /// How long to wait for another writer's lease before giving up (the event is then retried).
    lease_wait: Duration,
}

fn contact_not_found(message: String) -> Failure {
    Failure::park("contact_not_found", message)
}

impl UpdateDelivery {
    pub fn new(
        hubspot: Arc<dyn HubSpot>,
        ledger: Arc<dyn UpdateLedger>,
        links: Arc<dyn LeadLinks>,
        mapping: Mapping,
    ) -> Self {
        UpdateDelivery { hubspot, ledger, links, mapping, lease_wait: Duration::from_secs(2) }
    }

    /// Deliver a queued event of `function` (the retry worker's entry point); `retried` is true when an
    /// earlier attempt may have reached HubSpot.
    pub async fn deliver_event(
        &self,
        function: FunctionName,
        event: &serde_json::Value,
        event_id: &str,
        received_at: OffsetDateTime,
        retried: bool,
    ) -> Result<UpdateResult, Failure> {
        let unreadable = |e: serde_json::Error| Failure::park("unreadable_event", e.to_string());
        match function {
            FunctionName::StatusUpdate => {
                let update: StatusUpdate = serde_json::from_value(event.clone()).map_err(unreadable)?;
                self.deliver_status(&update, event_id, received_at).await
            }
            FunctionName::Activity => {
                let activity: Activity = serde_json::from_value(event.clone()).map_err(unreadable)?;
                self.deliver_activity(&activity, event_id, received_at, retried).await
            }
            other => Err(Failure::park(
                "unreadable_event",
                format!("{} events are not status updates or activities", other.as_str()),
            )),
        }
    }

    pub async fn deliver_status(
        &self,
        update: &StatusUpdate,
        event_id: &str,
        received_at: OffsetDateTime,
    ) -> Result<UpdateResult, Failure> {
        let contact_id = self.resolve(&update.contact).await?;
        let at = update.changed_at.unwrap_or(received_at);
        let changes = status_changes(&self.mapping.status, update, at);
        match self.apply(&contact_id, event_id, changes.clone(), at, &BTreeMap::new()).await {
            Err(f) if f.code == "contact_not_found" => match self.follow_merge(&contact_id, &update.contact).await? {
                Some((survivor, carried)) => self.apply(&survivor, event_id, changes, at, &carried).await,
                None => Err(f),
            },
            other => other,
        }
    }

    pub async fn deliver_activity(
        &self,
        activity: &Activity,
        event_id: &str,
        received_at: OffsetDateTime,
        retried: bool,
    ) -> Result<UpdateResult, Failure> {
        let mut contact_id = self.resolve(&activity.contact).await?;
        let at = activity.occurred_at.unwrap_or(received_at);
        let mut wanted = engagement(&self.mapping.activity, activity, &contact_id, at);
        let existing = if retried { self.find_existing(&wanted).await? } else { None };
        let mut carried = BTreeMap::new();
        let engagement_id = match existing {
            Some(id) => id,
            None => match self.hubspot.create_engagement(&wanted).await {
                Ok(id) => id,
                // HubSpot refuses an association to a missing record as a plain validation error: the contact
                // was merged into another (write there) or is gone (name it).
                Err(e) if e.status == Some(400) && !self.contact_exists(&contact_id).await? => {
                    match self.follow_merge(&contact_id, &activity.contact).await? {
                        Some((survivor, versions)) => {
                            (contact_id, carried) = (survivor, versions);
                            wanted.contact_id = contact_id.clone();
                            self.hubspot.create_engagement(&wanted).await?
                        }
                        None => {
                            return Err(contact_not_found(format!(
                                "HubSpot has no contact {contact_id}: {}",
                                e.message
                            )))
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            },
        };
        let changes = activity_changes(&self.mapping.activity, activity, at);
        let mut result = self.apply(&contact_id, event_id, changes, at, &carried).await?;
        // The engagement is what an activity is for: it counts as delivered even when the contact
        // already shows a newer "last activity".
        result.outcome = UpdateOutcome::Delivered;
        result.engagement_id = Some(engagement_id);
        result.engagement_type = Some(wanted.kind.object_path());
        Ok(result)
    }

    /// HubSpot never moves a lifecycle stage back on a plain write (it keeps the later one, silently). When the
    /// profile allows it and this write would go back, clear the stage first: two requests, as HubSpot requires.
    /// `Some(stage)`: the stage it cleared.
    async fn move_back_lifecycle(
        &self,
        contact_id: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Option<String>, Failure> {
        let Some(wanted) = properties.get("lifecyclestage").filter(|_| self.mapping.status.lifecycle_backwards) else {
            return Ok(None);
        };
        let found = self.hubspot.read_object("contacts", contact_id, &["lifecyclestage"], &[]).await?;
        // Missing, or merged away (the read answered the survivor): the write itself says so.
        let Some(current) = found.filter(|c| c.id.is_empty() || c.id == contact_id) else {
            return Ok(None);
        };
        let current = current.properties.get("lifecyclestage").cloned().unwrap_or_default();
        let back = match (lifecycle_rank(&current), lifecycle_rank(wanted)) {
            (Some(now), Some(next)) => next < now,
            _ => false,
        };
        if !back {
            return Ok(None);
        }
        let clear = BTreeMap::from([("lifecyclestage".to_string(), String::new())]);
        self.hubspot.update_contact(contact_id, &clear).await?;
        tracing::info!(contact_id, from = %current, to = %wanted, "lifecycle stage moved back (cleared, then set)");
        Ok(Some(current))
    }

    /// Whether `contact_id` is a contact under that very id (a merged-away id reads as its survivor).
    async fn contact_exists(&self, contact_id: &str) -> Result<bool, Failure> {
        let found = self.hubspot.read_object("contacts", contact_id, &["email"], &[]).await?;
        Ok(found.is_some_and(|c| c.id.is_empty() || c.id == contact_id))
    }

    /// HubSpot no longer has `contact_id` under that id: the contact that absorbed it in a merge (a read of a
    /// merged-away id answers the survivor; failing that, the event's email), with the order guard's versions
    /// of the old id to carry over. Recorded, and the event's lead links re-pointed, so later events go
    /// straight there. `None`: the contact is gone.
    async fn follow_merge(
        &self,
        contact_id: &str,
        contact: &ContactRef,
    ) -> Result<Option<(String, BTreeMap<String, AppliedVersion>)>, Failure> {
        let read = self.hubspot.read_object("contacts", contact_id, &["email", "hs_merged_object_ids"], &[]).await?;
        let survivor = match read {
            Some(c) if !c.id.is_empty() && c.id != contact_id => Some(c.id),
            Some(_) => None,
            None => match &contact.email {
                Some(email) => self.hubspot.contact_id_by_email(email).await?.filter(|id| id != contact_id),
                None => None,
            },
        };
        let Some(survivor) = survivor else { return Ok(None) };
        let now = OffsetDateTime::now_utc();
        self.links.record_merge(contact_id, &survivor, now).await?;
        for lead_id in &contact.lead_ids {
            if self.links.contact_for(lead_id).await?.as_deref() == Some(contact_id) {
                self.links.link(lead_id, &survivor, now).await?;
            }
        }
        let owner = format!("merge:{contact_id}");
        let carried = match self.ledger.lease(contact_id, &owner, now, LEASE_TTL).await? {
            Lease::Granted(versions) => {
                self.ledger.release(contact_id, &owner).await?;
                versions
            }
            Lease::Busy => BTreeMap::new(),
        };
        tracing::info!(merged = contact_id, survivor = %survivor, "contact merged in HubSpot: writing to the survivor");
        Ok(Some((survivor, carried)))
    }

    /// A contact id after the merges recorded so far.
    async fn after_merges(&self, contact_id: String) -> Result<String, Failure> {
        let mut seen = vec![contact_id.clone()];
        let mut id = contact_id;
        for _ in 0..8 {
            match self.links.merged_into(&id).await? {
                // A cycle is a corrupt record: stop where it began repeating.
                Some(next) if !seen.contains(&next) => {
                    seen.push(next.clone());
                    id = next;
                }
                _ => break,
            }
        }
        Ok(id)
    }

    /// Contact id, else email (looked up), else the lead ids `lead-captured` linked.
    async fn resolve(&self, contact: &ContactRef) -> Result<String, Failure> {
        if let Some(id) = &contact.contact_id {
            return self.after_merges(id.clone()).await;
        }
        if let Some(email) = &contact.email {
            return self
                .hubspot
                .contact_id_by_email(email)
                .await?
                .ok_or_else(|| contact_not_found(format!("no HubSpot contact has the email {}", mask_email(email))));
        }
        for lead_id in &contact.lead_ids {
            if let Some(linked) = self.links.contact_for(lead_id).await? {
                let id = self.after_merges(linked.clone()).await?;
                if id != linked {
                    self.links.link(lead_id, &id, OffsetDateTime::now_utc()).await?;
                }
                return Ok(id);
            }
        }
        Err(contact_not_found(format!(
            "no contact is linked to lead id {}: lead-captured has not delivered that lead (yet); redrive once it has",
            contact.lead_ids.join(" or ")
        )))
    }

    /// Write the changes that are newer than the contact's applied versions, under the contact's lease.
    /// `carried`: versions applied under a merged-away id of this contact, kept by the order guard.
    async fn apply(
        &self,
        contact_id: &str,
        owner: &str,
        changes: Vec<Change>,
        at: OffsetDateTime,
        carried: &BTreeMap<String, AppliedVersion>,
    ) -> Result<UpdateResult, Failure> {
        let mut result = UpdateResult {
            outcome: UpdateOutcome::Delivered,
            contact_id: contact_id.to_string(),
            applied: Vec::new(),
            skipped: Vec::new(),
            engagement_id: None,
            engagement_type: None,
        };
        if changes.is_empty() {
            return Ok(result);
        }
        let mut versions = self.lease(contact_id, owner).await?;
        // Only the merged-away id's versions newer than the survivor's own come along (a store may overwrite).
        let mut carried_won = BTreeMap::new();
        for (field, v) in carried {
            if versions.get(field).is_none_or(|mine| mine.at < v.at) {
                versions.insert(field.clone(), v.clone());
                carried_won.insert(field.clone(), v.clone());
            }
        }
        let carried = &carried_won;
        let mut properties = BTreeMap::new();
        let mut applied = BTreeMap::new();
        let mut duplicates = 0;
        for change in changes {
            let version = AppliedVersion { at, fingerprint: change.fingerprint() };
            match versions.get(change.field) {
                Some(v) if v.at > at => result.skipped.push(change.field),
                Some(v) if *v == version => {
                    duplicates += 1;
                    result.skipped.push(change.field);
                }
                _ => {
                    properties.extend(change.properties);
                    applied.insert(change.field.to_string(), version);
                    result.applied.push(change.field);
                }
            }
        }
        if applied.is_empty() {
            if carried.is_empty() {
                self.ledger.release(contact_id, owner).await?;
            } else {
                self.ledger.commit(contact_id, owner, carried).await?;
            }
            result.outcome =
                if duplicates == result.skipped.len() { UpdateOutcome::Duplicate } else { UpdateOutcome::Stale };
            return Ok(result);
        }
        let cleared = match self.move_back_lifecycle(contact_id, &properties).await {
            Ok(cleared) => cleared,
            Err(e) => {
                if let Err(re) = self.ledger.release(contact_id, owner).await {
                    tracing::error!(contact_id, error = %re, "could not release the contact's lease");
                }
                return Err(e);
            }
        };
        if let Err(e) = self.hubspot.update_contact(contact_id, &properties).await {
            if let Some(stage) = cleared {
                // The stage was cleared for this write: put it back rather than leave the contact without one.
                let back = BTreeMap::from([("lifecyclestage".to_string(), stage.clone())]);
                if let Err(re) = self.hubspot.update_contact(contact_id, &back).await {
                    tracing::error!(contact_id, stage = %stage, error = %re.code, "lifecycle stage cleared and not restored");
                }
            }
            if let Err(re) = self.ledger.release(contact_id, owner).await {
                tracing::error!(contact_id, error = %re, "could not release the contact's lease");
            }
            return Err(if e.status == Some(404) {
                contact_not_found(format!("HubSpot has no contact {contact_id}: {}", e.message))
            } else {
                e.into()
            });
        }
        let mut recorded = carried.clone();
        recorded.extend(applied);
        if let Err(e) = self.ledger.commit(contact_id, owner, &recorded).await {
            // Written to HubSpot already; only the order guard for later updates is weaker.
            tracing::error!(contact_id, error = %e, "could not record the applied versions");
        }
        Ok(result)
    }

    async fn lease(&self, contact_id: &str, owner: &str) -> Result<BTreeMap<String, AppliedVersion>, Failure> {
        let deadline = tokio::time::Instant::now() + self.lease_wait;
        loop {
            let now = OffsetDateTime::now_utc();
            match self.ledger.lease(contact_id, owner, now, LEASE_TTL).await? {
                Lease::Granted(versions) => return Ok(versions),
                Lease::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                Lease::Busy => {
                    return Err(Failure::retry(
                        "contact_busy",
                        format!("not sent: another update to contact {contact_id} is being written"),
                    ))
                }
            }
        }
    }

    /// An engagement an earlier attempt created (same type, time and body), if any.
    async fn find_existing(&self, wanted: &Engagement) -> Result<Option<String>, Failure> {
        find_engagement(self.hubspot.as_ref(), wanted).await
    }
}

/// An engagement of the contact's with the same type, time and body as `wanted` (what an earlier attempt created
/// before its answer was lost), among the newest ones; `None` when there is none.
pub async fn find_engagement(hubspot: &dyn HubSpot, wanted: &Engagement) -> Result<Option<String>, Failure> {
    let ids = hubspot.contact_engagements(&wanted.contact_id, wanted.kind).await?;
    let body = body_property(wanted.kind);
    let want_ts = wanted.properties.get("hs_timestamp").and_then(|t| instant_ms(t));
    for id in ids.iter().rev().take(DEDUPE_WINDOW) {
        let props = hubspot.engagement_properties(wanted.kind, id, &["hs_timestamp", body]).await?;
        let same_time = props.get("hs_timestamp").and_then(|t| instant_ms(t)) == want_ts;
        if same_time && props.get(body) == wanted.properties.get(body) {
            return Ok(Some(id.clone()));
        }
    }
    Ok(None)
}

fn body_property(kind: EngagementKind) -> &'static str {
    match kind {
        EngagementKind::Note => "hs_note_body",
        EngagementKind::Call => "hs_call_body",
        EngagementKind::Email => "hs_email_text",
        EngagementKind::Meeting => "hs_meeting_body",
        EngagementKind::Task => "hs_task_body",
        EngagementKind::Communication => "hs_communication_body",
    }
}

/// `hs_timestamp` as epoch ms, from ISO-8601 or epoch ms.
fn instant_ms(s: &str) -> Option<i128> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| t.unix_timestamp_nanos().div_euclid(1_000_000))
}
