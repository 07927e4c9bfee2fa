//! HubSpot-shaped error answers.
//!
//! Common shape: `{"status":"error","message","correlationId","category"}`, plus `errors` for property
//! validation. Rate limits use their own shape (`errorType`, `policyName`, `groupName`).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

pub(crate) const CORRELATION_HEADER: &str = "x-hubspot-correlation-id";

pub(crate) fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One property that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PropIssue {
    /// `PROPERTY_DOESNT_EXIST`, `INVALID_OPTION`, `INVALID_DATE`, `READ_ONLY_VALUE`, ...
    pub code: &'static str,
    pub name: String,
    pub message: String,
}

/// The rate-limit policy that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    TenSecondly,
    Daily,
}

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Map<String, Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, category: &str, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("status".into(), json!("error"));
        body.insert("message".into(), json!(message.into()));
        body.insert("correlationId".into(), json!(correlation_id()));
        body.insert("category".into(), json!(category));
        ApiError { status, body, headers: Vec::new() }
    }

    /// Adds (or replaces) a top-level body field.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// A body that is not JSON, or JSON of the wrong shape (what HubSpot's deserialiser reports).
    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::validation(format!("Invalid input JSON on line 1, column 1: {detail}"))
    }

    pub fn from_json_error(e: &serde_json::Error) -> Self {
        let text = e.to_string();
        let detail = match text.rfind(" at line ") {
            Some(at) => &text[..at],
            None => &text,
        };
        Self::validation(format!("Invalid input JSON on line {}, column {}: {detail}", e.line(), e.column()))
    }

    /// `Property values were not valid: [...]` with one `errors[]` entry per bad property.
    pub fn properties(issues: &[PropIssue]) -> Self {
        let legacy: Vec<Value> = issues
            .iter()
            .map(|i| {
                json!({"isValid": false, "message": i.message, "error": i.code, "name": i.name,
                       "localizedErrorMessage": i.message})
            })
            .collect();
        let errors: Vec<Value> = issues
            .iter()
            .map(|i| json!({"message": i.message, "code": i.code, "context": {"propertyName": [i.name]}}))
            .collect();
        let message = format!("Property values were not valid: {}", Value::Array(legacy));
        Self::validation(message).with("errors", Value::Array(errors))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    pub fn contact_not_found(id: &str) -> Self {
        Self::not_found(format!("Object not found.  objectId are usually numeric. ({id})"))
            .with("context", json!({"id": [id]}))
    }

    /// The duplicate-email 409; the existing id is only inside `message`, like HubSpot's.
    pub fn conflict(existing_id: u64) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", format!("Contact already exists. Existing ID: {existing_id}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find \
             more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    }

    /// The 429 shape: no `category`, `errorType: RATE_LIMIT` and the policy instead.
    pub fn rate_limited(policy: Policy) -> Self {
        let (message, name) = match policy {
            Policy::TenSecondly => ("You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING"),
            Policy::Daily => ("You have reached your daily limit.", "DAILY"),
        };
        let mut body = Map::new();
        body.insert("status".into(), json!("error"));
        body.insert("message".into(), json!(message));
        body.insert("errorType".into(), json!("RATE_LIMIT"));
        body.insert("correlationId".into(), json!(correlation_id()));
        body.insert("policyName".into(), json!(name));
        body.insert("groupName".into(), json!("sandbox:private-app"));
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, body, headers: Vec::new() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("sandbox database error: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = self.body.get("correlationId").and_then(Value::as_str).and_then(|s| HeaderValue::from_str(s).ok());
        let mut res = (self.status, axum::Json(Value::Object(self.body))).into_response();
        if let Some(id) = id {
            res.headers_mut().insert(CORRELATION_HEADER, id);
        }
        for (name, value) in self.headers {
            res.headers_mut().insert(name, value);
        }
        res
    }
}
