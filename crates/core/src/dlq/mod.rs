//! The on-call side of the dead-letter queue: list, inspect, redrive and purge dead-lettered events, on the
//! local SQLite store ([`LocalDeadLetters`]) or on SQS ([`SqsDeadLetters`]). `hubrelay dlq` is a thin shell
//! over this module.
//!
//! A redrive restarts the event's retry schedule ([`RetryMessage::redrive`]: history kept, due now) and puts it
//! on the retry queue, then removes it from the dead-letter queue, in that order: a crash in between leaves a
//! duplicate at worst, never a loss. An event the event log already records as `delivered` is not sent again:
//! it is only removed from the dead-letter queue and reported.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{DeadLetterReason, FunctionName, RetryMessage};
use crate::pii::mask_email;
use crate::store::{EventLog, EventRecord, EventStatus, StoreError};

mod redrive;

pub use redrive::Redriver;

/// One dead-lettered event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub message: RetryMessage,
    /// When it entered the dead-letter queue, when known (SQS: `SentTimestamp`; a message SQS itself moved
    /// after `maxReceiveCount` keeps the time it was sent to the retry queue).
    pub dead_lettered_at: Option<OffsetDateTime>,
}

impl DeadLetter {
    pub fn event_id(&self) -> &str {
        &self.message.event_id
    }

    pub fn function(&self) -> FunctionName {
        self.message.function
    }

    pub fn received_at(&self) -> OffsetDateTime {
        self.message.received_at
    }

    /// Time since the event was received (what `dlq list` shows as AGE and `--older-than` compares).
    pub fn age(&self, now: OffsetDateTime) -> Duration {
        (now - self.message.received_at).try_into().unwrap_or(Duration::ZERO)
    }

    pub fn attempts(&self) -> usize {
        self.message.attempts.len()
    }

    /// The error code of the last attempt, else the dead-letter reason's code.
    pub fn last_error_code(&self) -> Option<&str> {
        self.message
            .attempts
            .last()
            .and_then(|a| a.error_code.as_deref())
            .or_else(|| self.message.dead_letter_reason.as_ref().map(|r| r.code.as_str()))
    }

    pub fn reason(&self) -> Option<&DeadLetterReason> {
        self.message.dead_letter_reason.as_ref()
    }
}

/// Which dead letters a redrive takes. Every given criterion must hold; at least one criterion, or `all`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// These events only (empty: any).
    pub event_ids: Vec<String>,
    /// The dead-letter reason's code or the last attempt's error code.
    pub error_code: Option<String>,
    pub function: Option<FunctionName>,
    /// Received more than this long ago.
    pub older_than: Option<Duration>,
    /// Everything in the dead-letter queue.
    pub all: bool,
}

impl Selection {
    pub fn all() -> Self {
        Selection { all: true, ..Default::default() }
    }

    pub fn ids<S: Into<String>>(ids: impl IntoIterator<Item = S>) -> Self {
        Selection { event_ids: ids.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    fn has_criteria(&self) -> bool {
        !self.event_ids.is_empty() || self.error_code.is_some() || self.function.is_some() || self.older_than.is_some()
    }

    /// Refuses an empty selection (a redrive of everything must be asked for with `all`) and `all` mixed
    /// with criteria.
    pub fn validate(&self) -> Result<(), String> {
        match (self.all, self.has_criteria()) {
            (true, true) => Err("--all cannot be combined with event ids or filters".into()),
            (false, false) => {
                Err("name event ids, give a filter (--error-code, --function, --older-than) or pass --all".into())
            }
            _ => Ok(()),
        }
    }

    pub fn matches(&self, letter: &DeadLetter, now: OffsetDateTime) -> bool {
        if self.all {
            return true;
        }
        if !self.has_criteria() {
            return false;
        }
        if !self.event_ids.is_empty() && !self.event_ids.iter().any(|id| id == letter.event_id()) {
            return false;
        }
        if let Some(code) = &self.error_code {
            let reason = letter.reason().map(|r| r.code.as_str());
            let last = letter.message.attempts.last().and_then(|a| a.error_code.as_deref());
            if reason != Some(code.as_str()) && last != Some(code.as_str()) {
                return false;
            }
        }
        if self.function.is_some_and(|f| f != letter.function()) {
            return false;
        }
        if self.older_than.is_some_and(|min| letter.age(now) <= min) {
            return false;
        }
        true
    }
}

/// One event a redrive could not handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveFailure {
    pub event_id: String,
    pub error: String,
}

/// What a redrive did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    pub dry_run: bool,
    /// Back on the retry queue with a restarted schedule.
    pub moved: Vec<String>,
    /// The event log says delivered: removed from the dead-letter queue, not sent again.
    pub already_delivered: Vec<String>,
    /// Requested event ids that are not in the dead-letter queue.
    pub not_found: Vec<String>,
    /// Dead letters the selection did not take (left where they are).
    pub not_matched: usize,
    /// Extra copies of an event already handled in this run (SQS may hold duplicates), removed.
    pub duplicates_removed: usize,
    /// Dead letters whose body cannot be read (left where they are; see `dlq list`).
    pub unreadable: usize,
    pub failed: Vec<RedriveFailure>,
}

/// Progress of a redrive: `(done, total)` over the selected dead letters; called with `(0, total)` first.
pub type Progress<'a> = &'a mut (dyn FnMut(usize, usize) + Send);

/// A dead letter held for a redrive: the letter (or why its body cannot be read) and the queue's own
/// handle on this copy (a SQLite row, an SQS receipt handle).
pub struct Held {
    pub letter: Result<DeadLetter, String>,
    pub handle: String,
}

impl Held {
    pub fn event_id(&self) -> Option<&str> {
        self.letter.as_ref().ok().map(|l| l.event_id())
    }
}

/// Why [`DeadLetters::take`] failed: before anything changed, or after the message was requeued (the
/// dead-letter copy is still there: a duplicate at worst, never a loss).
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error(transparent)]
    NotRequeued(StoreError),
    #[error(transparent)]
    NotRemoved(StoreError),
}

impl TakeError {
    pub fn into_store_error(self) -> StoreError {
        match self {
            TakeError::NotRequeued(e) | TakeError::NotRemoved(e) => e,
        }
    }
}

/// A dead-letter queue the on-call tool can work on (SQLite locally, SQS in AWS). Listing, showing and
/// purging are the queue's own; a redrive is [`Redriver`]'s, over [`DeadLetters::hold`],
/// [`DeadLetters::take`] and [`DeadLetters::release`].
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Where the dead letters live, for messages (`local store .hubrelay/hubrelay.db`, `SQS <url>`).
    fn describe(&self) -> String;

    /// Every dead letter, oldest first.
    async fn list(&self) -> Result<Vec<DeadLetter>, StoreError>;

    /// The dead letter of `event_id`.
    async fn get(&self, event_id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Delete the dead letter of `event_id` for good. Returns how many copies were removed (0: not found).
    async fn purge(&self, event_id: &str) -> Result<usize, StoreError>;

    /// The event log a redrive consults (which events were delivered meanwhile) and updates.
    fn event_log(&self) -> Result<&dyn EventLog, StoreError>;

    /// What the queue needs before a redrive may start (SQS: the retry queue's URL, unless `dry_run`).
    fn check_redrive(&self, _dry_run: bool) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every dead letter, held for the redrive's duration (SQS: received and kept invisible).
    async fn hold(&self) -> Result<Vec<Held>, StoreError>;

    /// Remove the held copy, after putting `requeue` on the retry queue when given. `Ok(false)`: the copy
    /// changed meanwhile (purged, or dead-lettered again) and nothing was done.
    async fn take(&self, held: &Held, requeue: Option<&RetryMessage>) -> Result<bool, TakeError>;

    /// Let go of held copies that stay in the queue.
    async fn release(&self, held: &[&Held]);
}

/// What the event log says before a redrive: whether the event is settled, and the record to restore
/// should the move fail.
pub(crate) struct LogCheck {
    pub(crate) delivered: bool,
    pub(crate) previous: Option<EventRecord>,
}

pub(crate) async fn check_log(events: &dyn EventLog, event_id: &str) -> Result<LogCheck, StoreError> {
    let previous = events.get_event(event_id).await?;
    Ok(LogCheck { delivered: previous.as_ref().is_some_and(|r| r.status == EventStatus::Delivered), previous })
}

/// The event-log record of a redriven message: retrying, due now, no dead-letter reason, history kept.
pub(crate) fn retrying_record(previous: Option<&EventRecord>, m: &RetryMessage, now: OffsetDateTime) -> EventRecord {
    match previous {
        Some(p) => EventRecord {
            status: EventStatus::Retrying,
            updated_at: now,
            next_attempt_at: Some(m.not_before),
            attempts: m.attempts.clone(),
            reason: None,
            // A record from before records kept the hash gets it now.
            email_hash: p
                .email_hash
                .clone()
                .or_else(|| crate::store::event_email(&m.event).map(crate::store::email_hash)),
            ..p.clone()
        },
        None => EventRecord {
            event_id: m.event_id.clone(),
            function: m.function,
            status: EventStatus::Retrying,
            received_at: m.received_at,
            updated_at: now,
            next_attempt_at: Some(m.not_before),
            attempts: m.attempts.clone(),
            contact_id: None,
            email_masked: crate::store::event_email(&m.event).map(mask_email),
            email_hash: crate::store::event_email(&m.event).map(crate::store::email_hash),
            reason: None,
        },
    }
}

/// Put back what the event log said before a failed move (best effort: the failure is reported anyway).
pub(crate) async fn restore_log(events: &dyn EventLog, previous: Option<EventRecord>) {
    if let Some(record) = previous {
        if let Err(e) = events.put_event(&record).await {
            tracing::warn!(event_id = %record.event_id, error = %e, "could not restore the event record");
        }
    }
}

/// Ids asked for by the selection that the queue does not hold.
pub(crate) fn missing_ids<'a>(selection: &Selection, present: impl Iterator<Item = &'a str>) -> Vec<String> {
    let present: std::collections::HashSet<&str> = present.collect();
    let mut missing: Vec<String> =
        selection.event_ids.iter().filter(|id| !present.contains(id.as_str())).cloned().collect();
    missing.dedup();
    missing
}

/// An age (`--older-than`, `--since`) in the one duration grammar of [`crate::config::parse_duration`]:
/// `90s`, `45m`, `2h`, `1d`, `1w`, `1h30m`.
/// A point in time as an operator types it: RFC 3339 (`2026-12-07T01:00:00Z`), or a UTC date and time as a
/// browser's `datetime-local` input sends it (`2026-12-07T01:00`, also with a space, or with seconds).
pub fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let local = text.replacen(' ', "T", 1);
    let formats = [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    formats
        .iter()
        .find_map(|f| time::PrimitiveDateTime::parse(&local, f).ok())
        .map(|t| t.assume_utc())
        .ok_or_else(|| format!("invalid time {text:?}: 2026-12-07T01:00 (UTC) or RFC 3339"))
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).map_err(|e| format!("invalid duration {:?}: {e}", text.trim()))
}

/// `lead-captured` → [`FunctionName::LeadCaptured`].
pub fn parse_function(text: &str) -> Result<FunctionName, String> {
    FunctionName::parse(text.trim()).ok_or_else(|| {
        let known: Vec<_> = FunctionName::ALL.iter().map(|f| f.as_str()).collect();
        format!("unknown function {text:?} (known: {})", known.join(", "))
    })
}

/// `delivered`, `retrying`, `dead_lettered` (or `dead-lettered`), `superseded`.
pub fn parse_status(text: &str) -> Result<EventStatus, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().replace('-', "_")))
        .map_err(|_| format!("unknown status {text:?} (known: delivered, retrying, dead_lettered, superseded)"))
}

/// A shared event log for the backends.
pub type SharedEventLog = Arc<dyn EventLog>;

#[cfg(test)]
mod instant_tests {
    use super::parse_instant;
    use time::macros::datetime;

    #[test]
    fn times_are_read_as_browsers_and_rfc_3339_write_them() {
        for text in ["2026-12-07T01:00", "2026-12-07 01:00", "2026-12-07T01:00:00", "2026-12-07T02:00:00+01:00"] {
            assert_eq!(parse_instant(text).unwrap(), datetime!(2026-12-07 01:00 UTC), "{text}");
        }
        assert!(parse_instant("yesterday").unwrap_err().contains("2026-12-07T01:00"));
    }
}
