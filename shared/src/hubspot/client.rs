//! placeholder
pub struct HubSpotClient;
