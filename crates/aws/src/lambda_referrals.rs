//! The partner clients the `retry-worker` sends referral actions with, from the settings: a partner
//! without credentials is left out, and its actions are parked as `not_configured` until it is configured
//! and they are redriven.

use std::sync::Arc;
use std::time::Duration;

use hubrelay_clients::{ExtoleClient, ImpactClient};
use hubrelay_core::config::referral::{ExtoleTarget, ImpactTarget};
use hubrelay_core::config::RelaySettings;
use hubrelay_core::partners::{Extole, Impact};

use crate::lambda::InitError;

/// How long a partner call may take (the worker Lambda handles a batch within its timeout).
const PARTNER_TIMEOUT: Duration = Duration::from_secs(10);

type Partners = (Option<Arc<dyn Extole>>, Option<Arc<dyn Impact>>);

pub(crate) fn partners(settings: &RelaySettings) -> Result<Partners, InitError> {
    let r = &settings.referral;
    let extole: Option<Arc<dyn Extole>> = match &r.extole {
        ExtoleTarget::Api { base_url, token } => Some(Arc::new(
            ExtoleClient::new(base_url, token, PARTNER_TIMEOUT).map_err(|e| InitError::Aws(e.to_string()))?,
        )),
        ExtoleTarget::Sandbox => None,
    };
    let impact: Option<Arc<dyn Impact>> = match &r.impact {
        ImpactTarget::Api { base_url, account_sid, auth_token } => Some(Arc::new(
            ImpactClient::new(base_url, account_sid, auth_token, PARTNER_TIMEOUT)
                .map_err(|e| InitError::Aws(e.to_string()))?,
        )),
        ImpactTarget::Sandbox => None,
    };
    Ok((extole, impact))
}
