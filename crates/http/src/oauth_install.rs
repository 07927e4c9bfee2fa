//! `GET /oauth/install?tenant=…` and `GET /oauth/callback`: a tenant's portal connected through the
//! deployment's HubSpot OAuth app, on `serve` and on the stack's `oauth-install` function alike. The install link
//! (`hubrelay tenants connect`) is signed and lasts 7 days; the install redirects to HubSpot's authorize page with
//! a `state` that is signed (HMAC-SHA256), names the tenant, expires after 10 minutes and is taken once; the
//! callback checks it, exchanges the `code` at `/oauth/2026-03/token`, stores the refresh token (sealed, in the
//! tenant registry) and the hub id, and creates the mapping's custom properties in the portal. Where tenants and
//! used states are kept is the deployment's ([`InstallRegistry`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::rejection::QueryRejection;
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
use hubrelay_core::tenant::{HubSpotAuth, OAuthAppSettings, StoredTenant, Tenant, TenantId};
use serde::Deserialize;
use sha2::Sha256;

use crate::error::ApiError;

/// How long an install's `state` stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// How long an install link (`hubrelay tenants connect`) can be used: an admin may take days to get to it.
pub const LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The tenants, and the states already taken.
#[async_trait]
pub trait InstallRegistry: Send + Sync + 'static {
    async fn get(&self, id: &TenantId) -> Result<Option<StoredTenant>, String>;
    /// Replaces `read` with `tenant` unless it changed meanwhile.
    async fn update(&self, read: &StoredTenant, tenant: &Tenant) -> Result<(), String>;
    /// Records `nonce` as taken until `expires` (unix seconds); `false` when it was taken before.
    async fn take_nonce(&self, nonce: &str, expires: i64) -> Result<bool, String>;
}

pub struct OAuthInstall {
    app: OAuthAppSettings,
    /// `{public_url}/oauth/callback`, registered as the app's redirect URL.
    redirect_uri: String,
    key: Vec<u8>,
    registry: Arc<dyn InstallRegistry>,
    base: Layer,
}

enum StateRefused {
    Invalid(&'static str),
    Unavailable(String),
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
    let route = || get(answer).fallback(crate::method_not_allowed);
    Router::new().route("/oauth/install", route()).route("/oauth/callback", route())
}

impl OAuthInstall {
    /// `key` signs install links and states (keep it secret: whoever has it can start an install).
    pub fn new(
        app: OAuthAppSettings,
        public_url: &str,
        key: Vec<u8>,
        registry: Arc<dyn InstallRegistry>,
        base: Layer,
    ) -> Self {
        OAuthInstall {
            app,
            redirect_uri: format!("{}/oauth/callback", public_url.trim_end_matches('/')),
            key,
            registry,
            base,
        }
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/oauth/install", get(install).fallback(crate::method_not_allowed))
            .route("/oauth/callback", get(callback).fallback(crate::method_not_allowed))
            .with_state(self)
    }

    fn sign(&self, payload: &str) -> String {
        sign(&self.key, payload)
    }

    fn new_state(&self, tenant: &TenantId, now: i64) -> String {
        let nonce: [u8; 16] = rand::random();
        let payload = format!("{tenant}.{}.{}", now + STATE_TTL.as_secs() as i64, URL_SAFE_NO_PAD.encode(nonce));
        format!("{payload}.{}", self.sign(&payload))
    }

    /// The tenant a `state` names, if it is ours, unexpired and not taken before (it is taken now).
    async fn take_state(&self, state: &str, now: i64) -> Result<TenantId, StateRefused> {
        let (payload, signature) = state.rsplit_once('.').ok_or(StateRefused::Invalid("malformed"))?;
        let expected = self.sign(payload);
        let matches: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into();
        if !matches {
            return Err(StateRefused::Invalid("not signed by this relay"));
        }
        let mut parts = payload.splitn(3, '.');
        let (Some(tenant), Some(expires), Some(nonce)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StateRefused::Invalid("malformed"));
        };
        let expires: i64 = expires.parse().map_err(|_| StateRefused::Invalid("malformed"))?;
        if expires < now {
            return Err(StateRefused::Invalid("expired (install links last 10 minutes)"));
        }
        let tenant = tenant.parse().map_err(|_| StateRefused::Invalid("malformed"))?;
        match self.registry.take_nonce(nonce, expires).await {
            Ok(true) => Ok(tenant),
            Ok(false) => Err(StateRefused::Invalid("already used")),
            Err(e) => Err(StateRefused::Unavailable(e)),
        }
    }
}

fn sign(key: &[u8], payload: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The install link an operator hands to the portal's admin: signed with `key` (only someone holding it can start
/// an install for a tenant), valid [`LINK_TTL`].
pub fn install_link(key: &[u8], public_url: &str, tenant: &TenantId, now: i64) -> String {
    let expires = now + LINK_TTL.as_secs() as i64;
    let sig = sign(key, &format!("install.{tenant}.{expires}"));
    format!("{}/oauth/install?tenant={tenant}&expires={expires}&sig={sig}", public_url.trim_end_matches('/'))
}

#[derive(Deserialize)]
struct InstallQuery {
    tenant: Option<String>,
    expires: Option<i64>,
    sig: Option<String>,
}

async fn install(State(oauth): State<Arc<OAuthInstall>>, q: Result<Query<InstallQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return query_refused(e),
    };
    let Some(id) = q.tenant.as_deref().and_then(|t| t.parse::<TenantId>().ok()) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant", "?tenant= must name a tenant").into_response();
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signed = match (q.expires, q.sig.as_deref()) {
        (Some(expires), Some(sig)) if expires >= now => {
            let expected = oauth.sign(&format!("install.{id}.{expires}"));
            bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()))
        }
        _ => false,
    };
    if !signed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_install_link",
            "this install link is not signed by this relay or has expired: ask for a new one (`hubrelay tenants connect`)",
        )
        .into_response();
    }
    let tenant = match oauth.registry.get(&id).await {
        Ok(Some(stored)) => stored.tenant,
        Ok(None) => {
            return ApiError::new(StatusCode::NOT_FOUND, "unknown_tenant", format!("no tenant {id}")).into_response()
        }
        Err(e) => {
            tracing::error!(tenant = %id, error = %e, "OAuth install: the tenant registry is unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                "the tenant registry cannot be read right now; try the install link again in a minute",
            )
            .into_response();
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
    let state = oauth.new_state(&id, now);
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

/// A query string that cannot be read (a value of the wrong type, a key twice): JSON 400, as every refusal.
fn query_refused(e: QueryRejection) -> Response {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("the query string cannot be read: {}", e.body_text()),
    )
    .into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(oauth): State<Arc<OAuthInstall>>, q: Result<Query<CallbackQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return query_refused(e),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let not_connected = |status, text: &str| page(status, "Not connected", text);
    let taken = match q.state.as_deref() {
        Some(state) => Some(oauth.take_state(state, now).await),
        None => None,
    };
    let id = match taken {
        Some(Ok(id)) => id,
        Some(Err(StateRefused::Invalid(why))) => {
            let text = format!("The install link's state is {why}. Start again from the install link.");
            return not_connected(StatusCode::BAD_REQUEST, &text);
        }
        Some(Err(StateRefused::Unavailable(e))) => {
            tracing::error!(error = %e, "OAuth callback: cannot record the state as used");
            let text = "The relay could not check the install link's state. Try the install link again in a minute.";
            return not_connected(StatusCode::SERVICE_UNAVAILABLE, text);
        }
        None => {
            return not_connected(
                StatusCode::BAD_REQUEST,
                "The callback carries no state. Start again from the install link.",
            )
        }
    };
    if let Some(error) = &q.error {
        tracing::warn!(tenant = %id, error, "OAuth install not approved");
        let text = format!("HubSpot answered `{error}`: the install was not approved. Tenant {id} stays unconnected.");
        return not_connected(StatusCode::BAD_REQUEST, &text);
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return not_connected(
            StatusCode::BAD_REQUEST,
            "The callback carries no code. Start again from the install link.",
        );
    };
    // Registry trouble is logged with its detail; the page names no paths.
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(tenant = %id, error = %e, "OAuth callback: the tenant registry is unavailable");
        let text = "The relay could not read or save the tenant. Try the install link again in a minute.";
        not_connected(StatusCode::SERVICE_UNAVAILABLE, text)
    };
    let read = match oauth.registry.get(&id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return not_connected(StatusCode::NOT_FOUND, &format!("There is no tenant {id} (any more).")),
        Err(e) => return unavailable(&e),
    };
    let mut tenant = read.tenant.clone();
    if !matches!(tenant.secrets.hubspot, HubSpotAuth::OAuth { .. }) {
        let text = format!("Tenant {id} no longer connects by OAuth (an operator changed it).");
        return not_connected(StatusCode::CONFLICT, &text);
    }
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
            return not_connected(StatusCode::BAD_REQUEST, &format!("{e}. Start again from the install link."))
        }
        Err(e) => {
            return not_connected(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{e}. Try the install link again in a minute."),
            )
        }
    };
    // A tenant pinned to a portal (its hub id) is connected to that portal only.
    if let (Some(pinned), Some(granted)) = (tenant.hub_id, grant.hub_id) {
        if pinned != granted {
            tracing::warn!(tenant = %id, pinned, granted, "OAuth install approved in another portal; refused");
            let text = format!(
                "Tenant {id} is HubSpot portal {pinned}, but the app was approved in portal {granted}. \
                 Sign in to portal {pinned} and use the install link again."
            );
            return not_connected(StatusCode::BAD_REQUEST, &text);
        }
    }
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
    if let Err(e) = oauth.registry.update(&read, &tenant).await {
        return unavailable(&e);
    }
    let portal = tenant.hub_id.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
    tracing::info!(tenant = %id, portal, "tenant connected by OAuth install");
    let properties = match created {
        Ok(n) => format!("{n} custom properties created."),
        Err(e) => format!(
            "The custom properties could not be checked ({e}); run `hubrelay properties sync --tenant {id}` with a token of the portal."
        ),
    };
    let text = format!(
        "Tenant {id} is connected to HubSpot portal {portal}. {properties} Its queued events are delivered now. \
         You can close this page."
    );
    page(StatusCode::OK, "Connected", &text)
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
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Taken(Mutex<HashMap<String, i64>>);

    #[async_trait]
    impl InstallRegistry for Taken {
        async fn get(&self, _: &TenantId) -> Result<Option<StoredTenant>, String> {
            Ok(None)
        }
        async fn update(&self, _: &StoredTenant, _: &Tenant) -> Result<(), String> {
            Ok(())
        }
        async fn take_nonce(&self, nonce: &str, expires: i64) -> Result<bool, String> {
            Ok(self.0.lock().unwrap().insert(nonce.to_string(), expires).is_none())
        }
    }

    fn install() -> OAuthInstall {
        let app = OAuthAppSettings {
            client_id: "id".into(),
            client_secret: "secret".into(),
            authorize_url: "https://app.hubspot.com/oauth/authorize".into(),
            scopes: vec!["oauth".into()],
        };
        OAuthInstall::new(
            app,
            "https://relay.example.com/",
            b"state-key".to_vec(),
            Arc::new(Taken::default()),
            Layer::default(),
        )
    }

    #[test]
    fn an_install_link_is_signed_for_its_tenant_and_expires() {
        let oauth = install();
        let id: TenantId = "oem42".parse().unwrap();
        let link = install_link(b"state-key", "https://relay.example.com/", &id, 1_000);
        assert!(link.starts_with("https://relay.example.com/oauth/install?tenant=oem42&expires=605800&sig="), "{link}");
        let sig = link.rsplit_once("sig=").unwrap().1;
        assert_eq!(oauth.sign("install.oem42.605800"), sig);
        assert_ne!(oauth.sign("install.oem43.605800"), sig);
        assert_ne!(sign(b"another key", "install.oem42.605800"), sig);
    }

    #[tokio::test]
    async fn an_unreadable_query_and_a_wrong_method_are_json_errors() {
        use tower::ServiceExt;
        let routes = Arc::new(install()).routes();
        for (method, uri, status, code) in [
            ("GET", "/oauth/install?tenant=oem42&expires=soon&sig=x", 400, "invalid_query"),
            ("GET", "/oauth/callback?state=a&state=b", 400, "invalid_query"),
            ("POST", "/oauth/install", 405, "method_not_allowed"),
        ] {
            let request =
                axum::http::Request::builder().method(method).uri(uri).body(axum::body::Body::empty()).unwrap();
            let response = routes.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{method} {uri}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], code, "{method} {uri}: {body}");
        }
    }

    #[tokio::test]
    async fn a_state_is_signed_single_use_and_expires() {
        let oauth = install();
        let id: TenantId = "oem42".parse().unwrap();
        let state = oauth.new_state(&id, 1_000);
        assert_eq!(oauth.take_state(&state, 1_000).await.ok(), Some(id.clone()));
        assert!(matches!(oauth.take_state(&state, 1_001).await, Err(StateRefused::Invalid("already used"))));
        let late = oauth.new_state(&id, 1_000);
        assert!(
            matches!(oauth.take_state(&late, 1_000 + 601).await, Err(StateRefused::Invalid(w)) if w.starts_with("expired"))
        );
        let forged = format!("{}x", oauth.new_state(&id, 1_000));
        assert!(matches!(
            oauth.take_state(&forged, 1_000).await,
            Err(StateRefused::Invalid("not signed by this relay"))
        ));
        let (payload, sig) =
            oauth.new_state(&id, 1_000).rsplit_once('.').map(|(p, s)| (p.to_string(), s.to_string())).unwrap();
        let other = payload.replacen("oem42", "oem43", 1);
        assert!(matches!(oauth.take_state(&format!("{other}.{sig}"), 1_000).await, Err(StateRefused::Invalid(_))));
    }
}
