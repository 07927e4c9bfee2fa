//! A local test double of the part of HubSpot's CRM v3 API that hubrelay uses.
//!
//! Real HTTP (axum), data in SQLite, HubSpot-shaped answers: status codes, error bodies, rate-limit
//! headers and property validation follow HubSpot's published API. Faults (failure rate, latency,
//! a lower rate limit) can be injected at run time, through [`Sandbox::set_faults`] or `POST /__sandbox/faults`.
//!
//! Routes (also served under the date-versioned prefixes `/crm/objects/{version}/...` and
//! `/crm/properties/{version}/...`):
//! - `POST /crm/v3/objects/contacts`, `GET /crm/v3/objects/contacts`, `GET|PATCH /crm/v3/objects/contacts/{id}`
//!   (`?idProperty=email` to address a contact by email), `POST /crm/v3/objects/contacts/batch/upsert`,
//!   `POST /crm/v3/objects/contacts/batch/read`, `POST /crm/v3/objects/contacts/search` (lagging writes by
//!   [`Faults::search_lag_ms`], five a second per token, see `search.rs`)
//! - engagements (`engagements.rs`): `POST /crm/v3/objects/{notes|calls|emails|meetings|tasks|communications}`
//!   with inline contact associations, `GET /crm/v3/objects/{type}/{id}`,
//!   `GET /crm/v3/objects/contacts/{id}/associations/{type}` (v4 association shape)
//! - `GET|POST /crm/v3/properties/contacts`, `GET /crm/v3/properties/contacts/{name}`
//! - OAuth, when [`SandboxOptions::oauth`] is set (`oauth.rs`): `GET|POST /oauth/authorize`,
//!   `POST /oauth/2026-03/token`, `POST /oauth/2026-03/token/revoke`; the API then accepts the access tokens issued
//! - admin, no auth, not counted, never faulted: `GET|POST|DELETE /__sandbox/faults`, `GET /__sandbox/stats`,
//!   `POST /__sandbox/reset`, `POST /__sandbox/oauth/revoke`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

mod account;
mod associations;
mod batch;
mod contacts;
mod deals;
mod engagements;
mod error;
mod faults;
mod merge;
mod oauth;
mod properties;
mod ratelimit;
mod routes;
mod rules;
mod scopes;
mod search;
mod store;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::server::SandboxError;
use error::ApiError;
use oauth::OAuthState;
pub use oauth::{OAuthApp, OAuthStats};
use ratelimit::RateLimiter;
pub use rules::{Condition, RuleScope, ValidationRule};
use store::Store;

/// How long a write takes to reach the search index by default: HubSpot documents a lag of "a few seconds".
pub const DEFAULT_SEARCH_LAG_MS: u64 = 2_000;

/// Faults injected into API (`/crm/...`) requests, and the search index's lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share (0.0..=1.0) of API requests that fail with `failure_status`.
    pub failure_rate: f64,
    /// Status of injected failures; 0 means 503.
    pub failure_status: u16,
    /// Overrides the rolling 10 s rate limit (`None` = [`SandboxOptions::rate_limit_per_10s`]).
    pub requests_per_10s: Option<u32>,
    /// Latency added to every API request that passed auth and the rate limit.
    pub latency_ms: u64,
    /// Share (0.0..=1.0) of successful writes (any method but GET, batch reads excepted) answered 504 after
    /// they were stored: the caller cannot tell whether they landed.
    pub apply_then_fail_rate: f64,
    /// How far the search index lags writes (HubSpot's behaviour, not a fault: [`DEFAULT_SEARCH_LAG_MS`] unless
    /// set; at most 60 s).
    pub search_lag_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            failure_rate: 0.0,
            failure_status: 0,
            requests_per_10s: None,
            latency_ms: 0,
            apply_then_fail_rate: 0.0,
            search_lag_ms: DEFAULT_SEARCH_LAG_MS,
        }
    }
}

impl Faults {
    /// The status injected failures answer with (503 when unset or not an error status).
    pub fn effective_status(&self) -> u16 {
        match self.failure_status {
            400..=599 => self.failure_status,
            _ => 503,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Required bearer token; `None` accepts any non-empty bearer token.
    pub token: Option<String>,
    /// SQLite file; `None` keeps everything in memory.
    pub db_path: Option<PathBuf>,
    /// Rolling 10-second limit per token (HubSpot Professional: 190).
    pub rate_limit_per_10s: u32,
    /// Daily limit for the whole account (HubSpot Professional: 625,000).
    pub daily_limit: u32,
    pub faults: Faults,
    /// Ids per page of an association read (HubSpot: 500; tests make it small to see paging).
    pub association_page_size: usize,
    /// The portal (hub) id `account-info` reports.
    pub portal_id: u64,
    /// The portal's time zone, as `account-info` reports it (`US/Eastern`, ...), and its offset from UTC.
    pub time_zone: String,
    pub utc_offset_minutes: i32,
    /// The scopes the token was granted (`None`: every scope). A call outside them answers 403 `MISSING_SCOPES`.
    pub scopes: Option<Vec<String>>,
    /// An OAuth app installable into the portal (`/oauth/...` routes; the API then accepts the access tokens it
    /// issued, checked against their own scopes). With OAuth on and `token` `None`, only issued access tokens are
    /// accepted. `None`: no OAuth, the `/oauth` routes answer 404.
    pub oauth: Option<OAuthApp>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            token: None,
            db_path: None,
            rate_limit_per_10s: 190,
            daily_limit: 625_000,
            faults: Faults::default(),
            association_page_size: 500,
            portal_id: 62_515,
            time_zone: "UTC".into(),
            utc_offset_minutes: 0,
            scopes: None,
            oauth: None,
        }
    }
}

/// Counters since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// API requests received (401s and 429s included, admin routes excluded).
    pub requests: u64,
    /// Requests refused by the rate limiter (injected 429 faults count as `faults_injected`).
    pub rate_limited: u64,
    pub faults_injected: u64,
    /// Requests per route, keyed `"METHOD /route/pattern"`, e.g. `"POST /crm/v3/objects/contacts/batch/upsert"`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Requests by how they named the API: `dated` (`/crm/objects/2026-09/…`) or `legacy` (`/crm/v3/…`, `/crm/v4/…`).
    pub by_path_style: BTreeMap<String, u64>,
    /// Requests by API version named in the path (`2026-09`, `v3`, `v4`).
    pub by_version: BTreeMap<String, u64>,
}

/// The sandbox: cheap to clone, every clone shares one database, one rate limiter and one set of faults.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    options: SandboxOptions,
    store: Mutex<Store>,
    faults: RwLock<Faults>,
    rules: RwLock<Vec<ValidationRule>>,
    scopes: RwLock<Option<Vec<String>>>,
    stats: Mutex<SandboxStats>,
    limiter: Mutex<RateLimiter>,
    search_limiter: Mutex<search::SearchLimiter>,
    oauth: Option<Mutex<OAuthState>>,
}

/// Locks a mutex, shrugging off poisoning: every critical section leaves the data consistent
/// (SQLite work runs in transactions that roll back on drop).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// Opens (or creates) the database and applies the options.
    pub fn open(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let store = Store::open(options.db_path.as_deref())?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                faults: RwLock::new(options.faults.clone()),
                rules: RwLock::new(Vec::new()),
                scopes: RwLock::new(options.scopes.clone()),
                oauth: options.oauth.clone().map(|app| Mutex::new(OAuthState::new(app))),
                options,
                store: Mutex::new(store),
                stats: Mutex::new(SandboxStats::default()),
                limiter: Mutex::new(RateLimiter::default()),
                search_limiter: Mutex::new(search::SearchLimiter::default()),
            }),
        })
    }

    /// Every route: the HubSpot API and the `/__sandbox` admin routes.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The portal's validation rules (applied to writes on API version 2026-09 and later).
    pub fn set_validation_rules(&self, rules: Vec<ValidationRule>) {
        *self.inner.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    pub fn validation_rules(&self) -> Vec<ValidationRule> {
        self.inner.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The token's granted scopes from now on (`None`: every scope).
    pub fn set_scopes(&self, scopes: Option<Vec<String>>) {
        *self.inner.scopes.write().unwrap_or_else(|e| e.into_inner()) = scopes;
    }

    pub fn scopes(&self) -> Option<Vec<String>> {
        self.inner.scopes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stats(&self) -> SandboxStats {
        lock(&self.inner.stats).clone()
    }

    /// The OAuth token endpoint's counters (all zero when OAuth is off).
    pub fn oauth_stats(&self) -> OAuthStats {
        self.inner.oauth.as_ref().map(|o| lock(o).stats()).unwrap_or_default()
    }

    /// Every refresh token issued so far stops working (a user uninstalled the app); access tokens already
    /// issued keep working until they expire, as on HubSpot. Nothing happens when OAuth is off.
    pub fn revoke_refresh_tokens(&self) {
        self.revoke_all_refresh_tokens();
    }

    /// [`Sandbox::revoke_refresh_tokens`], answering how many were still valid.
    fn revoke_all_refresh_tokens(&self) -> usize {
        self.inner.oauth.as_ref().map_or(0, |o| lock(o).revoke_all())
    }

    /// Moves the OAuth clock (code and access-token expiry, the token endpoint's window) forward.
    #[cfg(test)]
    fn advance_oauth_clock(&self, by: std::time::Duration) {
        if let Some(o) = &self.inner.oauth {
            lock(o).advance(by);
        }
    }

    pub fn contact_count(&self) -> Result<u64, SandboxError> {
        Ok(lock(&self.inner.store).contact_count()?)
    }

    /// Engagements (notes, calls, emails, meetings, tasks, communications) stored.
    pub fn engagement_count(&self) -> Result<u64, SandboxError> {
        Ok(lock(&self.inner.store).engagement_count()?)
    }

    /// What `POST /__sandbox/reset` does: deletes contacts, custom properties and engagements, zeroes the stats
    /// (the OAuth ones too) and the rate-limit windows. Faults stay as they are, and so do OAuth codes and tokens.
    /// Ids keep counting up (never reused).
    pub fn reset(&self) -> Result<(), SandboxError> {
        lock(&self.inner.store).reset()?;
        *lock(&self.inner.stats) = SandboxStats::default();
        *lock(&self.inner.limiter) = RateLimiter::default();
        if let Some(o) = &self.inner.oauth {
            lock(o).reset_counters();
        }
        Ok(())
    }

    /// Runs blocking SQLite work on the blocking pool, holding the store's mutex for the whole closure:
    /// writes are serialised, so each request sees and leaves a consistent database.
    async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.store)))
            .await
            .unwrap_or_else(|e| Err(ApiError::internal(format!("store task failed: {e}"))))
    }
}

/// A sandbox served in a background task. Dropping the handle shuts the server down (gracefully).
pub struct SandboxHandle {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    server: crate::server::ServerHandle,
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves the sandbox in a background tokio task.
pub async fn spawn(options: SandboxOptions, addr: SocketAddr) -> Result<SandboxHandle, SandboxError> {
    let sandbox = Sandbox::open(options)?;
    let server = crate::server::serve(sandbox.router(), addr).await?;
    Ok(SandboxHandle { addr: server.addr, sandbox, server })
}
