//! What the partner clients share: transport failures and `Retry-After` as [`PartnerError`] parts.

use std::time::Duration;

use hubrelay_core::partners::PartnerError;
use serde_json::Value;

/// The HTTP client of a partner: `timeout` bounds a whole call; connecting gets at most 3 s of it.
pub(crate) fn client(partner: &'static str, timeout: Duration) -> Result<reqwest::Client, PartnerError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport(partner, &e))
}

/// A partner's answer: its status, `Retry-After` (seconds) and JSON body (`null` when it sent none).
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

/// Sends `request` and reads the whole answer; only transport failures are errors here.
pub(crate) async fn send(partner: &'static str, request: reqwest::RequestBuilder) -> Result<Answer, PartnerError> {
    let resp = request.send().await.map_err(|e| transport(partner, &e))?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let bytes = resp.bytes().await.map_err(|e| transport(partner, &e))?;
    Ok(Answer { status, retry_after, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
}

pub(crate) fn transport(partner: &'static str, e: &reqwest::Error) -> PartnerError {
    let kind = if e.is_timeout() { "timeout" } else { "unreachable" };
    PartnerError {
        partner,
        status: None,
        code: format!("{partner}_{kind}"),
        // reqwest's text names the URL, never the credentials (they travel in headers).
        message: e.to_string(),
        retry_after_secs: None,
    }
}

/// `Retry-After` in seconds, when present and numeric.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}
