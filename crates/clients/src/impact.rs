//! impact.com conversions: `POST {base}/Advertisers/{AccountSID}/Conversions`, form-encoded, HTTP Basic
//! (AccountSID : AuthToken). Answered 200 `{"Status":"QUEUED","QueuedUri":...}` (processed later) or
//! 400 `{"Status":"ERROR","errors":[{field, level, message}]}`. `OrderId` per event type is the only dedupe lever.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use hubrelay_core::partners::{Impact, ImpactAccepted, ImpactConversion, PartnerError};

use crate::partner_http::{client, send, Answer};

const PARTNER: &str = "impact";

#[derive(Clone)]
pub struct ImpactClient {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: String,
}

impl std::fmt::Debug for ImpactClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth token never appears in debug output; the account SID is an identifier, not a secret.
        f.debug_struct("ImpactClient")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl ImpactClient {
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str, timeout: Duration) -> Result<Self, PartnerError> {
        let http = client(PARTNER, timeout)?;
        Ok(ImpactClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            account_sid: account_sid.trim().to_owned(),
            auth_token: auth_token.to_owned(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

#[async_trait]
impl Impact for ImpactClient {
    async fn send_conversion(&self, conversion: &ImpactConversion) -> Result<ImpactAccepted, PartnerError> {
        let sid: String = self.account_sid.chars().filter(char::is_ascii_alphanumeric).collect();
        let url = format!("{}/Advertisers/{sid}/Conversions", self.base_url);
        let request = self
            .http
            .post(&url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&conversion.form());
        let Answer { status, retry_after: retry, body } = send(PARTNER, request).await?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(status, &body, retry));
        }
        if body.get("Status").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("ERROR")) {
            return Err(error_from_response(400, &body, None));
        }
        let queued_uri = body.get("QueuedUri").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(ImpactAccepted { queued_uri })
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "Message", alias = "message")]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Debug, Default, Deserialize)]
struct FieldError {
    field: Option<String>,
    message: Option<String>,
}

/// Classifies a non-2xx (or `Status: ERROR`) answer, keeping every `errors[].message` as the message.
pub fn error_from_response(status: u16, body: &Value, retry_after_secs: Option<u64>) -> PartnerError {
    let parsed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_default();
    let texts: Vec<String> = parsed
        .errors
        .iter()
        .filter_map(|e| {
            let msg = e.message.as_deref()?.trim();
            Some(match e.field.as_deref().filter(|f| !f.is_empty() && !msg.contains(*f)) {
                Some(field) => format!("{field}: {msg}"),
                None => msg.to_owned(),
            })
        })
        .collect();
    let message = if texts.is_empty() {
        parsed.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| format!("HTTP {status}"))
    } else {
        texts.join("; ")
    };
    let code = PartnerError::generic_code(PARTNER, status).unwrap_or_else(|| match status {
        400 | 422 => "impact_invalid_conversion".into(),
        s => format!("{PARTNER}_{s}"),
    });
    PartnerError { partner: PARTNER, status: Some(status), code, message, retry_after_secs }
}

#[cfg(test)]
#[path = "impact_tests.rs"]
mod tests;
