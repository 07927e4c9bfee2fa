//! Notices to the operator's endpoint when an event goes to the dead-letter queue (parked, or out of retries) and
//! when a dead-lettered event is delivered after a redrive. They are decided where the outcomes are — the intake and
//! the retry worker — and sent by a [`NoticeSender`] (a signed webhook: `hubrelay_clients::notify`).
//!
//! Best effort by design: the dead-letter queue itself, its depth alarm and `hubrelay dlq list` stay the record
//! of truth; a notice lost with its endpoint down loses no event.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::domain::DEFAULT_TENANT;
use crate::store::EventRecord;

/// What happened to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// To the dead-letter queue at once: it cannot be delivered as it stands.
    Parked,
    /// To the dead-letter queue: its retry schedule ran out.
    DeadLettered,
    /// Delivered after it had been dead-lettered and redriven.
    Recovered,
}

impl NoticeKind {
    /// The `type` of the webhook.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Parked => "event.parked",
            NoticeKind::DeadLettered => "event.dead_lettered",
            NoticeKind::Recovered => "event.recovered",
        }
    }
}

/// One notice: the event's record (masked as records are) and its tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub tenant: String,
    pub record: EventRecord,
}

impl Notice {
    /// Unique per event, kind and incident (every outcome adds an attempt, so an event dead-lettered again after
    /// a redrive has a new id), so a receiver can drop a notice sent twice and keep a new incident.
    pub fn id(&self) -> String {
        let kind = self.kind.as_str().trim_start_matches("event.");
        format!("ntf_{}_{kind}_{}", self.record.event_id, self.record.attempts.len())
    }

    /// The webhook body: no personal data beyond the record's masked email.
    pub fn body(&self) -> Value {
        let r = &self.record;
        let at = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        json!({
            "type": self.kind.as_str(),
            "timestamp": at(r.updated_at),
            "data": {
                "event_id": r.event_id,
                "tenant": self.tenant,
                "function": r.function.as_str(),
                "status": r.status.as_str(),
                "received_at": at(r.received_at),
                "attempts": r.attempts.len(),
                "reason": r.reason.as_ref().map(|reason| json!({"code": reason.code, "message": reason.message})),
                "contact_id": r.contact_id,
                "email_masked": r.email_masked,
            },
        })
    }
}

/// Sends notices (best effort: it logs what it could not send, by event id and code only).
#[async_trait]
pub trait NoticeSender: Send + Sync {
    async fn send(&self, notices: Vec<Notice>);
}

/// A handle on the deployment's sender, scoped to one tenant; cheap to clone. The default handle sends nothing.
#[derive(Clone, Default)]
pub struct Notifications {
    sender: Option<Arc<dyn NoticeSender>>,
    tenant: Option<Arc<str>>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").field("on", &self.sender.is_some()).field("tenant", &self.tenant).finish()
    }
}

impl Notifications {
    pub fn new(sender: Arc<dyn NoticeSender>) -> Notifications {
        Notifications { sender: Some(sender), tenant: None }
    }

    /// The same sender, its notices naming `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Notifications {
        Notifications { sender: self.sender.clone(), tenant: Some(Arc::from(tenant)) }
    }

    /// Send one notice per (kind, record); nothing when off or empty.
    pub async fn send(&self, notices: impl IntoIterator<Item = (NoticeKind, EventRecord)>) {
        let Some(sender) = &self.sender else { return };
        let tenant = self.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        let notices: Vec<Notice> =
            notices.into_iter().map(|(kind, record)| Notice { kind, tenant: tenant.to_string(), record }).collect();
        if !notices.is_empty() {
            sender.send(notices).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{DeadLetterReason, FunctionName};
    use crate::store::EventStatus;

    #[derive(Default)]
    struct Kept(Mutex<Vec<Notice>>);

    #[async_trait]
    impl NoticeSender for Kept {
        async fn send(&self, notices: Vec<Notice>) {
            self.0.lock().unwrap().extend(notices);
        }
    }

    fn attempt() -> crate::domain::DeliveryAttempt {
        crate::domain::DeliveryAttempt::delivered(1, time::macros::datetime!(2026-12-07 11:00 UTC))
    }

    fn record() -> EventRecord {
        let t = time::macros::datetime!(2026-12-07 10:00 UTC);
        EventRecord {
            event_id: "evt_1".into(),
            function: FunctionName::LeadCaptured,
            status: EventStatus::DeadLettered,
            received_at: t,
            updated_at: t,
            next_attempt_at: None,
            attempts: Vec::new(),
            contact_id: None,
            email_masked: Some("j***@e***.com".into()),
            email_hash: None,
            reason: Some(DeadLetterReason { code: "retries_exhausted".into(), message: "10 attempts failed".into() }),
        }
    }

    #[tokio::test]
    async fn notices_name_their_tenant_and_carry_only_the_masked_record() {
        let kept = Arc::new(Kept::default());
        let notifications = Notifications::new(kept.clone()).for_tenant("acme");
        notifications.send([(NoticeKind::DeadLettered, record())]).await;
        Notifications::default().send([(NoticeKind::Parked, record())]).await;
        let sent = kept.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "the default handle sends nothing");
        assert_eq!(sent[0].id(), "ntf_evt_1_dead_lettered_0");
        let mut again = sent[0].clone();
        again.record.attempts.push(attempt());
        assert_ne!(again.id(), sent[0].id(), "a later incident of the same event has its own id");
        let body = sent[0].body();
        assert_eq!(body["type"], "event.dead_lettered");
        assert_eq!(body["timestamp"], "2026-12-07T10:00:00Z");
        assert_eq!(body["data"]["tenant"], "acme");
        assert_eq!(body["data"]["reason"]["code"], "retries_exhausted");
        assert_eq!(body["data"]["email_masked"], "j***@e***.com");
    }
}
