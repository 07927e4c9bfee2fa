//! `referral-event`: `POST /v1/referrals/hubspot` (HubSpot workflow and app webhooks → Extole / impact.com),
//! `POST /v1/referrals/extole` (share links → contacts) and `POST /v1/referrals/impact` (Advocate webhooks →
//! contacts). Each accepted webhook is split into actions, each queued as its own message and answered 202 at
//! once (HubSpot stops waiting after 5 s); the worker delivers them right away. An action already accepted
//! from an earlier webhook (same deal and stage, same sign-up) is not queued again: nothing is sent twice.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::intake::{content_type, idempotency_key, sha256_hex, Claim, Intake};
use super::leads::{reply, LeadReply};
use super::EventHandler;
use crate::error::ApiError;
use hubrelay_core::auth::partners::PartnerVerifier;
use hubrelay_core::auth::AuthMethod;
use hubrelay_core::domain::{new_event_id, FunctionName, RetryMessage};
use hubrelay_core::referral::actions::{plan, ReferralAction};
use hubrelay_core::referral::{
    parse_advocate, parse_extole, parse_hubspot, AdvocateEvent, ExtoleInbound, ReferralConfig,
};
use hubrelay_core::store::{EventStatus, StoredResponse};
use hubrelay_core::worker::event_record;

pub const HUBSPOT_PATH: &str = "/v1/referrals/hubspot";
pub const EXTOLE_PATH: &str = "/v1/referrals/extole";
pub const IMPACT_PATH: &str = "/v1/referrals/impact";

const FUNCTION: FunctionName = FunctionName::ReferralEvent;

/// Who calls the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralSource {
    HubSpot,
    Extole,
    Impact,
}

impl ReferralSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralSource::HubSpot => "hubspot",
            ReferralSource::Extole => "extole",
            ReferralSource::Impact => "impact",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            ReferralSource::HubSpot => HUBSPOT_PATH,
            ReferralSource::Extole => EXTOLE_PATH,
            ReferralSource::Impact => IMPACT_PATH,
        }
    }
}

pub struct ReferralService {
    source: ReferralSource,
    intake: Intake,
    /// The partner's signature scheme (Extole, impact routes); bearer tokens are accepted besides it.
    verifier: Option<PartnerVerifier>,
    config: ReferralConfig,
}

/// A read webhook: the actions, why the rest was ignored, the sender's id for it, and the text to hash.
struct Parsed {
    actions: Vec<ReferralAction>,
    ignored: Vec<String>,
    sender_id: Option<(&'static str, String)>,
    canonical: String,
}

impl ReferralService {
    pub fn new(
        source: ReferralSource,
        intake: Intake,
        verifier: Option<PartnerVerifier>,
        config: ReferralConfig,
    ) -> Self {
        ReferralService { source, intake, verifier, config }
    }

    pub fn source(&self) -> ReferralSource {
        self.source
    }
}

#[async_trait::async_trait]
impl EventHandler for ReferralService {
    fn max_body_bytes(&self) -> usize {
        self.intake.max_body_bytes
    }

    async fn handle_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<LeadReply, ApiError> {
        let auth = self.verify(method, path_and_query, headers, body, now)?;
        let ct = content_type(headers);
        if !(ct == "application/json" || ct.ends_with("+json")) {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        let parsed = self.parse(body)?;
        let source = self.source.as_str();
        if parsed.actions.is_empty() {
            tracing::info!(source, reasons = ?parsed.ignored, "referral webhook ignored");
            return Ok(reply(200, json!({"status": "ignored", "reasons": parsed.ignored})));
        }
        let sender_id = parsed.sender_id.as_ref().map(|(kind, id)| (*kind, id.as_str()));
        let key = idempotency_key(FUNCTION, headers, &auth, sender_id, &parsed.canonical)?;
        match self.intake.claim(&key, &sha256_hex(&parsed.canonical), now).await? {
            Claim::Replay(stored) => Ok(LeadReply { status: stored.status, body: stored.body, replayed: true }),
            Claim::Owned => {
                let result = self.accept(&key, parsed, now).await;
                self.intake.finish(&key, result).await
            }
        }
    }
}

impl ReferralService {
    /// The partner's signature when its header is present (and a secret configured), else the relay's own auth.
    fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<AuthMethod, ApiError> {
        let scheme_header = match self.source {
            ReferralSource::HubSpot => None,
            ReferralSource::Extole => Some(hubrelay_core::auth::partners::EXTOLE_SIGNATURE),
            ReferralSource::Impact => Some(hubrelay_core::auth::partners::HOOK_SIGNATURE),
        };
        match scheme_header.filter(|h| headers.contains_key(*h)) {
            None => self.intake.verify(method, path_and_query, headers, body, now),
            Some(_) if body.len() > self.intake.max_body_bytes => {
                Err(ApiError::payload_too_large(self.intake.max_body_bytes))
            }
            Some(header) => {
                let verifier = self.verifier.as_ref().ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_signature",
                        format!("{header} is not accepted: no webhook secret is configured for this route"),
                    )
                })?;
                verifier.verify(headers, body)?;
                Ok(AuthMethod::ApiToken)
            }
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Parsed, ApiError> {
        let canonical = format!("{}\n{}", self.source.as_str(), String::from_utf8_lossy(body));
        match self.source {
            ReferralSource::HubSpot => {
                let (actions, ignored) = plan(parse_hubspot(body, &self.config)?, &self.config);
                Ok(Parsed { actions, ignored, sender_id: None, canonical: hubspot_canonical(body, canonical) })
            }
            ReferralSource::Extole => match parse_extole(body)? {
                ExtoleInbound::ShareLink(link) => {
                    let actions = vec![ReferralAction::UpsertContact(link.to_upsert())];
                    Ok(Parsed { actions, ignored: vec![], sender_id: None, canonical })
                }
                ExtoleInbound::Ignored { reason } => {
                    Ok(Parsed { actions: vec![], ignored: vec![reason], sender_id: None, canonical })
                }
            },
            ReferralSource::Impact => match parse_advocate(body)? {
                AdvocateEvent::Update(update) => {
                    let sender_id = Some(("advocate", update.webhook_id.clone()));
                    let Some(upsert) = update.to_upsert() else {
                        let reason = format!(
                            "`{}` names the user by id only (no email): contacts are matched by email",
                            update.event_type
                        );
                        return Ok(Parsed { actions: vec![], ignored: vec![reason], sender_id, canonical });
                    };
                    Ok(Parsed {
                        actions: vec![ReferralAction::UpsertContact(upsert)],
                        ignored: vec![],
                        sender_id,
                        canonical,
                    })
                }
                AdvocateEvent::Ignored { event_type, reason, .. } => Ok(Parsed {
                    actions: vec![],
                    ignored: vec![format!("`{event_type}`: {reason}")],
                    sender_id: None,
                    canonical,
                }),
            },
        }
    }

    /// Queue each action not accepted before (its own event id, due now); 202 with the event ids.
    async fn accept(&self, key: &str, parsed: Parsed, now: OffsetDateTime) -> Result<LeadReply, ApiError> {
        let (mut event_ids, mut queued, mut duplicates) = (Vec::new(), Vec::new(), Vec::new());
        for action in parsed.actions {
            let dedupe = action.dedupe_key().map(|k| format!("{}:action:{k}", FUNCTION.as_str()));
            if let Some(dk) = &dedupe {
                if let Claim::Replay(stored) = self.intake.claim(dk, &sha256_hex(dk), now).await? {
                    let first: Value = serde_json::from_str(&stored.body).unwrap_or(Value::Null);
                    duplicates.push(json!({"action": action.kind(), "event_id": first["event_id"]}));
                    continue;
                }
            }
            let event_id = new_event_id();
            let event = serde_json::to_value(&action).unwrap_or(Value::Null);
            let message = RetryMessage::new(FUNCTION, &event_id, key, event, now);
            if let Err(e) = self.intake.queue.enqueue(&message).await {
                tracing::error!(event_id, error = %e, "retry queue unavailable");
                if let Some(dk) = &dedupe {
                    let _ = self.intake.idempotency.release(dk).await;
                }
                return Err(ApiError::unavailable("queue_unavailable", "the webhook could not be queued; retry later"));
            }
            if let Some(dk) = &dedupe {
                let stored = StoredResponse { status: 202, body: json!({"event_id": event_id}).to_string() };
                if let Err(e) = self.intake.idempotency.complete(dk, &stored, now).await {
                    tracing::error!(event_id, error = %e, "could not record the action as accepted");
                }
            }
            let record = event_record(&message, EventStatus::Retrying, Some(now), None, None, now);
            if let Err(e) = self.intake.events.put_event(&record).await {
                tracing::error!(event_id, error = %e, "could not record the event");
            }
            tracing::info!(event_id, source = self.source.as_str(), action = action.kind(), "referral action queued");
            queued.push(json!({"action": action.kind(), "event_id": event_id}));
            event_ids.push(json!(event_id));
        }
        let mut body = json!({"status": "accepted", "event_ids": event_ids, "actions": queued});
        if !duplicates.is_empty() {
            body["duplicates"] = json!(duplicates);
        }
        if !parsed.ignored.is_empty() {
            body["ignored"] = json!(parsed.ignored);
        }
        Ok(reply(202, body))
    }
}

/// An app webhook batch without `attemptNumber` (HubSpot's retries count it up; the events are the same).
fn hubspot_canonical(body: &[u8], fallback: String) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(mut events)) => {
            for e in events.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("attemptNumber");
            }
            format!("hubspot\n{}", Value::Array(events))
        }
        _ => fallback,
    }
}
