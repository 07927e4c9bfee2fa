//! HubSpot OAuth (`/oauth/2026-03/token`): exchanging an install's code for tokens, and [`OAuthTokens`], the
//! access token of one installed portal — cached until `expires_in` minus a margin, refreshed single-flight
//! (however many calls are in flight, one refresh per expiry), dropped when HubSpot says it expired. A refresh
//! token HubSpot refuses (revoked, uninstalled) makes the portal "needs reauth": no call is sent, every one
//! fails with the retryable `needs_reauth` (its event stays queued), and the owner is told once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubrelay_core::hubspot::HubSpotError;
use hubrelay_core::shared_token::{SharedToken, SharedTokenStore};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

/// The token endpoint's path (v1 is deprecated from 16 February 2027).
pub const TOKEN_PATH: &str = "/oauth/2026-03/token";

/// The app's credentials and where its tokens come from.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// HubSpot's API base URL (the token endpoint lives there).
    pub base_url: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp").field("client_id", &self.client_id).field("base_url", &self.base_url).finish()
    }
}

/// What the token endpoint grants.
#[derive(Clone, Deserialize)]
pub struct TokenGrant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    #[serde(default)]
    pub hub_id: Option<u64>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant").field("expires_in", &self.expires_in).field("hub_id", &self.hub_id).finish()
    }
}

/// A token request HubSpot refused or that did not get through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The code or refresh token is no good (used, expired, revoked): only a new install helps.
    #[error("HubSpot refused the {what}: {message}")]
    Refused { what: &'static str, code: String, message: String },
    /// HubSpot refused the request for another reason (the app's client id or secret, most likely): a setting
    /// to fix, not a portal to reconnect.
    #[error(
        "HubSpot refused the token request ({code}): {message} — check HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET"
    )]
    Misconfigured { code: String, message: String },
    /// The token endpoint was unreachable, rate limited or failing: try again later.
    #[error("HubSpot's token endpoint: {0}")]
    Unavailable(String),
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// `grant_type=authorization_code`: the tokens of an install, from the `code` HubSpot sent to the callback.
pub async fn exchange_code(app: &OAuthApp, code: &str, redirect_uri: &str) -> Result<TokenGrant, OAuthError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", &app.client_id),
        ("client_secret", &app.client_secret),
    ];
    token_request(&http_client(), app, &form, "authorization code").await
}

/// Every parameter in the form body, never in the query (HubSpot's rule for the 2026-03 endpoint).
async fn token_request(
    http: &reqwest::Client,
    app: &OAuthApp,
    form: &[(&str, &str)],
    what: &'static str,
) -> Result<TokenGrant, OAuthError> {
    let body = serde_urlencoded::to_string(form).map_err(|e| OAuthError::Unavailable(e.to_string()))?;
    let url = format!("{}{TOKEN_PATH}", app.base_url.trim_end_matches('/'));
    let resp = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| OAuthError::Unavailable(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| OAuthError::Unavailable(format!("unreadable token answer: {e}")));
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = ["status", "category", "error"]
        .iter()
        .find_map(|k| body[k].as_str().filter(|s| *s != "error"))
        .unwrap_or("")
        .to_string();
    let message = body["message"].as_str().unwrap_or_default().to_string();
    // Only a refused code or refresh token means "install again"; another 4xx is our configuration; 429 and
    // 5xx pass.
    let message = format!("{status} {message}").trim().to_string();
    let grant_refused = ["BAD_REFRESH_TOKEN", "BAD_AUTH_CODE", "BAD_REDIRECT_URI", "invalid_grant"]
        .iter()
        .any(|c| code.eq_ignore_ascii_case(c));
    if status.is_client_error() && status.as_u16() != 429 {
        if grant_refused {
            Err(OAuthError::Refused { what, code, message })
        } else {
            Err(OAuthError::Misconfigured { code, message })
        }
    } else {
        Err(OAuthError::Unavailable(format!("{status} {code} {message}").trim().to_string()))
    }
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Called once when HubSpot refuses the refresh token (the relay marks the tenant and raises its alarm).
pub type OnRevoked = Arc<dyn Fn(&OAuthError) + Send + Sync>;

/// How long one process may hold the shared refresh lease: longer than a token request may take (its timeout
/// is 10 s), short enough that a process that died holding it delays the others little.
pub const SHARED_LEASE: Duration = Duration::from_secs(12);
/// How long a call waits for another process's refresh before it fails (retryable: its event is queued).
pub const SHARED_WAIT: Duration = Duration::from_secs(3);
const SHARED_POLL: Duration = Duration::from_millis(100);
/// A token this close to its expiry is not sent (it could expire on the way).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// One installed portal's access token.
pub struct OAuthTokens {
    http: reqwest::Client,
    app: OAuthApp,
    refresh_token: String,
    cached: tokio::sync::Mutex<Option<Cached>>,
    /// The token HubSpot last answered 401 to: not to be taken from the shared store again.
    rejected: std::sync::Mutex<Option<String>>,
    /// The token the stack's processes share, and this process's name as a lease owner.
    shared: Option<(Arc<dyn SharedTokenStore>, String)>,
    /// After a failed shared refresh: no other attempt from this process before then (its lease holds the
    /// others off meanwhile).
    backoff_until: std::sync::Mutex<Option<Instant>>,
    needs_reauth: AtomicBool,
    refreshes: AtomicU64,
    on_revoked: Option<OnRevoked>,
}

impl OAuthTokens {
    pub fn new(app: OAuthApp, refresh_token: String) -> OAuthTokens {
        OAuthTokens {
            http: http_client(),
            app,
            refresh_token,
            cached: tokio::sync::Mutex::new(None),
            rejected: std::sync::Mutex::new(None),
            shared: None,
            backoff_until: std::sync::Mutex::new(None),
            needs_reauth: AtomicBool::new(false),
            refreshes: AtomicU64::new(0),
            on_revoked: None,
        }
    }

    /// Start from tokens just granted (an install), so the first call needs no refresh.
    pub fn with_access_token(self, access_token: String, expires_in: u64) -> OAuthTokens {
        let cached = Cached { token: access_token, refresh_at: Instant::now() + refresh_after(expires_in) };
        OAuthTokens { cached: tokio::sync::Mutex::new(Some(cached)), ..self }
    }

    /// Share the token with the other processes of the stack through `store`: a process reads the token
    /// stored there and refreshes only while holding the store's lease.
    pub fn shared_through(mut self, store: Arc<dyn SharedTokenStore>) -> OAuthTokens {
        self.shared = Some((store, format!("oauth-{}", uuid::Uuid::new_v4().simple())));
        self
    }

    pub fn on_revoked(mut self, callback: OnRevoked) -> OAuthTokens {
        self.on_revoked = Some(callback);
        self
    }

    /// A portal already known to need a new install: no refresh is tried.
    pub fn needing_reauth(self) -> OAuthTokens {
        self.needs_reauth.store(true, Ordering::SeqCst);
        self
    }

    pub fn needs_reauth(&self) -> bool {
        self.needs_reauth.load(Ordering::SeqCst)
    }

    /// Refreshes this process made so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The access token to send: the cached one while it is fresh, else one refresh (the other callers wait
    /// for it, holding no slot of HubSpot's API budget) — or, shared, the one another process stored.
    pub async fn access_token(&self) -> Result<String, HubSpotError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        if self.needs_reauth() {
            return Err(needs_reauth_error());
        }
        let Some((store, owner)) = &self.shared else {
            let (token, _, _) = self.refresh(&mut cached).await?;
            return Ok(token);
        };
        let deadline = Instant::now() + SHARED_WAIT;
        loop {
            let now = OffsetDateTime::now_utc();
            let current = self.usable(store.current().await.map_err(store_error)?);
            if let Some(token) = current.as_ref().filter(|t| t.refresh_at > now) {
                return Ok(self.keep(&mut cached, token, token.refresh_at, now));
            }
            let backing_off =
                self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| Instant::now() < t);
            if !backing_off && store.lease(owner, now, now + SHARED_LEASE).await.map_err(store_error)? {
                return self.refresh_under_lease(store.as_ref(), owner, &mut cached).await;
            }
            // Another process is refreshing: the token it replaces still serves until it expires.
            if let Some(token) = current.as_ref().filter(|t| t.expires_at > now + EXPIRY_MARGIN) {
                let recheck = (now + SHARED_POLL * 10).min(token.expires_at - EXPIRY_MARGIN);
                return Ok(self.keep(&mut cached, token, recheck, now));
            }
            if Instant::now() >= deadline {
                return Err(HubSpotError::new(
                    None,
                    "oauth_refresh_pending",
                    "not sent: another process is refreshing the portal's access token",
                ));
            }
            tokio::time::sleep(SHARED_POLL).await;
        }
    }

    /// Holding the lease: the token another process stored meanwhile, or a refresh, stored for the others. A
    /// failed refresh keeps the lease until it runs out, so the stack asks the token endpoint at most once per
    /// lease while it fails (its rate limit is the app's, for every portal).
    async fn refresh_under_lease(
        &self,
        store: &dyn SharedTokenStore,
        owner: &str,
        cached: &mut Option<Cached>,
    ) -> Result<String, HubSpotError> {
        let now = OffsetDateTime::now_utc();
        match store.current().await {
            Ok(current) => {
                if let Some(token) = self.usable(current).filter(|t| t.refresh_at > now) {
                    let _ = store.release(owner).await;
                    return Ok(self.keep(cached, &token, token.refresh_at, now));
                }
            }
            Err(e) => {
                let _ = store.release(owner).await;
                return Err(store_error(e));
            }
        }
        let (access_token, refresh_at, expires_at) = match self.refresh(cached).await {
            Ok(granted) => granted,
            Err(e) => {
                *self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + SHARED_LEASE);
                return Err(e);
            }
        };
        let token = SharedToken { access_token, refresh_at, expires_at };
        if let Err(e) = store.store(&token, owner).await {
            // This process still has the token; the others refresh once the lease is gone.
            tracing::warn!(error = %e, "could not share the refreshed access token");
            let _ = store.release(owner).await;
        }
        Ok(token.access_token)
    }

    /// `token` unless HubSpot refused it.
    fn usable(&self, token: Option<SharedToken>) -> Option<SharedToken> {
        let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone();
        token.filter(|t| Some(&t.access_token) != rejected.as_ref())
    }

    /// Caches `token` in this process until `until`.
    fn keep(
        &self,
        cached: &mut Option<Cached>,
        token: &SharedToken,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> String {
        let left = (until - now).max(time::Duration::ZERO).unsigned_abs();
        *cached = Some(Cached { token: token.access_token.clone(), refresh_at: Instant::now() + left });
        token.access_token.clone()
    }

    /// One `grant_type=refresh_token` request: the new token and when to refresh it, cached.
    async fn refresh(
        &self,
        cached: &mut Option<Cached>,
    ) -> Result<(String, OffsetDateTime, OffsetDateTime), HubSpotError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.as_str()),
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.as_str()),
        ];
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        match token_request(&self.http, &self.app, &form, "refresh token").await {
            Ok(grant) => {
                let after = refresh_after(grant.expires_in);
                *cached = Some(Cached { token: grant.access_token.clone(), refresh_at: Instant::now() + after });
                let now = OffsetDateTime::now_utc();
                Ok((grant.access_token, now + after, now + Duration::from_secs(grant.expires_in)))
            }
            Err(e @ OAuthError::Refused { .. }) => {
                *cached = None;
                if !self.needs_reauth.swap(true, Ordering::SeqCst) {
                    tracing::error!(error = %e, "HubSpot refused the refresh token: the portal needs a new install (its events stay queued)");
                    if let Some(callback) = &self.on_revoked {
                        callback(&e);
                    }
                }
                Err(needs_reauth_error())
            }
            Err(e @ OAuthError::Misconfigured { .. }) => {
                tracing::error!(error = %e, "HubSpot refused the OAuth app's token request: calls wait (retried) until it is fixed");
                Err(HubSpotError::new(None, "oauth_app_refused", format!("not sent: {e}")))
            }
            Err(e) => Err(HubSpotError::new(None, "oauth_refresh_failed", format!("not sent: {e}"))),
        }
    }

    /// HubSpot answered 401 to `token`: forget it (unless a refresh replaced it meanwhile), so the next
    /// [`Self::access_token`] refreshes.
    pub async fn rejected(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.to_string());
    }
}

fn store_error(e: hubrelay_core::store::StoreError) -> HubSpotError {
    HubSpotError::new(None, "oauth_token_store_unavailable", format!("not sent: the shared access token: {e}"))
}

/// Refresh ahead of the expiry by a tenth of the lifetime, at most 5 minutes (30-minute tokens: at 27 min).
fn refresh_after(expires_in: u64) -> Duration {
    let lifetime = Duration::from_secs(expires_in);
    lifetime - (lifetime / 10).min(Duration::from_secs(300))
}

fn needs_reauth_error() -> HubSpotError {
    HubSpotError::new(
        None,
        "needs_reauth",
        "not sent: HubSpot refused the portal's refresh token; reconnect it (`hubrelay tenants connect`)",
    )
}
