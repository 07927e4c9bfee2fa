//! `status-update` (`POST /v1/leads/status`) and `activity` (`POST /v1/leads/activities`): the lead's life
//! after capture, written onto its HubSpot contact once, in order — or queued, or parked with the reason.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::intake::{content_type, idempotency_key, sha256_hex, Claim, Intake};
use super::leads::{reply, LeadReply};
use super::EventHandler;
use crate::error::ApiError;
use hubrelay_core::domain::{new_event_id, FunctionName};
use hubrelay_core::store::EventStatus;
use hubrelay_core::updates::{parse_activity, parse_status_update, UpdateDelivery, UpdateOutcome, UpdateResult};

pub struct UpdateService {
    function: FunctionName,
    intake: Intake,
    delivery: Arc<UpdateDelivery>,
}

/// A parsed body: the normalised event, the sender's id for it, and the canonical text to hash.
struct Parsed {
    event: Value,
    sender_id: Option<(&'static str, String)>,
    canonical: String,
}

impl UpdateService {
    /// `function` is [`FunctionName::StatusUpdate`] or [`FunctionName::Activity`].
    pub fn new(function: FunctionName, intake: Intake, delivery: Arc<UpdateDelivery>) -> Self {
        UpdateService { function, intake, delivery }
    }

    fn parse(&self, body: &[u8]) -> Result<Parsed, ApiError> {
        match self.function {
            FunctionName::Activity => {
                let a = parse_activity(body)?;
                let event = serde_json::to_value(&a).unwrap_or(Value::Null);
                // Without the sender's id, the same contact, kind, time and body is the same activity.
                let identity =
                    json!({"contact": a.contact, "kind": a.kind, "at": event.get("occurred_at"), "body": a.body});
                let sender_id = match &a.activity_id {
                    Some(id) => Some(("activity", id.clone())),
                    None => Some(("content", sha256_hex(&identity.to_string()))),
                };
                Ok(Parsed { canonical: event.to_string(), event, sender_id })
            }
            _ => {
                let u = parse_status_update(body)?;
                let event = serde_json::to_value(&u).unwrap_or(Value::Null);
                let sender_id = u.update_id.clone().map(|id| ("update", id));
                Ok(Parsed { canonical: event.to_string(), event, sender_id })
            }
        }
    }

    async fn deliver(&self, key: &str, event: Value, now: OffsetDateTime) -> Result<LeadReply, ApiError> {
        let event_id = new_event_id();
        match self.delivery.deliver_event(self.function, &event, &event_id, now, false).await {
            Ok(result) => {
                let status = match result.outcome {
                    UpdateOutcome::Delivered => EventStatus::Delivered,
                    UpdateOutcome::Stale | UpdateOutcome::Duplicate => EventStatus::Superseded,
                };
                self.intake
                    .record_settled(self.function, &event_id, event, status, Some(result.contact_id.clone()), now)
                    .await;
                tracing::info!(event_id, function = self.function.as_str(), contact_id = %result.contact_id,
                    outcome = ?result.outcome, applied = ?result.applied, "update settled");
                Ok(reply(200, settled_body(&event_id, &result)))
            }
            Err(error) => {
                let message = Intake::first_failure(self.function, &event_id, key, event, &error, now);
                self.intake.queue_or_park(message, &error, Map::new(), now).await
            }
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for UpdateService {
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
        let auth = self.intake.verify(method, path_and_query, headers, body, now)?;
        let ct = content_type(headers);
        if !(ct == "application/json" || ct.ends_with("+json")) {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        let parsed = self.parse(body)?;
        let sender_id = parsed.sender_id.as_ref().map(|(kind, id)| (*kind, id.as_str()));
        let key = idempotency_key(self.function, headers, &auth, sender_id, &parsed.canonical)?;
        match self.intake.claim(&key, &sha256_hex(&parsed.canonical), now).await? {
            Claim::Replay(stored) => Ok(LeadReply { status: stored.status, body: stored.body, replayed: true }),
            Claim::Owned => {
                let result = self.deliver(&key, parsed.event, now).await;
                self.intake.finish(&key, result).await
            }
        }
    }
}

fn settled_body(event_id: &str, r: &UpdateResult) -> Value {
    let mut body = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    body["status"] = serde_json::to_value(r.outcome).unwrap_or(Value::Null);
    body["event_id"] = event_id.into();
    if let Some(map) = body.as_object_mut() {
        map.remove("outcome");
    }
    body
}
