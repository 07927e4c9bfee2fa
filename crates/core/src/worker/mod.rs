//! The retry worker's logic, shared by the `retry-worker` Lambda (SQS) and `hubrelay serve` (SQLite):
//! take due messages, merge the contact upserts of one batch into HubSpot batch calls (≤ 100 inputs, one
//! input per email, the newest lead's values winning), and decide each message's fate.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::delivery::Failure;
use crate::domain::{
    AttemptOutcome, ContactUpsert, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage, RetrySchedule,
    UpsertedContact,
};
use crate::followups::{follow_ups, FollowUpDelivery};
use crate::hubspot::HubSpot;
use crate::lead::Lead;
use crate::mapping::Mapping;
use crate::metrics::{EventOutcome, Metrics};
use crate::missing_properties::MissingProperties;
use crate::notify::{NoticeKind, Notifications};
use crate::pii::{mask_email, mask_message};
use crate::referral::actions::ReferralAction;
use crate::store::{ContactVersions, EventLog, EventRecord, EventStatus, LeadLinks, RetryQueue, StoreError};
use crate::updates::{UpdateDelivery, UpdateOutcome};

pub mod delay;
pub mod intents;
pub mod locks;
mod referrals;

pub use delay::{retry_delay, Jitter};
pub use intents::{WriteIntents, WRITE_MARKER_PROPERTY};
pub use locks::{ContactGuard, ContactLocks};

/// HubSpot's batch limit.
pub const MAX_BATCH_INPUTS: usize = 100;

/// The dead-letter reason of an event whose retry schedule ran out (every other reason is a park).
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// What to do with one message after a worker pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Written to HubSpot: remove it from the queue.
    Delivered { contact_id: String },
    /// A newer lead for the same contact was already applied: remove it without writing.
    Superseded,
    /// Not due yet (a delay longer than the queue can hold): put it back unchanged.
    NotYetDue,
    /// Failed again and will be retried: put this updated message (attempt appended, `not_before` set) back.
    Retry(RetryMessage),
    /// Retries exhausted, or HubSpot refused the data: to the dead-letter queue with the reason.
    DeadLetter(RetryMessage, DeadLetterReason),
}

/// One message and its fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub event_id: String,
    pub disposition: Disposition,
}

pub struct RetryWorker {
    hubspot: Arc<dyn HubSpot>,
    mapping: Mapping,
    schedule: RetrySchedule,
    jitter: Jitter,
    versions: Arc<dyn ContactVersions>,
    events: Arc<dyn EventLog>,
    locks: Option<Arc<ContactLocks>>,
    links: Option<Arc<dyn LeadLinks>>,
    updates: Option<Arc<UpdateDelivery>>,
    referrals: Option<Arc<crate::referral::deliver::ReferralDelivery>>,
    intents: Option<Arc<dyn WriteIntents>>,
    /// Where a delivered lead's follow-ups are queued, and how they are delivered ([`RetryWorker::with_follow_ups`]).
    follow_ups: Option<(Arc<dyn RetryQueue>, Arc<FollowUpDelivery>)>,
    missing: Arc<MissingProperties>,
    metrics: Metrics,
    notifications: Notifications,
}

/// One contact's share of a batch: the merged upsert and the messages behind it.
struct Group {
    upsert: ContactUpsert,
    /// The newest lead's `received_at` (the contact's version once written); `None`: only referral upserts.
    newest_lead: Option<OffsetDateTime>,
    messages: Vec<RetryMessage>,
}

/// A referral action that only writes contact properties by email (Extole share links, Advocate properties).
fn is_contact_upsert(m: &RetryMessage) -> bool {
    m.function == FunctionName::ReferralEvent
        && m.event.get("action").and_then(|a| a.as_str()) == Some("upsert_contact")
}

impl RetryWorker {
    pub fn new(
        hubspot: Arc<dyn HubSpot>,
        mapping: Mapping,
        schedule: RetrySchedule,
        jitter: Jitter,
        versions: Arc<dyn ContactVersions>,
        events: Arc<dyn EventLog>,
    ) -> Self {
        RetryWorker {
            hubspot,
            mapping,
            schedule,
            jitter,
            versions,
            events,
            locks: None,
            links: None,
            updates: None,
            referrals: None,
            intents: None,
            follow_ups: None,
            missing: MissingProperties::new(),
            metrics: Metrics::default(),
            notifications: Notifications::default(),
        }
    }

    /// Send a notice for each event a pass dead-letters, and each redriven one it delivers.
    pub fn with_notifications(mut self, notifications: Notifications) -> Self {
        self.notifications = notifications;
        self
    }

    /// Count each pass's outcomes (by the messages' functions) once its records are written.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Share what HubSpot said the portal lacks with the inline path (so neither spends a call on it).
    pub fn with_missing_properties(mut self, missing: Arc<MissingProperties>) -> Self {
        self.missing = missing;
        self
    }

    /// Share per-contact locks with the inline path of the same process (`hubrelay serve`): the worker's
    /// check-write-record of a contact then never interleaves with an inline delivery to it.
    pub fn with_contact_locks(mut self, locks: Arc<ContactLocks>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Send each contact write with a write id ([`WRITE_MARKER_PROPERTY`]) recorded in `intents` before the call,
    /// and reconcile a write whose answer never came before sending it again: no contact is written twice for
    /// one message, even across a crash (see [`intents`]).
    pub fn with_write_intents(mut self, intents: Arc<dyn WriteIntents>) -> Self {
        self.intents = Some(intents);
        self
    }

    /// Queue the follow-ups the mapping asks for (a deal, a history note) on `queue` when a lead is delivered,
    /// and deliver `lead-follow-up` messages (without it they are dead-lettered as `unsupported_function`).
    pub fn with_follow_ups(mut self, queue: Arc<dyn RetryQueue>) -> Self {
        let delivery = FollowUpDelivery::new(self.hubspot.clone(), self.mapping.clone());
        self.follow_ups = Some((queue, Arc::new(delivery)));
        self
    }

    /// Record each delivered lead's id → contact id (what status updates and activities resolve by).
    pub fn with_lead_links(mut self, links: Arc<dyn LeadLinks>) -> Self {
        self.links = Some(links);
        self
    }

    /// Deliver queued `status-update` and `activity` events too (without it they are dead-lettered as
    /// `unsupported_function`, to be redriven by a worker that has it).
    pub fn with_updates(mut self, updates: Arc<UpdateDelivery>) -> Self {
        self.updates = Some(updates);
        self
    }

    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    pub fn schedule(&self) -> &RetrySchedule {
        &self.schedule
    }

    /// Decide the fate of every message. Store errors (event log, versions) are returned: the caller must
    /// then leave the messages where they are, to be processed again. The event records of the whole
    /// pass are written at the end, in one go where the store allows ([`EventLog::put_events`]).
    pub async fn process(&self, messages: Vec<RetryMessage>, now: OffsetDateTime) -> Result<Vec<Outcome>, StoreError> {
        let mut pass = Pass {
            now,
            outcomes: Vec::with_capacity(messages.len()),
            log: Vec::new(),
            leads: self.has_follow_ups().then(Vec::new),
        };
        let mut by_email: BTreeMap<String, Vec<(RetryMessage, ContactUpsert)>> = BTreeMap::new();
        let mut updates = Vec::new();
        // Events dead-lettered once and redriven: event id → whether this pass makes their first attempt since.
        let mut redriven = HashMap::new();
        for message in messages {
            if message.not_before > now {
                pass.outcomes.push(Outcome { event_id: message.event_id.clone(), disposition: Disposition::NotYetDue });
                continue;
            }
            if message.was_redriven() {
                redriven.insert(message.event_id.clone(), message.awaits_first_attempt_since_redrive());
            }
            // Leads, and referral contact upserts (share links, Advocate properties): batched per email alike.
            if message.function != FunctionName::LeadCaptured && !is_contact_upsert(&message) {
                updates.push(message);
                continue;
            }
            match self.upsert_for(&message) {
                Ok(upsert) => by_email.entry(upsert.email.to_lowercase()).or_default().push((message, upsert)),
                Err(reason) => pass.dead_letter(message, reason),
            }
        }
        let mut contacts = by_email.into_iter().peekable();
        while contacts.peek().is_some() {
            let chunk: Vec<_> = contacts.by_ref().take(MAX_BATCH_INPUTS).collect();
            // Check, write and record under the contacts' locks, so no inline delivery slips in between.
            let _guard = match &self.locks {
                Some(locks) => Some(locks.lock(chunk.iter().map(|(email, _)| email.as_str())).await),
                None => None,
            };
            let mut contacts = Vec::with_capacity(chunk.len());
            for (email, members) in chunk {
                let applied = self.versions.last_applied(&email).await?;
                let mut live = Vec::with_capacity(members.len());
                for (message, upsert) in members {
                    // Only leads are versioned: a share link never supersedes a lead, nor is superseded.
                    if message.function == FunctionName::LeadCaptured
                        && applied.is_some_and(|a| a > message.received_at)
                    {
                        pass.superseded_lead(message);
                    } else {
                        live.push((message, upsert));
                    }
                }
                contacts.push((email, live));
            }
            self.reconcile(&mut contacts, &mut pass).await?;
            let groups: Vec<Group> = contacts.into_iter().filter_map(|(_, live)| Group::merge(live)).collect();
            if !groups.is_empty() {
                self.deliver_chunk(groups, &mut pass).await?;
            }
        }
        for message in updates {
            match message.function {
                FunctionName::ReferralEvent => self.deliver_referral(message, &mut pass).await,
                FunctionName::LeadFollowUp => self.deliver_follow_up(message, &mut pass).await,
                _ => self.deliver_update(message, &mut pass).await,
            }
        }
        self.queue_follow_ups(&pass).await?;
        self.events.put_events(&pass.log).await?;
        let notices = self.count(&pass.log, &redriven);
        self.notifications.send(notices).await;
        Ok(pass.outcomes)
    }

    /// Count what a pass recorded, and return the notices it calls for. A redriven event counts as redriven at
    /// the first pass that records it after the redrive (every outcome of a due message appends an attempt, so
    /// the next pass no longer sees it as fresh).
    fn count(&self, log: &[EventRecord], redriven: &HashMap<String, bool>) -> Vec<(NoticeKind, EventRecord)> {
        let mut notices = Vec::new();
        for record in log {
            let outcome = match record.status {
                EventStatus::Delivered => EventOutcome::Delivered,
                EventStatus::Superseded => EventOutcome::Superseded,
                EventStatus::Retrying => EventOutcome::Queued,
                EventStatus::DeadLettered if record.reason.as_ref().is_some_and(|r| r.code == RETRIES_EXHAUSTED) => {
                    EventOutcome::DeadLettered
                }
                EventStatus::DeadLettered => EventOutcome::Parked,
            };
            self.metrics.event(record.function, outcome);
            let redrive = redriven.get(&record.event_id);
            if redrive.is_some_and(|&first| first) {
                self.metrics.event(record.function, EventOutcome::Redriven);
            }
            let notice = match outcome {
                EventOutcome::Parked => Some(NoticeKind::Parked),
                EventOutcome::DeadLettered => Some(NoticeKind::DeadLettered),
                EventOutcome::Delivered if redrive.is_some() => Some(NoticeKind::Recovered),
                _ => None,
            };
            if let Some(kind) = notice {
                notices.push((kind, record.clone()));
            }
        }
        notices
    }

    fn has_follow_ups(&self) -> bool {
        self.follow_ups.is_some() && (self.mapping.deal.is_some() || self.mapping.history.note)
    }

    /// The follow-ups of the leads this pass delivered, queued before their fates are stored: a crash in
    /// between delivers the lead again (settled by its write id) and queues the same follow-ups again (same ids).
    async fn queue_follow_ups(&self, pass: &Pass) -> Result<(), StoreError> {
        let (Some((queue, _)), Some(leads)) = (&self.follow_ups, &pass.leads) else { return Ok(()) };
        for (m, contact_id) in leads {
            for follow_up in follow_ups(&self.mapping, &m.event_id, &m.event, m.received_at, contact_id, pass.now) {
                queue.enqueue(&follow_up).await?;
            }
        }
        Ok(())
    }

    /// A deal or a history note of a delivered lead.
    async fn deliver_follow_up(&self, m: RetryMessage, pass: &mut Pass) {
        let Some((_, delivery)) = &self.follow_ups else {
            let reason = DeadLetterReason {
                code: "unsupported_function".into(),
                message: "this worker does not deliver lead-follow-up events".into(),
            };
            return pass.dead_letter(m, reason);
        };
        match delivery.deliver_event(&m.event).await {
            Ok(_) => {
                let contact_id = m.event.get("contact_id").and_then(|c| c.as_str()).unwrap_or_default().to_string();
                pass.delivered(m, &contact_id)
            }
            Err(e) => self.failed(m, &e, pass),
        }
    }

    /// A status update or activity, one at a time (each takes its contact's lease).
    async fn deliver_update(&self, m: RetryMessage, pass: &mut Pass) {
        let Some(updates) = &self.updates else {
            let reason = DeadLetterReason {
                code: "unsupported_function".into(),
                message: format!("this worker does not deliver {} events", m.function.as_str()),
            };
            return pass.dead_letter(m, reason);
        };
        match updates.deliver_event(m.function, &m.event, &m.event_id, m.received_at, true).await {
            Ok(r) if r.outcome == UpdateOutcome::Delivered => pass.delivered(m, &r.contact_id),
            Ok(_) => pass.superseded(m),
            Err(e) => self.failed(m, &e, pass),
        }
    }

    /// Settle the messages whose last write may have landed ([`RetryMessage::write_intent`]) by one batch read
    /// of the contacts' markers: a marker equal to a message's write id means HubSpot stored that write, so the
    /// message is delivered without a second one. A failed read retries those contacts' messages unsent.
    async fn reconcile(
        &self,
        contacts: &mut [(String, Vec<(RetryMessage, ContactUpsert)>)],
        pass: &mut Pass,
    ) -> Result<(), StoreError> {
        let uncertain: Vec<String> = contacts
            .iter()
            .filter(|(_, live)| live.iter().any(|(m, _)| m.write_intent.is_some()))
            .map(|(email, _)| email.clone())
            .collect();
        if uncertain.is_empty() {
            return Ok(());
        }
        let found = match self.hubspot.read_contacts_by_email(&uncertain, &[WRITE_MARKER_PROPERTY]).await {
            Ok(found) => found,
            Err(e) => {
                let e = Failure::from(e);
                for (email, live) in contacts.iter_mut().filter(|(email, _)| uncertain.contains(email)) {
                    tracing::warn!(email = %mask_email(email), code = %e.code, "cannot read the write marker; retrying unsent");
                    for (m, _) in live.drain(..) {
                        self.failed(m, &e, pass);
                    }
                }
                return Ok(());
            }
        };
        let markers: HashMap<String, (String, String)> = found
            .into_iter()
            .filter_map(|c| {
                let email = c.properties.get("email")?.to_lowercase();
                let marker = c.properties.get(WRITE_MARKER_PROPERTY)?.clone();
                Some((email, (c.id, marker)))
            })
            .collect();
        let mut applied = Vec::new();
        let mut landed_all = Vec::new();
        for (email, live) in contacts.iter_mut() {
            let Some((contact_id, marker)) = markers.get(email.as_str()) else { continue };
            let (landed, rest): (Vec<_>, Vec<_>) =
                std::mem::take(live).into_iter().partition(|(m, _)| m.write_intent.as_deref() == Some(marker.as_str()));
            *live = rest;
            let leads = landed.iter().filter(|(m, _)| m.function == FunctionName::LeadCaptured);
            if let Some(newest) = leads.map(|(m, _)| m.received_at).max() {
                applied.push((email.clone(), newest));
            }
            if !landed.is_empty() {
                landed_all.extend(landed.into_iter().map(|(m, _)| (m, contact_id.clone())));
            }
        }
        self.versions.record_applied_all(&applied).await?;
        for (m, contact_id) in landed_all {
            if let (Some(links), Some(lead_id)) = (&self.links, m.event.get("lead_id").and_then(|v| v.as_str())) {
                links.link(lead_id, &contact_id, pass.now).await?;
            }
            tracing::info!(event_id = %m.event_id, "an earlier write landed; settled without writing again");
            pass.delivered(m, &contact_id);
        }
        Ok(())
    }

    /// Map the stored lead with today's mapping (a redrive after a mapping fix takes effect); a referral contact
    /// upsert as it was queued.
    fn upsert_for(&self, message: &RetryMessage) -> Result<ContactUpsert, DeadLetterReason> {
        if message.function == FunctionName::ReferralEvent {
            return match serde_json::from_value(message.event.clone()) {
                Ok(ReferralAction::UpsertContact(upsert)) => Ok(upsert),
                Ok(other) => Err(DeadLetterReason {
                    code: "unreadable_event".into(),
                    message: format!("a {} action is not a contact upsert", other.kind()),
                }),
                Err(e) => Err(DeadLetterReason { code: "unreadable_event".into(), message: e.to_string() }),
            };
        }
        let lead: Lead = serde_json::from_value(message.event.clone())
            .map_err(|e| DeadLetterReason { code: "unreadable_event".into(), message: e.to_string() })?;
        self.mapping.apply(&lead).map_err(|e| DeadLetterReason { code: e.code.into(), message: e.message })
    }

    /// One HubSpot call for up to 100 contacts. A 207 answer fails only the inputs it names (they retry or
    /// park on their own). A batch refused whole for properties the portal lacks parks every input carrying
    /// one and sends the rest again; refused for anything else, it is split so one bad input cannot sink the
    /// others. Inputs carrying a property known to be missing park without a call.
    async fn deliver_chunk(&self, chunk: Vec<Group>, pass: &mut Pass) -> Result<(), StoreError> {
        let mut pending = vec![chunk];
        while let Some(groups) = pending.pop() {
            let groups = self.park_missing(groups, pass);
            if groups.is_empty() {
                continue;
            }
            let (mut groups, marked) = self.mark_writes(groups).await?;
            let inputs: Vec<ContactUpsert> = groups.iter().map(|g| g.input(marked)).collect();
            match self.hubspot.upsert_contacts(&inputs).await {
                Ok(results) => {
                    let mut done = Vec::with_capacity(groups.len());
                    let mut unmarked = Vec::new();
                    // One result per input is the trait's promise; a group without one is retried, never dropped.
                    let mut results = results.into_iter();
                    for group in groups {
                        let result = results.next().unwrap_or_else(|| {
                            let message = "batch upsert answered no result for this input";
                            Err(crate::hubspot::HubSpotError::new(None, "unexpected_response", message))
                        });
                        match result {
                            Ok(contact) => done.push((group, contact)),
                            // The portal lacks the marker property: sent again without it (see `mark_writes`).
                            Err(e)
                                if marked
                                    && self.missing.learn(&e)
                                    && self.missing.is_missing(WRITE_MARKER_PROPERTY) =>
                            {
                                unmarked.push(group.answered(e.status));
                            }
                            Err(e) => {
                                let group = group.answered(e.status);
                                let e = Failure::from(e);
                                for m in group.messages {
                                    self.failed(m, &e, pass);
                                }
                            }
                        }
                    }
                    done.iter().for_each(|(g, _)| self.missing.forget(&g.upsert));
                    let applied: Vec<_> =
                        done.iter().filter_map(|(g, _)| Some((g.upsert.email.clone(), g.newest_lead?))).collect();
                    self.versions.record_applied_all(&applied).await?;
                    self.link_leads(&done, pass.now).await?;
                    for (group, contact) in done {
                        for m in group.messages {
                            pass.delivered(m, &contact.id);
                        }
                    }
                    if !unmarked.is_empty() {
                        pending.push(unmarked);
                    }
                }
                Err(e)
                    if self.missing.learn(&e)
                        && (groups.iter().any(|g| self.missing.carried_by(&g.upsert).is_some())
                            || (marked && self.missing.is_missing(WRITE_MARKER_PROPERTY))) =>
                {
                    // Parked by `park_missing` on the next turn, which sends the rest (without the marker when
                    // the portal lacks it: `hubrelay properties sync` creates it).
                    groups.iter_mut().for_each(|g| g.messages.iter_mut().for_each(|m| m.write_intent = None));
                    pending.push(groups);
                }
                Err(e) if e.outcome() == AttemptOutcome::Rejected && groups.len() > 1 => {
                    let right = groups.split_off(groups.len() / 2);
                    pending.push(groups);
                    pending.push(right);
                }
                Err(e) => {
                    let status = e.status;
                    let e = Failure::from(e);
                    for group in groups {
                        for m in group.answered(status).messages {
                            self.failed(m, &e, pass);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// With write intents (and the marker property not known missing): give each group its write id
    /// ([`Group::write_id`]), set it on the messages and record it before the call. Returns whether the inputs
    /// carry the marker.
    async fn mark_writes(&self, mut groups: Vec<Group>) -> Result<(Vec<Group>, bool), StoreError> {
        let Some(intents) = &self.intents else { return Ok((groups, false)) };
        if self.missing.is_missing(WRITE_MARKER_PROPERTY) {
            return Ok((groups, false));
        }
        let mut recorded = Vec::new();
        for group in &mut groups {
            let write_id = group.write_id();
            for m in &mut group.messages {
                m.write_intent = Some(write_id.clone());
                recorded.push((m.event_id.clone(), write_id.clone()));
            }
        }
        intents.record_intents(&recorded).await?;
        Ok((groups, true))
    }

    /// Park the groups carrying a property the portal is known to lack; the others go on. A group with a
    /// message just redriven is sent anyway: an operator redrives after creating the property.
    fn park_missing(&self, groups: Vec<Group>, pass: &mut Pass) -> Vec<Group> {
        let mut rest = Vec::with_capacity(groups.len());
        for group in groups {
            let redriven = group.messages.iter().any(RetryMessage::awaits_first_attempt_since_redrive);
            match self.missing.carried_by(&group.upsert).filter(|_| !redriven) {
                Some(property) => {
                    let failure = MissingProperties::failure(&property);
                    for m in group.messages {
                        self.failed(m, &failure, pass);
                    }
                }
                None => rest.push(group),
            }
        }
        rest
    }

    async fn link_leads(&self, done: &[(Group, UpsertedContact)], now: OffsetDateTime) -> Result<(), StoreError> {
        let Some(links) = &self.links else { return Ok(()) };
        for (group, contact) in done {
            for m in &group.messages {
                if let Some(lead_id) = m.event.get("lead_id").and_then(|v| v.as_str()) {
                    links.link(lead_id, &contact.id, now).await?;
                }
            }
        }
        Ok(())
    }

    fn failed(&self, mut m: RetryMessage, e: &Failure, pass: &mut Pass) {
        let now = pass.now;
        let attempt = m.attempts.len() as u32 + 1;
        m.attempts.push(e.attempt(attempt, now));
        let in_schedule = m.attempts_in_schedule();
        if e.outcome() == AttemptOutcome::Rejected {
            let reason = DeadLetterReason { code: e.code.clone(), message: e.message.clone() };
            return pass.dead_letter(m, reason);
        }
        match self.schedule.delay_after(in_schedule) {
            None => {
                let reason = DeadLetterReason {
                    code: RETRIES_EXHAUSTED.into(),
                    message: format!("{} attempts failed; last: {} ({})", in_schedule, e.code, e.message),
                };
                pass.dead_letter(m, reason)
            }
            Some(_) => {
                let delay = self.jitter.apply_for(retry_delay(&self.schedule, in_schedule, e, now), e);
                m.not_before = now + delay;
                pass.log.push(event_record(&m, EventStatus::Retrying, Some(m.not_before), None, None, now));
                tracing::info!(event_id = %m.event_id, attempt, code = %e.code, delay_ms = delay.as_millis() as u64, "retry scheduled");
                pass.outcomes.push(Outcome { event_id: m.event_id.clone(), disposition: Disposition::Retry(m) });
            }
        }
    }
}

/// One `process` call's results: the outcomes and the event records to write.
struct Pass {
    now: OffsetDateTime,
    outcomes: Vec<Outcome>,
    log: Vec<EventRecord>,
    /// The leads delivered, with their contacts, when they have follow-ups.
    leads: Option<Vec<(RetryMessage, String)>>,
}

impl Pass {
    fn dead_letter(&mut self, mut m: RetryMessage, reason: DeadLetterReason) {
        m.dead_letter_reason = Some(reason.clone());
        self.log.push(event_record(&m, EventStatus::DeadLettered, None, None, Some(reason.clone()), self.now));
        tracing::warn!(event_id = %m.event_id, code = %reason.code, "event dead-lettered");
        self.outcomes.push(Outcome { event_id: m.event_id.clone(), disposition: Disposition::DeadLetter(m, reason) });
    }

    /// The event's record gains the successful attempt (the queue message is removed, so it keeps none).
    fn delivered(&mut self, mut m: RetryMessage, contact_id: &str) {
        if let Some(leads) = self.leads.as_mut().filter(|_| m.function == FunctionName::LeadCaptured) {
            leads.push((m.clone(), contact_id.to_string()));
        }
        m.attempts.push(DeliveryAttempt::delivered(m.attempts.len() as u32 + 1, self.now));
        self.log.push(event_record(&m, EventStatus::Delivered, None, Some(contact_id.to_string()), None, self.now));
        self.outcomes.push(Outcome {
            event_id: m.event_id,
            disposition: Disposition::Delivered { contact_id: contact_id.to_string() },
        });
    }

    /// A lead older than its contact's newest: its values are not written, but it still arrived, so it gets its
    /// deal and note (their contact found by email when they are delivered).
    fn superseded_lead(&mut self, m: RetryMessage) {
        if let Some(leads) = self.leads.as_mut() {
            leads.push((m.clone(), String::new()));
        }
        self.superseded(m);
    }

    fn superseded(&mut self, m: RetryMessage) {
        self.log.push(event_record(&m, EventStatus::Superseded, None, None, None, self.now));
        self.outcomes.push(Outcome { event_id: m.event_id, disposition: Disposition::Superseded });
    }
}

/// The event-log record for a message in a given state.
pub fn event_record(
    m: &RetryMessage,
    status: EventStatus,
    next_attempt_at: Option<OffsetDateTime>,
    contact_id: Option<String>,
    reason: Option<DeadLetterReason>,
    now: OffsetDateTime,
) -> EventRecord {
    EventRecord {
        event_id: m.event_id.clone(),
        function: m.function,
        status,
        received_at: m.received_at,
        updated_at: now,
        next_attempt_at,
        // Error text is masked where failures are made; masked again here, as records outlive the code
        // that wrote them and the record is what operators list.
        attempts: m
            .attempts
            .iter()
            .map(|a| DeliveryAttempt { error: a.error.as_deref().map(mask_message), ..a.clone() })
            .collect(),
        contact_id,
        email_masked: crate::store::event_email(&m.event).map(mask_email),
        email_hash: crate::store::event_email(&m.event).map(crate::store::email_hash),
        reason: reason.map(|r| DeadLetterReason { message: mask_message(&r.message), ..r }),
    }
}

impl Group {
    /// One contact's messages as one input: oldest first, so the newest lead's values win (ties keep
    /// arrival order). `None` when there is nothing left to write.
    fn merge(mut members: Vec<(RetryMessage, ContactUpsert)>) -> Option<Group> {
        members.sort_by_key(|(m, _)| m.received_at);
        let newest_lead =
            members.iter().filter(|(m, _)| m.function == FunctionName::LeadCaptured).map(|(m, _)| m.received_at).max();
        let mut upsert: Option<ContactUpsert> = None;
        let mut messages = Vec::with_capacity(members.len());
        for (message, u) in members {
            match upsert.as_mut() {
                None => upsert = Some(u),
                Some(merged) => {
                    merged.email = u.email;
                    merged.properties.extend(u.properties);
                }
            }
            messages.push(message);
        }
        Some(Group { upsert: upsert?, newest_lead, messages })
    }
}

impl Group {
    /// The id of a write of exactly these messages: a hash of their event ids. Another set of messages (some of
    /// them sent again alone) is another write with another id, so a marker settles only the messages that were in
    /// the write that landed; the same set sent twice carries the same id, which is how a write sent twice shows.
    fn write_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut ids: Vec<&str> = self.messages.iter().map(|m| m.event_id.as_str()).collect();
        ids.sort_unstable();
        format!("wr_{}", hex::encode(&Sha256::digest(ids.join("\n").as_bytes())[..16]))
    }

    /// What is sent for the group: the merged upsert, with the marker (the write id [`RetryWorker::mark_writes`] set
    /// on its messages) when `marked`.
    fn input(&self, marked: bool) -> ContactUpsert {
        let mut input = self.upsert.clone();
        if let Some(id) = self.messages.first().and_then(|m| m.write_intent.clone()).filter(|_| marked) {
            input.properties.insert(WRITE_MARKER_PROPERTY.into(), id);
        }
        input
    }

    /// The group after a failed answer with `status`: its messages keep their write id only when the write may
    /// have landed anyway.
    fn answered(mut self, status: Option<u16>) -> Group {
        if !intents::uncertain(status) {
            self.messages.iter_mut().for_each(|m| m.write_intent = None);
        }
        self
    }
}

impl Clone for Group {
    fn clone(&self) -> Self {
        Group { upsert: self.upsert.clone(), newest_lead: self.newest_lead, messages: self.messages.clone() }
    }
}

/// How long the worker may wait before giving HubSpot another try, at most (a `Retry-After` or a daily
/// reset never parks an event for longer).
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
