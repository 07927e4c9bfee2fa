//! HubSpot's OAuth (API version 2026-03) for one app installed into this portal: the install (approve) page,
//! the token endpoint (authorization code and refresh token grants), refresh-token revocation, and the access
//! tokens the API gate accepts.
//!
//! On when [`super::SandboxOptions::oauth`] is set; otherwise none of these routes exist (they answer 404).
//!
//! - `GET /oauth/authorize?client_id&scope&redirect_uri&state[&optional_scope]`: a server-rendered approve page
//!   (a 400 page for an unknown `client_id`, a missing or unusable `redirect_uri`, or a scope the app does not
//!   have; those never redirect).
//! - `POST /oauth/authorize` (form: the same fields and `decision=approve|deny`): `302` to
//!   `redirect_uri?code=…&state=…`, or `redirect_uri?error=access_denied&state=…`.
//! - `POST /oauth/2026-03/token` (also `/oauth/v3/token`): form body only (a query string is refused with 400),
//!   `grant_type=authorization_code` (`code`, `redirect_uri`, `client_id`, `client_secret`) or
//!   `grant_type=refresh_token` (`refresh_token`, `client_id`, `client_secret`). Rate limited on its own rolling
//!   10 s window ([`OAuthApp::token_requests_per_10s`]).
//! - `POST /oauth/2026-03/token/revoke` (also `/oauth/v3/token/revoke`): form `token`, `client_id`,
//!   `client_secret`; the refresh token stops working, access tokens already issued live on until they expire.
//!
//! Codes are single-use and live 10 minutes. Tokens are opaque: access tokens `CN…` (130 characters), refresh
//! tokens and codes `na1-<uuid>`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{ApiError, Policy};
use super::ratelimit::{RateLimiter, WINDOW};
use super::{lock, Sandbox};

/// The OAuth app installed into the sandbox's portal (HubSpot: a public or project app with OAuth auth).
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of every access token (HubSpot: 30 minutes).
    pub access_token_lifetime: Duration,
    /// Token-endpoint requests allowed per rolling 10 s (all grants together).
    pub token_requests_per_10s: u32,
    /// Scopes granted on install.
    pub scopes: Vec<String>,
}

impl Default for OAuthApp {
    fn default() -> Self {
        OAuthApp {
            client_id: "sandbox-client-id".into(),
            client_secret: "sandbox-client-secret".into(),
            access_token_lifetime: Duration::from_secs(1800),
            token_requests_per_10s: 100,
            scopes: [
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.schemas.contacts.read",
                "crm.schemas.contacts.write",
                "oauth",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Token-endpoint counters since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OAuthStats {
    /// Codes exchanged for tokens (200s of `grant_type=authorization_code`).
    pub authorization_code_grants: u64,
    /// Access tokens refreshed (200s of `grant_type=refresh_token`).
    pub refresh_token_grants: u64,
    /// Token and revoke requests refused (400 / 415).
    pub refused: u64,
    /// Token requests refused by the token endpoint's own rate limit (429).
    pub rate_limited: u64,
}

/// HubSpot: an authorization code can be exchanged within 10 minutes.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// The HubSpot user who approved the install (the sandbox has one).
const USER_ID: u64 = 7_340_215;
/// The rate limiter's key for the token endpoint (one window for all grants).
const TOKEN_ENDPOINT: &str = "oauth-token-endpoint";
/// The API rate limiter's key for every OAuth access token: HubSpot limits an OAuth app per installed account,
/// so a refreshed token does not get a fresh window.
pub(crate) const API_LIMIT_KEY: &str = "oauth-app";
/// Expired access tokens are still recognised (and answered `EXPIRED_AUTHENTICATION`) this long.
const EXPIRED_KEPT: Duration = Duration::from_secs(86_400);

struct Code {
    redirect_uri: String,
    scopes: Vec<String>,
    issued: Instant,
    used: bool,
}

struct RefreshToken {
    scopes: Vec<String>,
    revoked: bool,
}

struct AccessToken {
    scopes: Vec<String>,
    expires: Instant,
}

/// What the API gate learns from a bearer token.
#[derive(Debug, PartialEq)]
pub(crate) enum AccessCheck {
    /// An issued access token within its lifetime, with its granted scopes.
    Valid(Vec<String>),
    /// An issued access token that expired this many whole seconds ago.
    Expired(u64),
    /// Not an access token this sandbox issued.
    Unknown,
}

/// The app's codes and tokens, the token endpoint's rate-limit window and its counters.
pub(crate) struct OAuthState {
    app: OAuthApp,
    codes: HashMap<String, Code>,
    refresh: HashMap<String, RefreshToken>,
    access: HashMap<String, AccessToken>,
    limiter: RateLimiter,
    stats: OAuthStats,
    /// Added to the clock (tests move time forward instead of sleeping).
    skew: Duration,
}

impl OAuthState {
    pub fn new(app: OAuthApp) -> Self {
        OAuthState {
            app,
            codes: HashMap::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            limiter: RateLimiter::default(),
            stats: OAuthStats::default(),
            skew: Duration::ZERO,
        }
    }

    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    #[cfg(test)]
    pub fn advance(&mut self, by: Duration) {
        self.skew += by;
    }

    pub fn stats(&self) -> OAuthStats {
        self.stats.clone()
    }

    /// What `POST /__sandbox/reset` does here: zero the counters and the token endpoint's window (tokens stay).
    pub fn reset_counters(&mut self) {
        self.stats = OAuthStats::default();
        self.limiter = RateLimiter::default();
    }

    /// Revokes every refresh token issued so far; the number that were still valid.
    pub fn revoke_all(&mut self) -> usize {
        let mut n = 0;
        for t in self.refresh.values_mut().filter(|t| !t.revoked) {
            t.revoked = true;
            n += 1;
        }
        n
    }

    pub fn check_access(&self, token: &str) -> AccessCheck {
        match self.access.get(token) {
            None => AccessCheck::Unknown,
            Some(t) => {
                let now = self.now();
                if now < t.expires {
                    AccessCheck::Valid(t.scopes.clone())
                } else {
                    AccessCheck::Expired(now.duration_since(t.expires).as_secs())
                }
            }
        }
    }

    /// A new access token for `scopes`: the 200 answer of the token endpoint.
    fn issue(&mut self, refresh_token: &str, scopes: Vec<String>, hub_id: u64) -> Value {
        let now = self.now();
        if self.access.len() > 10_000 {
            self.access.retain(|_, t| t.expires + EXPIRED_KEPT > now);
        }
        let access_token = format!("CN{}", random_b64(96));
        let lifetime = self.app.access_token_lifetime;
        self.access.insert(access_token.clone(), AccessToken { scopes: scopes.clone(), expires: now + lifetime });
        json!({
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": lifetime.as_secs(),
            "token_type": "bearer",
            "token_use": "access_token",
            "hub_id": hub_id,
            "scopes": scopes,
            "user_id": USER_ID,
        })
    }
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn opaque_id() -> String {
    format!("na1-{}", uuid::Uuid::new_v4())
}

/// The OAuth routes (only merged in when OAuth is configured).
pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/oauth/authorize", get(authorize_page).post(authorize_decision))
        .route("/oauth/2026-03/token", post(token))
        .route("/oauth/v3/token", post(token))
        .route("/oauth/2026-03/token/revoke", post(revoke))
        .route("/oauth/v3/token/revoke", post(revoke))
}

// ---- the token endpoint ----

/// A token-endpoint error: HubSpot's error body with the legacy `status` field naming the problem.
fn token_error(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).with("status", json!(code))
}

fn missing(field: &str) -> ApiError {
    token_error("MISSING_FIELD", format!("missing required field: {field}"))
}

fn bad_refresh_token() -> ApiError {
    token_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
}

/// The 401 for an access token past its lifetime.
pub(crate) fn expired(seconds_ago: u64) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "EXPIRED_AUTHENTICATION",
        format!("The OAuth token used to make this call expired {seconds_ago} second(s) ago."),
    )
}

fn not_configured() -> Response {
    ApiError::not_found("OAuth is not configured on this sandbox").into_response()
}

/// The form fields of a body (or query string); a field given twice is an error.
fn parse_params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(raw).map_err(|e| format!("the body is not a valid form: {e}"))?;
    let mut out = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if out.contains_key(&k) {
            return Err(format!("parameter '{k}' given more than once"));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// A non-empty field.
fn field<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// What every token and revoke request must get right first: the parameters in a form body, not the query.
fn form_body(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(token_error(
            "BAD_REQUEST",
            "Parameters must be sent in the request body (application/x-www-form-urlencoded), not in the query string",
        ));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let mut e = token_error(
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type must be application/x-www-form-urlencoded, got '{content_type}'"),
        );
        e.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(e);
    }
    parse_params(body).map_err(|m| token_error("BAD_REQUEST", m))
}

/// `client_id` and `client_secret` of the app.
fn check_client(app: &OAuthApp, params: &HashMap<String, String>) -> Result<(), ApiError> {
    let id = field(params, "client_id").ok_or_else(|| missing("client_id"))?;
    if id != app.client_id {
        return Err(token_error("BAD_CLIENT_ID", "missing or invalid client id"));
    }
    let secret = field(params, "client_secret").ok_or_else(|| missing("client_secret"))?;
    if secret != app.client_secret {
        return Err(token_error("BAD_CLIENT_SECRET", "missing or invalid client secret"));
    }
    Ok(())
}

/// One token request past the rate limit: the grant, or the error to answer.
fn grant(st: &mut OAuthState, params: &HashMap<String, String>, hub_id: u64) -> Result<Value, ApiError> {
    let grant_type = field(params, "grant_type").ok_or_else(|| missing("grant_type"))?;
    if !matches!(grant_type, "authorization_code" | "refresh_token") {
        return Err(token_error(
            "BAD_GRANT_TYPE",
            format!("unsupported grant_type '{grant_type}'; expected authorization_code or refresh_token"),
        ));
    }
    check_client(&st.app, params)?;
    let now = st.now();
    if grant_type == "authorization_code" {
        let code = field(params, "code").ok_or_else(|| missing("code"))?;
        let redirect_uri = field(params, "redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
        let c = match st.codes.get_mut(code) {
            Some(c) if !c.used && now.duration_since(c.issued) < CODE_LIFETIME => c,
            _ => return Err(token_error("BAD_AUTH_CODE", "missing or invalid auth code")),
        };
        if c.redirect_uri != redirect_uri {
            return Err(token_error(
                "BAD_REDIRECT_URI",
                "redirect_uri does not match the redirect_uri the code was issued for",
            ));
        }
        c.used = true;
        let scopes = c.scopes.clone();
        let refresh_token = opaque_id();
        st.refresh.insert(refresh_token.clone(), RefreshToken { scopes: scopes.clone(), revoked: false });
        st.stats.authorization_code_grants += 1;
        Ok(st.issue(&refresh_token, scopes, hub_id))
    } else {
        let refresh_token = field(params, "refresh_token").ok_or_else(bad_refresh_token)?;
        let scopes = match st.refresh.get(refresh_token) {
            Some(t) if !t.revoked => t.scopes.clone(),
            _ => return Err(bad_refresh_token()),
        };
        st.stats.refresh_token_grants += 1;
        Ok(st.issue(refresh_token, scopes, hub_id))
    }
}

/// `POST /oauth/2026-03/token`
async fn token(State(sb): State<Sandbox>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let Some(oauth) = sb.inner.oauth.as_ref() else { return not_configured() };
    let hub_id = sb.inner.options.portal_id;
    let mut st = lock(oauth);
    let (max, now) = (st.app.token_requests_per_10s, st.now());
    let (quota, refused) = st.limiter.check(TOKEN_ENDPOINT, max, u32::MAX, now, 0);
    if refused.is_some() {
        st.stats.rate_limited += 1;
        return ApiError::rate_limited(Policy::TenSecondly)
            .with("groupName", json!("sandbox:oauth-token"))
            .header("x-hubspot-ratelimit-max", &quota.max.to_string())
            .header("x-hubspot-ratelimit-remaining", &quota.remaining.to_string())
            .header("x-hubspot-ratelimit-interval-milliseconds", &WINDOW.as_millis().to_string())
            .into_response();
    }
    let granted = form_body(query.as_deref(), &headers, &body).and_then(|params| grant(&mut st, &params, hub_id));
    match granted {
        Ok(v) => {
            let mut res = Json(v).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            st.stats.refused += 1;
            e.into_response()
        }
    }
}

/// `POST /oauth/2026-03/token/revoke`: `{}` once the refresh token is revoked (also for a token it does not know,
/// as RFC 7009 asks).
async fn revoke(State(sb): State<Sandbox>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let Some(oauth) = sb.inner.oauth.as_ref() else { return not_configured() };
    let mut st = lock(oauth);
    let revoked = form_body(query.as_deref(), &headers, &body).and_then(|params| {
        check_client(&st.app, &params)?;
        let token = field(&params, "token").ok_or_else(|| missing("token"))?;
        if let Some(t) = st.refresh.get_mut(token) {
            t.revoked = true;
        }
        Ok(())
    });
    match revoked {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => {
            st.stats.refused += 1;
            e.into_response()
        }
    }
}

// ---- the install (approve) page ----

/// `&`, `<`, `>`, `"` and `'` as HTML entities.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n<h1>{}</h1>\n{body}\n</body>\n</html>\n",
        escape(title),
        escape(title),
    );
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The 400 page: never a redirect, the redirect URI is not verified yet.
fn error_page(message: &str) -> Response {
    page(StatusCode::BAD_REQUEST, "Authorization failed", &format!("<p>{}</p>", escape(message)))
}

/// A checked install request.
struct Install {
    client_id: String,
    redirect_uri: String,
    /// `scope` and `optional_scope` as given (passed on by the approve form).
    scope: String,
    optional_scope: String,
    state: Option<String>,
}

/// `client_id` (the app's), `redirect_uri` (an absolute http(s) URL without a fragment) and `scope` (only scopes
/// the app has; missing: the app's scopes).
fn check_install(app: &OAuthApp, params: &HashMap<String, String>) -> Result<Install, Response> {
    let client_id = match field(params, "client_id") {
        None => return Err(error_page("The install URL has no client_id.")),
        Some(id) if id != app.client_id => {
            return Err(error_page(&format!("Unknown client_id '{id}': no app with this client id.")))
        }
        Some(id) => id.to_string(),
    };
    let Some(redirect_uri) = field(params, "redirect_uri") else {
        return Err(error_page("The install URL has no redirect_uri."));
    };
    let lower = redirect_uri.to_ascii_lowercase();
    let absolute = ["http://", "https://"].iter().any(|s| lower.starts_with(s) && lower.len() > s.len());
    if !absolute || redirect_uri.contains('#') || HeaderValue::from_str(redirect_uri).is_err() {
        return Err(error_page(&format!(
            "redirect_uri '{redirect_uri}' is not an absolute http(s) URL without a fragment."
        )));
    }
    let scope = field(params, "scope").unwrap_or_default().to_string();
    let unknown: Vec<&str> = scope.split_whitespace().filter(|s| !app.scopes.iter().any(|a| a == s)).collect();
    if !unknown.is_empty() {
        return Err(error_page(&format!(
            "Scope mismatch: the install URL asks for scopes the app does not have: {}. The app's scopes: {}.",
            unknown.join(" "),
            app.scopes.join(" ")
        )));
    }
    Ok(Install {
        client_id,
        redirect_uri: redirect_uri.to_string(),
        scope,
        optional_scope: field(params, "optional_scope").unwrap_or_default().to_string(),
        state: params.get("state").cloned(),
    })
}

/// `GET /oauth/authorize?client_id&scope&redirect_uri&state`: the approve page.
async fn authorize_page(State(sb): State<Sandbox>, RawQuery(query): RawQuery) -> Response {
    let Some(oauth) = sb.inner.oauth.as_ref() else { return not_configured() };
    let app = lock(oauth).app.clone();
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return error_page(&m),
    };
    let install = match check_install(&app, &params) {
        Ok(i) => i,
        Err(page) => return page,
    };
    let portal = sb.inner.options.portal_id;
    let scopes: String = app.scopes.iter().map(|s| format!("<li><code>{}</code></li>", escape(s))).collect();
    let hidden = |name: &str, value: &str| {
        format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
    };
    let mut fields = vec![
        hidden("client_id", &install.client_id),
        hidden("redirect_uri", &install.redirect_uri),
        hidden("scope", &install.scope),
    ];
    if !install.optional_scope.is_empty() {
        fields.push(hidden("optional_scope", &install.optional_scope));
    }
    if let Some(state) = &install.state {
        fields.push(hidden("state", state));
    }
    let body = format!(
        "<p>The app <code>{client}</code> asks to be installed into HubSpot sandbox portal <strong>{portal}</strong>.</p>\n\
         <p>It will be granted these scopes:</p>\n<ul>{scopes}</ul>\n\
         <p>You will be sent back to <code>{redirect}</code>.</p>\n\
         <form method=\"post\" action=\"/oauth/authorize\">\n{fields}\n\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Connect app</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button>\n</form>",
        client = escape(&install.client_id),
        redirect = escape(&install.redirect_uri),
        fields = fields.join("\n"),
    );
    page(StatusCode::OK, &format!("Install an app into portal {portal}"), &body)
}

/// `redirect_uri` with `params` appended (`?` or `&`), values URL-encoded.
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{query}");
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => error_page("redirect_uri cannot be used in a Location header."),
    }
}

/// `POST /oauth/authorize` (form): the user's decision; `302` back to the app either way.
async fn authorize_decision(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let Some(oauth) = sb.inner.oauth.as_ref() else { return not_configured() };
    let params = match parse_params(&body) {
        Ok(p) => p,
        Err(m) => return error_page(&m),
    };
    let mut st = lock(oauth);
    let install = match check_install(&st.app, &params) {
        Ok(i) => i,
        Err(page) => return page,
    };
    let code;
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(2);
    match field(&params, "decision") {
        Some("approve") => {
            let now = st.now();
            st.codes.retain(|_, c| !c.used && now.duration_since(c.issued) < CODE_LIFETIME);
            code = opaque_id();
            let scopes = st.app.scopes.clone();
            st.codes.insert(
                code.clone(),
                Code { redirect_uri: install.redirect_uri.clone(), scopes, issued: now, used: false },
            );
            out.push(("code", &code));
        }
        Some("deny") => out.push(("error", "access_denied")),
        _ => return error_page("decision must be 'approve' or 'deny'."),
    }
    if let Some(state) = &install.state {
        out.push(("state", state));
    }
    redirect_to(&install.redirect_uri, &out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn escape_covers_the_html_specials() {
        assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn tokens_are_opaque_and_long_enough() {
        let mut st = OAuthState::new(OAuthApp::default());
        let v = st.issue("na1-r", vec![], 1);
        let access = v["access_token"].as_str().unwrap();
        assert!(access.starts_with("CN") && access.len() >= 100 && access.len() <= 300, "{access}");
        assert!(access.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(st.issue("na1-r", vec![], 1)["access_token"], v["access_token"]);
    }

    #[test]
    fn an_access_token_expires_after_its_lifetime() {
        let mut st =
            OAuthState::new(OAuthApp { access_token_lifetime: Duration::from_secs(60), ..OAuthApp::default() });
        let v = st.issue("na1-r", vec!["oauth".into()], 1);
        let access = v["access_token"].as_str().unwrap().to_string();
        assert_eq!(st.check_access(&access), AccessCheck::Valid(vec!["oauth".into()]));
        st.advance(Duration::from_secs(65));
        assert_eq!(st.check_access(&access), AccessCheck::Expired(5));
        assert_eq!(st.check_access("CNnope"), AccessCheck::Unknown);
    }
}
