//! `lead-captured`: a lead becomes a HubSpot contact exactly once — or waits on the retry queue, or is
//! parked in the dead-letter queue with the reason. Only input the sender can fix gets a 4xx.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::{AuthMethod, Authenticator, RequestParts};
use crate::domain::{
    new_event_id, AttemptOutcome, ContactUpsert, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage,
    RetrySchedule, UpsertedContact,
};
use crate::error::ApiError;
use crate::hubspot::{HubSpot, HubSpotError};
use crate::lead::{self, Lead, ParsedLead};
use crate::mapping::Mapping;
use crate::pii::mask_email;
use crate::store::{Begin, ContactVersions, EventLog, EventStatus, IdempotencyStore, RetryQueue, StoredResponse};
use crate::worker::{event_record, retry_delay, ContactLocks, Jitter};

/// The answer to a lead request (also what the idempotency store replays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadReply {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;

pub struct LeadService {
    auth: Authenticator,
    mapping: Mapping,
    hubspot: Arc<dyn HubSpot>,
    idempotency: Arc<dyn IdempotencyStore>,
    queue: Arc<dyn RetryQueue>,
    events: Arc<dyn EventLog>,
    versions: Arc<dyn ContactVersions>,
    schedule: RetrySchedule,
    max_body_bytes: usize,
    /// How long a duplicate waits for the first copy to finish before hearing 409 `request_in_progress`.
    in_progress_wait: Duration,
    jitter: Jitter,
    /// Shared with the local worker (`hubrelay serve`); `None` in the Lambda.
    locks: Option<Arc<ContactLocks>>,
}

/// How long the inline path waits for a contact the worker is writing before queueing the lead instead
/// (the worker then merges it into its next batch at once).
pub const CONTACT_LOCK_WAIT: Duration = Duration::from_millis(250);

pub struct LeadServiceParts {
    pub auth: Authenticator,
    pub mapping: Mapping,
    pub hubspot: Arc<dyn HubSpot>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn RetryQueue>,
    pub events: Arc<dyn EventLog>,
    pub versions: Arc<dyn ContactVersions>,
    pub schedule: RetrySchedule,
    pub max_body_bytes: usize,
}

impl LeadService {
    pub fn new(p: LeadServiceParts) -> Self {
        LeadService {
            auth: p.auth,
            mapping: p.mapping,
            hubspot: p.hubspot,
            idempotency: p.idempotency,
            queue: p.queue,
            events: p.events,
            versions: p.versions,
            schedule: p.schedule,
            max_body_bytes: p.max_body_bytes,
            in_progress_wait: Duration::from_secs(5),
            jitter: Jitter::STANDARD,
            locks: None,
        }
    }

    /// The spread applied to the first retry delay (default ±20 %).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Share per-contact locks with a worker in the same process: an inline delivery then never lands
    /// between the worker's check of a contact's newest lead and its write. When the worker holds the
    /// contact for longer than [`CONTACT_LOCK_WAIT`], the lead is queued (`202 queued`, reason
    /// `contact_busy`, due at once) and the worker merges it.
    pub fn with_contact_locks(mut self, locks: Arc<ContactLocks>) -> Self {
        self.locks = Some(locks);
        self
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The whole request path: auth → parse → map → idempotency → one HubSpot call → reply.
    pub async fn handle(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<LeadReply, ApiError> {
        if body.len() > self.max_body_bytes {
            return Err(ApiError::payload_too_large(self.max_body_bytes));
        }
        let auth = self.auth.verify(&RequestParts { method, path_and_query, headers, body }, now)?;
        let parsed = parse_body(headers, body)?;
        let upsert = self.mapping.apply(&parsed.lead)?;
        let canonical = parsed.lead.canonical_json();
        let key = idempotency_key(headers, &auth, &parsed.lead, &canonical)?;
        let payload_hash = hex::encode(Sha256::digest(canonical.as_bytes()));

        match self.claim(&key, &payload_hash, now).await? {
            Claim::Replay(stored) => Ok(LeadReply { status: stored.status, body: stored.body, replayed: true }),
            Claim::Owned => {
                let reply = match self.deliver(&key, parsed, upsert, now).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        // Nothing was accepted: free the key so the sender's retry can succeed.
                        if let Err(re) = self.idempotency.release(&key).await {
                            tracing::error!(error = %re, "could not release idempotency key");
                        }
                        return Err(e);
                    }
                };
                let stored = StoredResponse { status: reply.status, body: reply.body.clone() };
                if let Err(e) = self.idempotency.complete(&key, &stored, OffsetDateTime::now_utc()).await {
                    // The event is already delivered or queued; a re-delivery after the in-progress lease
                    // expires would only repeat an upsert, which is harmless.
                    tracing::error!(error = %e, "could not record idempotency result");
                }
                Ok(reply)
            }
        }
    }

    async fn claim(&self, key: &str, payload_hash: &str, now: OffsetDateTime) -> Result<Claim, ApiError> {
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
                Begin::InProgress => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "request_in_progress",
                        "the same event is being processed right now; retry shortly",
                    )
                    .with_retry_after(1))
                }
            }
        }
    }

    /// One HubSpot call; on trouble, hand the event to the retry queue or the dead-letter queue.
    async fn deliver(
        &self,
        key: &str,
        parsed: ParsedLead,
        upsert: ContactUpsert,
        now: OffsetDateTime,
    ) -> Result<LeadReply, ApiError> {
        let event_id = new_event_id();
        let masked = mask_email(&upsert.email);
        // Held until the contact's version is recorded (end of this function).
        let mut _contact = None;
        let result = match &self.locks {
            None => self.hubspot.upsert_contacts(std::slice::from_ref(&upsert)).await,
            Some(locks) => match tokio::time::timeout(CONTACT_LOCK_WAIT, locks.share(&upsert.email)).await {
                Ok(guard) => {
                    _contact = Some(guard);
                    self.hubspot.upsert_contacts(std::slice::from_ref(&upsert)).await
                }
                Err(_) => Err(HubSpotError {
                    status: None,
                    code: "contact_busy".into(),
                    message: "not sent: the retry worker is writing this contact; queued to be merged".into(),
                    category: None,
                    correlation_id: None,
                    policy: None,
                    retry_after_secs: None,
                }),
            },
        };
        let error = match result {
            Ok(contacts) => {
                let contact =
                    contacts.into_iter().next().unwrap_or(UpsertedContact { id: String::new(), created: false });
                self.record_delivered(&event_id, &parsed, &upsert, &contact, now).await;
                tracing::info!(event_id, email = %masked, contact_id = %contact.id, created = contact.created, "lead delivered");
                return Ok(reply(200, delivered_body(&event_id, &contact, &parsed.ignored)));
            }
            Err(e) => e,
        };
        let mut message = RetryMessage {
            version: RetryMessage::VERSION,
            event_id: event_id.clone(),
            function: FunctionName::LeadCaptured,
            idempotency_key: key.to_string(),
            received_at: now,
            event: serde_json::to_value(&parsed.lead).unwrap_or(Value::Null),
            attempts: vec![attempt_record(1, now, &error)],
            not_before: now,
            dead_letter_reason: None,
            schedule_offset: 0,
        };
        let reason = json!({ "code": error.code, "message": error.message });
        match error.outcome() {
            AttemptOutcome::Retryable => {
                let delay = self.jitter.apply(retry_delay(&self.schedule, 1, &error, now));
                message.not_before = now + delay;
                self.queue.enqueue(&message).await.map_err(|e| {
                    tracing::error!(event_id, error = %e, "retry queue unavailable");
                    ApiError::unavailable(
                        "queue_unavailable",
                        "HubSpot is unavailable and the retry queue could not take the event; retry later",
                    )
                })?;
                self.log_event(&message, EventStatus::Retrying, Some(message.not_before), None, now).await;
                tracing::warn!(event_id, email = %masked, code = %error.code, "lead queued for retry");
                let next =
                    message.not_before.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                Ok(reply(
                    202,
                    json!({
                        "status": "queued", "event_id": event_id, "next_attempt_at": next,
                        "reason": reason, "ignored": parsed.ignored,
                    }),
                ))
            }
            _ => {
                let dl = DeadLetterReason { code: error.code.clone(), message: error.message.clone() };
                self.queue.dead_letter(&message, &dl).await.map_err(|e| {
                    tracing::error!(event_id, error = %e, "dead-letter queue unavailable");
                    ApiError::unavailable("queue_unavailable", "the event could not be parked; retry later")
                })?;
                message.dead_letter_reason = Some(dl.clone());
                self.log_event(&message, EventStatus::DeadLettered, None, Some(dl), now).await;
                tracing::warn!(event_id, email = %masked, code = %error.code, "lead parked in the dead-letter queue");
                Ok(reply(
                    202,
                    json!({
                        "status": "parked", "event_id": event_id, "reason": reason, "ignored": parsed.ignored,
                    }),
                ))
            }
        }
    }
}

impl LeadService {
    /// After an inline delivery: remember the contact's newest applied lead (so an older retried one
    /// cannot overwrite it) and the event's fate. The lead is already in HubSpot: failures here are
    /// logged, not answered.
    async fn record_delivered(
        &self,
        event_id: &str,
        parsed: &ParsedLead,
        upsert: &ContactUpsert,
        contact: &UpsertedContact,
        now: OffsetDateTime,
    ) {
        if let Err(e) = self.versions.record_applied(&upsert.email, now).await {
            tracing::error!(event_id, error = %e, "could not record the contact version");
        }
        let message = RetryMessage {
            version: RetryMessage::VERSION,
            event_id: event_id.to_string(),
            function: FunctionName::LeadCaptured,
            idempotency_key: String::new(),
            received_at: now,
            event: serde_json::to_value(&parsed.lead).unwrap_or(Value::Null),
            attempts: vec![DeliveryAttempt {
                attempt: 1,
                at: now,
                outcome: AttemptOutcome::Delivered,
                status: Some(200),
                correlation_id: None,
                error_code: None,
                error: None,
            }],
            not_before: now,
            dead_letter_reason: None,
            schedule_offset: 0,
        };
        let record = event_record(&message, EventStatus::Delivered, None, Some(contact.id.clone()), None, now);
        if let Err(e) = self.events.put_event(&record).await {
            tracing::error!(event_id, error = %e, "could not record the event");
        }
    }

    async fn log_event(
        &self,
        message: &RetryMessage,
        status: EventStatus,
        next: Option<OffsetDateTime>,
        reason: Option<DeadLetterReason>,
        now: OffsetDateTime,
    ) {
        let record = event_record(message, status, next, None, reason, now);
        if let Err(e) = self.events.put_event(&record).await {
            tracing::error!(event_id = %message.event_id, error = %e, "could not record the event");
        }
    }
}

enum Claim {
    Owned,
    Replay(StoredResponse),
}

fn reply(status: u16, body: Value) -> LeadReply {
    LeadReply { status, body: body.to_string(), replayed: false }
}

fn delivered_body(event_id: &str, contact: &UpsertedContact, ignored: &[String]) -> Value {
    // Aimbase wants the contact id twice: as ProspectExternalId and as HubSpotContactId (seed 000).
    json!({
        "status": "delivered",
        "event_id": event_id,
        "contact_id": contact.id,
        "created": contact.created,
        "prospect_external_id": contact.id,
        "hubspot_contact_id": contact.id,
        "ignored": ignored,
    })
}

/// The record of a failed attempt.
pub fn attempt_record(attempt: u32, at: OffsetDateTime, e: &HubSpotError) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt,
        at,
        outcome: e.outcome(),
        status: e.status,
        correlation_id: e.correlation_id.clone(),
        error_code: Some(e.code.clone()),
        error: Some(e.message.clone()),
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<ParsedLead, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" | "" => Ok(lead::parse_json(body)?),
        "application/x-www-form-urlencoded" => Ok(lead::parse_form(body)?),
        other if other.ends_with("+json") => Ok(lead::parse_json(body)?),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// `Idempotency-Key`, else the Standard Webhooks `webhook-id`, else the source lead id, else the body's hash.
fn idempotency_key(headers: &HeaderMap, auth: &AuthMethod, lead: &Lead, canonical: &str) -> Result<String, ApiError> {
    let prefix = FunctionName::LeadCaptured.as_str();
    if let Some(v) = headers.get("idempotency-key") {
        let key = v.to_str().unwrap_or("").trim();
        if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(|c| c.is_control()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable characters"),
            ));
        }
        return Ok(format!("{prefix}:key:{key}"));
    }
    if let AuthMethod::StandardWebhooks { webhook_id } = auth {
        return Ok(format!("{prefix}:webhook:{webhook_id}"));
    }
    if let Some(id) = &lead.lead_id {
        return Ok(format!("{prefix}:lead:{id}"));
    }
    Ok(format!("{prefix}:body:{}", hex::encode(Sha256::digest(canonical.as_bytes()))))
}
