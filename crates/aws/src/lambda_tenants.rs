//! Tenants on the Lambdas: a function serves `/t/{tenant}/…` (and the retry worker delivers a tenant's
//! queued events) with that tenant's relay — its settings and credentials from the registry in the table, its
//! own slice of the table (`t:<tenant>:` item ids), its messages on the shared queues marked with it, its own
//! HubSpot client and budget. A warm instance keeps what it built and looks at the tenant's item again after
//! [`RECHECK`], so a change (disabled, a rotated secret, a reconnect) takes effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use hubrelay_clients::notify::notifications;
use hubrelay_clients::oauth::OAuthTokens;
use hubrelay_core::config::{HubSpotTarget, Layer, RelaySettings};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::tenant::{HubSpotAuth, OAuthAppSettings, StoredTenant, Tenant, TenantId};
use hubrelay_http::tenant_routes::{TenantRoute, TenantRouter};
use hubrelay_http::{Relay, Stores};

use crate::dynamodb::DynamoIdempotencyStore;
use crate::dynamodb_tenants::{DynamoTenants, TenantStoreError};
use crate::lambda::HubSpotWiring;
use crate::sqs::SqsRetryQueue;

/// How long a warm instance trusts what it read of a tenant.
pub const RECHECK: Duration = Duration::from_secs(10);

/// What a tenant resolves to.
#[derive(Clone)]
pub enum Resolved<T> {
    Ready(T),
    Disabled,
    Unknown,
    /// Unreadable, or its relay could not be built (logged): try again later.
    Unavailable,
}

#[async_trait]
pub trait Tenants<T>: Send + Sync {
    async fn resolve(&self, id: &TenantId) -> Resolved<T>;
}

/// What a function builds a tenant's handler from.
pub struct TenantParts {
    pub relay: Relay,
    pub hubspot: Arc<dyn HubSpot>,
    pub settings: RelaySettings,
    /// An OAuth tenant not connected (or needing reauth): its events wait for an install.
    pub waiting_for_install: bool,
    /// When the tenant's registry item last changed (epoch ms; a reconnect is a change).
    pub updated_at: i64,
}

/// A tenant's retry worker, whether its portal is connected (see [`TenantParts::waiting_for_install`]) and when
/// the tenant last changed.
#[derive(Clone)]
pub struct TenantWorker {
    pub worker: Arc<hubrelay_core::worker::RetryWorker>,
    pub connected: bool,
    pub updated_at: i64,
}

pub type Build<T> = Arc<dyn Fn(TenantParts) -> Result<T, String> + Send + Sync>;

struct Entry<T> {
    checked: Instant,
    updated_at: Option<i64>,
    resolved: Resolved<T>,
}

/// What every tenant of a function shares: the registry, the deployment's settings, the stack's table and
/// queues, and how this function builds a tenant's handler.
pub struct TenantCache<T> {
    pub(crate) registry: DynamoTenants,
    pub(crate) base: Layer,
    pub(crate) oauth: Option<OAuthAppSettings>,
    pub(crate) wiring: HubSpotWiring,
    pub(crate) table: DynamoIdempotencyStore,
    pub(crate) queue: SqsRetryQueue,
    pub(crate) build: Build<T>,
    entries: Mutex<HashMap<TenantId, Entry<T>>>,
}

impl<T: Clone + Send + Sync + 'static> TenantCache<T> {
    pub(crate) fn new(
        registry: DynamoTenants,
        base: Layer,
        oauth: Option<OAuthAppSettings>,
        wiring: HubSpotWiring,
        table: DynamoIdempotencyStore,
        queue: SqsRetryQueue,
        build: Build<T>,
    ) -> Self {
        TenantCache { registry, base, oauth, wiring, table, queue, build, entries: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, id: &TenantId, fresh_only: bool, updated_at: Option<i64>) -> Option<Resolved<T>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(id)?;
        if fresh_only {
            return (entry.checked.elapsed() < RECHECK).then(|| entry.resolved.clone());
        }
        if entry.updated_at == updated_at {
            entry.checked = Instant::now();
            return Some(entry.resolved.clone());
        }
        None
    }

    fn parts(&self, stored: &StoredTenant) -> Result<TenantParts, String> {
        let tenant = &stored.tenant;
        let id = &tenant.id;
        let settings = tenant.relay_settings(&self.base).map_err(|e| e.to_string())?;
        let TenantPortal { target, waiting, refresh_token: refused } =
            tenant_portal(tenant, &settings, self.oauth.as_ref())?;
        let registry = self.registry.clone();
        let tenant_id = id.clone();
        let oauth = move |tokens: OAuthTokens| {
            let tokens = tokens.on_revoked(Arc::new(move |e| {
                crate::lambda::log_needs_reauth(
                    tenant_id.as_str(),
                    e,
                    "tenant needs a new OAuth install; its events stay queued",
                );
                let (registry, id, refused) = (registry.clone(), tenant_id.clone(), refused.clone());
                tokio::spawn(async move {
                    // Read again and retry when an operator's change raced it (the mark is conditional on it).
                    for attempt in 1..=3 {
                        match registry.mark_needs_reauth(&id, &refused).await {
                            Ok(_) => return,
                            Err(TenantStoreError::Changed(_)) if attempt < 3 => continue,
                            Err(e) => {
                                tracing::error!(tenant = %id, error = %e, "could not mark the tenant needs_reauth");
                                return;
                            }
                        }
                    }
                });
            }));
            if waiting {
                tokens.needing_reauth()
            } else {
                tokens
            }
        };
        let wiring = self.wiring.for_tenant(id.as_str());
        let hubspot = wiring
            .client(&target, settings.hubspot_rate_limit_per_10s, tenant.daily_budget, oauth)
            .map_err(|e| e.to_string())?;
        let stores = Stores::new(Arc::new(self.table.for_tenant(id)), Arc::new(self.queue.for_tenant(id)));
        let relay = Relay::new(&settings, stores)
            .with_metrics(wiring.metrics().clone())
            .with_notifications(notifications(
                settings.notify.as_ref(),
                id.as_str(),
                crate::lambda::sending(wiring.lane()),
            )?)
            .with_personal_data(Arc::new(self.table.for_tenant(id)));
        Ok(TenantParts {
            relay: crate::lambda::with_outbound(relay, &settings, id.as_str())?,
            hubspot,
            settings,
            waiting_for_install: waiting,
            updated_at: stored.updated_at,
        })
    }
}

/// How a tenant reaches its portal on AWS.
pub(crate) struct TenantPortal {
    pub target: HubSpotTarget,
    /// An OAuth tenant not (or no longer) connected: its calls wait for the install.
    pub waiting: bool,
    /// Its OAuth refresh token (empty for a static token): the one a refusal marks as revoked.
    pub refresh_token: String,
}

/// The portal of `tenant` (its settings over the stack's: `settings`), through the stack's OAuth app `oauth`
/// when it connects by OAuth.
pub(crate) fn tenant_portal(
    tenant: &Tenant,
    settings: &RelaySettings,
    oauth: Option<&OAuthAppSettings>,
) -> Result<TenantPortal, String> {
    match &tenant.secrets.hubspot {
        HubSpotAuth::ServiceKey { .. } | HubSpotAuth::AppToken { .. } => {
            Ok(TenantPortal { target: settings.hubspot.clone(), waiting: false, refresh_token: String::new() })
        }
        HubSpotAuth::OAuth { refresh_token } => {
            let app = oauth.ok_or("connects by OAuth, but the stack has no OAuth app (HubSpotClientId)")?;
            let base_url =
                tenant.hubspot_base_url.clone().unwrap_or_else(|| hubrelay_core::hubspot::DEFAULT_BASE_URL.into());
            let target = HubSpotTarget::OAuth {
                base_url,
                client_id: app.client_id.clone(),
                client_secret: app.client_secret.clone(),
                refresh_token: refresh_token.clone().unwrap_or_default(),
            };
            let waiting = refresh_token.is_none() || tenant.needs_reauth;
            Ok(TenantPortal { target, waiting, refresh_token: refresh_token.clone().unwrap_or_default() })
        }
        HubSpotAuth::Sandbox => Err("uses a sandbox portal, which only `hubrelay serve` runs".into()),
    }
}

#[async_trait]
impl<T: Clone + Send + Sync + 'static> Tenants<T> for TenantCache<T> {
    async fn resolve(&self, id: &TenantId) -> Resolved<T> {
        if let Some(resolved) = self.cached(id, true, None) {
            return resolved;
        }
        let stored = match self.registry.get(id).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "cannot read the tenant");
                return Resolved::Unavailable;
            }
        };
        let updated_at = stored.as_ref().map(|s| s.updated_at);
        if let Some(resolved) = self.cached(id, false, updated_at) {
            return resolved;
        }
        let resolved = match stored {
            None => Resolved::Unknown,
            Some(s) if !s.tenant.enabled => Resolved::Disabled,
            Some(s) => match self.parts(&s).and_then(|parts| (self.build)(parts)) {
                Ok(built) => Resolved::Ready(built),
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "cannot build the tenant's relay");
                    Resolved::Unavailable
                }
            },
        };
        let entry = Entry { checked: Instant::now(), updated_at, resolved: resolved.clone() };
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), entry);
        resolved
    }
}

/// A request function's tenants, as routes.
pub(crate) struct TenantApps(pub(crate) TenantCache<Router>);

#[async_trait]
impl TenantRouter for TenantApps {
    async fn route(&self, id: &TenantId) -> TenantRoute {
        match self.0.resolve(id).await {
            Resolved::Ready(router) => TenantRoute::Ready(router),
            Resolved::Disabled => TenantRoute::Disabled,
            Resolved::Unknown => TenantRoute::Unknown,
            Resolved::Unavailable => TenantRoute::Unavailable,
        }
    }
}

/// The stack's OAuth install (`oauth-install` function): tenants and used states in the table.
pub(crate) struct AwsInstallRegistry(pub(crate) DynamoTenants);

#[async_trait]
impl hubrelay_http::oauth_install::InstallRegistry for AwsInstallRegistry {
    async fn get(&self, id: &TenantId) -> Result<Option<hubrelay_core::tenant::StoredTenant>, String> {
        self.0.get(id).await.map_err(|e| e.to_string())
    }

    async fn update(&self, read: &hubrelay_core::tenant::StoredTenant, tenant: &Tenant) -> Result<(), String> {
        self.0.update(read, tenant).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn take_nonce(&self, nonce: &str, expires: i64) -> Result<bool, String> {
        self.0.take_install_nonce(nonce, expires).await.map_err(|e| e.to_string())
    }
}

/// Which tenant has a portal (HubSpot's app webhooks), from the registry's `portal:<hub id>` items: one
/// consistent `GetItem` per portal of a batch, never cached, so a portal just connected, or moved to another
/// tenant, is routed by what the registry says now.
pub(crate) struct AwsPortals {
    registry: DynamoTenants,
}

impl AwsPortals {
    pub(crate) fn new(registry: DynamoTenants) -> Self {
        AwsPortals { registry }
    }
}

#[async_trait]
impl hubrelay_http::app_webhooks::PortalDirectory for AwsPortals {
    async fn tenant_of(&self, portal: u64) -> Result<Option<TenantId>, String> {
        self.registry.tenant_of_portal(portal).await.map_err(|e| e.to_string())
    }
}
