//! The deployment's OAuth app settings (`HUBSPOT_CLIENT_ID`, `HUBSPOT_CLIENT_SECRET`, ...).

use std::fmt;

use super::{ConfigError, Layer};

/// The deployment's OAuth app, which tenants install into their portals.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthAppSettings {
    pub client_id: String,
    pub client_secret: String,
    /// HubSpot's install page (`https://app.hubspot.com/oauth/authorize`).
    pub authorize_url: String,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OAuthAppSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthAppSettings").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// HubSpot's install page.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://app.hubspot.com/oauth/authorize";

/// What hubrelay's flows need: contacts read and write, and their property definitions (`oauth` is required
/// of every app).
pub const DEFAULT_OAUTH_SCOPES: &[&str] = &[
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
];

impl OAuthAppSettings {
    /// `None` when no `HUBSPOT_CLIENT_ID` is set; the client secret is the first of `HUBSPOT_CLIENT_SECRET`
    /// (the app's secret also signs its webhooks).
    pub fn from_layer(layer: &Layer) -> Result<Option<OAuthAppSettings>, ConfigError> {
        let Some(client_id) = layer.hubspot_client_id.clone() else {
            return Ok(None);
        };
        let client_secret =
            layer.hubspot_client_secrets.as_ref().and_then(|s| s.first()).cloned().ok_or(ConfigError::Invalid {
                setting: "HUBSPOT_CLIENT_SECRET",
                message: "HUBSPOT_CLIENT_ID is set: the OAuth app's client secret is needed too".into(),
            })?;
        let authorize_url = layer.hubspot_oauth_authorize_url.clone().unwrap_or_else(|| DEFAULT_AUTHORIZE_URL.into());
        if !(authorize_url.starts_with("https://") || authorize_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                setting: "HUBSPOT_OAUTH_AUTHORIZE_URL",
                message: format!("`{authorize_url}` is not an http(s) URL"),
            });
        }
        let scopes = layer
            .hubspot_oauth_scopes
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_OAUTH_SCOPES.iter().map(|s| s.to_string()).collect());
        Ok(Some(OAuthAppSettings { client_id, client_secret, authorize_url, scopes }))
    }
}
