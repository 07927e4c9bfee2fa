//! Extole's events API: `POST {base}/v5/events` with a bearer access token and a JSON
//! `{"event_name": ..., "data": {...}}` body, answered `{"id": ...}`. Errors are
//! `{code, http_status_code, message, parameters, unique_id}`; 429 and 5xx are transient, other 4xx are not.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use hubrelay_core::partners::{Extole, ExtoleAccepted, ExtoleEvent, PartnerError};

use crate::partner_http::{client, send, Answer};

const PARTNER: &str = "extole";

#[derive(Clone)]
pub struct ExtoleClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for ExtoleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never appears in debug output.
        f.debug_struct("ExtoleClient").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl ExtoleClient {
    /// `timeout` bounds a whole call; connecting gets at most 3 s of it.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, PartnerError> {
        let http = client(PARTNER, timeout)?;
        Ok(ExtoleClient { http, base_url: base_url.trim_end_matches('/').to_owned(), token: token.to_owned() })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

#[async_trait]
impl Extole for ExtoleClient {
    async fn send_event(&self, event: &ExtoleEvent) -> Result<ExtoleAccepted, PartnerError> {
        let url = format!("{}/v5/events", self.base_url);
        let request = self.http.post(&url).bearer_auth(&self.token).json(event);
        let Answer { status, retry_after: retry, body } = send(PARTNER, request).await?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(status, &body, retry));
        }
        // v5 answers `id`; the v6 endpoints answer `event_id`: accept either, so the base URL can point at both.
        let id = ["id", "event_id"].iter().find_map(|k| match body.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
        id.map(|id| ExtoleAccepted { id }).ok_or_else(|| PartnerError {
            partner: PARTNER,
            status: Some(status),
            code: "unexpected_response".into(),
            // An accepted event without an id is odd but was accepted: retrying could double-count.
            message: "Extole accepted the event without an id".into(),
            retry_after_secs: None,
        })
    }
}

/// Extole's error body; every field optional.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    unique_id: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Classifies a non-2xx answer, keeping Extole's code and message (and `unique_id`, which Extole support asks for).
pub fn error_from_response(status: u16, body: &Value, retry_after_secs: Option<u64>) -> PartnerError {
    let parsed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_default();
    let code = PartnerError::generic_code(PARTNER, status)
        .or_else(|| parsed.code.as_deref().filter(|c| !c.trim().is_empty()).map(|c| c.trim().to_ascii_lowercase()))
        .unwrap_or_else(|| format!("{PARTNER}_{status}"));
    let mut message = parsed.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(params) = parsed.parameters.filter(|p| p.as_object().is_some_and(|o| !o.is_empty())) {
        message = format!("{message} {params}");
    }
    if let Some(id) = parsed.unique_id {
        message = format!("{message} (unique_id {id})");
    }
    PartnerError { partner: PARTNER, status: Some(status), code, message, retry_after_secs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::AttemptOutcome;
    use serde_json::json;

    #[test]
    fn keeps_extoles_code_and_message_for_client_errors() {
        let body = json!({"code":"invalid_event_name","http_status_code":400,"message":"Event name is invalid",
            "parameters":{"event_name":""},"unique_id":"u-1"});
        let e = error_from_response(400, &body, None);
        assert_eq!(e.code, "invalid_event_name");
        assert!(e.message.starts_with("Event name is invalid"), "{}", e.message);
        assert!(e.message.contains("u-1") && e.message.contains("event_name"), "{}", e.message);
        assert_eq!(e.outcome(), AttemptOutcome::Rejected);
    }

    #[test]
    fn status_decides_transient_codes() {
        let e = error_from_response(429, &json!({"code":"too_many_requests"}), Some(7));
        assert_eq!(
            (e.code.as_str(), e.retry_after_secs, e.outcome()),
            ("rate_limited", Some(7), AttemptOutcome::Retryable)
        );
        let e = error_from_response(500, &Value::Null, None);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("extole_unavailable", "HTTP 500"));
        assert_eq!(error_from_response(401, &Value::Null, None).code, "extole_unauthorized");
        assert_eq!(error_from_response(415, &Value::Null, None).code, "extole_415");
    }

    #[test]
    fn debug_hides_the_token() {
        let c = ExtoleClient::new("https://api.extole.io/", "secret-token-123", Duration::from_secs(5)).unwrap();
        assert_eq!(c.base_url(), "https://api.extole.io");
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
