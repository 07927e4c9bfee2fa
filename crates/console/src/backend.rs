//! What the console reads and acts on, per tenant: the event log and the dead-letter queue (core's traits, so the
//! same pages serve SQLite locally and DynamoDB/SQS on AWS), and each tenant's health.

use std::sync::Arc;

use async_trait::async_trait;
use hubrelay_core::dlq::DeadLetters;
use hubrelay_core::privacy::Eraser;
use hubrelay_core::store::EventLog;
use hubrelay_core::tenant::{HubSpotAuth, Tenant};

/// One tenant's health, as the portals page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantHealth {
    pub id: String,
    pub enabled: bool,
    pub hub_id: Option<u64>,
    /// How it reaches HubSpot, in words (`Service Key`, `app token`, `OAuth`, `sandbox`, …).
    pub connection: String,
    pub needs_reauth: bool,
    /// The operator's cap on calls per day, and the calls counted today, when there is a cap.
    pub daily_budget: Option<u32>,
    pub calls_today: Option<u64>,
    /// Events waiting on the retry queue, and in the dead-letter queue.
    pub queued: Option<usize>,
    pub dead_letters: Option<usize>,
    /// Properties HubSpot said the portal lacks (events carrying them are parked); `None` where not tracked.
    pub missing_properties: Option<Vec<String>>,
}

impl TenantHealth {
    /// What a registry says of `tenant` (the counts are the backend's to add).
    pub fn of(tenant: &Tenant) -> TenantHealth {
        let connection = match &tenant.secrets.hubspot {
            HubSpotAuth::Sandbox => "sandbox",
            HubSpotAuth::ServiceKey { .. } => "Service Key",
            HubSpotAuth::AppToken { .. } => "app token",
            HubSpotAuth::OAuth { refresh_token: None } => "OAuth (install pending)",
            HubSpotAuth::OAuth { .. } => "OAuth",
        };
        TenantHealth {
            id: tenant.id.to_string(),
            enabled: tenant.enabled,
            hub_id: tenant.hub_id,
            connection: connection.into(),
            needs_reauth: tenant.needs_reauth,
            daily_budget: tenant.daily_budget,
            ..TenantHealth::default()
        }
    }
}

/// What checking a tenant's portal found: `hubrelay doctor`'s property check, and its calls today.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalCheck {
    /// How many custom properties the tenant's mapping and referral partners need.
    pub required: usize,
    /// Those the portal lacks: events carrying them are parked until they exist (`hubrelay properties sync`).
    /// `Err`: the portal could not be asked (its daily budget spent, HubSpot down, a revoked token, …).
    pub missing_properties: Result<Vec<String>, String>,
    /// The calls of the portal's day and its daily budget, when it has one (read before the check's own call).
    pub daily: Option<(u32, u32)>,
}

#[async_trait]
pub trait ConsoleBackend: Send + Sync {
    /// Every tenant (the deployment's own portal first, as `default`).
    async fn tenants(&self) -> Result<Vec<TenantHealth>, String>;
    /// Every tenant's id (the default one first), for the pages' tenant menus: cheaper than [`Self::tenants`].
    async fn tenant_ids(&self) -> Result<Vec<String>, String> {
        Ok(self.tenants().await?.into_iter().map(|t| t.id).collect())
    }
    /// The tenant's event log.
    fn event_log(&self, tenant: &str) -> Result<Arc<dyn EventLog>, String>;
    /// The tenant's dead-letter queue.
    fn dead_letters(&self, tenant: &str) -> Result<Arc<dyn DeadLetters>, String>;
    /// The tenant's erasures: its store, and with `hubspot` its portal too, for HubSpot's GDPR delete (only
    /// then is a HubSpot client made: listing receipts needs none).
    async fn eraser(&self, tenant: &str, _hubspot: bool) -> Result<Arc<Eraser>, String> {
        Err(format!("erasing personal data is not available here for tenant {tenant}"))
    }
    /// Checks the tenant's portal (one HubSpot call: its properties) and reads its calls today.
    async fn check_portal(&self, tenant: &str) -> Result<PortalCheck, String> {
        Err(format!("checking portals is not available here: run `hubrelay doctor --tenant {tenant}`"))
    }
}
