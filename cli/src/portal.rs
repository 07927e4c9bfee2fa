//! The HubSpot portal a command talks to, from the same layered settings `serve` reads (the `--config` file,
//! then the environment, then the command's flags): `properties` and `doctor` check exactly what the relay
//! will write.

use std::sync::Arc;

use hubrelay_clients::oauth::{OAuthApp, OAuthTokens};
use hubrelay_clients::HubSpotClient;
use hubrelay_core::config::{HubSpotTarget, Layer, RelaySettings};
use hubrelay_core::pii::mask_token;
use hubrelay_core::tenant::HubSpotAuth;

use crate::{CommandError, ConfigArg};

/// Flags that override the settings layers.
#[derive(clap::Args, Debug, Clone)]
pub struct PortalArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Mapping profile: a built-in name (aimbase, chat-widget) or a TOML file [default: chat-widget]
    #[arg(long, env = "HUBRELAY_MAPPING", hide_env_values = true, global = true)]
    pub mapping: Option<String>,
    /// HubSpot API base URL (a sandbox's URL works too) [default: https://api.hubapi.com]
    #[arg(long = "hubspot-url", env = "HUBSPOT_BASE_URL", hide_env_values = true, global = true)]
    pub hubspot_url: Option<String>,
    /// HubSpot API version: a dated release such as 2026-09 (the default) or v3 for the legacy paths
    #[arg(long, env = "HUBSPOT_API_VERSION", hide_env_values = true, global = true)]
    pub api_version: Option<String>,
    /// Service Key, project-app access token or legacy private-app token
    #[arg(long, env = "HUBSPOT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A tenant's portal, mapping and credential from the tenant registry instead (`hubrelay tenants`; with
    /// --stack or --table, an AWS stack's)
    #[arg(long, global = true, value_name = "ID", conflicts_with_all = ["mapping", "hubspot_url", "token"])]
    pub tenant: Option<hubrelay_core::tenant::TenantId>,
    #[command(flatten)]
    pub registry: crate::tenants_cmd::RegistryArgs,
}

/// The validated settings and a client for their portal (no rate limiter: these commands make few calls).
pub async fn connect(args: &PortalArgs) -> Result<(RelaySettings, HubSpotClient), CommandError> {
    let mut layer = args.config.layers()?;
    layer = layer.merge(Layer {
        mapping: args.mapping.clone(),
        hubspot_base_url: args.hubspot_url.clone(),
        hubspot_api_version: args.api_version.clone(),
        hubspot_token: args.token.clone().filter(|t| !t.trim().is_empty()),
        ..Layer::default()
    });
    let r = &args.registry;
    if args.tenant.is_none() && (r.data_dir.is_some() || r.stack.is_some() || r.table.is_some()) {
        return Err("--data-dir, --stack and --table name a tenant registry: give --tenant ID too".into());
    }
    let settings = match args.tenant.as_ref().filter(|t| !t.is_default()) {
        Some(id) => tenant_settings(args, id, &layer).await?,
        None => RelaySettings::from_layer(&layer).map_err(|e| format!("configuration error: {e}"))?,
    };
    let Some((client, _)) = api_client(&settings, std::time::Duration::from_secs(20))? else {
        return Err("HUBSPOT_TOKEN (or --token) is required: a Service Key or a project app's access token".into());
    };
    Ok((settings, client))
}

/// A tenant's settings from its registry, with its portal's credential: its Service Key or app token, or for
/// an OAuth tenant its refresh token with the deployment's app (`HUBSPOT_CLIENT_ID`, `HUBSPOT_CLIENT_SECRET`).
/// The deployment's other settings (API version, referral program) are this command's own layers, not a
/// stack's: set them as the stack does.
async fn tenant_settings(
    args: &PortalArgs,
    id: &hubrelay_core::tenant::TenantId,
    layer: &Layer,
) -> Result<RelaySettings, CommandError> {
    let registry = crate::tenants_cmd::Registry::open(&args.registry).await?;
    let tenant = registry.get(id).await?.tenant;
    let mut settings = tenant.relay_settings(layer).map_err(|e| format!("configuration error: {e}"))?;
    match &tenant.secrets.hubspot {
        HubSpotAuth::Sandbox => {
            let why = "uses a sandbox portal of its own: `hubrelay serve` creates its properties when it starts it";
            return Err(format!("tenant {id} {why}").into());
        }
        HubSpotAuth::OAuth { refresh_token: None } => {
            return Err(format!("tenant {id} is not connected yet: `hubrelay tenants connect {id}`").into())
        }
        HubSpotAuth::OAuth { refresh_token: Some(refresh_token) } => {
            let app = hubrelay_core::tenant::OAuthAppSettings::from_layer(layer)
                .map_err(|e| format!("configuration error: {e}"))?
                .ok_or(format!(
                    "tenant {id} connects by OAuth: set the app's HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET to reach its portal"
                ))?;
            let base_url = tenant
                .hubspot_base_url
                .clone()
                .or_else(|| layer.hubspot_base_url.clone())
                .unwrap_or_else(|| hubrelay_core::hubspot::DEFAULT_BASE_URL.into());
            settings.hubspot = HubSpotTarget::OAuth {
                base_url,
                client_id: app.client_id,
                client_secret: app.client_secret,
                refresh_token: refresh_token.clone(),
            };
        }
        HubSpotAuth::ServiceKey { .. } | HubSpotAuth::AppToken { .. } => {}
    }
    Ok(settings)
}

/// The client of a real portal (`None` for the sandbox) and how it authenticates, masked, for banners.
pub fn api_client(
    settings: &RelaySettings,
    timeout: std::time::Duration,
) -> Result<Option<(HubSpotClient, String)>, String> {
    let (client, credential) = match &settings.hubspot {
        HubSpotTarget::Api { base_url, token } => (
            HubSpotClient::new(base_url, token, timeout).map_err(|e| e.to_string())?,
            format!("token {}", mask_token(token)),
        ),
        HubSpotTarget::OAuth { base_url, client_id, client_secret, refresh_token } => {
            let app = OAuthApp {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                base_url: base_url.clone(),
            };
            let tokens = OAuthTokens::new(app, refresh_token.clone());
            let client =
                HubSpotClient::new(base_url, "", timeout).map_err(|e| e.to_string())?.with_oauth(Arc::new(tokens));
            (client, format!("OAuth app {client_id}, refresh token {}", mask_token(refresh_token)))
        }
        HubSpotTarget::Sandbox => return Ok(None),
    };
    Ok(Some((client.with_api_version(settings.hubspot_api_version.clone()), credential)))
}
