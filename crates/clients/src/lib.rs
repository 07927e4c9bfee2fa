//! The HTTP clients behind hubrelay-core's traits: HubSpot ([`HubSpotClient`], with its [`RateLimiter`]),
//! Extole ([`ExtoleClient`]) and impact.com ([`ImpactClient`]), and the notices' webhook ([`notify::WebhookNotices`]).
//! All on reqwest with rustls.

pub mod advocate;
pub mod extole;
pub mod hubspot;
pub mod impact;
pub mod notify;
pub mod oauth;
pub mod outbound;
mod partner_http;
pub mod ratelimit;

pub use extole::ExtoleClient;
pub use hubspot::HubSpotClient;
pub use impact::ImpactClient;
pub use ratelimit::RateLimiter;

use std::sync::Arc;

use hubrelay_core::config::referral::{ExtoleTarget, ImpactTarget, ReferralSettings};
use hubrelay_core::partners::{Extole, Impact, PartnerError};

/// A relay's Extole and impact.com clients (`None`: no account with that partner).
pub type PartnerClients = (Option<Arc<dyn Extole>>, Option<Arc<dyn Impact>>);

/// The partner clients of the accounts `settings` name; a partner without an account has none (its actions
/// are parked as `not_configured`, or not planned at all when it is switched off).
pub fn partner_clients(
    settings: &ReferralSettings,
    timeout: std::time::Duration,
) -> Result<PartnerClients, PartnerError> {
    let extole: Option<Arc<dyn Extole>> = match &settings.extole {
        ExtoleTarget::Api { base_url, token } => Some(Arc::new(ExtoleClient::new(base_url, token, timeout)?)),
        ExtoleTarget::Sandbox => None,
    };
    let impact: Option<Arc<dyn Impact>> = match &settings.impact {
        ImpactTarget::Api { base_url, account_sid, auth_token } => {
            Some(Arc::new(ImpactClient::new(base_url, account_sid, auth_token, timeout)?))
        }
        ImpactTarget::Sandbox => None,
    };
    Ok((extole, impact))
}
