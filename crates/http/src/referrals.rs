//! `referral-event`: `POST /v1/referrals/hubspot` (HubSpot workflow and app webhooks → Extole / impact.com),
//! `POST /v1/referrals/extole` (share links → contacts) and `POST /v1/referrals/impact` (Advocate webhooks →
//! contacts). Each accepted webhook is split into actions, each queued as its own message and answered 202 at
//! once (HubSpot stops waiting after 5 s); the worker delivers them right away. An action already accepted
//! from an earlier webhook (same deal and stage, same sign-up) is not queued again: nothing is sent twice.

use axum::http::{HeaderMap, StatusCode};
use hubrelay_core::outbound::contact_changes;
use hubrelay_core::referral::participants::{participant_actions, workflow_participant_action};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::intake::{sha256_hex, Claim, EventKind, Intake, Parsed, Reply};
use hubrelay_core::auth::partners::PartnerVerifier;
use hubrelay_core::auth::{AuthMethod, RequestParts};
use hubrelay_core::domain::{new_event_id, FunctionName, RetryMessage};
use hubrelay_core::metrics::EventOutcome;
use hubrelay_core::referral::actions::{plan, ReferralAction};
use hubrelay_core::referral::{
    parse_advocate, parse_extole, parse_hubspot, AdvocateEvent, ExtoleInbound, ReferralConfig,
};
use hubrelay_core::store::{EventStatus, StoredResponse};

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
    /// Outbound contact sync on (the HubSpot route): hubrelay's own `sourceId`s, whose changes are not sent back.
    outbound: Option<Vec<String>>,
}

/// A read webhook: the actions, why the rest was ignored, the sender's id for it, and the text to hash.
struct Webhook {
    actions: Vec<ReferralAction>,
    ignored: Vec<String>,
    sender_id: Option<(&'static str, String)>,
    canonical: String,
}

/// The actions of a webhook and why the rest of it was ignored.
pub struct ReferralActions {
    actions: Vec<ReferralAction>,
    ignored: Vec<String>,
}

impl ReferralService {
    pub fn new(
        source: ReferralSource,
        intake: Intake,
        verifier: Option<PartnerVerifier>,
        config: ReferralConfig,
    ) -> Self {
        ReferralService { source, intake, verifier, config, outbound: None }
    }

    /// Send HubSpot's contact changes (app webhooks) outbound, except those whose `sourceId` is in
    /// `own_source_ids` (see `hubrelay_core::outbound`).
    pub fn with_outbound(mut self, own_source_ids: Vec<String>) -> Self {
        self.outbound = Some(own_source_ids);
        self
    }

    pub fn source(&self) -> ReferralSource {
        self.source
    }
}

/// JSON only; the partner's own signature or the relay's auth; a webhook with nothing to do is answered
/// `200 ignored` without a claim.
#[async_trait::async_trait]
impl EventKind for ReferralService {
    type Event = ReferralActions;

    fn intake(&self) -> &Intake {
        &self.intake
    }

    fn function(&self) -> FunctionName {
        FUNCTION
    }

    fn takes_app_webhooks(&self) -> bool {
        self.source == ReferralSource::HubSpot
    }

    /// The partner's signature when its header is present (and a secret configured), else the relay's own auth.
    fn verify(&self, request: &RequestParts<'_>, now: OffsetDateTime) -> Result<AuthMethod, ApiError> {
        let (headers, body) = (request.headers, request.body);
        let scheme_header = match self.source {
            ReferralSource::HubSpot => None,
            ReferralSource::Extole => Some(hubrelay_core::auth::partners::EXTOLE_SIGNATURE),
            ReferralSource::Impact => Some(hubrelay_core::auth::partners::HOOK_SIGNATURE),
        };
        match scheme_header.filter(|h| headers.contains_key(*h)) {
            None => self.intake.verify(request, now),
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

    fn parse(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Parsed<ReferralActions>, ApiError> {
        let webhook = self.parse_webhook(body)?;
        if webhook.actions.is_empty() {
            tracing::info!(source = self.source.as_str(), reasons = ?webhook.ignored, "referral webhook ignored");
            return Ok(Parsed::Answer(Reply::json(200, json!({"status": "ignored", "reasons": webhook.ignored}))));
        }
        let event = ReferralActions { actions: webhook.actions, ignored: webhook.ignored };
        Ok(Parsed::Event { event, sender_id: webhook.sender_id, canonical: webhook.canonical })
    }

    async fn deliver(&self, key: &str, event: ReferralActions, now: OffsetDateTime) -> Result<Reply, ApiError> {
        self.accept(key, event, now).await
    }
}

impl ReferralService {
    fn parse_webhook(&self, body: &[u8]) -> Result<Webhook, ApiError> {
        let canonical = format!("{}\n{}", self.source.as_str(), String::from_utf8_lossy(body));
        match self.source {
            ReferralSource::HubSpot => {
                let (mut actions, mut ignored) = plan(parse_hubspot(body, &self.config)?, &self.config);
                // An app-webhook batch's change events; a contact workflow's single object syncs its participant.
                if self.outbound.is_some() || self.config.participant_sync {
                    match serde_json::from_slice::<serde_json::Value>(body) {
                        Ok(serde_json::Value::Array(events)) => {
                            if let Some(own) = &self.outbound {
                                let changes = contact_changes(&events, own, &mut ignored);
                                actions.extend(changes.into_iter().map(ReferralAction::SendContactChange));
                            }
                            if self.config.participant_sync {
                                actions.extend(participant_actions(&events));
                            }
                        }
                        Ok(serde_json::Value::Object(_)) if self.config.participant_sync => {
                            let now = OffsetDateTime::now_utc();
                            actions.extend(workflow_participant_action(body, now));
                        }
                        _ => {}
                    }
                }
                Ok(Webhook { actions, ignored, sender_id: None, canonical: hubspot_canonical(body, canonical) })
            }
            ReferralSource::Extole => match parse_extole(body)? {
                ExtoleInbound::ShareLink(link) => {
                    let actions = vec![ReferralAction::UpsertContact(link.to_upsert())];
                    Ok(Webhook { actions, ignored: vec![], sender_id: None, canonical })
                }
                ExtoleInbound::Ignored { reason } => {
                    Ok(Webhook { actions: vec![], ignored: vec![reason], sender_id: None, canonical })
                }
            },
            ReferralSource::Impact => match parse_advocate(body)? {
                AdvocateEvent::Update(update) => {
                    let sender_id = Some(("advocate", update.webhook_id.clone()));
                    // Events naming the user by id only update the contacts carrying that id; never an upsert,
                    // which needs the email.
                    let action = match update.to_upsert() {
                        Some(upsert) => ReferralAction::UpsertContact(upsert),
                        None => ReferralAction::UpdateAdvocateUser(update),
                    };
                    Ok(Webhook { actions: vec![action], ignored: vec![], sender_id, canonical })
                }
                AdvocateEvent::Ignored { event_type, reason, .. } => Ok(Webhook {
                    actions: vec![],
                    ignored: vec![format!("`{event_type}`: {reason}")],
                    sender_id: None,
                    canonical,
                }),
            },
        }
    }

    /// Queue each action not accepted before (its own event id, due now); 202 with the event ids.
    async fn accept(&self, key: &str, parsed: ReferralActions, now: OffsetDateTime) -> Result<Reply, ApiError> {
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
            // No 2xx without the event record: 503, and the sender's retry finds this action a duplicate (its
            // key is completed above) while the queued message is delivered and recorded by the worker.
            self.intake.log(&message, EventStatus::Retrying, Some(now), None, None, now).await?;
            self.intake.metrics.event(FUNCTION, EventOutcome::Queued);
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
        Ok(Reply::json(202, body))
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
