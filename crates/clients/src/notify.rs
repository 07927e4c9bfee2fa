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
    /// Send from a task of its own (`serve`: the worker does not wait); else the caller awaits the sends, for at
    /// most `budget` in all (a Lambda, which is frozen once it answers and must answer within its timeout).
    background: bool,
    budget: Duration,
}

impl WebhookNotices {
    pub fn new(target: NotifyTarget) -> Result<WebhookNotices, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookNotices { http, target: Arc::new(target), background: false, budget: Duration::MAX })
    }

    /// Send from a spawned task: `send` returns at once.
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
    }

    /// Awaited sends give up after `budget` in all (tries cut short are logged like failed ones).
    pub fn within(mut self, budget: Duration) -> Self {
        self.budget = budget;
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
            return;
        }
        let count = notices.len();
        if tokio::time::timeout(self.budget, self.clone().deliver_all(notices)).await.is_err() {
            tracing::warn!(
                notices = count,
                "notices cut off after {} ms (the function must answer in time; the events are unaffected)",
                self.budget.as_millis()
            );
        }
    }
}

/// How notices leave: from a task of their own (`serve`), or awaited by the request or pass that decides them for
/// at most a budget (a Lambda, frozen once it answers).
#[derive(Debug, Clone, Copy)]
pub enum Sending {
    Background,
    Within(Duration),
}

/// A Lambda request function's budget: its HubSpot call (at most 15 s) and this stay within its 20 s timeout.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(2);

/// The retry worker's budget per batch (its timeout is 60 s).
pub const WORKER_BUDGET: Duration = Duration::from_secs(10);

/// The notices of a relay whose settings name `target` (none without one), from `tenant`.
pub fn notifications(target: Option<&NotifyTarget>, tenant: &str, sending: Sending) -> Result<Notifications, String> {
    let Some(target) = target else { return Ok(Notifications::default()) };
    let sender = WebhookNotices::new(target.clone())?;
    let sender = match sending {
        Sending::Background => sender.in_background(),
        Sending::Within(budget) => sender.within(budget),
    };
    Ok(Notifications::new(Arc::new(sender)).for_tenant(tenant))
}
