//! The impact.com double: `POST /Advertisers/{AccountSID}/Conversions`, HTTP Basic (AccountSID : AuthToken),
//! form-encoded → 200 `{"Status":"QUEUED","QueuedUri"}`; 400 `{"Status":"ERROR","errors":[{field, level, message}]}`.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{content_type_is, lock, PartnerFaults, Received, Recorder};
use crate::server::{local_any, serve, SandboxError, ServerHandle};

use hubrelay_core::partners::impact::is_hex_digest;
use hubrelay_core::partners::IMPACT_ORDER_ID_MAX;

/// Fields that identify the event type, and the attribution keys impact accepts (one of each is required).
const EVENT_TYPE_KEYS: [&str; 3] = ["ActionTrackerId", "EventTypeId", "EventTypeCode"];
const ATTRIBUTION_KEYS: [&str; 5] = ["CustomerId", "ClickId", "PromoCode", "TrackingValue", "MediaPartnerId"];
const MONEY_KEYS: [&str; 4] = ["OrderSubTotal", "Amount", "OrderDiscount", "OrderShipping"];

#[derive(Debug, Clone, Default)]
pub struct ImpactSandboxOptions {
    /// Required Account SID (path and Basic user); `None` accepts any SID whose path and user agree.
    pub account_sid: Option<String>,
    /// Required auth token; `None` accepts any non-empty token.
    pub auth_token: Option<String>,
    /// When set, `CampaignId` must equal it.
    pub campaign_id: Option<String>,
}

#[derive(Clone)]
pub struct ImpactSandbox {
    options: ImpactSandboxOptions,
    recorder: Recorder,
}

/// An impact error answer: a status and `errors[]` (field, message).
struct ImpactError {
    status: u16,
    errors: Vec<(String, String)>,
    faulted: Option<PartnerFaults>,
}

impl ImpactError {
    fn one(status: u16, field: &str, message: &str) -> Self {
        ImpactError { status, errors: vec![(field.into(), message.into())], faulted: None }
    }

    fn text(&self) -> String {
        self.errors.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ")
    }

    fn response(&self) -> Response {
        let errors: Vec<Value> =
            self.errors.iter().map(|(f, m)| json!({"field": f, "level": "ERROR", "message": m})).collect();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp =
            (status, Json(json!({"Status": "ERROR", "Message": self.text(), "errors": errors}))).into_response();
        if self.status == 429 {
            // impact sends its quota headers, not Retry-After.
            resp.headers_mut().insert("x-ratelimit-limit-hour", HeaderValue::from(1000));
            resp.headers_mut().insert("x-ratelimit-remaining-hour", HeaderValue::from(0));
        }
        if let Some(secs) = self.faulted.as_ref().and_then(|f| f.retry_after_secs) {
            resp.headers_mut().insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl ImpactSandbox {
    pub fn new(options: ImpactSandboxOptions) -> Self {
        ImpactSandbox { options, recorder: Recorder::default() }
    }

    /// The conversions API and the `/__sandbox` admin routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/Advertisers/{sid}/Conversions", post(conversions))
            .with_state(self.clone())
            .merge(self.recorder.admin_routes())
    }

    pub async fn serve(&self, addr: SocketAddr) -> Result<ServerHandle, SandboxError> {
        serve(self.router(), addr).await
    }

    /// Serves on a free local port; [`ServerHandle::url`] is the base URL for `ImpactClient`.
    pub async fn serve_local(&self) -> Result<ServerHandle, SandboxError> {
        self.serve(local_any()).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.recorder.received()
    }

    pub fn set_faults(&self, faults: PartnerFaults) {
        self.recorder.set_faults(faults)
    }

    pub fn reset(&self) {
        self.recorder.reset()
    }

    fn authorized(&self, path_sid: &str, headers: &HeaderMap) -> bool {
        let basic = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let Some((sid, token)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
            return false;
        };
        let sid_ok = sid == path_sid && self.options.account_sid.as_deref().is_none_or(|want| want == sid);
        let token_ok = !token.is_empty() && self.options.auth_token.as_deref().is_none_or(|want| want == token);
        sid_ok && token_ok
    }

    /// impact's required-field rules; returns the dedupe key (`event type` + `OrderId`).
    fn validate(&self, form: &Map<String, Value>) -> Result<String, ImpactError> {
        let get = |k: &str| form.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| errors.push((field.to_owned(), message));
        match get("CampaignId") {
            None => err("CampaignId", "CampaignId is required".into()),
            Some(c) if !c.bytes().all(|b| b.is_ascii_digit()) => err("CampaignId", format!("Invalid CampaignId: {c}")),
            Some(c) if self.options.campaign_id.as_deref().is_some_and(|want| want != c) => {
                err("CampaignId", format!("Campaign {c} does not exist for this account"))
            }
            Some(_) => {}
        }
        match get("EventDate") {
            None => err("EventDate", "EventDate is required".into()),
            Some(d) if d != "NOW" && OffsetDateTime::parse(d, &Rfc3339).is_err() => {
                err("EventDate", format!("EventDate is not an ISO-8601 date: {d}"))
            }
            Some(_) => {}
        }
        match get("OrderId") {
            None => err("OrderId", "OrderId is required".into()),
            Some(o) if o.chars().count() > IMPACT_ORDER_ID_MAX => {
                err("OrderId", format!("OrderId is longer than {IMPACT_ORDER_ID_MAX} characters"))
            }
            Some(_) => {}
        }
        let event_type = EVENT_TYPE_KEYS.iter().find_map(|k| get(k).map(|v| format!("{k}={v}")));
        if event_type.is_none() {
            err("EventTypeCode", "One of ActionTrackerId, EventTypeId or EventTypeCode is required".into());
        }
        if !ATTRIBUTION_KEYS.iter().any(|k| get(k).is_some()) {
            err("CustomerId", "An attribution key (CustomerId, ClickId, PromoCode, ...) is required".into());
        }
        if let Some(email) = get("CustomerEmail") {
            if !is_hex_digest(&email.to_ascii_lowercase()) {
                err(
                    "CustomerEmail",
                    "CustomerEmail must be a SHA-1 or SHA-256 hash; plaintext emails are refused".into(),
                );
            }
        }
        for money in MONEY_KEYS.iter().filter(|k| get(k).is_some()) {
            if get(money).and_then(|v| v.parse::<f64>().ok()).is_none() {
                err(money, format!("{money} is not a number"));
            }
            if get("CurrencyCode").is_none() {
                err("CurrencyCode", format!("CurrencyCode is required with {money}"));
            }
        }
        if errors.is_empty() {
            Ok(format!("{}|{}", event_type.unwrap_or_default(), get("OrderId").unwrap_or_default()))
        } else {
            Err(ImpactError { status: 400, errors, faulted: None })
        }
    }
}

async fn conversions(
    State(sb): State<ImpactSandbox>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Option<Vec<(String, String)>> = serde_urlencoded::from_bytes(&body).ok();
    let form: Map<String, Value> = pairs.iter().flatten().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut journal = lock(&sb.recorder.journal);
    let mut received = Received {
        seq: journal.next_seq(),
        at: OffsetDateTime::now_utc(),
        path: format!("/Advertisers/{sid}/Conversions"),
        status: 200,
        body: Value::Object(form.clone()),
        id: None,
        duplicate_of: None,
        error: None,
    };
    let outcome = if !sb.authorized(&sid, &headers) {
        Err(ImpactError::one(401, "Authorization", "Authentication failed: check the AccountSID and AuthToken"))
    } else if let Some(fault) = journal.take_fault() {
        let status = fault.effective_status();
        let message = match status {
            429 => "Rate limit exceeded",
            s if s >= 500 => "Internal error, try again later",
            _ => "The conversion was refused (forced by the sandbox)",
        };
        Err(ImpactError { faulted: Some(fault), ..ImpactError::one(status, "", message) })
    } else if !content_type_is(&headers, "application/x-www-form-urlencoded") || pairs.is_none() {
        Err(ImpactError::one(415, "", "Send the conversion as application/x-www-form-urlencoded"))
    } else {
        sb.validate(&form)
    };
    let resp = match outcome {
        Ok(key) => {
            let id = format!("A{:09}-{}", received.seq, &uuid::Uuid::new_v4().simple().to_string()[..12]);
            received.duplicate_of = journal.dedupe(key, &id);
            received.id = Some(id.clone());
            let queued = format!("/Advertisers/{sid}/APISubmissions/{id}");
            (StatusCode::OK, Json(json!({"Status": "QUEUED", "QueuedUri": queued}))).into_response()
        }
        Err(e) => {
            received.status = e.status;
            received.error = Some(e.text());
            e.response()
        }
    };
    journal.record(received);
    resp
}
