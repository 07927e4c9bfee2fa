//! The Extole double: `POST /v5/events` with `Authorization: Bearer`, JSON `{"event_name", "data"}` →
//! `{"id"}`; errors `{code, http_status_code, message, parameters, unique_id}`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{content_type_is, lock, PartnerFaults, Received, Recorder};
use crate::server::{local_any, serve, SandboxError, ServerHandle};

use hubrelay_core::partners::EXTOLE_CONVERSION_ID_MAX;

#[derive(Debug, Clone, Default)]
pub struct ExtoleSandboxOptions {
    /// Required bearer token; `None` accepts any non-empty token.
    pub token: Option<String>,
}

/// Cheap to clone; clones share the journal.
#[derive(Clone)]
pub struct ExtoleSandbox {
    options: ExtoleSandboxOptions,
    recorder: Recorder,
}

/// An Extole error answer.
struct ExtoleError {
    status: u16,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ExtoleError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ExtoleError { status, code, message: message.into(), retry_after: None }
    }

    fn fault(f: &PartnerFaults) -> Self {
        let status = f.effective_status();
        let (code, message) = match status {
            429 => ("too_many_requests", "Too many requests, slow down"),
            401 => ("access_denied", "The access token was not accepted"),
            s if s >= 500 => ("internal_error", "Extole could not process the request"),
            _ => ("invalid_request", "The request was refused"),
        };
        ExtoleError { retry_after: f.retry_after_secs, ..ExtoleError::new(status, code, message) }
    }

    fn response(&self) -> Response {
        let body = json!({"code": self.code, "http_status_code": self.status, "message": self.message,
            "parameters": {}, "unique_id": uuid::Uuid::new_v4().simple().to_string()});
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl ExtoleSandbox {
    pub fn new(options: ExtoleSandboxOptions) -> Self {
        ExtoleSandbox { options, recorder: Recorder::default() }
    }

    /// The events API and the `/__sandbox` admin routes.
    pub fn router(&self) -> Router {
        Router::new().route("/v5/events", post(events)).with_state(self.clone()).merge(self.recorder.admin_routes())
    }

    /// Serves on `addr` (`127.0.0.1:0` for any free port).
    pub async fn serve(&self, addr: SocketAddr) -> Result<ServerHandle, SandboxError> {
        serve(self.router(), addr).await
    }

    /// Serves on a free local port; [`ServerHandle::url`] is the base URL for `ExtoleClient`.
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

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        match (presented, &self.options.token) {
            (Some(t), Some(want)) => t == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Checks an event body the way Extole does, returning the dedupe key (`partner_conversion_id`) if any.
fn validate(body: &Value) -> Result<Option<String>, ExtoleError> {
    let obj = body.as_object().ok_or_else(|| ExtoleError::new(400, "invalid_json", "The body is not a JSON object"))?;
    let name = obj.get("event_name").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ExtoleError::new(400, "missing_event_name", "event_name is required"));
    }
    let data = match obj.get("data") {
        None => return Ok(None),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ExtoleError::new(400, "invalid_data", "data must be an object")),
    };
    if let Some((k, _)) = data.iter().find(|(_, v)| v.is_object() || v.is_array()) {
        return Err(ExtoleError::new(400, "invalid_data", format!("data.{k} must be a string, number or boolean")));
    }
    if let Some(email) = data.get("email").and_then(Value::as_str) {
        if !hubrelay_core::lead::is_plausible_email(&email.trim().to_lowercase()) {
            return Err(ExtoleError::new(400, "invalid_email", "data.email is not an email address"));
        }
    }
    match data.get("partner_conversion_id") {
        None => Ok(None),
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= EXTOLE_CONVERSION_ID_MAX => {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(ExtoleError::new(
            400,
            "invalid_partner_conversion_id",
            format!("partner_conversion_id must be a string of 1 to {EXTOLE_CONVERSION_ID_MAX} characters"),
        )),
    }
}

async fn events(State(sb): State<ExtoleSandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let recorded = parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let mut journal = lock(&sb.recorder.journal);
    let mut received = Received {
        seq: journal.next_seq(),
        at: OffsetDateTime::now_utc(),
        path: "/v5/events".into(),
        status: 200,
        body: recorded,
        id: None,
        duplicate_of: None,
        error: None,
    };
    let outcome = if !sb.authorized(&headers) {
        Err(ExtoleError::new(401, "access_denied", "The access token was not accepted"))
    } else if let Some(fault) = journal.take_fault() {
        Err(ExtoleError::fault(&fault))
    } else if !content_type_is(&headers, "application/json") {
        Err(ExtoleError::new(415, "unsupported_media_type", "Send Content-Type: application/json"))
    } else {
        parsed.as_ref().ok_or_else(|| ExtoleError::new(400, "invalid_json", "The body is not JSON")).and_then(validate)
    };
    let resp = match outcome {
        Ok(key) => {
            let id = (6_900_000_000_000_000_000u64 + received.seq).to_string();
            received.duplicate_of = key.and_then(|k| journal.dedupe(k, &id));
            received.id = Some(id.clone());
            (StatusCode::OK, Json(json!({ "id": id }))).into_response()
        }
        Err(e) => {
            received.status = e.status;
            received.error = Some(format!("{}: {}", e.code, e.message));
            e.response()
        }
    };
    journal.record(received);
    resp
}
