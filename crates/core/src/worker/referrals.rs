//! Referral actions in the retry worker: one at a time (each may read HubSpot and call a partner), each with
//! its own fate, so a partner outage retries only that partner's actions.

use std::sync::Arc;

use super::{Pass, RetryWorker};
use crate::domain::{DeadLetterReason, RetryMessage};
use crate::referral::deliver::{ReferralDelivery, ReferralOutcome};

impl RetryWorker {
    /// Deliver queued `referral-event` actions too (without it they are dead-lettered as `unsupported_function`,
    /// to be redriven by a worker that has it).
    pub fn with_referrals(mut self, referrals: Arc<ReferralDelivery>) -> Self {
        self.referrals = Some(referrals);
        self
    }

    pub(super) async fn deliver_referral(&self, m: RetryMessage, pass: &mut Pass) {
        let Some(referrals) = &self.referrals else {
            let reason = DeadLetterReason {
                code: "unsupported_function".into(),
                message: format!("this worker does not deliver {} events", m.function.as_str()),
            };
            return pass.dead_letter(m, reason);
        };
        match referrals.deliver_event(&m.event, m.received_at, m.run_started_at()).await {
            Ok(ReferralOutcome::Sent { reference }) => {
                tracing::info!(event_id = %m.event_id, action = ?m.event.get("action"), "referral action delivered");
                pass.delivered(m, &reference)
            }
            Ok(ReferralOutcome::Skipped { reason }) => {
                tracing::info!(event_id = %m.event_id, reason, "referral action skipped");
                pass.superseded(m)
            }
            Err(e) => self.failed(m, &e, pass),
        }
    }
}
