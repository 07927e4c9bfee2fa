//! `lead-captured`: a lead becomes a HubSpot contact exactly once — or waits on the retry queue, or is
//! parked in the dead-letter queue with the reason. Only input the sender can fix gets a 4xx.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::intake::{content_type, EventKind, Intake, Parsed, Reply};
use hubrelay_core::batching::UpsertBatcher;
use hubrelay_core::delivery::Failure;
use hubrelay_core::domain::{new_event_id, ContactUpsert, FunctionName, UpsertedContact};
use hubrelay_core::followups::follow_ups;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::lead::{self, ParsedLead};
use hubrelay_core::mapping::Mapping;
use hubrelay_core::missing_properties::MissingProperties;
use hubrelay_core::pii::mask_email;
use hubrelay_core::store::{Delivered, EventStatus};
use hubrelay_core::worker::ContactLocks;

pub struct LeadService {
    intake: Intake,
    mapping: Mapping,
    hubspot: Arc<dyn HubSpot>,
    /// Record each delivered lead's id → contact id (with the answer, see [`Intake::complete_delivered`]).
    link_lead_ids: bool,
    /// Shared with the local worker (`hubrelay serve`); `None` in the Lambda.
    locks: Option<Arc<ContactLocks>>,
    /// Properties HubSpot said the portal lacks (shared with the worker of the same process).
    missing: Arc<MissingProperties>,
    /// Leads arriving together share one call (`hubrelay serve`); `None`: one call per lead (a Lambda
    /// answers one request at a time).
    batcher: Option<Arc<UpsertBatcher>>,
}

/// How long the inline path waits for a contact the worker is writing before queueing the lead instead
/// (the worker then merges it into its next batch at once).
pub const CONTACT_LOCK_WAIT: Duration = Duration::from_millis(250);

impl LeadService {
    /// Usually built by [`crate::app::Relay::lead_service`].
    pub fn new(intake: Intake, mapping: Mapping, hubspot: Arc<dyn HubSpot>) -> Self {
        LeadService {
            intake,
            mapping,
            hubspot,
            link_lead_ids: false,
            locks: None,
            missing: MissingProperties::new(),
            batcher: None,
        }
    }

    /// Send through `batcher`: leads arriving together share one `batch/upsert`, each answered on its own.
    pub fn with_batcher(mut self, batcher: Arc<UpsertBatcher>) -> Self {
        self.batcher = Some(batcher);
        self
    }

    /// Share what HubSpot said the portal lacks with the worker: a lead carrying such a property parks
    /// without a call.
    pub fn with_missing_properties(mut self, missing: Arc<MissingProperties>) -> Self {
        self.missing = missing;
        self
    }

    /// Record each delivered lead's id → contact id, so status updates and activities that only know the
    /// lead id find the contact.
    pub fn linking_lead_ids(mut self) -> Self {
        self.link_lead_ids = true;
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
}

/// A parsed lead and the contact write it maps to.
pub struct LeadEvent {
    parsed: ParsedLead,
    upsert: ContactUpsert,
}

#[async_trait::async_trait]
impl EventKind for LeadService {
    type Event = LeadEvent;

    fn intake(&self) -> &Intake {
        &self.intake
    }

    fn function(&self) -> FunctionName {
        FunctionName::LeadCaptured
    }

    /// JSON, or a Zapier-style form.
    fn accepts(&self, media_type: &str) -> bool {
        matches!(media_type, "application/json" | "" | "application/x-www-form-urlencoded")
            || media_type.ends_with("+json")
    }

    /// Parse, then map: a lead the mapping refuses is the sender's to fix (422), before any claim.
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed<LeadEvent>, ApiError> {
        let mut parsed = parse_body(headers, body)?;
        let upsert = self.mapping.apply(&parsed.lead)?;
        // What the sender sent and this profile does not write is reported, never dropped silently.
        parsed.ignored = self.mapping.ignored(&parsed);
        let canonical = parsed.lead.canonical_json();
        let sender_id = parsed.lead.lead_id.clone().map(|id| ("lead", id));
        Ok(Parsed::Event { event: LeadEvent { parsed, upsert }, sender_id, canonical })
    }

    /// One HubSpot call; on trouble, hand the event to the retry queue or the dead-letter queue.
    async fn deliver(&self, key: &str, event: LeadEvent, now: OffsetDateTime) -> Result<Reply, ApiError> {
        let LeadEvent { parsed, upsert } = event;
        let event_id = new_event_id();
        let masked = mask_email(&upsert.email);
        let send = |upsert: &ContactUpsert| {
            let upsert = upsert.clone();
            async move {
                let answer = match &self.batcher {
                    Some(batcher) => batcher.upsert(upsert).await,
                    None => self.hubspot.upsert_contact(&upsert).await,
                };
                answer.map_err(|e| {
                    self.missing.learn(&e);
                    Failure::from(e)
                })
            }
        };
        // Held until the contact's version is recorded (end of this function).
        let mut _contact = None;
        let result: Result<_, Failure> = match (&self.locks, self.missing.carried_by(&upsert)) {
            // HubSpot refused this property moments ago: park without spending a call on it.
            (_, Some(property)) => Err(MissingProperties::failure(&property)),
            (None, None) => send(&upsert).await,
            (Some(locks), None) => match tokio::time::timeout(CONTACT_LOCK_WAIT, locks.share(&upsert.email)).await {
                Ok(guard) => {
                    _contact = Some(guard);
                    send(&upsert).await
                }
                Err(_) => Err(Failure::retry(
                    "contact_busy",
                    "not sent: the retry worker is writing this contact; queued to be merged",
                )),
            },
        };
        let event = serde_json::to_value(&parsed.lead).unwrap_or(Value::Null);
        match result {
            Ok(contact) => {
                self.missing.forget(&upsert);
                // The contact's newest applied lead (so an older retried one cannot overwrite it), the lead
                // id's contact and the event's fate, stored with the answer while the contact is still held.
                let follow_ups = follow_ups(&self.mapping, &event_id, &event, now, &contact.id, now);
                let record = Intake::settled_record(
                    FunctionName::LeadCaptured,
                    &event_id,
                    event,
                    EventStatus::Delivered,
                    Some(contact.id.clone()),
                    now,
                );
                let delivered = Delivered {
                    follow_ups,
                    event: record,
                    applied: Some((upsert.email.clone(), now)),
                    link: match &parsed.lead.lead_id {
                        Some(lead_id) if self.link_lead_ids => Some((lead_id.clone(), contact.id.clone())),
                        _ => None,
                    },
                };
                let reply = Reply::json(200, delivered_body(&event_id, &contact, &parsed.ignored));
                let reply = self.intake.complete_delivered(key, reply, delivered).await?;
                tracing::info!(event_id, email = %masked, contact_id = %contact.id, created = contact.created, "lead delivered");
                Ok(reply)
            }
            Err(error) => {
                let message = Intake::first_failure(FunctionName::LeadCaptured, &event_id, key, event, &error, now);
                let mut extra = Map::new();
                extra.insert("ignored".into(), json!(parsed.ignored));
                self.intake.queue_or_park(message, &error, extra, now).await
            }
        }
    }
}

fn delivered_body(event_id: &str, contact: &UpsertedContact, ignored: &[String]) -> Value {
    // Aimbase wants the contact id twice: as ProspectExternalId and as HubSpotContactId (the Aimbase guide).
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

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<ParsedLead, ApiError> {
    match content_type(headers).as_str() {
        "application/json" | "" => Ok(lead::parse_json(body)?),
        "application/x-www-form-urlencoded" => Ok(lead::parse_form(body)?),
        other if other.ends_with("+json") => Ok(lead::parse_json(body)?),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;

    fn refusal(content_type: &str, body: &[u8]) -> ApiError {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
        match parse_body(&headers, body) {
            Ok(parsed) => panic!("{body:?} was accepted: {parsed:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_form_value_that_is_not_utf8_is_400_invalid_encoding() {
        let form = "application/x-www-form-urlencoded";
        // Latin-1 "Jürgen", percent-encoded and raw: the usual decoders would deliver "J\u{FFFD}rgen".
        for body in [&b"email=j%40example.com&first_name=J%FCrgen"[..], b"email=j%40example.com&first_name=J\xfcrgen"] {
            let e = refusal(form, body);
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_encoding"), "{body:?}");
            assert!(e.body()["error"]["message"].as_str().unwrap().contains("first_name"), "{}", e.body());
        }
        let e = refusal(form, b"email=j%40example.com&first_name=J%00");
        assert_eq!((e.status.as_u16(), e.code), (422, "nul_character"));
        assert_eq!(e.body()["error"]["details"]["field"], "first_name");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, format!("{form}; charset=utf-8").parse().unwrap());
        let ok = parse_body(&headers, b"email=j%40example.com&first_name=J%C3%BCrgen").unwrap();
        assert_eq!(ok.lead.first_name.as_deref(), Some("Jürgen"));
    }

    #[test]
    fn strict_json_refusals_have_their_status_and_field() {
        let e = refusal("application/json", br#"{"email":"a@x.com","email":"b@x.com"}"#);
        assert_eq!((e.status.as_u16(), e.code), (400, "duplicate_key"));
        assert_eq!(e.body()["error"]["details"]["field"], "email");
        let e = refusal("application/json", br#"{"email":"a@x.com","last_name":"D\u0000"}"#);
        assert_eq!((e.status.as_u16(), e.code), (422, "nul_character"));
        let e = refusal("application/json", "{\"email\":\"ja\u{200B}ne@x.com\"}".as_bytes());
        assert_eq!((e.status.as_u16(), e.code), (422, "invalid_email"));
        assert_eq!(e.body()["error"]["details"]["field"], "email");
        let e = refusal("application/json", br#"{"email":"a@x.com","lead_date":"soon"}"#);
        assert_eq!((e.status.as_u16(), e.code), (422, "invalid_value"));
        assert_eq!(e.body()["error"]["details"]["field"], "lead_date");
    }
}
