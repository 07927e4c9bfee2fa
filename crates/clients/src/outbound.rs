//! Outbound contact sync's sender ([`hubrelay_core::outbound`]): one signed `POST` per contact change to the
//! operator's endpoint, with the Standard Webhooks headers (`webhook-id` = the change's id, so a receiver drops
//! one sent twice; `webhook-timestamp`; `webhook-signature`). One try per attempt: the retry worker's schedule
//! does the retrying (429 and 5xx retried, `Retry-After` honoured; another 4xx parks the change).

use std::time::Duration;

use async_trait::async_trait;
use hubrelay_core::auth::sign_standard_webhook;
use hubrelay_core::config::OutboundTarget;
use hubrelay_core::delivery::{Failure, Verdict};
use hubrelay_core::outbound::OutboundSender;
use serde_json::Value;

/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct WebhookOutbound {
    http: reqwest::Client,
    target: OutboundTarget,
    tenant: String,
}

impl WebhookOutbound {
    pub fn new(target: OutboundTarget, tenant: &str) -> Result<WebhookOutbound, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookOutbound { http, target, tenant: tenant.to_string() })
    }
}

fn failure(verdict: Verdict, status: Option<u16>, code: &str, message: String) -> Failure {
    let base = match verdict {
        Verdict::Retry => Failure::retry(code, message),
        Verdict::Park => Failure::park(code, message),
    };
    Failure { system: Some("outbound"), status, ..base }
}

#[async_trait]
impl OutboundSender for WebhookOutbound {
    async fn send(&self, webhook_id: &str, body: &Value) -> Result<(), Failure> {
        let body = body.to_string();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign_standard_webhook(&self.target.secret, webhook_id, timestamp, body.as_bytes())
            .map_err(|e| failure(Verdict::Park, None, "outbound_secret_invalid", e.to_string()))?;
        let answer = self
            .http
            .post(&self.target.url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(failure(
                    Verdict::Retry,
                    None,
                    "outbound_timeout",
                    format!("no answer in {} s", TIMEOUT.as_secs()),
                ))
            }
            Err(e) => {
                let message = format!("cannot reach the endpoint: {}", e.without_url());
                return Err(failure(Verdict::Retry, None, "outbound_unreachable", message));
            }
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        let mut f = match status {
            429 | 408 | 500..=599 => {
                failure(Verdict::Retry, Some(status), "outbound_unavailable", format!("the endpoint answered {status}"))
            }
            _ => failure(
                Verdict::Park,
                Some(status),
                "outbound_refused",
                format!("the endpoint refused the change ({status})"),
            ),
        };
        f.retry_after_secs = retry_after;
        Err(f)
    }

    fn properties(&self) -> &[String] {
        &self.target.properties
    }

    fn tenant(&self) -> &str {
        &self.tenant
    }
}
