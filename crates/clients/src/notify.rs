//! Notices ([`hubrelay_core::notify`]) as signed outbound webhooks: one `POST` per notice to the configured URL
//! with the Standard Webhooks headers (`webhook-id` unique per event and kind, `webhook-timestamp`,
//! `webhook-signature` over both and the body), so the receiver verifies them with any Standard Webhooks library
//! and drops one sent twice. Each notice is tried [`ATTEMPTS`] times, [`TIMEOUT`] each; what still fails is
//! logged by event id and status only (best effort: the dead-letter queue keeps the event either way).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hubrelay_core::auth::sign_standard_webhook;
use hubrelay_core::config::NotifyTarget;
use hubrelay_core::notify::{Notice, NoticeSender, Notifications};

/// Tries per notice.
pub const ATTEMPTS: u32 = 3;

/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The pause before the second and third tries.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

#[derive(Clone)]
pub struct WebhookNotices {
    http: reqwest::Client,
    target: Arc<NotifyTarget>,
    /// Send from a task of its own (`serve`: the worker does not wait); else the caller awaits every send (a
    /// Lambda, which is frozen once it answers).
    background: bool,
}

impl WebhookNotices {
    pub fn new(target: NotifyTarget) -> Result<WebhookNotices, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookNotices { http, target: Arc::new(target), background: false })
    }

    /// Send from a spawned task: `send` returns at once.
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
    }

    async fn deliver(&self, notice: &Notice) {
        let body = notice.body().to_string();
        let id = notice.id();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF[(attempt as usize - 1).min(BACKOFF.len() - 1)]).await;
            }
            let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
            let signature = match sign_standard_webhook(&self.target.secret, &id, timestamp, body.as_bytes()) {
                Ok(signature) => signature,
                Err(e) => {
                    tracing::error!(error = %e, "notice not sent: the notify secret cannot sign");
                    return;
                }
            };
            let sent = self
                .http
                .post(&self.target.url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => return,
                Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
                Err(e) if e.is_timeout() => last = format!("no answer within {} s", TIMEOUT.as_secs()),
                Err(_) => last = "unreachable".into(),
            }
        }
        tracing::warn!(
            event_id = %notice.record.event_id,
            kind = notice.kind.as_str(),
            error = %last,
            "notice not delivered after {ATTEMPTS} tries (the event itself is unaffected)"
        );
    }

    async fn deliver_all(self, notices: Vec<Notice>) {
        let mut sends = tokio::task::JoinSet::new();
        for notice in notices {
            let this = self.clone();
            sends.spawn(async move { this.deliver(&notice).await });
        }
        while sends.join_next().await.is_some() {}
    }
}

#[async_trait]
impl NoticeSender for WebhookNotices {
    async fn send(&self, notices: Vec<Notice>) {
        if self.background {
            tokio::spawn(self.clone().deliver_all(notices));
        } else {
            self.clone().deliver_all(notices).await;
        }
    }
}

/// The notices of a relay whose settings name `target` (none without one), from `tenant`. `background`: sent from
/// a task of their own (`serve`); else awaited by the pass or request that decides them (a Lambda).
pub fn notifications(target: Option<&NotifyTarget>, tenant: &str, background: bool) -> Result<Notifications, String> {
    let Some(target) = target else { return Ok(Notifications::default()) };
    let sender = WebhookNotices::new(target.clone())?;
    let sender = if background { sender.in_background() } else { sender };
    Ok(Notifications::new(Arc::new(sender)).for_tenant(tenant))
}
