//! What the partner clients share: transport failures and `Retry-After` as [`PartnerError`] parts.

use hubrelay_core::partners::PartnerError;

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
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}
