//! The partner clients the `retry-worker` sends referral actions with, from the settings: a partner
//! without credentials is left out, and its actions are parked as `not_configured` until it is configured
//! and they are redriven.

use std::time::Duration;

use hubrelay_clients::PartnerClients;
use hubrelay_core::config::RelaySettings;

use crate::lambda::InitError;

/// How long a partner call may take (the worker Lambda handles a batch within its timeout).
const PARTNER_TIMEOUT: Duration = Duration::from_secs(10);

/// The deployment's partners, or a tenant's (from its own settings).
pub(crate) fn partners(settings: &RelaySettings) -> Result<PartnerClients, InitError> {
    hubrelay_clients::partner_clients(&settings.referral, PARTNER_TIMEOUT).map_err(|e| InitError::Aws(e.to_string()))
}
