//! The steps every function shares: body limit and auth, the idempotency claim and its release, and
//! handing an event HubSpot did not take to the retry queue or the dead-letter queue. An accepted
//! event (2xx) is always delivered, queued or parked — never dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::ApiError;
use hubrelay_core::auth::{AuthMethod, Authenticator, RequestParts};
use hubrelay_core::delivery::Failure;
use hubrelay_core::domain::{
    AttemptOutcome, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage, RetrySchedule,
};
use hubrelay_core::metrics::{EventOutcome, Metrics};
use hubrelay_core::notify::{NoticeKind, Notifications};
use hubrelay_core::store::{
    Begin, Delivered, EventLog, EventRecord, EventStatus, IdempotencyStore, RetryQueue, StoredResponse,
};
use hubrelay_core::worker::{event_record, retry_delay, Jitter};

/// How long a duplicate waits for the copy in flight before hearing 503 `request_in_progress`.
pub const IN_PROGRESS_WAIT: Duration = Duration::from_secs(5);

/// `Retry-After` seconds for a duplicate of an event in flight.
const IN_PROGRESS_RETRY_AFTER: u64 = 5;

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;

/// The answer to a request (also what the idempotency store replays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
    /// Already stored under its idempotency key (by [`Intake::complete_delivered`]).
    pub completed: bool,
}

impl Reply {
    /// A fresh (not replayed) JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        Reply { status, body: body.to_string(), replayed: false, completed: false }
    }
}

pub struct Intake {
    pub auth: Authenticator,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn RetryQueue>,
    pub events: Arc<dyn EventLog>,
    pub schedule: RetrySchedule,
    pub max_body_bytes: usize,
    /// How long a duplicate waits for the first copy to finish before hearing 503 `request_in_progress`.
    pub in_progress_wait: Duration,
    pub jitter: Jitter,
    /// Counts each event where its first attempt settles it (delivered, superseded, queued or parked).
    pub metrics: Metrics,
    /// Told of each event parked on its first attempt.
    pub notifications: Notifications,
}

/// What the idempotency claim found.
pub enum Claim {
    Owned,
    Replay(StoredResponse),
}

impl Intake {
    /// Body size, then the sender's credentials.
    pub fn verify(&self, request: &RequestParts<'_>, now: OffsetDateTime) -> Result<AuthMethod, ApiError> {
        if request.body.len() > self.max_body_bytes {
            return Err(ApiError::payload_too_large(self.max_body_bytes));
        }
        Ok(self.auth.verify(request, now)?)
    }

    /// Claim `key` (waiting a little for a copy in flight), or find the answer to replay.
    pub async fn claim(&self, key: &str, payload_hash: &str, now: OffsetDateTime) -> Result<Claim, ApiError> {
        let deadline = tokio::time::Instant::now() + self.in_progress_wait;
        let mut now = now;
        loop {
            match self.idempotency.begin(key, payload_hash, now).await? {
                Begin::Started => return Ok(Claim::Owned),
                Begin::Completed(stored) => return Ok(Claim::Replay(stored)),
                Begin::Conflict => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "idempotency_conflict",
                        "this idempotency key was already used with a different payload",
                    ))
                }
                Begin::InProgress if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now = OffsetDateTime::now_utc();
                }
                // A 503, not a 409: many senders treat any 4xx as final and would drop the event, and the
                // copy in flight may belong to a crashed process whose claim has yet to expire.
                Begin::InProgress => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "request_in_progress",
                        "the same event is being processed right now; retry shortly",
                    )
                    .with_retry_after(IN_PROGRESS_RETRY_AFTER))
                }
            }
        }
    }

    /// Record the answer under `key` (or free the key when nothing was accepted, so a retry can succeed).
    pub async fn finish(&self, key: &str, result: Result<Reply, ApiError>) -> Result<Reply, ApiError> {
        match result {
            Ok(reply) if reply.completed => Ok(reply),
            Ok(reply) => {
                let stored = StoredResponse { status: reply.status, body: reply.body.clone() };
                if let Err(e) = self.idempotency.complete(key, &stored, OffsetDateTime::now_utc()).await {
                    // The event is recorded and delivered or queued, so the answer stands; free the key so
                    // a re-delivery is not held up (it repeats an idempotent write, or finds it in the ledger).
                    tracing::error!(error = %e, "could not record idempotency result");
                    if let Err(re) = self.idempotency.release(key).await {
                        tracing::error!(error = %re, "could not release idempotency key");
                    }
                }
                Ok(reply)
            }
            Err(e) => {
                if let Err(re) = self.idempotency.release(key).await {
                    tracing::error!(error = %re, "could not release idempotency key");
                }
                Err(e)
            }
        }
    }

    /// A new message for an event whose first (inline) attempt failed with `error`.
    pub fn first_failure(
        function: FunctionName,
        event_id: &str,
        key: &str,
        event: Value,
        error: &Failure,
        now: OffsetDateTime,
    ) -> RetryMessage {
        let mut message = RetryMessage::new(function, event_id, key, event, now);
        message.attempts.push(error.attempt(1, now));
        message
    }

    /// Queue a retryable failure on the schedule (202 `queued`) or park the rest in the DLQ (202
    /// `parked`); `extra` fields join the answer. Only when neither queue takes the event is the answer a
    /// 503, so the sender retries.
    pub async fn queue_or_park(
        &self,
        mut message: RetryMessage,
        error: &Failure,
        extra: Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Reply, ApiError> {
        let event_id = message.event_id.clone();
        let function = message.function.as_str();
        let reason = json!({ "code": error.code, "message": error.message });
        let mut body = Map::new();
        if error.outcome() == AttemptOutcome::Retryable {
            let delay = self.jitter.apply_for(retry_delay(&self.schedule, 1, error, now), error);
            message.not_before = now + delay;
            self.queue.enqueue(&message).await.map_err(|e| {
                tracing::error!(event_id, error = %e, "retry queue unavailable");
                ApiError::unavailable(
                    "queue_unavailable",
                    "HubSpot is unavailable and the retry queue could not take the event; retry later",
                )
            })?;
            self.log(&message, EventStatus::Retrying, Some(message.not_before), None, None, now).await?;
            self.metrics.event(message.function, EventOutcome::Queued);
            tracing::warn!(event_id, function, code = %error.code, "event queued for retry");
            let next = message.not_before.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            body.insert("status".into(), "queued".into());
            body.insert("event_id".into(), event_id.into());
            body.insert("next_attempt_at".into(), next.into());
        } else {
            let dl = DeadLetterReason { code: error.code.clone(), message: error.message.clone() };
            self.queue.dead_letter(&message, &dl).await.map_err(|e| {
                tracing::error!(event_id, error = %e, "dead-letter queue unavailable");
                ApiError::unavailable("queue_unavailable", "the event could not be parked; retry later")
            })?;
            message.dead_letter_reason = Some(dl.clone());
            let record = self.log(&message, EventStatus::DeadLettered, None, None, Some(dl), now).await?;
            self.metrics.event(message.function, EventOutcome::Parked);
            self.notifications.send([(NoticeKind::Parked, record)]).await;
            tracing::warn!(event_id, function, code = %error.code, "event parked in the dead-letter queue");
            body.insert("status".into(), "parked".into());
            body.insert("event_id".into(), event_id.into());
        }
        body.insert("reason".into(), reason);
        body.extend(extra);
        Ok(Reply { status: 202, body: Value::Object(body).to_string(), replayed: false, completed: false })
    }

    /// The record of an event delivered (or settled without a write) on its first attempt.
    pub fn settled_record(
        function: FunctionName,
        event_id: &str,
        event: Value,
        status: EventStatus,
        contact_id: Option<String>,
        now: OffsetDateTime,
    ) -> EventRecord {
        let mut message = RetryMessage::new(function, event_id, "", event, now);
        message.attempts.push(DeliveryAttempt::delivered(1, now));
        event_record(&message, status, None, contact_id, None, now)
    }

    /// Store the answer to an event settled on its first attempt together with what it leaves behind
    /// (one write where the store can). When that fails the answer is a 503 and the key is freed: without
    /// its record no 2xx may stand, and the sender's retry repeats an idempotent write.
    pub async fn complete_delivered(&self, key: &str, reply: Reply, delivered: Delivered) -> Result<Reply, ApiError> {
        let stored = StoredResponse { status: reply.status, body: reply.body.clone() };
        match self.idempotency.complete_delivered(key, &stored, &delivered, OffsetDateTime::now_utc()).await {
            Ok(()) => {
                if !self.idempotency.queues_follow_ups() {
                    // After the answer is stored (a store that cannot take them in its transaction): a failure
                    // here leaves the lead delivered without its deal or note, so it is logged for on-call.
                    for follow_up in &delivered.follow_ups {
                        if let Err(e) = self.queue.enqueue(follow_up).await {
                            tracing::error!(event_id = %follow_up.event_id, error = %e, "a lead's follow-up could not be queued");
                        }
                    }
                }
                let outcome = match delivered.event.status {
                    EventStatus::Superseded => EventOutcome::Superseded,
                    _ => EventOutcome::Delivered,
                };
                self.metrics.event(delivered.event.function, outcome);
                Ok(Reply { completed: true, ..reply })
            }
            Err(e) => {
                tracing::error!(event_id = %delivered.event.event_id, error = %e, "could not record the event");
                if let Err(re) = self.idempotency.release(key).await {
                    tracing::error!(error = %re, "could not release idempotency key");
                }
                Err(ApiError::unavailable("store_unavailable", "the event could not be recorded; retry later"))
            }
        }
    }

    /// Every 2xx stands on an event record: when it cannot be written the answer is 503. Returns the record.
    pub(crate) async fn log(
        &self,
        message: &RetryMessage,
        status: EventStatus,
        next: Option<OffsetDateTime>,
        contact_id: Option<String>,
        reason: Option<DeadLetterReason>,
        now: OffsetDateTime,
    ) -> Result<EventRecord, ApiError> {
        let record = event_record(message, status, next, contact_id, reason, now);
        self.events.put_event(&record).await.map_err(|e| {
            tracing::error!(event_id = %message.event_id, error = %e, "could not record the event");
            ApiError::unavailable("store_unavailable", "the event could not be recorded; retry later")
        })?;
        Ok(record)
    }
}

/// One kind of event an endpoint takes (a lead, a status update, an activity, a referral webhook): how it
/// is read and delivered. [`Intake::run`] does the rest, the same way for every kind.
#[async_trait::async_trait]
pub trait EventKind: Send + Sync + 'static {
    /// The normalised event [`EventKind::parse`] reads and [`EventKind::deliver`] takes.
    type Event: Send;

    /// The steps every kind shares, and their settings.
    fn intake(&self) -> &Intake;

    /// The function that owns the events (idempotency keys are prefixed by it).
    fn function(&self) -> FunctionName;

    /// Who may post: the relay's own auth by default (bearer tokens, Standard Webhooks, HubSpot v3).
    fn verify(&self, request: &RequestParts<'_>, now: OffsetDateTime) -> Result<AuthMethod, ApiError> {
        self.intake().verify(request, now)
    }

    /// Whether this route takes a portal's share of a HubSpot app webhook batch, verified by
    /// [`crate::app_webhooks`] (the HubSpot referral route only).
    fn takes_app_webhooks(&self) -> bool {
        false
    }

    /// The media types it reads: JSON by default.
    fn accepts(&self, media_type: &str) -> bool {
        media_type == "application/json" || media_type.ends_with("+json")
    }

    /// Read (and check) the body.
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed<Self::Event>, ApiError>;

    /// Deliver an event this request owns the idempotency key of.
    async fn deliver(&self, key: &str, event: Self::Event, now: OffsetDateTime) -> Result<Reply, ApiError>;
}

/// What [`EventKind::parse`] read.
pub enum Parsed<E> {
    /// An event to claim and deliver: the sender's own id for it (`("lead", id)`), when it has one, and the
    /// canonical text whose hash detects a key reused for another payload.
    Event { event: E, sender_id: Option<(&'static str, String)>, canonical: String },
    /// Nothing to deliver: answer this at once (no idempotency claim).
    Answer(Reply),
}

/// A request as the pipeline takes it.
pub struct Request<'a> {
    pub method: &'a str,
    /// Raw, as the sender signed it (a tenant's `/t/{tenant}` prefix included).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Verified already by the app-webhook route (a request extension only this process sets).
    pub verified: bool,
}

impl Intake {
    /// The request pipeline of every function: verify → media type → parse → idempotency key → claim →
    /// deliver (or replay) → record the answer.
    pub async fn run<K: EventKind>(kind: &K, request: Request<'_>, now: OffsetDateTime) -> Result<Reply, ApiError> {
        let intake = kind.intake();
        let Request { method, path_and_query, headers, body, verified } = request;
        let auth = match verified {
            // HubSpot's signature over the whole batch was checked by the app-webhook route.
            true if kind.takes_app_webhooks() => AuthMethod::HubSpotV3,
            _ => kind.verify(&RequestParts { method, path_and_query, headers, body }, now)?,
        };
        let media_type = content_type(headers);
        if !kind.accepts(&media_type) {
            return Err(ApiError::unsupported_media_type(&media_type));
        }
        let (event, sender_id, canonical) = match kind.parse(headers, body)? {
            Parsed::Answer(reply) => return Ok(reply),
            Parsed::Event { event, sender_id, canonical } => (event, sender_id, canonical),
        };
        let sender_id = sender_id.as_ref().map(|(kind, id)| (*kind, id.as_str()));
        let key = idempotency_key(kind.function(), headers, &auth, sender_id, &canonical)?;
        match intake.claim(&key, &sha256_hex(&canonical), now).await? {
            Claim::Replay(stored) => {
                Ok(Reply { status: stored.status, body: stored.body, replayed: true, completed: true })
            }
            Claim::Owned => {
                let result = kind.deliver(&key, event, now).await;
                intake.finish(&key, result).await
            }
        }
    }
}

/// The event's identity, strongest first: the sender's own id of the event (a lead's `lead_id`, an
/// activity's `activity_id` or content hash, an update's `update_id`), else the signed Standard Webhooks
/// `webhook-id`, else `Idempotency-Key`, else the hash of `canonical`; prefixed by the function so keys
/// never collide across functions. A header cannot split one event into several (three keys, three
/// engagements), and it is not signed, so on a signed request it never replaces the signed id.
pub fn idempotency_key(
    function: FunctionName,
    headers: &HeaderMap,
    auth: &AuthMethod,
    sender_id: Option<(&str, &str)>,
    canonical: &str,
) -> Result<String, ApiError> {
    let prefix = function.as_str();
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().unwrap_or("").trim();
            if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(|c| c.is_control()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable characters"),
                ));
            }
            Some(key)
        }
    };
    if let Some((kind, id)) = sender_id {
        return Ok(hubrelay_core::store::sender_key(function, kind, id));
    }
    if let AuthMethod::StandardWebhooks { webhook_id } = auth {
        return Ok(format!("{prefix}:webhook:{webhook_id}"));
    }
    if let Some(key) = header {
        return Ok(format!("{prefix}:key:{key}"));
    }
    Ok(hubrelay_core::store::body_key(function, canonical))
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The media type without parameters, lowercased (`application/json` when absent).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
