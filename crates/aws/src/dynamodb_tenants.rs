//! The tenant registry on AWS: one item per tenant in the idempotency table, its secrets sealed
//! (ChaCha20-Poly1305, bound to the tenant id, `enabled` and the settings) under the stack's tenant-secrets key — 32 random bytes
//! kept in an SSM SecureString encrypted with the stack's KMS key (`TenantSecretsKeyParameter`), read once per
//! cold start. The table alone gives no tenant's credentials away.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `id` | S | `tenant:<id>` (partition key) |
//! | `enabled` | BOOL | disabled: its routes answer 403, its queued events wait |
//! | `settings` | S | hub id, base URL, mapping, budgets, `needs_reauth` (JSON, no secrets) |
//! | `secrets` | B | the HubSpot credential, sender tokens and webhook secrets, sealed |
//! | `created_at`, `updated_at` | N | epoch ms; every write is conditional on the `updated_at` it read |
//!
//! Beside it, `portal:<hub id>` names the tenant of that portal (`tenant`, S), written in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use hubrelay_core::sealed::SealingKey;
use hubrelay_core::tenant::{HubSpotAuth, SealedTenant, StoredTenant, Tenant, TenantId, UnsealError};

/// What every tenant item's id starts with.
pub const TENANT_ITEM_PREFIX: &str = "tenant:";

/// A portal's index item (`portal:<hub id>` → its tenant): HubSpot's app webhooks are routed by hub id, and
/// the conditional write of this item keeps a portal to one tenant.
pub const PORTAL_ITEM_PREFIX: &str = "portal:";

#[derive(Debug, thiserror::Error)]
pub enum TenantStoreError {
    #[error("no tenant `{0}`")]
    NotFound(String),
    #[error("tenant `{0}` already exists")]
    Exists(String),
    #[error("tenant `{0}` was changed meanwhile: read it again and retry")]
    Changed(String),
    #[error("tenant `{0}`: its secrets do not open with the stack's tenant-secrets key")]
    Sealed(String),
    #[error("tenant `{id}`: stored record unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("the tenant registry (DynamoDB table {table}): {message}")]
    Unavailable { table: String, message: String },
    #[error("portal {portal} is tenant `{tenant}`'s already: a portal is one tenant's (HubSpot's app webhooks are routed by hub id)")]
    PortalTaken { portal: u64, tenant: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone)]
pub struct DynamoTenants {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: Arc<SealingKey>,
}

impl std::fmt::Debug for DynamoTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoTenants").field("table", &self.table).finish_non_exhaustive()
    }
}

type Item = HashMap<String, AttributeValue>;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl DynamoTenants {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, key: Arc<SealingKey>) -> Self {
        DynamoTenants { client, table: table.into(), key }
    }

    fn unavailable(&self, operation: &str, e: impl std::error::Error + 'static) -> TenantStoreError {
        TenantStoreError::Unavailable {
            table: self.table.clone(),
            message: format!("{operation}: {}", DisplayErrorContext(e)),
        }
    }

    fn item_id(id: &TenantId) -> AttributeValue {
        AttributeValue::S(format!("{TENANT_ITEM_PREFIX}{id}"))
    }

    pub async fn get(&self, id: &TenantId) -> Result<Option<StoredTenant>, TenantStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", Self::item_id(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        out.item.map(|item| self.decode(id.clone(), &item)).transpose()
    }

    /// Every tenant, by id, each readable or not.
    pub async fn list(&self) -> Result<Vec<(String, Result<StoredTenant, TenantStoreError>)>, TenantStoreError> {
        let mut rows = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(id, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(TENANT_ITEM_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.unavailable("Scan", e))?;
            for item in out.items.unwrap_or_default() {
                let raw = item.get("id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let name = raw.strip_prefix(TENANT_ITEM_PREFIX).unwrap_or(&raw).to_string();
                let row = match name.parse::<TenantId>() {
                    Ok(id) => self.decode(id, &item),
                    Err(message) => Err(TenantStoreError::Corrupt { id: name.clone(), message }),
                };
                rows.push((name, row));
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    pub async fn add(&self, tenant: &Tenant) -> Result<StoredTenant, TenantStoreError> {
        tenant.check().map_err(TenantStoreError::Invalid)?;
        let now = now_ms();
        let put = self.put(tenant, now, now, "attribute_not_exists(id)", None)?;
        let mut writes = vec![put];
        writes.extend(tenant.hub_id.map(|portal| self.portal_put(portal, &tenant.id)));
        match self.transact(writes, tenant, tenant.hub_id).await? {
            None => Ok(StoredTenant { tenant: tenant.clone(), created_at: now, updated_at: now }),
            Some(()) => Err(TenantStoreError::Exists(tenant.id.to_string())),
        }
    }

    /// Replaces `read` (as read) with `tenant`, unless someone changed it meanwhile.
    pub async fn update(&self, read: &StoredTenant, tenant: &Tenant) -> Result<StoredTenant, TenantStoreError> {
        tenant.check().map_err(TenantStoreError::Invalid)?;
        // Strictly later than what was read, so a reader sees the change even within one millisecond.
        let now = now_ms().max(read.updated_at + 1);
        let put = self.put(tenant, read.created_at, now, "updated_at = :read", Some(read.updated_at))?;
        let mut writes = vec![put];
        // The portal's item is written on every update, so a tenant from before the index gets it too.
        writes.extend(tenant.hub_id.map(|portal| self.portal_put(portal, &tenant.id)));
        // Its old portal's item goes, when it is this tenant's (a tenant from before the index may share it).
        if let Some(old) = read.tenant.hub_id.filter(|old| Some(*old) != tenant.hub_id) {
            if self.tenant_of_portal(old).await?.as_ref() == Some(&tenant.id) {
                writes.push(self.portal_delete(old, &tenant.id));
            }
        }
        match self.transact(writes, tenant, tenant.hub_id).await? {
            None => Ok(StoredTenant { tenant: tenant.clone(), created_at: read.created_at, updated_at: now }),
            Some(()) => Err(TenantStoreError::Changed(tenant.id.to_string())),
        }
    }

    pub async fn remove(&self, id: &TenantId) -> Result<(), TenantStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", Self::item_id(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        let Some(item) = out.item else { return Err(TenantStoreError::NotFound(id.to_string())) };
        let read_at = item.get("updated_at").and_then(|v| v.as_n().ok()).cloned();
        // The portal from the settings in the clear: a tenant whose secrets no longer open is removed too.
        let portal = item
            .get("settings")
            .and_then(|v| v.as_s().ok())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["hub_id"].as_u64());
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key("id", Self::item_id(id))
            // Unless it changed since it was read (a row without `updated_at` is corrupt, and removable).
            .condition_expression(match read_at {
                Some(_) => "updated_at = :read",
                None => "attribute_not_exists(updated_at)",
            })
            .set_expression_attribute_values(
                read_at.map(|at| HashMap::from([(":read".to_string(), AttributeValue::N(at))])),
            )
            .build()
            .map_err(|e| TenantStoreError::Invalid(e.to_string()))?;
        let mut writes = vec![TransactWriteItem::builder().delete(delete).build()];
        if let Some(portal) = portal {
            if self.tenant_of_portal(portal).await?.as_ref() == Some(id) {
                writes.push(self.portal_delete(portal, id));
            }
        }
        let result = self.client.transact_write_items().set_transact_items(Some(writes)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match cancelled_at(&e) {
                Some(Some(0)) | Some(None) => Err(TenantStoreError::Changed(id.to_string())),
                _ => Err(self.unavailable("TransactWriteItems", e)),
            },
        }
    }

    /// The tenant whose portal is `portal` (HubSpot's hub id), from the portal's index item
    /// (`portal:<hub id>`, written with the tenant).
    pub async fn tenant_of_portal(&self, portal: u64) -> Result<Option<TenantId>, TenantStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", portal_item_id(portal))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", e))?;
        Ok(out.item.and_then(|item| item.get("tenant")?.as_s().ok()?.parse().ok()))
    }

    /// Runs a tenant's writes: `Ok(None)` done; `Ok(Some(()))` the tenant item's condition failed; the
    /// portal's, [`TenantStoreError::PortalTaken`]; anything else (a conflicting transaction), unavailable.
    async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        tenant: &Tenant,
        portal: Option<u64>,
    ) -> Result<Option<()>, TenantStoreError> {
        let result = self.client.transact_write_items().set_transact_items(Some(writes)).send().await;
        let e = match result {
            Ok(_) => return Ok(None),
            Err(e) => e,
        };
        let failed = match cancelled_at(&e) {
            Some(Some(0)) => return Ok(Some(())),
            None => return Err(self.unavailable("TransactWriteItems", e)),
            failed => failed,
        };
        // The portal's condition (or, without reasons, find out by reading).
        if let Some(portal) = portal {
            if let Some(other) = self.tenant_of_portal(portal).await?.filter(|other| *other != tenant.id) {
                return Err(TenantStoreError::PortalTaken { portal, tenant: other.to_string() });
            }
        }
        match failed {
            Some(None) => Ok(Some(())),
            _ => Err(self.unavailable("TransactWriteItems", e)),
        }
    }

    /// `portal:<hub id>` names tenant `id` — unless it names another (both conditions below).
    fn portal_put(&self, portal: u64, id: &TenantId) -> TransactWriteItem {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("id", portal_item_id(portal))
            .item("tenant", AttributeValue::S(id.to_string()))
            .condition_expression(PORTAL_FREE_FOR)
            .expression_attribute_values(":tenant", AttributeValue::S(id.to_string()))
            .build()
            .expect("table, item and key are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// `portal:<hub id>` goes, unless it names another tenant than `id`.
    fn portal_delete(&self, portal: u64, id: &TenantId) -> TransactWriteItem {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key("id", portal_item_id(portal))
            .condition_expression(PORTAL_FREE_FOR)
            .expression_attribute_values(":tenant", AttributeValue::S(id.to_string()))
            .build()
            .expect("table and key are set");
        TransactWriteItem::builder().delete(delete).build()
    }

    /// HubSpot refused `refused_token`, the tenant's OAuth refresh token: mark it `needs_reauth` — unless its
    /// stored refresh token is another by now (a reconnect won the race). `true` when marked.
    pub async fn mark_needs_reauth(&self, id: &TenantId, refused_token: &str) -> Result<bool, TenantStoreError> {
        let Some(stored) = self.get(id).await? else { return Ok(false) };
        let current = match &stored.tenant.secrets.hubspot {
            HubSpotAuth::OAuth { refresh_token } => refresh_token.as_deref(),
            _ => None,
        };
        if current != Some(refused_token) || stored.tenant.needs_reauth {
            return Ok(false);
        }
        let tenant = Tenant { needs_reauth: true, ..stored.tenant.clone() };
        self.update(&stored, &tenant).await.map(|_| true)
    }

    /// Records an OAuth install's state nonce as taken (until `expires`, unix seconds): `false` when it was
    /// taken before. One item per nonce, `oauth-state:<nonce>`, deleted by the table's TTL.
    pub async fn take_install_nonce(&self, nonce: &str, expires: i64) -> Result<bool, TenantStoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(format!("oauth-state:{nonce}")))
            .item("expiration", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.unavailable("PutItem", e)),
        }
    }

    fn put(
        &self,
        tenant: &Tenant,
        created_at: i64,
        updated_at: i64,
        condition: &str,
        read: Option<i64>,
    ) -> Result<TransactWriteItem, TenantStoreError> {
        let sealed = tenant.seal(&self.key).map_err(TenantStoreError::Invalid)?;
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("id", Self::item_id(&tenant.id))
            .item("enabled", AttributeValue::Bool(tenant.enabled))
            .item("settings", AttributeValue::S(sealed.settings))
            .item("secrets", AttributeValue::B(Blob::new(sealed.secrets)))
            .item("created_at", AttributeValue::N(created_at.to_string()))
            .item("updated_at", AttributeValue::N(updated_at.to_string()))
            .condition_expression(condition)
            .set_expression_attribute_values(
                read.map(|r| HashMap::from([(":read".to_string(), AttributeValue::N(r.to_string()))])),
            )
            .build()
            .map_err(|e| TenantStoreError::Invalid(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn decode(&self, id: TenantId, item: &Item) -> Result<StoredTenant, TenantStoreError> {
        let corrupt = |message: &str| TenantStoreError::Corrupt { id: id.to_string(), message: message.into() };
        let number = |name: &str| {
            item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| corrupt(name))
        };
        let enabled = *item.get("enabled").and_then(|v| v.as_bool().ok()).ok_or_else(|| corrupt("enabled"))?;
        let settings = item.get("settings").and_then(|v| v.as_s().ok()).ok_or_else(|| corrupt("settings"))?;
        let secrets = item.get("secrets").and_then(|v| v.as_b().ok()).ok_or_else(|| corrupt("secrets"))?;
        let sealed = SealedTenant { settings: settings.clone(), secrets: secrets.as_ref().to_vec() };
        let tenant = Tenant::unseal(id.clone(), enabled, &sealed, &self.key, false).map_err(|e| match e {
            UnsealError::Sealed => TenantStoreError::Sealed(id.to_string()),
            UnsealError::Corrupt(message) => TenantStoreError::Corrupt { id: id.to_string(), message },
        })?;
        Ok(StoredTenant { tenant, created_at: number("created_at")?, updated_at: number("updated_at")? })
    }
}

/// The condition on a portal's item written for tenant `:tenant`: none there, or it names that tenant.
const PORTAL_FREE_FOR: &str = "attribute_not_exists(id) OR tenant = :tenant";

fn portal_item_id(portal: u64) -> AttributeValue {
    AttributeValue::S(format!("{PORTAL_ITEM_PREFIX}{portal}"))
}

type TransactError =
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>;

/// A cancelled transaction: `Some(Some(i))` when item `i`'s condition failed, `Some(None)` when the reasons
/// were not given; `None` when it was not cancelled, or cancelled for another reason (a conflict: retry).
fn cancelled_at(e: &TransactError) -> Option<Option<usize>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() else { return None };
    let reasons = c.cancellation_reasons();
    if reasons.is_empty() {
        return Some(None);
    }
    reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")).map(Some)
}
