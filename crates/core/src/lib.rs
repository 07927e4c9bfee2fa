//! hubrelay's core: what a lead, a status update, an activity and a referral event are, how they map onto
//! HubSpot, and how each is delivered, retried or parked — over small traits ([`store`], [`hubspot::HubSpot`],
//! [`partners`]) that the adapter crates implement. No HTTP server, HTTP client, AWS SDK or SQLite here.

pub mod auth;
pub mod batching;
pub mod budget;
pub mod config;
pub mod dates;
pub mod delivery;
pub mod display;
pub mod dlq;
pub mod domain;
pub mod email;
pub mod followups;
pub mod hubspot;
pub mod import;
pub mod json;
pub mod lead;
pub mod lifecycle;
pub mod mapping;
pub mod message_seal;
pub mod metrics;
pub mod missing_properties;
pub mod notify;
pub mod outbound;
pub mod partners;
pub mod pii;
pub mod privacy;
pub mod properties;
pub mod referral;
pub mod sealed;
pub mod shared_token;
pub mod store;
pub mod tenant;
pub mod updates;
pub mod worker;
