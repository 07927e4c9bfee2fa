//! Local test doubles of the partner APIs hubrelay calls: Extole's events API ([`ExtoleSandbox`]) and
//! impact.com conversions ([`ImpactSandbox`]).
//!
//! Each checks auth and the fields the partner requires, answers with the partner's own success and error
//! shapes, dedupes the way the partner does (Extole keeps the first `partner_conversion_id`, impact the first
//! `OrderId` per event type: duplicates are accepted and marked, since both partners only drop them while
//! processing), and records every request. Admin routes (no auth, never faulted, not recorded):
//! - `GET /__sandbox/received`: every request so far, oldest first ([`Received`]);
//! - `GET|POST /__sandbox/faults`: make the next `fail_next` API requests answer `status` ([`PartnerFaults`]);
//! - `POST /__sandbox/reset`: forget requests, dedupe state and faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

mod advocate;
mod extole;
mod impact;

#[cfg(test)]
mod tests;

pub use advocate::{AdvocateSandbox, AdvocateSandboxOptions};
pub use extole::{ExtoleSandbox, ExtoleSandboxOptions};
pub use impact::{ImpactSandbox, ImpactSandboxOptions};

/// Forced failures for the next API requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartnerFaults {
    /// How many of the next API requests (after auth) fail.
    pub fail_next: u32,
    /// Their status; anything outside 400..=599 means 500.
    pub status: u16,
    /// `Retry-After` (seconds) sent with them.
    pub retry_after_secs: Option<u64>,
}

impl PartnerFaults {
    pub fn effective_status(&self) -> u16 {
        if (400..=599).contains(&self.status) {
            self.status
        } else {
            500
        }
    }
}

/// One request a partner sandbox received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The JSON body, or the form fields as an object (credentials are never recorded).
    pub body: Value,
    /// The id the partner answered (Extole event id, impact submission id) when accepted.
    pub id: Option<String>,
    /// The id of the first accepted request with the same dedupe key, when this one is a duplicate.
    pub duplicate_of: Option<String>,
    /// The error message answered, when refused.
    pub error: Option<String>,
}

impl Received {
    /// Accepted and not a duplicate: what the partner will count.
    pub fn counted(&self) -> bool {
        (200..300).contains(&self.status) && self.duplicate_of.is_none()
    }
}

/// What both sandboxes keep: the requests, the dedupe keys and the faults.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    received: Vec<Received>,
    seen: HashMap<String, String>,
    faults: PartnerFaults,
    next_seq: u64,
}

impl Journal {
    /// Consumes one forced failure, if any is pending.
    pub(crate) fn take_fault(&mut self) -> Option<PartnerFaults> {
        if self.faults.fail_next == 0 {
            return None;
        }
        self.faults.fail_next -= 1;
        Some(self.faults.clone())
    }

    /// The id first accepted under `key`, or records `id` as that first one.
    pub(crate) fn dedupe(&mut self, key: String, id: &str) -> Option<String> {
        match self.seen.get(&key) {
            Some(first) => Some(first.clone()),
            None => {
                self.seen.insert(key, id.to_owned());
                None
            }
        }
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub(crate) fn record(&mut self, mut r: Received) {
        if r.seq == 0 {
            r.seq = self.next_seq();
        }
        self.received.push(r);
    }
}

pub(crate) type SharedJournal = Arc<Mutex<Journal>>;

/// Locks, shrugging off poisoning (every critical section leaves the journal consistent).
pub(crate) fn lock(j: &SharedJournal) -> MutexGuard<'_, Journal> {
    j.lock().unwrap_or_else(|e| e.into_inner())
}

/// The common read/admin surface of both sandboxes.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) journal: SharedJournal,
}

impl Recorder {
    pub(crate) fn received(&self) -> Vec<Received> {
        lock(&self.journal).received.clone()
    }

    pub(crate) fn set_faults(&self, faults: PartnerFaults) {
        lock(&self.journal).faults = faults;
    }

    pub(crate) fn faults(&self) -> PartnerFaults {
        lock(&self.journal).faults.clone()
    }

    pub(crate) fn reset(&self) {
        *lock(&self.journal) = Journal::default();
    }

    /// `/__sandbox/received`, `/__sandbox/faults`, `/__sandbox/reset`.
    pub(crate) fn admin_routes(&self) -> Router {
        Router::new()
            .route("/__sandbox/received", get(|State(r): State<Recorder>| async move { Json(r.received()) }))
            .route(
                "/__sandbox/faults",
                get(|State(r): State<Recorder>| async move { Json(r.faults()) }).post(
                    |State(r): State<Recorder>, Json(f): Json<PartnerFaults>| async move {
                        r.set_faults(f.clone());
                        Json(f)
                    },
                ),
            )
            .route(
                "/__sandbox/reset",
                post(|State(r): State<Recorder>| async move {
                    r.reset();
                    Json(serde_json::json!({"reset": true}))
                }),
            )
            .with_state(self.clone())
    }
}

/// Whether the request's `Content-Type` is `want` (parameters such as `charset` ignored).
pub(crate) fn content_type_is(headers: &axum::http::HeaderMap, want: &str) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}
