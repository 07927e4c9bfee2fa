//! How a delivery fails, for every event kind and every upstream: one [`Failure`] that says whether to
//! retry or park, why (a stable code and the upstream's own text), and who answered — HubSpot, Extole,
//! impact.com, or nobody (hubrelay held the event back: its store was down, the contact was busy, the data
//! cannot be sent). The retry path (the worker, the inline intake) decides from it alone.

use time::OffsetDateTime;

use crate::domain::{AttemptOutcome, DeliveryAttempt};
use crate::hubspot::HubSpotError;
use crate::partners::PartnerError;
use crate::store::StoreError;

/// Try again later, or park in the dead-letter queue until someone fixes the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    Park,
}

/// One failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{code}: {message}", system.map(|s| format!("{s} ")).unwrap_or_default())]
pub struct Failure {
    pub verdict: Verdict,
    /// Stable code: HubSpot's (`hubspot_unavailable`, `property_doesnt_exist`, `rate_limited`, ...), a
    /// partner's (`extole_unavailable`, ...), or ours (`store_unavailable`, `contact_busy`,
    /// `contact_not_found`, `not_configured`, `unreadable_event`, ...).
    pub code: String,
    pub message: String,
    /// The system that answered or could not be reached (`hubspot`, `extole`, `impact`); `None` when the
    /// event was never sent.
    pub system: Option<&'static str>,
    /// That system's HTTP status, when it answered at all.
    pub status: Option<u16>,
    pub correlation_id: Option<String>,
    /// HubSpot's rate-limit `policyName` on a 429 (`TEN_SECONDLY_ROLLING`, `SECONDLY`, `DAILY`).
    pub policy: Option<String>,
    /// `Retry-After` (seconds), when sent.
    pub retry_after_secs: Option<u64>,
    /// A `DAILY` 429: seconds until the portal's daily budget resets (its midnight, in its time zone).
    pub resets_in_secs: Option<u64>,
}

impl Failure {
    /// Held back by hubrelay, to be tried again (nothing was sent).
    pub fn retry(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure::ours(Verdict::Retry, code, message)
    }

    /// Not deliverable as it stands: parked for a fix and a redrive.
    pub fn park(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure::ours(Verdict::Park, code, message)
    }

    fn ours(verdict: Verdict, code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            verdict,
            code: code.into(),
            message: message.into(),
            system: None,
            status: None,
            correlation_id: None,
            policy: None,
            retry_after_secs: None,
            resets_in_secs: None,
        }
    }

    /// The outcome as an attempt's history records it.
    pub fn outcome(&self) -> AttemptOutcome {
        match self.verdict {
            Verdict::Retry => AttemptOutcome::Retryable,
            Verdict::Park => AttemptOutcome::Rejected,
        }
    }

    /// The record of this failure as attempt `attempt` of an event.
    pub fn attempt(&self, attempt: u32, at: OffsetDateTime) -> DeliveryAttempt {
        DeliveryAttempt {
            attempt,
            at,
            outcome: self.outcome(),
            system: self.system.map(String::from),
            status: self.status,
            correlation_id: self.correlation_id.clone(),
            error_code: Some(self.code.clone()),
            error: Some(self.message.clone()),
        }
    }
}

fn verdict(outcome: AttemptOutcome) -> Verdict {
    match outcome {
        AttemptOutcome::Retryable => Verdict::Retry,
        AttemptOutcome::Rejected | AttemptOutcome::Delivered => Verdict::Park,
    }
}

impl From<HubSpotError> for Failure {
    fn from(e: HubSpotError) -> Self {
        Failure {
            verdict: verdict(e.outcome()),
            // Held back by our own rate limiter: never sent.
            system: (e.code != "client_rate_limited").then_some("hubspot"),
            status: e.status,
            code: e.code,
            // Stored with the event and shown to operators: HubSpot's text may quote the refused email or phone.
            message: crate::pii::mask_message(&e.message),
            correlation_id: e.correlation_id,
            policy: e.policy,
            retry_after_secs: e.retry_after_secs,
            resets_in_secs: e.resets_in_secs,
        }
    }
}

impl From<PartnerError> for Failure {
    fn from(e: PartnerError) -> Self {
        Failure {
            verdict: verdict(e.outcome()),
            system: Some(e.partner),
            status: e.status,
            // Partners echo refused values as HubSpot does.
            message: crate::pii::mask_message(&e.to_string()),
            code: e.code,
            correlation_id: None,
            policy: None,
            retry_after_secs: e.retry_after_secs,
            resets_in_secs: None,
        }
    }
}

/// Our own store failed before the event was sent: retried.
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::retry("store_unavailable", format!("not sent: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstream_keeps_its_name_status_and_verdict() {
        let hs = Failure::from(HubSpotError::new(Some(503), "hubspot_unavailable", "down"));
        assert_eq!((hs.system, hs.status, hs.verdict), (Some("hubspot"), Some(503), Verdict::Retry));
        let hs = Failure::from(HubSpotError::new(Some(400), "property_doesnt_exist", "no such property"));
        assert_eq!(hs.outcome(), AttemptOutcome::Rejected);
        let p = PartnerError {
            partner: "extole",
            status: Some(429),
            code: "rate_limited".into(),
            message: "slow down".into(),
            retry_after_secs: Some(7),
        };
        let f = Failure::from(p);
        assert_eq!(
            (f.system, f.status, f.retry_after_secs, f.verdict),
            (Some("extole"), Some(429), Some(7), Verdict::Retry)
        );
        let s = Failure::from(StoreError::Unavailable("disk".into()));
        assert_eq!((s.system, s.status, s.code.as_str(), s.verdict), (None, None, "store_unavailable", Verdict::Retry));
        let a = f.attempt(2, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            (a.system.as_deref(), a.status, a.error_code.as_deref()),
            (Some("extole"), Some(429), Some("rate_limited"))
        );
    }
}
