//! The console on AWS (the `console` function): `serve`'s pages (`hubrelay_console`) over the stack's table and
//! queues. Each tenant's events are its scope of the idempotency table, its dead letters its messages in the
//! stack's dead-letter queue (redriven onto the retry queue), the tenants those of the registry in the table;
//! the audit trail is kept in the table too (`console-audit:` items, never expired).
//!
//! Like `hubrelay events` and `hubrelay dlq` against a stack, listing scans: fine for an operator's page.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use hubrelay_clients::HubSpotClient;
use hubrelay_console::audit::{AuditEntry, AuditLog};
use hubrelay_console::backend::{ConsoleBackend, PortalCheck, TenantHealth};
use hubrelay_core::config::{Layer, RelaySettings};
use hubrelay_core::dlq::DeadLetters;
use hubrelay_core::domain::{TenantId, DEFAULT_TENANT};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::privacy::Eraser;
use hubrelay_core::store::EventLog;
use hubrelay_core::tenant::OAuthAppSettings;

use crate::dynamodb::DynamoIdempotencyStore;
use crate::dynamodb_events::scan_all;
use crate::dynamodb_tenants::DynamoTenants;
use crate::lambda::HubSpotWiring;
use crate::lambda_tenants::{tenant_portal, TenantPortal};
use crate::sqs_dlq::SqsDeadLetters;

/// The audit trail's items: `console-audit:<ns since the epoch, 20 digits>:<operator>`, so the ids sort by time.
pub const AUDIT_ITEM_PREFIX: &str = "console-audit:";

/// The stack's events, dead letters and tenants, as the console reads and acts on them.
pub struct AwsConsole {
    table: DynamoIdempotencyStore,
    sqs: aws_sdk_sqs::Client,
    dlq_url: String,
    retry_queue_url: String,
    /// The registry, when the stack has tenants (`HUBRELAY_TENANT_SECRETS_KEY`).
    tenants: Option<DynamoTenants>,
    portals: Option<PortalAccess>,
}

/// What checking a portal takes: HubSpot clients as the functions make them (within the portal's shared
/// budget), the stack's own portal and settings, and its OAuth app for tenants connected by install.
pub struct PortalAccess {
    pub wiring: HubSpotWiring,
    /// The stack's settings layer, under each tenant's own.
    pub base: Layer,
    /// The stack's own portal, its mapping and partners (`None`: its HubSpot credential is not given to the
    /// console).
    pub stack: Option<RelaySettings>,
    pub oauth: Option<OAuthAppSettings>,
}

impl AwsConsole {
    /// The tenant's HubSpot client as the functions make it (within the portal's shared budget), and its settings.
    async fn portal_client(&self, tenant: &str) -> Result<(HubSpotClient, RelaySettings), String> {
        let access = self.portals.as_ref().ok_or("checking portals is not configured")?;
        if tenant == DEFAULT_TENANT {
            let stack = access.stack.as_ref().ok_or(
                "the console has no HubSpot credential of the stack's own portal: run `hubrelay doctor --stack`",
            )?;
            let client = access.wiring.hubspot_client(&stack.hubspot, stack.hubspot_rate_limit_per_10s, None, |t| t);
            return Ok((client.map_err(|e| e.to_string())?, stack.clone()));
        }
        let registry = self.tenants.as_ref().ok_or("this stack has no tenants")?;
        let id: TenantId = tenant.parse()?;
        let stored = registry.get(&id).await.map_err(|e| e.to_string())?.ok_or(format!("no tenant {tenant}"))?;
        let settings = stored.tenant.relay_settings(&access.base).map_err(|e| e.to_string())?;
        let TenantPortal { target, waiting, .. } = tenant_portal(&stored.tenant, &settings, access.oauth.as_ref())?;
        let rate = settings.hubspot_rate_limit_per_10s;
        let wiring = access.wiring.for_tenant(tenant);
        let needing_reauth =
            move |t: hubrelay_clients::oauth::OAuthTokens| if waiting { t.needing_reauth() } else { t };
        let client = wiring.hubspot_client(&target, rate, stored.tenant.daily_budget, needing_reauth);
        Ok((client.map_err(|e| e.to_string())?, settings))
    }

    pub fn new(
        table: DynamoIdempotencyStore,
        sqs: aws_sdk_sqs::Client,
        dlq_url: impl Into<String>,
        retry_queue_url: impl Into<String>,
        tenants: Option<DynamoTenants>,
    ) -> Self {
        AwsConsole {
            table,
            sqs,
            dlq_url: dlq_url.into(),
            retry_queue_url: retry_queue_url.into(),
            tenants,
            portals: None,
        }
    }

    /// Lets the console check portals (their properties, their calls today).
    pub fn with_portals(mut self, portals: PortalAccess) -> Self {
        self.portals = Some(portals);
        self
    }

    /// The table as `tenant` sees it (the default tenant's is the unscoped table).
    fn scoped(&self, tenant: &str) -> Result<DynamoIdempotencyStore, String> {
        if tenant == DEFAULT_TENANT {
            return Ok(self.table.clone());
        }
        let id: TenantId = tenant.parse()?;
        Ok(self.table.for_tenant(&id))
    }
}

#[async_trait]
impl ConsoleBackend for AwsConsole {
    async fn tenants(&self) -> Result<Vec<TenantHealth>, String> {
        let mut tenants = vec![TenantHealth {
            id: DEFAULT_TENANT.into(),
            enabled: true,
            connection: "the stack's".into(),
            ..TenantHealth::default()
        }];
        let Some(registry) = &self.tenants else { return Ok(tenants) };
        for (id, row) in registry.list().await.map_err(|e| e.to_string())? {
            tenants.push(match row {
                Ok(stored) => TenantHealth::of(&stored.tenant),
                // One unreadable tenant must not hide the others: shown, with what is wrong with it.
                Err(e) => TenantHealth { id, connection: format!("unreadable: {e}"), ..TenantHealth::default() },
            });
        }
        Ok(tenants)
    }

    async fn tenant_ids(&self) -> Result<Vec<String>, String> {
        let mut ids = vec![DEFAULT_TENANT.to_string()];
        if let Some(registry) = &self.tenants {
            ids.extend(registry.list().await.map_err(|e| e.to_string())?.into_iter().map(|(id, _)| id));
        }
        Ok(ids)
    }

    fn event_log(&self, tenant: &str) -> Result<Arc<dyn EventLog>, String> {
        Ok(Arc::new(self.scoped(tenant)?))
    }

    fn dead_letters(&self, tenant: &str) -> Result<Arc<dyn DeadLetters>, String> {
        let events = Arc::new(self.scoped(tenant)?);
        let mut letters = SqsDeadLetters::new(self.sqs.clone(), &self.dlq_url)
            .with_retry_queue(&self.retry_queue_url)
            .with_event_log(events)
            .with_sealer(crate::sqs_seal::MessageSealer::new(self.table.clone()));
        if tenant != DEFAULT_TENANT {
            letters = letters.for_tenant(tenant.parse()?);
        }
        Ok(Arc::new(letters))
    }

    /// The tenant's records and message keys, and (asked for) its portal for HubSpot's GDPR delete when the
    /// console can reach it (its credential, as for checking the portal; without one the erasure is refused).
    async fn eraser(&self, tenant: &str, hubspot: bool) -> Result<Arc<Eraser>, String> {
        let store = Arc::new(self.scoped(tenant)?);
        if !hubspot {
            return Ok(Arc::new(Eraser::new(store, None)));
        }
        let hubspot = match self.portal_client(tenant).await {
            Ok((client, _)) => Some(Arc::new(client) as Arc<dyn HubSpot>),
            Err(e) => {
                tracing::info!(tenant, reason = %e, "no HubSpot client for erasures: HubSpot's GDPR delete is refused");
                None
            }
        };
        Ok(Arc::new(Eraser::new(store, hubspot)))
    }

    async fn check_portal(&self, tenant: &str) -> Result<PortalCheck, String> {
        let (client, settings) = self.portal_client(tenant).await?;
        let wanted = hubrelay_core::properties::required(&settings.mapping, &settings.referral.config);
        // The day's count first: the check's own call counts against the cap, and may find it spent.
        let daily = client.daily_use().await.transpose()?;
        let missing = hubrelay_core::properties::missing(&client, &wanted).await;
        let missing = missing.map(|m| m.into_iter().map(|p| p.name).collect()).map_err(|e| e.to_string());
        Ok(PortalCheck { required: wanted.len(), missing_properties: missing, daily })
    }
}

/// The audit trail in the stack's table: one item per entry, written once (never overwritten), kept until an
/// operator deletes it (no `expiration`).
pub struct DynamoAudit {
    store: DynamoIdempotencyStore,
}

impl DynamoAudit {
    pub fn new(store: DynamoIdempotencyStore) -> Self {
        DynamoAudit { store }
    }
}

#[async_trait]
impl AuditLog for DynamoAudit {
    async fn record(&self, entry: &AuditEntry) -> Result<(), String> {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let id = format!("{AUDIT_ITEM_PREFIX}{nanos:020}:{}", entry.operator);
        let json = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        self.store
            .client()
            .put_item()
            .table_name(self.store.table())
            .item("id", AttributeValue::S(id))
            .item("entry", AttributeValue::S(json))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store.unavailable("PutItem", &e).to_string())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        let values = HashMap::from([(":prefix".to_string(), AttributeValue::S(AUDIT_ITEM_PREFIX.into()))]);
        let scanned = scan_all(&self.store, "begins_with(id, :prefix)", values, false).await;
        let mut items: Vec<(String, AuditEntry)> = scanned
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|item| {
                let id = item.get("id").and_then(|v| v.as_s().ok()).cloned()?;
                let entry = item.get("entry").and_then(|v| v.as_s().ok()).and_then(|j| serde_json::from_str(j).ok())?;
                Some((id, entry))
            })
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(items.into_iter().take(limit).map(|(_, entry)| entry).collect())
    }
}
