//! `serve`'s console (`hubrelay_console`) over the data dir: the default tenant's store and each registry
//! tenant's, opened per request (SQLite, beside the relays' own connections), and the audit trail in
//! `<data dir>/console-audit.jsonl`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use hubrelay_clients::HubSpotClient;
use hubrelay_console::audit::FileAudit;
use hubrelay_console::auth::{parse_operators, Gate};
use hubrelay_console::backend::{ConsoleBackend, PortalCheck, TenantHealth};
use hubrelay_console::Console;
use hubrelay_core::dlq::DeadLetters;
use hubrelay_core::domain::{TenantId, DEFAULT_TENANT};
use hubrelay_core::hubspot::{HubSpot, PropertyDefinition};
use hubrelay_core::privacy::Eraser;
use hubrelay_core::store::EventLog;
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::tenants::{tenant_dir, TenantRegistry};
use hubrelay_local::LocalDeadLetters;

/// The operators' tokens: `name:token,…`. Unset, `serve` makes one for the operator `local`, kept in the data dir.
pub const OPERATORS_ENV: &str = "HUBRELAY_CONSOLE_OPERATORS";

/// Each running relay's portal (the default tenant's and each tenant's), for the console's check: its HubSpot
/// client within the portal's budget, and the custom properties its mapping and partners need.
#[derive(Clone, Default)]
pub struct PortalProbes(Arc<RwLock<HashMap<String, Probe>>>);

#[derive(Clone)]
pub struct Probe {
    pub client: HubSpotClient,
    pub wanted: Vec<PropertyDefinition>,
}

impl PortalProbes {
    /// The tenant's portal as its relay was last built (`None`: the tenant is gone).
    pub fn set(&self, tenant: &str, probe: Option<Probe>) {
        let mut probes = self.0.write().unwrap_or_else(|e| e.into_inner());
        match probe {
            Some(p) => probes.insert(tenant.to_string(), p),
            None => probes.remove(tenant),
        };
    }

    fn get(&self, tenant: &str) -> Option<Probe> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(tenant).cloned()
    }
}

/// The console, and the banner line saying where it is and how to sign in.
pub fn console(data_dir: &Path, url: &str, secure: bool, probes: PortalProbes) -> Result<(Console, String), String> {
    let (operators, line) = match std::env::var(OPERATORS_ENV).ok().filter(|v| !v.trim().is_empty()) {
        Some(spec) => {
            let operators = parse_operators(&spec).map_err(|e| format!("configuration error: {OPERATORS_ENV}: {e}"))?;
            let line = format!("console {url}/console ({} operators from {OPERATORS_ENV})", operators.len());
            (operators, line)
        }
        None => {
            let path = data_dir.join("console-token");
            let token = crate::serve::kept_secret(&path, "console")?;
            let operators = parse_operators(&format!("local:{token}")).map_err(|e| e.to_string())?;
            (operators, format!("console {url}/console (operator `local`, token in {})", path.display()))
        }
    };
    let key = crate::serve::kept_secret(&data_dir.join("console-key"), "console-key")?;
    let gate = Gate::new(operators, key.into_bytes());
    let audit = Arc::new(FileAudit::new(data_dir.join("console-audit.jsonl")));
    let backend = Arc::new(LocalConsole { data_dir: data_dir.to_path_buf(), probes });
    Ok((Console::new(backend, gate, audit, secure), line))
}

struct LocalConsole {
    data_dir: PathBuf,
    probes: PortalProbes,
}

impl LocalConsole {
    /// The directory of `tenant`'s store (the data dir itself for the default tenant).
    fn dir(&self, tenant: &str) -> Result<PathBuf, String> {
        if tenant == DEFAULT_TENANT {
            return Ok(self.data_dir.clone());
        }
        let id: TenantId = tenant.parse()?;
        let dir = tenant_dir(&self.data_dir, &id);
        if dir.join("hubrelay.db").exists() {
            Ok(dir)
        } else {
            Err(format!("no tenant {tenant} here (hubrelay tenants list)"))
        }
    }

    fn store(&self, tenant: &str) -> Result<SqliteStore, String> {
        SqliteStore::open(&self.dir(tenant)?.join("hubrelay.db")).map_err(|e| e.to_string())
    }

    fn counts(&self, tenant: &str) -> (Option<usize>, Option<usize>) {
        match self.store(tenant) {
            Ok(store) => {
                (store.queued_count().ok().map(|n| n as usize), store.dead_letters().ok().map(|letters| letters.len()))
            }
            Err(_) => (None, None),
        }
    }
}

#[async_trait]
impl ConsoleBackend for LocalConsole {
    async fn tenants(&self) -> Result<Vec<TenantHealth>, String> {
        let (queued, dead_letters) = self.counts(DEFAULT_TENANT);
        let mut tenants = vec![TenantHealth {
            id: DEFAULT_TENANT.into(),
            enabled: true,
            connection: "the deployment's".into(),
            queued,
            dead_letters,
            ..TenantHealth::default()
        }];
        if !TenantRegistry::exists(&self.data_dir) {
            return Ok(tenants);
        }
        let registry = TenantRegistry::open(&self.data_dir).map_err(|e| e.to_string())?;
        for stored in registry.list().map_err(|e| e.to_string())? {
            let (queued, dead_letters) = self.counts(stored.tenant.id.as_str());
            tenants.push(TenantHealth { queued, dead_letters, ..TenantHealth::of(&stored.tenant) });
        }
        Ok(tenants)
    }

    async fn tenant_ids(&self) -> Result<Vec<String>, String> {
        let mut ids = vec![DEFAULT_TENANT.to_string()];
        if TenantRegistry::exists(&self.data_dir) {
            let registry = TenantRegistry::open(&self.data_dir).map_err(|e| e.to_string())?;
            ids.extend(registry.list().map_err(|e| e.to_string())?.into_iter().map(|t| t.tenant.id.to_string()));
        }
        Ok(ids)
    }

    fn event_log(&self, tenant: &str) -> Result<Arc<dyn EventLog>, String> {
        Ok(Arc::new(self.store(tenant)?))
    }

    fn dead_letters(&self, tenant: &str) -> Result<Arc<dyn DeadLetters>, String> {
        Ok(Arc::new(LocalDeadLetters::new(self.store(tenant)?)))
    }

    async fn eraser(&self, tenant: &str, hubspot: bool) -> Result<Arc<Eraser>, String> {
        let store = Arc::new(self.store(tenant)?);
        let hubspot = self.probes.get(tenant).filter(|_| hubspot).map(|p| Arc::new(p.client) as Arc<dyn HubSpot>);
        Ok(Arc::new(Eraser::new(store, hubspot)))
    }

    async fn check_portal(&self, tenant: &str) -> Result<PortalCheck, String> {
        let probe = self.probes.get(tenant).ok_or_else(|| format!("tenant {tenant} is not running here"))?;
        // The day's count first: the check's own call counts against the cap, and may find it spent.
        let daily = probe.client.daily_use().await.transpose()?;
        let missing = hubrelay_core::properties::missing(&probe.client, &probe.wanted).await;
        let missing = missing.map(|m| m.into_iter().map(|p| p.name).collect()).map_err(|e| e.to_string());
        Ok(PortalCheck { required: probe.wanted.len(), missing_properties: missing, daily })
    }
}
