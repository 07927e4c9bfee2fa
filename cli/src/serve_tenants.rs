//! `hubrelay serve`'s tenants: every enabled tenant of the registry (`hubrelay tenants`) gets the same relay
//! as the default tenant, under `/t/{tenant}/`, built over its own settings and its own state — a SQLite
//! store in `tenants/<id>/` (idempotency keys, events, retry queue and dead letters apart by construction),
//! its own HubSpot client and rate budget (or a sandbox portal of its own), its own retry worker. The
//! registry is polled once a second: an added, changed, disabled or removed tenant takes effect while
//! serve runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hubrelay_clients::oauth::{OAuthApp, OAuthError, OAuthTokens, OnRevoked};
use hubrelay_clients::{HubSpotClient, RateLimiter};
use hubrelay_core::budget::MemoryDailyCalls;
use hubrelay_core::config::{HubSpotTarget, Layer};
use hubrelay_core::pii::mask_token;
use hubrelay_core::tenant::{HubSpotAuth, OAuthAppSettings, TenantId};
use hubrelay_core::worker::ContactLocks;
use hubrelay_http::app_webhooks::PortalDirectory;
use hubrelay_http::tenant_routes::{tenant_routes, TenantRoute as Route, TenantRouter};
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::tenants::{tenant_dir, StoredTenant, TenantRegistry};
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxHandle, SandboxOptions};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::output;
use crate::serve::{local_relay, LocalRelay, Portal};
use hubrelay_clients::notify::Sending;
use hubrelay_core::metrics::Metrics;

/// How often serve looks at the registry for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What every tenant shares with the default tenant: the deployment's settings (its referral partner
/// accounts excepted: a tenant's are its own).
pub struct Shared {
    pub base: Layer,
    pub data_dir: PathBuf,
    /// The deployment's OAuth app, for tenants connected by install.
    pub oauth: Option<OAuthAppSettings>,
    /// Every retry worker's turn (one tick at a time across the tenants and the default one).
    pub worker_lane: Arc<tokio::sync::Semaphore>,
    /// The process's counters (each tenant counts under its id).
    pub metrics: Metrics,
    /// Each running tenant's portal, for the console's check.
    pub probes: crate::serve_console::PortalProbes,
}

/// The tenants' routes, looked up per request, and which tenant has which portal (for HubSpot's app webhooks).
#[derive(Clone, Default)]
pub struct TenantRoutes {
    routes: Arc<RwLock<HashMap<TenantId, Route>>>,
    portals: Arc<RwLock<HashMap<u64, Vec<TenantId>>>>,
}

impl TenantRoutes {
    /// `/t/{tenant}/…` routed to the tenant's relay ([`tenant_routes`]).
    pub fn router(&self) -> Router {
        tenant_routes(Arc::new(self.clone()))
    }

    fn set(&self, id: TenantId, route: Option<Route>) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        match route {
            Some(r) => routes.insert(id, r),
            None => routes.remove(&id),
        };
    }
}

#[async_trait::async_trait]
impl PortalDirectory for TenantRoutes {
    async fn tenant_of(&self, portal: u64) -> Result<Option<TenantId>, String> {
        let portals = self.portals.read().unwrap_or_else(|e| e.into_inner());
        match portals.get(&portal).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.clone())),
            // The registry keeps a portal to one tenant; rows from before that rule may not.
            Some(many) => Err(format!(
                "portal {portal} is the hub id of tenants {}: give it to one (hubrelay tenants update ID --hub-id)",
                many.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

#[async_trait::async_trait]
impl TenantRouter for TenantRoutes {
    async fn route(&self, id: &TenantId) -> Route {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned().unwrap_or(Route::Unknown)
    }
}

/// A running tenant: the registry row it was built from and its worker.
struct Running {
    /// What it was built from (`None`: its row could not be read); rebuilt when the row differs.
    seen: Option<StoredTenant>,
    /// An OAuth tenant not (or no longer) connected: its events wait on its queue for the install.
    waiting_for_install: bool,
    worker: Option<(Arc<Notify>, tokio::task::JoinHandle<()>)>,
}

impl Running {
    /// Asks the worker to stop after its tick; the task, to be awaited before another worker takes the store.
    fn stop(self) -> Option<tokio::task::JoinHandle<()>> {
        self.worker.map(|(stop, task)| {
            stop.notify_one();
            task
        })
    }
}

/// What a tenant keeps for the whole run: one store per SQLite file (its claims live in the store's memory),
/// its sandbox portal, its contact locks and its rate limiter (so a rebuild never gives the portal a second
/// budget while the old relay's calls finish), reused when its settings change.
struct Kept {
    store: Arc<SqliteStore>,
    locks: Arc<ContactLocks>,
    sandbox: Option<(SandboxHandle, String)>,
    /// The custom properties its sandbox portal was given (made once, and again when the mapping or the referral
    /// partners ask for others).
    sandbox_properties: Option<Vec<String>>,
    limiter: Option<Arc<RateLimiter>>,
    /// The portal's daily budget, counted across the tenant's rebuilds.
    daily: Option<Arc<MemoryDailyCalls>>,
    /// Workers of earlier builds still finishing their tick.
    draining: Vec<tokio::task::JoinHandle<()>>,
}

pub struct TenantHost {
    shared: Shared,
    routes: TenantRoutes,
    running: HashMap<TenantId, Running>,
    kept: HashMap<TenantId, Kept>,
    registry: TenantRegistry,
    seen_version: Option<i64>,
    /// The URL senders and admins reach `serve` at, for the lines it prints.
    url: String,
}

impl TenantHost {
    pub fn open(shared: Shared, url: String) -> Result<TenantHost, String> {
        let registry = TenantRegistry::open(&shared.data_dir).map_err(|e| e.to_string())?;
        Ok(TenantHost {
            shared,
            routes: TenantRoutes::default(),
            running: HashMap::new(),
            kept: HashMap::new(),
            registry,
            seen_version: None,
            url,
        })
    }

    pub fn routes(&self) -> TenantRoutes {
        self.routes.clone()
    }

    /// Reads the registry when it changed and brings the running tenants in line; returns a line per
    /// tenant started, changed or stopped. A row that cannot be read makes that tenant unavailable only.
    pub async fn sync(&mut self) -> Vec<String> {
        let version = match self.registry.data_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "tenant registry unreadable; tenants keep their last settings");
                return Vec::new();
            }
        };
        if self.seen_version == Some(version) {
            return Vec::new();
        }
        let rows = match self.registry.list_rows() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "tenant registry unreadable; tenants keep their last settings");
                return Vec::new();
            }
        };
        self.seen_version = Some(version);
        // Every row's portal, unreadable ones too (their webhooks then meet their 503, not "no tenant"); when
        // the portals cannot be read, the last map stays.
        let portals = self.registry.portals().map_err(|e| {
            tracing::error!(error = %e, "tenant registry: portals unreadable; app webhooks keep the last map");
        });
        let mut lines = Vec::new();
        let listed: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let gone: Vec<TenantId> =
            self.running.keys().filter(|id| !listed.iter().any(|l| l == id.as_str())).cloned().collect();
        for id in gone {
            self.routes.set(id.clone(), None);
            self.shared.probes.set(id.as_str(), None);
            if let Some(running) = self.running.remove(&id) {
                self.retire(&id, running);
            }
            lines.push(format!("tenant {id} removed (its data stays in its folder)"));
        }
        for (raw_id, row) in rows {
            let Ok(id) = raw_id.parse::<TenantId>() else { continue };
            let stored = match row {
                Ok(stored) => Some(stored),
                Err(e) => {
                    if self.running.get(&id).is_some_and(|r| r.seen.is_none()) {
                        continue;
                    }
                    tracing::error!(tenant = %id, error = %e, "tenant unreadable; its routes answer 503");
                    None
                }
            };
            if self.running.get(&id).is_some_and(|r| r.seen == stored) {
                continue;
            }
            let previous = self.running.remove(&id);
            // Waiting for an install before, or installed again since (a revoke this poll had not seen yet):
            // what waited on the queue goes now.
            let refresh_token = |s: &StoredTenant| match &s.tenant.secrets.hubspot {
                HubSpotAuth::OAuth { refresh_token } => refresh_token.clone(),
                _ => None,
            };
            let reinstalled = match (previous.as_ref().and_then(|r| r.seen.as_ref()), stored.as_ref()) {
                (Some(before), Some(now)) => {
                    refresh_token(now).is_some() && refresh_token(before) != refresh_token(now)
                }
                _ => false,
            };
            let was_waiting = previous.as_ref().is_some_and(|r| r.waiting_for_install) || reinstalled;
            if let Some(previous) = previous {
                self.retire(&id, previous);
            }
            let Some(stored) = stored else {
                self.routes.set(id.clone(), Some(Route::Unavailable));
                self.running.insert(id.clone(), Running { seen: None, waiting_for_install: false, worker: None });
                lines.push(format!("tenant {id}: unreadable (see the log); its routes answer 503"));
                continue;
            };
            let (running, line) = match self.start(&stored).await {
                Ok((running, mut line)) => {
                    if was_waiting && !running.waiting_for_install {
                        let store = self.kept.get(&id).map(|k| k.store.clone());
                        line.push_str(&hasten(&id, store).await);
                    }
                    (running, line)
                }
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "tenant could not start; its routes answer 503");
                    self.routes.set(id.clone(), Some(Route::Unavailable));
                    (
                        Running { seen: Some(stored), waiting_for_install: false, worker: None },
                        format!("tenant {id}: {e}"),
                    )
                }
            };
            self.running.insert(id, running);
            lines.push(line);
        }
        // After the routes: a portal is routed only once its tenant's routes are in place.
        if let Ok(portals) = portals {
            let mut by_portal: HashMap<u64, Vec<TenantId>> = HashMap::new();
            for (portal, id) in portals {
                if let Ok(id) = id.parse::<TenantId>() {
                    by_portal.entry(portal).or_default().push(id);
                }
            }
            *self.routes.portals.write().unwrap_or_else(|e| e.into_inner()) = by_portal;
        }
        lines
    }

    /// Stops a tenant's worker after its tick. Its task is kept: the next worker of this tenant starts only once
    /// it has ended, so two workers never take the same due events.
    fn retire(&mut self, id: &TenantId, running: Running) {
        let Some(task) = running.stop() else { return };
        match self.kept.get_mut(id) {
            Some(kept) => kept.draining.push(task),
            None => drop(task),
        }
    }

    /// Starts one tenant's relay and worker (or marks it disabled).
    async fn start(&mut self, stored: &StoredTenant) -> Result<(Running, String), String> {
        let tenant = &stored.tenant;
        let id = tenant.id.clone();
        if !tenant.enabled {
            self.routes.set(id.clone(), Some(Route::Disabled));
            let line = format!("tenant {id} disabled: its routes answer 403, its queued events wait");
            return Ok((Running { seen: Some(stored.clone()), waiting_for_install: false, worker: None }, line));
        }
        let settings = tenant.relay_settings(&self.shared.base).map_err(|e| format!("configuration error: {e}"))?;
        settings.authenticator().map_err(|e| format!("configuration error: {e}"))?;
        let dir = tenant_dir(&self.shared.data_dir, &id);
        if !self.kept.contains_key(&id) {
            let store = SqliteStore::open(&hubrelay_local::local_db_path(&dir)).map_err(|e| e.to_string())?;
            store.release_orphaned_claims().await.map_err(|e| e.to_string())?;
            let kept = Kept {
                store: Arc::new(store),
                locks: ContactLocks::new(),
                sandbox: None,
                sandbox_properties: None,
                limiter: None,
                daily: None,
                draining: Vec::new(),
            };
            self.kept.insert(id.clone(), kept);
        }
        let kept = self.kept.get_mut(&id).ok_or("tenant state missing")?;
        let limit = settings.hubspot_rate_limit_per_10s;
        let limiter = match &kept.limiter {
            Some(limiter) if limiter.limit() == limit => limiter.clone(),
            _ => RateLimiter::new(limit),
        };
        kept.limiter = Some(limiter.clone());
        let timeout = settings.hubspot_timeout;
        let mut waiting_for_install = false;
        let (client, portal_line) = match (&tenant.secrets.hubspot, &settings.hubspot) {
            (HubSpotAuth::OAuth { refresh_token }, _) => {
                let app = self.shared.oauth.as_ref().ok_or(
                    "it connects by OAuth, but no OAuth app is configured (HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET)",
                )?;
                let base_url = tenant
                    .hubspot_base_url
                    .clone()
                    .or_else(|| self.shared.base.hubspot_base_url.clone())
                    .unwrap_or_else(|| hubrelay_core::hubspot::DEFAULT_BASE_URL.into());
                let app = OAuthApp {
                    client_id: app.client_id.clone(),
                    client_secret: app.client_secret.clone(),
                    base_url: base_url.clone(),
                };
                let refresh = refresh_token.clone().unwrap_or_default();
                let mut tokens = OAuthTokens::new(app, refresh.clone()).on_revoked(mark_needs_reauth(
                    self.shared.data_dir.clone(),
                    id.clone(),
                    refresh,
                ));
                waiting_for_install = refresh_token.is_none() || tenant.needs_reauth;
                if waiting_for_install {
                    tokens = tokens.needing_reauth();
                }
                let client = HubSpotClient::new(&base_url, "", timeout)
                    .map_err(|e| e.to_string())?
                    .with_api_version(settings.hubspot_api_version.clone())
                    .with_oauth(Arc::new(tokens));
                let state = match (refresh_token, tenant.needs_reauth) {
                    (None, _) => format!("not connected yet, its events wait: `hubrelay tenants connect {id}`"),
                    (Some(_), true) => format!("NEEDS REAUTH, its events wait: `hubrelay tenants connect {id}`"),
                    (Some(_), false) => format!("connected, portal {}", output::or_dash(tenant.hub_id)),
                };
                (client, format!("HubSpot OAuth {base_url} ({state})"))
            }
            (_, HubSpotTarget::Api { base_url, token }) => {
                let client = HubSpotClient::new(base_url, token, timeout)
                    .map_err(|e| e.to_string())?
                    .with_api_version(settings.hubspot_api_version.clone());
                (
                    client,
                    format!("HubSpot {} {base_url} (credential {})", tenant.secrets.hubspot.kind(), mask_token(token)),
                )
            }
            (_, HubSpotTarget::OAuth { .. }) => {
                // `Tenant::relay_settings` never carries the default portal's refresh token into a tenant.
                return Err(format!("tenant {id}: an OAuth tenant's tokens come from its install"));
            }
            (_, HubSpotTarget::Sandbox) => {
                if kept.sandbox.is_none() {
                    let token = crate::serve::kept_secret(&dir.join("sandbox-token"), "sandbox")?;
                    let options = SandboxOptions {
                        token: Some(token.clone()),
                        db_path: Some(dir.join("sandbox.db")),
                        portal_id: tenant.hub_id.unwrap_or(SandboxOptions::default().portal_id),
                        ..SandboxOptions::default()
                    };
                    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                    let handle = sandbox::spawn(options, localhost).await.map_err(|e| format!("sandbox: {e}"))?;
                    kept.sandbox = Some((handle, token));
                }
                let (handle, token) = kept.sandbox.as_ref().ok_or("sandbox missing")?;
                let client = HubSpotClient::new(&handle.url(), token, timeout)
                    .map_err(|e| e.to_string())?
                    .with_api_version(settings.hubspot_api_version.clone());
                // A sandbox portal starts empty: create the custom properties its mapping and partners need, as for
                // the default tenant (again only when those change: not on every rebuild, which may find the portal
                // at its limit).
                let wanted = hubrelay_core::properties::required(&settings.mapping, &settings.referral.config);
                let names: Vec<String> = wanted.iter().map(|p| p.name.clone()).collect();
                if kept.sandbox_properties.as_ref() != Some(&names) {
                    hubrelay_core::properties::sync(&client, &wanted).await.map_err(|e| e.to_string())?;
                    kept.sandbox_properties = Some(names);
                }
                let portal = tenant.hub_id.unwrap_or(SandboxOptions::default().portal_id);
                (client, format!("HubSpot sandbox {} portal {portal}", handle.url()))
            }
        };
        // The operator's cap on the portal's calls per day, on top of HubSpot's own daily limit.
        let client = match tenant.daily_budget {
            Some(limit) => {
                let daily = kept.daily.get_or_insert_with(|| Arc::new(MemoryDailyCalls::new(limit))).clone();
                daily.set_limit(limit);
                client.with_daily_budget(daily)
            }
            None => client,
        };
        let partners = hubrelay_clients::partner_clients(&settings.referral, settings.hubspot_timeout)
            .map_err(|e| format!("referral partners: {e}"))?;
        let LocalRelay { app, worker: local, portal: probe } = local_relay(
            &settings,
            kept.store.clone(),
            Portal { tenant: id.to_string(), client, limiter, metrics: self.shared.metrics.for_tenant(id.as_str()) },
            hubrelay_clients::notify::notifications(settings.notify.as_ref(), id.as_str(), Sending::Background)?,
            kept.locks.clone(),
            partners,
            self.shared.worker_lane.clone(),
        )?;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let span = tracing::info_span!("tenant", tenant = %id);
        let earlier = std::mem::take(&mut kept.draining);
        let task = tokio::spawn(
            async move {
                for task in earlier {
                    let _ = task.await;
                }
                local.run(async move { stopped.notified().await }).await
            }
            .instrument(span),
        );
        self.routes.set(id.clone(), Some(Route::Ready(app)));
        let wanted = hubrelay_core::properties::required(&settings.mapping, &settings.referral.config);
        self.shared.probes.set(id.as_str(), Some(crate::serve_console::Probe { client: probe, wanted }));
        let line = format!(
            "tenant {id}: POST {}/t/{id}/v1/leads (mapping {}; {portal_line}; {} calls per 10 s)",
            self.url,
            tenant.mapping.describe(),
            settings.hubspot_rate_limit_per_10s
        );
        Ok((Running { seen: Some(stored.clone()), waiting_for_install, worker: Some((stop, task)) }, line))
    }

    /// Polls the registry until `stop` is notified, printing what changed; then stops every tenant's worker.
    pub async fn run(mut self, stop: Arc<Notify>) {
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            for line in self.sync().await {
                println!("hubrelay: {line}");
            }
        }
        // Every worker finishes its tick, within one grace period for all.
        let mut tasks: Vec<_> = self.running.drain().filter_map(|(_, running)| running.stop()).collect();
        tasks.extend(self.kept.values_mut().flat_map(|kept| std::mem::take(&mut kept.draining)));
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
    }
}

/// A reconnected tenant's queue: due now rather than at each event's next scheduled attempt.
async fn hasten(id: &TenantId, store: Option<Arc<SqliteStore>>) -> String {
    let Some(store) = store else { return String::new() };
    match store.hasten_queue(time::OffsetDateTime::now_utc()).await {
        Ok(n) => format!("; connected again: its {n} queued events are due now"),
        Err(e) => {
            tracing::error!(tenant = %id, error = %e, "could not hasten the queue; events go at their next attempt");
            String::new()
        }
    }
}

/// When HubSpot refuses a tenant's refresh token: the tenant is marked `needs_reauth` in the registry (serve's
/// poll then rebuilds it waiting for a reconnect, and `hubrelay tenants list` shows it) — unless its stored refresh
/// token is no longer the refused one (it was reconnected meanwhile). Off the runtime's threads: SQLite may wait.
fn mark_needs_reauth(data_dir: PathBuf, id: TenantId, refused: String) -> OnRevoked {
    Arc::new(move |why: &OAuthError| {
        tracing::error!(tenant = %id, error = %why, alarm = "TenantNeedsReauth", "tenant needs a new OAuth install; its events stay queued");
        let (data_dir, id, refused) = (data_dir.clone(), id.clone(), refused.clone());
        tokio::task::spawn_blocking(move || {
            let marked = TenantRegistry::open(&data_dir).and_then(|registry| {
                let read = registry.get(&id)?;
                let still_refused =
                    read.tenant.secrets.hubspot == HubSpotAuth::OAuth { refresh_token: Some(refused.clone()) };
                if !still_refused || read.tenant.needs_reauth {
                    return Ok(());
                }
                let mut tenant = read.tenant.clone();
                tenant.needs_reauth = true;
                registry.update(&read, &tenant, time::OffsetDateTime::now_utc().unix_timestamp())
            });
            if let Err(e) = marked {
                tracing::error!(tenant = %id, error = %e, "could not mark the tenant needs_reauth");
            }
        });
    })
}
