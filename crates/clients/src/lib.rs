//! The HTTP clients behind hubrelay-core's traits: HubSpot ([`HubSpotClient`], with its [`RateLimiter`]),
//! Extole ([`ExtoleClient`]) and impact.com ([`ImpactClient`]). All on reqwest with rustls.

pub mod extole;
pub mod hubspot;
pub mod impact;
pub mod oauth;
mod partner_http;
pub mod ratelimit;

pub use extole::ExtoleClient;
pub use hubspot::HubSpotClient;
pub use impact::ImpactClient;
pub use ratelimit::RateLimiter;
