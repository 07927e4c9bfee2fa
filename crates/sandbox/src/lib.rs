//! Test doubles for the SaaS hubrelay talks to: a HubSpot portal ([`hubspot`]) and the Extole and
//! impact.com APIs ([`partners`]), faithful to their published behaviour. `hubrelay serve` starts them when
//! no real credentials are set; the tests start them too. No Lambda links this crate.

pub mod hubspot;
pub mod partners;
mod server;

pub use server::{SandboxError, ServerHandle};
