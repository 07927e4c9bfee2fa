//! `status-update` (`POST /v1/leads/status`) and `activity` (`POST /v1/leads/activities`): the lead's life
//! after capture, written onto its HubSpot contact once, in order — or queued, or parked with the reason.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::intake::{sha256_hex, EventKind, Intake, Parsed, Reply};
use hubrelay_core::domain::{new_event_id, FunctionName};
use hubrelay_core::store::{Delivered, EventStatus};
use hubrelay_core::updates::{parse_activity, parse_status_update, UpdateDelivery, UpdateOutcome, UpdateResult};

pub struct UpdateService {
    function: FunctionName,
    intake: Intake,
    delivery: Arc<UpdateDelivery>,
}

impl UpdateService {
    /// `function` is [`FunctionName::StatusUpdate`] or [`FunctionName::Activity`].
    pub fn new(function: FunctionName, intake: Intake, delivery: Arc<UpdateDelivery>) -> Self {
        UpdateService { function, intake, delivery }
    }
}

/// JSON only; the event is the normalised update or activity.
#[async_trait::async_trait]
impl EventKind for UpdateService {
    type Event = Value;

    fn intake(&self) -> &Intake {
        &self.intake
    }

    fn function(&self) -> FunctionName {
        self.function
    }

    fn parse(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Parsed<Value>, ApiError> {
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
                Ok(Parsed::Event { canonical: event.to_string(), event, sender_id })
            }
            _ => {
                let u = parse_status_update(body)?;
                let event = serde_json::to_value(&u).unwrap_or(Value::Null);
                let sender_id = u.update_id.clone().map(|id| ("update", id));
                Ok(Parsed::Event { canonical: event.to_string(), event, sender_id })
            }
        }
    }

    async fn deliver(&self, key: &str, event: Value, now: OffsetDateTime) -> Result<Reply, ApiError> {
        let event_id = new_event_id();
        match self.delivery.deliver_event(self.function, &event, &event_id, now, false).await {
            Ok(result) => {
                let status = match result.outcome {
                    UpdateOutcome::Delivered => EventStatus::Delivered,
                    UpdateOutcome::Stale | UpdateOutcome::Duplicate => EventStatus::Superseded,
                };
                let record = Intake::settled_record(
                    self.function,
                    &event_id,
                    event,
                    status,
                    Some(result.contact_id.clone()),
                    now,
                );
                let delivered = Delivered { event: record, applied: None, link: None, follow_ups: Vec::new() };
                let reply = Reply::json(200, settled_body(&event_id, &result));
                let reply = self.intake.complete_delivered(key, reply, delivered).await?;
                tracing::info!(event_id, function = self.function.as_str(), contact_id = %result.contact_id,
                    outcome = ?result.outcome, applied = ?result.applied, "update settled");
                Ok(reply)
            }
            Err(error) => {
                let message = Intake::first_failure(self.function, &event_id, key, event, &error, now);
                self.intake.queue_or_park(message, &error, Map::new(), now).await
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
