//! Delivering one [`ReferralAction`], shared by the retry worker of `hubrelay serve` and the `retry-worker`
//! Lambda: complete the trigger from HubSpot when the webhook lacked data (the contact; the deal and its
//! associated contact), map it, and send it. Errors are [`HubSpotError`]s whose `outcome()` decides: partner
//! 429/5xx and network trouble are retried, partner 4xx and unusable data are parked with the reason.

use std::sync::Arc;

use time::OffsetDateTime;

use super::actions::ReferralAction;
use super::{extole_converted, extole_signup, impact_conversion, ContactSignup, DealStage, ReferralConfig};
use super::{AdvocateUpdate, ADVOCATE_ACCOUNT_ID, ADVOCATE_REFERRAL_CODE, ADVOCATE_SHARE_LINK, ADVOCATE_USER_ID};
use super::{ReferralError, DEAL_PROPERTIES};
use super::{ADVOCATE_MESSAGE_LINKS, ADVOCATE_REFERRAL_COOKIE, ADVOCATE_REFERRAL_STATUS, ADVOCATE_REFERRED_BY_CODE};
use crate::delivery::Failure;
use crate::hubspot::HubSpot;
use crate::outbound::OutboundSender;
use crate::partners::advocate::{AdvocateParticipants, Participant};
use crate::partners::{Extole, Impact};
use crate::pii::mask_email;
use crate::privacy::{Eraser, ErasureSource, PersonalData, Subject};
use crate::store::LeadLinks;

/// What became of a delivered action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferralOutcome {
    /// Sent; `reference` is the HubSpot contact id when known, else the partner's id for it.
    Sent { reference: String },
    /// Nothing to send after all (the contact turned out to carry no advocate code).
    Skipped { reason: String },
}

pub struct ReferralDelivery {
    hubspot: Arc<dyn HubSpot>,
    extole: Option<Arc<dyn Extole>>,
    impact: Option<Arc<dyn Impact>>,
    config: ReferralConfig,
    /// Where HubSpot's merges are recorded (`None`: merge events are parked `not_configured`).
    links: Option<Arc<dyn LeadLinks>>,
    /// Where HubSpot's GDPR deletions erase the person (`None`: they are parked `not_configured`).
    personal: Option<Arc<dyn PersonalData>>,
    /// Where HubSpot's contact changes are sent (`None`: they are parked `not_configured`).
    outbound: Option<Arc<dyn OutboundSender>>,
    /// impact.com Advocate participants (`None`: participant actions are parked `not_configured`).
    advocate: Option<Arc<dyn AdvocateParticipants>>,
}

/// Data that cannot be mapped: parked (a fix in HubSpot, then a redrive).
fn unusable(e: ReferralError) -> Failure {
    let field = e.field.map(|f| format!(" (field `{f}`)")).unwrap_or_default();
    Failure::park(e.code, format!("{}{field}", e.message))
}

fn not_found(code: &str, message: String) -> Failure {
    Failure::park(code, message)
}

/// How long "no contact carries this Advocate user id" is taken for HubSpot's search index lagging (seconds, by
/// its documentation) or the user's own `user.created` still on its way, and retried; after that it is parked.
pub const ADVOCATE_USER_WAIT: time::Duration = time::Duration::hours(1);

impl ReferralDelivery {
    /// `extole` / `impact` are `None` when not configured: their actions are then parked as `not_configured`.
    pub fn new(
        hubspot: Arc<dyn HubSpot>,
        extole: Option<Arc<dyn Extole>>,
        impact: Option<Arc<dyn Impact>>,
        config: ReferralConfig,
    ) -> Self {
        ReferralDelivery {
            hubspot,
            extole,
            impact,
            config,
            links: None,
            personal: None,
            outbound: None,
            advocate: None,
        }
    }

    /// Sync HubSpot contacts to impact.com Advocate participants through `advocate`.
    pub fn with_advocate(mut self, advocate: Arc<dyn AdvocateParticipants>) -> Self {
        self.advocate = Some(advocate);
        self
    }

    /// Send HubSpot's contact changes through `outbound`.
    pub fn with_outbound(mut self, outbound: Arc<dyn OutboundSender>) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// Erase the person from `personal` when HubSpot says it GDPR-deleted their contact.
    pub fn with_personal_data(mut self, personal: Arc<dyn PersonalData>) -> Self {
        self.personal = Some(personal);
        self
    }

    /// Record HubSpot's `contact.merge` events in `links`.
    pub fn with_links(mut self, links: Arc<dyn LeadLinks>) -> Self {
        self.links = Some(links);
        self
    }

    pub fn config(&self) -> &ReferralConfig {
        &self.config
    }

    /// Deliver a stored action. `received_at` is when it was first accepted: it dates events the webhook did
    /// not date, so every retry sends the same thing. `waiting_since` is when the current run of its schedule
    /// began (arrival, or the last redrive): a wait for HubSpot's search index counts from there.
    pub async fn deliver_event(
        &self,
        event: &serde_json::Value,
        received_at: OffsetDateTime,
        waiting_since: OffsetDateTime,
    ) -> Result<ReferralOutcome, Failure> {
        let action: ReferralAction =
            serde_json::from_value(event.clone()).map_err(|e| Failure::park("unreadable_event", e.to_string()))?;
        self.deliver_since(&action, received_at, waiting_since).await
    }

    /// [`Self::deliver_since`] of an action on its first run (waiting since it arrived).
    pub async fn deliver(
        &self,
        action: &ReferralAction,
        received_at: OffsetDateTime,
    ) -> Result<ReferralOutcome, Failure> {
        self.deliver_since(action, received_at, received_at).await
    }

    pub async fn deliver_since(
        &self,
        action: &ReferralAction,
        received_at: OffsetDateTime,
        waiting_since: OffsetDateTime,
    ) -> Result<ReferralOutcome, Failure> {
        match action {
            ReferralAction::ExtoleSignup(s) => {
                let s = self.complete_signup(s).await?;
                if s.advocate_code.is_none() {
                    let reason = format!("contact has no `{}`: not a referral", self.config.advocate_code_property);
                    return Ok(ReferralOutcome::Skipped { reason });
                }
                let event = extole_signup(&s, &self.config, received_at).map_err(unusable)?;
                let accepted = self.extole()?.send_event(&event).await?;
                Ok(ReferralOutcome::Sent { reference: s.contact_id.unwrap_or(accepted.id) })
            }
            ReferralAction::ExtoleConverted(d) => {
                let (d, email, contact_id) = self.complete_deal(d).await?;
                let event = extole_converted(&d, &email, &self.config, received_at).map_err(unusable)?;
                self.extole()?.send_event(&event).await?;
                Ok(ReferralOutcome::Sent { reference: contact_id })
            }
            ReferralAction::ImpactConversion(d) => {
                let (d, email, contact_id) = self.complete_deal(d).await?;
                let conversion = impact_conversion(&d, &email, &self.config, received_at).map_err(unusable)?;
                self.impact()?.send_conversion(&conversion).await?;
                Ok(ReferralOutcome::Sent { reference: contact_id })
            }
            ReferralAction::RecordMerge { survivor, merged } => {
                let links = self
                    .links
                    .as_ref()
                    .ok_or_else(|| Failure::park("not_configured", "no store for HubSpot merges in this worker"))?;
                let now = OffsetDateTime::now_utc();
                // A webhook's word is not enough to re-point someone's records: HubSpot must show the merge.
                for id in merged {
                    if !self.merge_confirmed(id, survivor).await? {
                        return Err(Failure::park(
                            "merge_not_confirmed",
                            format!("HubSpot does not show contact {id} merged into {survivor}: nothing re-pointed"),
                        ));
                    }
                }
                for id in merged {
                    links.record_merge(id, survivor, now).await?;
                }
                tracing::info!(survivor = %survivor, merged = merged.len(), "HubSpot merge recorded");
                Ok(ReferralOutcome::Sent { reference: survivor.clone() })
            }
            ReferralAction::EraseContact { object_id } => {
                let store = self.personal.clone().ok_or_else(|| {
                    Failure::park("not_configured", "this worker cannot erase personal data (a serve store does)")
                })?;
                // The webhook is signed, and HubSpot must also show the contact gone before anything is erased.
                if self.hubspot.read_object("contacts", object_id, &[], &[]).await?.is_some() {
                    return Err(Failure::park(
                        "erasure_not_confirmed",
                        format!("HubSpot still has contact {object_id}: nothing erased"),
                    ));
                }
                let eraser = Eraser::new(store, None);
                let receipt = eraser
                    .erase(&Subject::contact(object_id), ErasureSource::HubSpotPrivacyDeletion, None, false)
                    .await
                    .map_err(|e| Failure::retry("store_unavailable", e.to_string()))?;
                Ok(ReferralOutcome::Sent { reference: receipt.receipt_id })
            }
            ReferralAction::SendContactChange(change) => {
                let outbound = self.outbound.as_ref().ok_or_else(|| {
                    Failure::park("not_configured", "no outbound endpoint (HUBRELAY_OUTBOUND_URL) in this worker")
                })?;
                let properties = if change.created {
                    // A creation carries no values: the contact as HubSpot has it now.
                    let wanted: Vec<&str> = outbound.properties().iter().map(String::as_str).collect();
                    match self.hubspot.read_object("contacts", &change.object_id, &wanted, &[]).await? {
                        Some(contact) => {
                            // HubSpot's values now win over the batch's (older) ones.
                            let mut read = contact.properties;
                            for (k, v) in &change.properties {
                                read.entry(k.clone()).or_insert_with(|| v.clone());
                            }
                            read
                        }
                        None => {
                            let reason = format!("contact {} is gone from HubSpot: nothing to send", change.object_id);
                            return Ok(ReferralOutcome::Skipped { reason });
                        }
                    }
                } else {
                    change.properties.clone()
                };
                outbound.send(&change.change_id, &change.body(outbound.tenant(), &properties)).await?;
                Ok(ReferralOutcome::Sent { reference: change.object_id.clone() })
            }
            ReferralAction::SyncParticipant { object_id, created, .. } => {
                self.sync_participant(object_id, *created).await
            }
            ReferralAction::SyncParticipantByEmail { email } => {
                self.advocate()?;
                let found = self.hubspot.read_contacts_by_email(std::slice::from_ref(email), &[]).await?;
                match found.into_iter().next() {
                    Some(contact) => self.sync_participant(&contact.id, true).await,
                    None => Ok(ReferralOutcome::Skipped { reason: "no HubSpot contact has the row's email".into() }),
                }
            }
            ReferralAction::DeleteParticipant { object_id } => {
                let advocate = self.advocate()?;
                // HubSpot keeps a deleted contact archived for 90 days: its Advocate ids name its participant,
                // whoever created it. Without them, the participant hubrelay would have created (the contact id).
                let wanted = [ADVOCATE_ACCOUNT_ID, ADVOCATE_USER_ID];
                let archived = match self.hubspot.read_archived_contact(object_id, &wanted).await {
                    Ok(found) => found,
                    Err(e) if e.code == "unsupported" => None,
                    Err(e) => return Err(e.into()),
                };
                let ids = archived.as_ref().and_then(|c| {
                    let get = |k: &str| c.properties.get(k).filter(|v| !v.is_empty()).cloned();
                    Some((get(ADVOCATE_ACCOUNT_ID)?, get(ADVOCATE_USER_ID)?))
                });
                let (account, user) = ids.unwrap_or_else(|| (object_id.clone(), object_id.clone()));
                match advocate.delete_participant(&account, &user).await? {
                    true => Ok(ReferralOutcome::Sent { reference: user }),
                    false => Ok(ReferralOutcome::Skipped {
                        reason: format!("Advocate has no participant {account}/{user}: nothing to delete"),
                    }),
                }
            }
            ReferralAction::UpdateAdvocateUser(update) => self.update_advocate_user(update, waiting_since).await,
            ReferralAction::UpsertContact(upsert) => {
                let contact = self.hubspot.upsert_contact(upsert).await?;
                tracing::info!(contact_id = %contact.id, created = contact.created, email = %mask_email(&upsert.email),
                    "referral properties written");
                Ok(ReferralOutcome::Sent { reference: contact.id })
            }
        }
    }

    fn advocate(&self) -> Result<&Arc<dyn AdvocateParticipants>, Failure> {
        self.advocate.as_ref().ok_or_else(|| {
            Failure::park(
                "not_configured",
                "no impact.com Advocate account (IMPACT_ADVOCATE_TENANT_ALIAS) in this worker",
            )
        })
    }

    /// An Advocate event naming its user by id → the contacts carrying that user id updated with what changed.
    /// None found yet is retried for [`ADVOCATE_USER_WAIT`] from `waiting_since` (HubSpot's search lags writes),
    /// then parked: a contact is never created from an id, so a retry can never make a duplicate.
    async fn update_advocate_user(
        &self,
        update: &AdvocateUpdate,
        waiting_since: OffsetDateTime,
    ) -> Result<ReferralOutcome, Failure> {
        let user_id = update.user_id.as_deref().ok_or_else(|| {
            Failure::park("missing_field", format!("`{}` names no Advocate user id", update.event_type))
        })?;
        let none_yet = || {
            let waited = OffsetDateTime::now_utc() - waiting_since;
            let message = format!("no HubSpot contact has {ADVOCATE_USER_ID} = {user_id}");
            if waited < ADVOCATE_USER_WAIT {
                Failure::retry("contact_not_indexed", format!("{message} yet (HubSpot's search lags writes): retried"))
            } else {
                Failure::park("contact_not_found", format!("{message} {} minutes on", waited.whole_minutes()))
            }
        };
        let found = self.hubspot.search_contacts(ADVOCATE_USER_ID, user_id, &[ADVOCATE_USER_ID]).await?;
        if found.is_empty() {
            return Err(none_yet());
        }
        let mut properties = update.properties.clone();
        if !properties.contains_key(ADVOCATE_REFERRED_BY_CODE) {
            // The code used is the referrer's: read it off their contact, if they have one (never waited for).
            if let Some(referrer) = &update.referrer_user_id {
                let referrers =
                    self.hubspot.search_contacts(ADVOCATE_USER_ID, referrer, &[ADVOCATE_REFERRAL_CODE]).await?;
                let code = referrers.iter().find_map(|c| c.properties.get(ADVOCATE_REFERRAL_CODE).cloned());
                if let Some(code) = code.filter(|c| !c.is_empty()) {
                    properties.insert(ADVOCATE_REFERRED_BY_CODE.to_string(), code);
                }
            }
        }
        let wanted = [ADVOCATE_USER_ID, ADVOCATE_ACCOUNT_ID, ADVOCATE_REFERRED_BY_CODE, ADVOCATE_REFERRAL_STATUS];
        let (mut matched, mut written) = (Vec::new(), 0);
        for hit in &found {
            // The index may be stale: the contact as it is now decides what changes.
            let Some(contact) = self.hubspot.read_object("contacts", &hit.id, &wanted, &[]).await? else { continue };
            let now = &contact.properties;
            if now.get(ADVOCATE_USER_ID).map(String::as_str) != Some(user_id) {
                continue;
            }
            matched.push(contact.id.clone());
            let mut changes = properties.clone();
            // A late `referral.started` never undoes a conversion.
            if now.get(ADVOCATE_REFERRAL_STATUS).is_some_and(|s| s == "converted") {
                changes.remove(ADVOCATE_REFERRAL_STATUS);
            }
            changes.retain(|k, v| now.get(k) != Some(v));
            if !changes.is_empty() {
                self.hubspot.update_contact(&contact.id, &changes).await?;
                written += 1;
            }
        }
        let Some(first) = matched.first() else { return Err(none_yet()) };
        tracing::info!(event_type = %update.event_type, contacts = matched.len(), written,
            "Advocate user's contacts updated");
        Ok(ReferralOutcome::Sent { reference: first.clone() })
    }

    /// The contact as HubSpot has it now → its participant upserted, and the participant's ids, code and share
    /// link written back when they differ (which maps the contact).
    async fn sync_participant(&self, object_id: &str, created: bool) -> Result<ReferralOutcome, Failure> {
        let advocate = self.advocate()?;
        let wanted = [
            "email",
            "firstname",
            "lastname",
            ADVOCATE_USER_ID,
            ADVOCATE_ACCOUNT_ID,
            ADVOCATE_REFERRAL_CODE,
            ADVOCATE_SHARE_LINK,
            ADVOCATE_MESSAGE_LINKS,
            ADVOCATE_REFERRED_BY_CODE,
            ADVOCATE_REFERRAL_COOKIE,
        ];
        let Some(contact) = self.hubspot.read_object("contacts", object_id, &wanted, &[]).await? else {
            return Ok(ReferralOutcome::Skipped { reason: format!("contact {object_id} is gone from HubSpot") });
        };
        let p = &contact.properties;
        let Some(email) = p.get("email").filter(|e| !e.is_empty()) else {
            return Ok(ReferralOutcome::Skipped { reason: "no email: participants are matched by email".into() });
        };
        let mapped = match (p.get(ADVOCATE_USER_ID), p.get(ADVOCATE_ACCOUNT_ID)) {
            (Some(user), Some(account)) if !user.is_empty() && !account.is_empty() => {
                Some((account.clone(), user.clone()))
            }
            _ => None,
        };
        if mapped.is_none() && !self.config.create_participants {
            let why = if created { "a created contact" } else { "an unmapped contact" };
            return Ok(ReferralOutcome::Skipped { reason: format!("creating participants for {why} is switched off") });
        }
        let (account_id, user_id) = mapped.clone().unwrap_or_else(|| (object_id.to_string(), object_id.to_string()));
        let participant = Participant {
            account_id: account_id.clone(),
            user_id: user_id.clone(),
            email: email.clone(),
            first_name: p.get("firstname").cloned().filter(|v| !v.is_empty()),
            last_name: p.get("lastname").cloned().filter(|v| !v.is_empty()),
            referral_cookie: p.get(ADVOCATE_REFERRAL_COOKIE).cloned().filter(|v| !v.is_empty()),
        };
        let answer = advocate.upsert_participant(&participant).await?;
        let mut back = std::collections::BTreeMap::new();
        let mut keep = |property: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| p.get(property) != Some(v)) {
                back.insert(property.to_string(), v);
            }
        };
        keep(ADVOCATE_USER_ID, Some(user_id.clone()));
        keep(ADVOCATE_ACCOUNT_ID, Some(account_id));
        keep(ADVOCATE_REFERRAL_CODE, answer.referral_code);
        keep(ADVOCATE_SHARE_LINK, answer.share_link);
        keep(ADVOCATE_MESSAGE_LINKS, answer.message_links);
        keep(ADVOCATE_REFERRED_BY_CODE, answer.referred_by_code);
        if !back.is_empty() {
            // Writes only what changed: an unchanged contact raises no propertyChange, so the sync settles.
            self.hubspot.update_contact(object_id, &back).await?;
        }
        tracing::info!(contact_id = %object_id, created = mapped.is_none(), "Advocate participant synced");
        Ok(ReferralOutcome::Sent { reference: user_id })
    }

    /// A read of the merged-away id answers the survivor, or the survivor lists it in `hs_merged_object_ids`.
    async fn merge_confirmed(&self, merged: &str, survivor: &str) -> Result<bool, Failure> {
        const MERGED: &str = "hs_merged_object_ids";
        if let Some(c) = self.hubspot.read_object("contacts", merged, &[MERGED], &[]).await? {
            if c.id == survivor {
                return Ok(true);
            }
        }
        let Some(s) = self.hubspot.read_object("contacts", survivor, &[MERGED], &[]).await? else {
            return Ok(false);
        };
        Ok(s.properties.get(MERGED).is_some_and(|ids| ids.split(';').any(|i| i.trim() == merged)))
    }

    fn extole(&self) -> Result<&Arc<dyn Extole>, Failure> {
        self.extole.as_ref().ok_or_else(|| {
            Failure::park("not_configured", "Extole is not configured: set EXTOLE_API_TOKEN, then redrive")
        })
    }

    fn impact(&self) -> Result<&Arc<dyn Impact>, Failure> {
        self.impact.as_ref().ok_or_else(|| {
            let message = "impact.com is not configured: set IMPACT_ACCOUNT_SID and IMPACT_AUTH_TOKEN, then redrive";
            Failure::park("not_configured", message)
        })
    }

    /// Fill what the webhook did not carry (email, code, names, company) from the contact.
    async fn complete_signup(&self, s: &ContactSignup) -> Result<ContactSignup, Failure> {
        let mut s = s.clone();
        let Some(id) = s.contact_id.clone().filter(|_| s.needs_lookup()) else { return Ok(s) };
        let code = self.config.advocate_code_property.as_str();
        let props = ["email", "firstname", "lastname", "company", code];
        let contact = self.hubspot.read_object("contacts", &id, &props, &[]).await?;
        let contact = contact.ok_or_else(|| not_found("contact_not_found", format!("HubSpot has no contact {id}")))?;
        let p = |k: &str| contact.properties.get(k).filter(|v| !v.trim().is_empty()).cloned();
        s.email = s.email.or_else(|| p("email"));
        s.advocate_code = s.advocate_code.or_else(|| p(code));
        s.first_name = s.first_name.or_else(|| p("firstname"));
        s.last_name = s.last_name.or_else(|| p("lastname"));
        s.company = s.company.or_else(|| p("company"));
        Ok(s)
    }

    /// The deal with [`DEAL_PROPERTIES`], its contact's email, and the contact id (else the deal id), read from HubSpot when missing. The
    /// webhook's stage is kept: it is what the conversion ids are made of.
    async fn complete_deal(&self, d: &DealStage) -> Result<(DealStage, String, String), Failure> {
        let mut d = d.clone();
        let mut contact_id = d.contact_id.clone();
        if d.needs_lookup() {
            let deal = self.hubspot.read_object("deals", &d.deal_id, &DEAL_PROPERTIES, &["contacts"]).await?;
            let id = &d.deal_id;
            let deal = deal.ok_or_else(|| not_found("deal_not_found", format!("HubSpot has no deal {id}")))?;
            for (k, v) in deal.properties.into_iter().filter(|(_, v)| !v.trim().is_empty()) {
                if d.partial || !d.properties.contains_key(&k) {
                    d.properties.insert(k, v);
                }
            }
            d.properties.insert("dealstage".into(), d.stage.clone());
            d.partial = false;
            if contact_id.is_none() {
                contact_id = deal.associations.get("contacts").and_then(|c| c.first()).cloned();
            }
        }
        let email = match d.contact_email.clone() {
            Some(email) => email,
            None => {
                let contact_id = contact_id.clone().ok_or_else(|| {
                    not_found("contact_not_found", format!("deal {} has no associated contact", d.deal_id))
                })?;
                let contact = self.hubspot.read_object("contacts", &contact_id, &["email"], &[]).await?;
                contact.and_then(|c| c.properties.get("email").cloned()).filter(|e| !e.trim().is_empty()).ok_or_else(
                    || {
                        not_found(
                            "contact_not_found",
                            format!("contact {contact_id} of deal {} has no email", d.deal_id),
                        )
                    },
                )?
            }
        };
        let reference = contact_id.unwrap_or_else(|| d.deal_id.clone());
        Ok((d, email, reference))
    }
}
