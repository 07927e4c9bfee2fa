//! `GET /oauth/install?tenant=…` and `GET /oauth/callback`: a tenant's portal connected through the
//! deployment's HubSpot OAuth app. The install redirects to HubSpot's authorize page with a `state` that is
//! signed (HMAC-SHA256 under a key kept in the data dir), names the tenant, expires after 10 minutes and is
//! taken once; the callback checks it, exchanges the `code` at `/oauth/2026-03/token`, stores the refresh token
//! (sealed, in the tenant registry) and the hub id, and creates the mapping's custom properties in the portal.
//! serve's registry poll then rebuilds the tenant with the new token and delivers what was queued meanwhile.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use hubrelay_clients::oauth::{exchange_code, OAuthApp, OAuthError};
use hubrelay_clients::HubSpotClient;
use hubrelay_core::config::Layer;
use hubrelay_core::tenant::{HubSpotAuth, OAuthAppSettings, TenantId};
use hubrelay_http::error::ApiError;
use hubrelay_local::tenants::TenantRegistry;
use serde::Deserialize;
use sha2::Sha256;

/// How long an install link's `state` stays valid.
const STATE_TTL: Duration = Duration::from_secs(600);

pub struct OAuthInstall {
    app: OAuthAppSettings,
    /// `{public_url}/oauth/callback`, registered as the app's redirect URL.
    redirect_uri: String,
    key: Vec<u8>,
    /// States already taken (nonce → expiry), forgotten once expired.
    taken: Mutex<HashMap<String, i64>>,
    data_dir: PathBuf,
    base: Layer,
}

/// The routes answering when no OAuth app is configured: a clear 404, not a silent one.
pub fn not_configured() -> Router {
    let answer = || async {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "oauth_not_configured",
            "no OAuth app is configured: set HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET (docs/tenants.md)",
        )
    };
    Router::new().route("/oauth/install", get(answer)).route("/oauth/callback", get(answer))
}

impl OAuthInstall {
    pub fn new(app: OAuthAppSettings, public_url: &str, data_dir: PathBuf, base: Layer) -> Result<Self, String> {
        let key = crate::serve::kept_secret(&data_dir.join("oauth-state.key"), "state")?.into_bytes();
        Ok(OAuthInstall {
            app,
            redirect_uri: format!("{}/oauth/callback", public_url.trim_end_matches('/')),
            key,
            taken: Mutex::new(HashMap::new()),
            data_dir,
            base,
        })
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new().route("/oauth/install", get(install)).route("/oauth/callback", get(callback)).with_state(self)
    }

    /// The install link an operator hands to the portal's admin.
    pub fn install_url(public_url: &str, tenant: &TenantId) -> String {
        format!("{}/oauth/install?tenant={tenant}", public_url.trim_end_matches('/'))
    }

    fn sign(&self, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn new_state(&self, tenant: &TenantId, now: i64) -> String {
        let nonce: [u8; 16] = rand::random();
        let payload = format!("{tenant}.{}.{}", now + STATE_TTL.as_secs() as i64, URL_SAFE_NO_PAD.encode(nonce));
        format!("{payload}.{}", self.sign(&payload))
    }

    /// The tenant a `state` names, if it is ours, unexpired and not taken before (it is taken now).
    fn take_state(&self, state: &str, now: i64) -> Result<TenantId, &'static str> {
        let (payload, signature) = state.rsplit_once('.').ok_or("malformed")?;
        let expected = self.sign(payload);
        let matches: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into();
        if !matches {
            return Err("not signed by this relay");
        }
        let mut parts = payload.splitn(3, '.');
        let (Some(tenant), Some(expires), Some(nonce)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("malformed");
        };
        let expires: i64 = expires.parse().map_err(|_| "malformed")?;
        if expires < now {
            return Err("expired (install links last 10 minutes)");
        }
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.retain(|_, until| *until >= now);
        if taken.insert(nonce.to_string(), expires).is_some() {
            return Err("already used");
        }
        tenant.parse().map_err(|_| "malformed")
    }
}

#[derive(Deserialize)]
struct InstallQuery {
    tenant: Option<String>,
}

async fn install(State(oauth): State<Arc<OAuthInstall>>, Query(q): Query<InstallQuery>) -> Response {
    let Some(id) = q.tenant.as_deref().and_then(|t| t.parse::<TenantId>().ok()) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant", "?tenant= must name a tenant").into_response();
    };
    let tenant = match TenantRegistry::open(&oauth.data_dir).and_then(|r| r.get(&id)) {
        Ok(stored) => stored.tenant,
        Err(_) => {
            return ApiError::new(StatusCode::NOT_FOUND, "unknown_tenant", format!("no tenant {id}")).into_response()
        }
    };
    if !matches!(tenant.secrets.hubspot, HubSpotAuth::OAuth { .. }) {
        return ApiError::new(
            StatusCode::CONFLICT,
            "not_oauth",
            format!(
                "tenant {id} calls HubSpot with a {}; switch it first: hubrelay tenants update {id} --oauth",
                tenant.secrets.hubspot.kind()
            ),
        )
        .into_response();
    }
    let state = oauth.new_state(&id, time::OffsetDateTime::now_utc().unix_timestamp());
    let query = serde_urlencoded::to_string([
        ("client_id", oauth.app.client_id.as_str()),
        ("scope", &oauth.app.scopes.join(" ")),
        ("redirect_uri", &oauth.redirect_uri),
        ("state", &state),
    ])
    .unwrap_or_default();
    let sep = if oauth.app.authorize_url.contains('?') { '&' } else { '?' };
    let location = format!("{}{sep}{query}", oauth.app.authorize_url);
    (StatusCode::FOUND, [(header::LOCATION, location), (header::CACHE_CONTROL, "no-store".into())]).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(oauth): State<Arc<OAuthInstall>>, Query(q): Query<CallbackQuery>) -> Response {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = match q.state.as_deref().map(|s| oauth.take_state(s, now)) {
        Some(Ok(id)) => id,
        Some(Err(why)) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Not connected",
                &format!("The install link's state is {why}. Start again from the install link."),
            )
        }
        None => {
            return page(
                StatusCode::BAD_REQUEST,
                "Not connected",
                "The callback carries no state. Start again from the install link.",
            )
        }
    };
    if let Some(error) = &q.error {
        tracing::warn!(tenant = %id, error, "OAuth install not approved");
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("HubSpot answered `{error}`: the install was not approved. Tenant {id} stays unconnected."),
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "The callback carries no code. Start again from the install link.",
        );
    };
    let registry = match TenantRegistry::open(&oauth.data_dir) {
        Ok(r) => r,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not connected",
                &format!("The tenant registry is unavailable: {e}"),
            )
        }
    };
    let mut tenant = match registry.get(&id) {
        Ok(stored) => stored.tenant,
        Err(e) => return page(StatusCode::NOT_FOUND, "Not connected", &e.to_string()),
    };
    let base_url = tenant
        .hubspot_base_url
        .clone()
        .or_else(|| oauth.base.hubspot_base_url.clone())
        .unwrap_or_else(|| hubrelay_core::hubspot::DEFAULT_BASE_URL.into());
    let app = OAuthApp {
        client_id: oauth.app.client_id.clone(),
        client_secret: oauth.app.client_secret.clone(),
        base_url: base_url.clone(),
    };
    let grant = match exchange_code(&app, code, &oauth.redirect_uri).await {
        Ok(grant) => grant,
        Err(e @ OAuthError::Refused { .. }) => {
            return page(StatusCode::BAD_REQUEST, "Not connected", &format!("{e}. Start again from the install link."))
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not connected",
                &format!("{e}. Try the install link again in a minute."),
            )
        }
    };
    // The flows' custom properties, created with the token just granted (the install asked for schema scopes).
    let created = match tenant.relay_settings(&oauth.base) {
        Ok(settings) => {
            let wanted = hubrelay_core::properties::required(&settings.mapping, &settings.referral.config);
            let client = HubSpotClient::new(&base_url, &grant.access_token, settings.hubspot_timeout)
                .map(|c| c.with_api_version(settings.hubspot_api_version.clone()));
            match client {
                Ok(client) => {
                    hubrelay_core::properties::sync(&client, &wanted).await.map(|c| c.len()).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    tenant.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: Some(grant.refresh_token.clone()) };
    tenant.hub_id = grant.hub_id.or(tenant.hub_id);
    tenant.needs_reauth = false;
    if let Err(e) = registry.update(&tenant, now) {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Not connected", &format!("The tenant could not be saved: {e}"));
    }
    let portal = tenant.hub_id.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
    tracing::info!(tenant = %id, portal, "tenant connected by OAuth install");
    let properties = match created {
        Ok(n) => format!("{n} custom properties created."),
        Err(e) => {
            format!("The custom properties could not be checked ({e}); run `hubrelay properties sync --tenant {id}`.")
        }
    };
    page(StatusCode::OK, "Connected", &format!("Tenant {id} is connected to HubSpot portal {portal}. {properties} Its queued events are delivered now. You can close this page."))
}

/// A small page for the person in the browser (every value escaped).
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hubrelay: {t}</title></head>\
         <body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install() -> OAuthInstall {
        OAuthInstall {
            app: OAuthAppSettings {
                client_id: "c".into(),
                client_secret: "s".into(),
                authorize_url: "http://x/oauth/authorize".into(),
                scopes: vec!["oauth".into()],
            },
            redirect_uri: "http://relay/oauth/callback".into(),
            key: b"k".to_vec(),
            taken: Mutex::new(HashMap::new()),
            data_dir: PathBuf::new(),
            base: Layer::default(),
        }
    }

    #[test]
    fn a_state_is_signed_single_use_and_expires() {
        let oauth = install();
        let id: TenantId = "acme".parse().unwrap();
        let state = oauth.new_state(&id, 1_000);
        assert_eq!(oauth.take_state(&state, 1_001), Ok(id.clone()));
        assert_eq!(oauth.take_state(&state, 1_002), Err("already used"));
        let late = oauth.new_state(&id, 1_000);
        assert!(oauth.take_state(&late, 1_000 + 601).unwrap_err().starts_with("expired"));
        // Another tenant's name in a signed state breaks the signature.
        let forged = oauth.new_state(&id, 1_000).replacen("acme", "evil", 1);
        assert_eq!(oauth.take_state(&forged, 1_001), Err("not signed by this relay"));
        assert_eq!(oauth.take_state("garbage", 1_001), Err("malformed"));
    }
}
