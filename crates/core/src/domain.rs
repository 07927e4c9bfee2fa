//! The things hubrelay moves around: contact upserts, events, delivery attempts and the retry schedule.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One contact write: create or update the contact whose email is `email`, with `properties`
/// (HubSpot property name → value; HubSpot takes every value as a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUpsert {
    pub email: String,
    pub properties: BTreeMap<String, String>,
}

/// What HubSpot answered for one upserted contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertedContact {
    pub id: String,
    /// true when HubSpot created the contact, false when it updated an existing one.
    pub created: bool,
}

/// Which function accepted an event; the retry worker dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionName {
    LeadCaptured,
    StatusUpdate,
    Activity,
    ReferralEvent,
    /// What follows a delivered lead (a deal, a history note), queued by hubrelay itself.
    LeadFollowUp,
}

impl FunctionName {
    pub const ALL: [FunctionName; 5] = [
        FunctionName::LeadCaptured,
        FunctionName::StatusUpdate,
        FunctionName::Activity,
        FunctionName::ReferralEvent,
        FunctionName::LeadFollowUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::LeadCaptured => "lead-captured",
            FunctionName::StatusUpdate => "status-update",
            FunctionName::Activity => "activity",
            FunctionName::ReferralEvent => "referral-event",
            FunctionName::LeadFollowUp => "lead-follow-up",
        }
    }

    pub fn parse(s: &str) -> Option<FunctionName> {
        FunctionName::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    /// Transient trouble (timeout, 5xx, 423, 429): try again later.
    Retryable,
    /// HubSpot refused the data for a reason only a fix can cure (missing property, bad option, auth).
    Rejected,
}

/// One try at delivering an event to HubSpot, kept in the event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub outcome: AttemptOutcome,
    /// The system that answered or could not be reached (`hubspot`, `extole`, `impact`); absent when
    /// hubrelay held the event back, and in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// That system's HTTP status, when it answered at all.
    pub status: Option<u16>,
    pub correlation_id: Option<String>,
    /// Stable error code (`hubspot_unavailable`, `property_doesnt_exist`, ...).
    pub error_code: Option<String>,
    pub error: Option<String>,
}

impl DeliveryAttempt {
    /// Attempt `attempt`, which delivered the event at `at` (failed ones come from `delivery::Failure::attempt`).
    pub fn delivered(attempt: u32, at: OffsetDateTime) -> Self {
        DeliveryAttempt {
            attempt,
            at,
            outcome: AttemptOutcome::Delivered,
            system: None,
            status: Some(200),
            correlation_id: None,
            error_code: None,
            error: None,
        }
    }
}

/// A message on the retry queue or in the dead-letter queue: the original event, its idempotency key and
/// its attempt history. The same JSON travels through SQS and the local SQLite queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryMessage {
    /// Format version, so a newer worker can read older messages.
    pub version: u32,
    pub event_id: String,
    pub function: FunctionName,
    pub idempotency_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The normalised event as accepted (for `lead-captured`: the parsed lead). Kept rather than the mapped
    /// upsert so a mapping fix followed by a redrive takes effect.
    pub event: serde_json::Value,
    pub attempts: Vec<DeliveryAttempt>,
    /// Do not deliver before this time (delays longer than SQS's 15 minutes are chained).
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Set when the event was dead-lettered by our code (SQS's own maxReceiveCount moves leave it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<DeadLetterReason>,
    /// How many of `attempts` came before the current run of the schedule: a redrive restarts the schedule
    /// (and sets this to `attempts.len()`) while keeping the history.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schedule_offset: u32,
    /// How many times an operator redrove it from the dead-letter queue (a message dead-lettered before any
    /// attempt has no `schedule_offset` to tell it by).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrives: u32,
    /// The tenant the event came in for, on a queue that tenants share (AWS); `None`: the default tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// The write id of a HubSpot write sent for this message whose answer never came back (a timeout, a 5xx, a
    /// crash in flight): before sending it again the worker reads the contact's marker property and, when the
    /// write landed, settles the message without writing twice (see [`crate::worker::WriteIntents`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_intent: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RetryMessage {
    /// The newest format this code reads and writes.
    pub const VERSION: u32 = 2;
    /// The format of a message without a tenant: what workers before tenants read too.
    pub const UNSCOPED_VERSION: u32 = 1;

    /// The message as `tenant`'s: version 2, so a worker that predates tenants (a rollback) dead-letters it
    /// rather than deliver it to the default portal.
    pub fn for_tenant(mut self, tenant: Option<TenantId>) -> Self {
        if tenant.is_some() {
            self.version = self.version.max(Self::VERSION);
        }
        self.tenant = tenant;
        self
    }

    /// A message for an event accepted at `now` (due at once, no attempts yet).
    pub fn new(
        function: FunctionName,
        event_id: &str,
        idempotency_key: &str,
        event: serde_json::Value,
        now: OffsetDateTime,
    ) -> Self {
        RetryMessage {
            version: Self::UNSCOPED_VERSION,
            event_id: event_id.to_string(),
            function,
            idempotency_key: idempotency_key.to_string(),
            received_at: now,
            event,
            attempts: Vec::new(),
            not_before: now,
            dead_letter_reason: None,
            schedule_offset: 0,
            redrives: 0,
            tenant: None,
            write_intent: None,
        }
    }

    pub fn last_attempt(&self) -> Option<&DeliveryAttempt> {
        self.attempts.last()
    }

    /// Attempts made in the current run of the schedule (the inline attempt counts as the first).
    pub fn attempts_in_schedule(&self) -> u32 {
        (self.attempts.len() as u32).saturating_sub(self.schedule_offset)
    }

    /// Redriven by an operator and not attempted since: the next attempt is its first after the redrive.
    pub fn awaits_first_attempt_since_redrive(&self) -> bool {
        self.was_redriven() && self.attempts_in_schedule() == 0
    }

    /// Redriven by an operator at least once (messages from before `redrives` existed: a restarted schedule).
    pub fn was_redriven(&self) -> bool {
        self.redrives > 0 || self.schedule_offset > 0
    }

    /// When the current run of its schedule began: its arrival, or its last redrive (the first attempt since, or
    /// the redrive itself before that attempt). Waits that give up after a while count from here, so a redrive
    /// gives them their whole wait again.
    pub fn run_started_at(&self) -> OffsetDateTime {
        if !self.was_redriven() {
            return self.received_at;
        }
        self.attempts.get(self.schedule_offset as usize).map(|a| a.at).unwrap_or(self.not_before)
    }

    /// Prepare a dead-lettered message for another run: schedule restarted, due now, reason cleared.
    pub fn redrive(&mut self, now: OffsetDateTime) {
        self.redrives += 1;
        self.schedule_offset = self.attempts.len() as u32;
        self.not_before = now;
        self.dead_letter_reason = None;
    }
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterReason {
    pub code: String,
    pub message: String,
}

/// The documented retry schedule: the delay before attempt `n + 1` after attempt `n` failed.
/// Attempt 1 happens at once (inline, while the sender waits); then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
/// 14 h, 20 h, 24 h: about 75.6 h in all, the Standard Webhooks shape of "up to 3 days".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let s = Duration::from_secs;
        RetrySchedule {
            delays: vec![
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(14 * 3600),
                s(20 * 3600),
                s(24 * 3600),
            ],
        }
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        RetrySchedule { delays }
    }

    /// The delay after failed attempt `attempt` (1-based), or `None` when the schedule is exhausted.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let idx = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.delays.get(idx).copied()
    }

    /// Total attempts the schedule allows (the inline one included).
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The span from the first attempt to the last.
    pub fn total(&self) -> Duration {
        self.delays.iter().sum()
    }
}

/// A fresh event id: `evt_` and 32 hex digits, a UUIDv7 (the millisecond, then a counter and random bits; ids
/// show when they were made, and are not secrets). New ids sort after older ones, so the local store's `events`
/// key inserts at the end of its B-tree instead of a random page (measured in docs/performance.md
/// "Throughput"); DynamoDB hashes its keys, so order costs nothing there.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// The tenant of the routes without a prefix.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant's id: a slug of 1 to 40 lowercase letters, digits and inner dashes (it is a URL segment, a
/// folder name and part of every stored key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_TENANT
    }
}

impl FromStr for TenantId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_chars = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 40 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(format!(
                "`{s}` is not a tenant id: use 1 to 40 lowercase letters, digits and dashes (not first or last), e.g. `lakeside-motors`"
            ));
        }
        Ok(TenantId(s.to_string()))
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redrive_starts_a_new_run_of_the_schedule() {
        let arrived = OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let mut m = RetryMessage::new(FunctionName::ReferralEvent, "evt_1", "k", serde_json::json!({}), arrived);
        let attempt = |n: u32, at: OffsetDateTime| DeliveryAttempt {
            attempt: n,
            at,
            outcome: AttemptOutcome::Retryable,
            system: None,
            status: None,
            correlation_id: None,
            error_code: None,
            error: None,
        };
        m.attempts.push(attempt(1, arrived));
        m.attempts.push(attempt(2, arrived + Duration::from_secs(5)));
        assert_eq!(m.run_started_at(), arrived, "the first run began on arrival");
        let redriven = arrived + Duration::from_secs(7200);
        m.redrive(redriven);
        assert_eq!(m.run_started_at(), redriven, "redriven, not attempted since: the redrive");
        m.attempts.push(attempt(3, redriven + Duration::from_secs(1)));
        m.attempts.push(attempt(4, redriven + Duration::from_secs(6)));
        assert_eq!(m.run_started_at(), redriven + Duration::from_secs(1), "the first attempt since");
    }

    #[test]
    fn event_ids_are_distinct_and_sort_by_creation() {
        let ids: Vec<String> = (0..1000).map(|_| new_event_id()).collect();
        for id in &ids {
            let hex = id.strip_prefix("evt_").expect("evt_ prefix");
            assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "ids made one after another are distinct and in order");
    }

    #[test]
    fn default_schedule_spans_about_three_days() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_after(2), Some(Duration::from_secs(300)));
        assert_eq!(s.delay_after(10), None);
        assert_eq!(s.delay_after(0), None);
        assert_eq!(s.max_attempts(), 10);
        // 75 h 35 m 5 s
        assert_eq!(s.total(), Duration::from_secs(75 * 3600 + 35 * 60 + 5));
    }
}
