//! The HTTP error surface: one type, mapped once to a JSON response `{"error":{"code","message","details"?}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use hubrelay_core::auth::AuthError;
use hubrelay_core::lead::LeadError;
use hubrelay_core::mapping::FieldError;
use hubrelay_core::store::StoreError;

/// An error answered to the caller. `code` is stable: senders and tests match on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (503, 409 in progress).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: None, retry_after: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
        .with_details(json!({ "limit_bytes": limit }))
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type `{got}` is not accepted; send application/json or application/x-www-form-urlencoded"),
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).with_retry_after(5)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

impl From<LeadError> for ApiError {
    fn from(e: LeadError) -> Self {
        let status = if e.is_syntax() { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        err.details = e.field().map(|field| json!({ "field": field }));
        err
    }
}

impl From<hubrelay_core::updates::UpdateError> for ApiError {
    fn from(e: hubrelay_core::updates::UpdateError) -> Self {
        let status = if e.is_syntax() { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if let Some(field) = e.field() {
            err.details = Some(json!({ "field": field }));
        }
        err
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message.clone())
            .with_details(json!({ "field": e.field }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::unavailable("store_unavailable", "the event store is unavailable; retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

impl From<hubrelay_core::referral::ReferralError> for ApiError {
    /// Unreadable bodies are 400, readable ones with bad fields 422, a missing setting 500 (our fault). Senders
    /// do not retry 4xx (HubSpot workflows, SaaSquatch retry anything non-200: nothing else is possible).
    fn from(e: hubrelay_core::referral::ReferralError) -> Self {
        let status = match e.code {
            "invalid_json" | "invalid_encoding" | "duplicate_key" | "invalid_payload" => StatusCode::BAD_REQUEST,
            "not_configured" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut err = ApiError::new(status, e.code, e.message.clone());
        if let Some(field) = &e.field {
            err = err.with_details(json!({ "field": field }));
        }
        err
    }
}
