//! The local tenant registry: `tenants.db` in the data dir, written by `hubrelay tenants` and read by
//! `hubrelay serve` (which picks up changes while it runs). Its own file, so the CLI never waits on serve's
//! writer. Each tenant's secrets (HubSpot credential, senders' tokens and webhook secrets) are sealed with
//! ChaCha20-Poly1305 under a key kept in `tenant-secrets.key` (owner-only) in the same data dir; the tenant's
//! id is the associated data, so a sealed blob copied onto another tenant's row does not open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hubrelay_core::sealed::{random_bytes, SealingKey};
use hubrelay_core::tenant::{SealedTenant, Tenant, TenantId, UnsealError};
use rusqlite::{params, Connection, OptionalExtension};

/// The registry's file in a data dir.
pub fn registry_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tenants.db")
}

/// The key that seals tenant secrets, in a data dir.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tenant-secrets.key")
}

/// Where a tenant's own store (and its sandbox portal) live: `tenants/<id>/` in the data dir.
pub fn tenant_dir(data_dir: &Path, id: &TenantId) -> PathBuf {
    data_dir.join("tenants").join(id.as_str())
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant registry {path}: {message}")]
    Unavailable { path: String, message: String },
    #[error("no tenant `{0}`")]
    NotFound(String),
    #[error("tenant `{0}` already exists (change it with `hubrelay tenants update`)")]
    Exists(String),
    #[error("tenant `{id}`: its secrets do not open with {key} (the key file was replaced, or the row was copied from elsewhere)")]
    Sealed { id: String, key: String },
    #[error("tenant `{id}`: stored record unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("tenant `{0}` was changed meanwhile (by another command or serve): read it again and retry")]
    Changed(String),
    #[error("portal {portal} is tenant `{tenant}`'s already: a portal is one tenant's (HubSpot's app webhooks are routed by hub id)")]
    PortalTaken { portal: u64, tenant: String },
    #[error("{0}")]
    Invalid(String),
}

pub use hubrelay_core::tenant::StoredTenant;

/// A registry row by id: the tenant, or why it cannot be read.
pub type RegistryRow = (String, Result<StoredTenant, RegistryError>);

pub struct TenantRegistry {
    conn: Connection,
    key: SealingKey,
    path: PathBuf,
    key_file: PathBuf,
}

/// No other tenant has the portal `?6` (NULL: no portal), for the statement that writes tenant `?1`.
const PORTAL_FREE: &str =
    "(?6 IS NULL OR NOT EXISTS (SELECT 1 FROM tenants WHERE id <> ?1 AND json_extract(settings, '$.hub_id') = ?6))";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    settings TEXT NOT NULL,
    secrets BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);";

impl TenantRegistry {
    /// Opens (creating when missing) the registry and its key in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<TenantRegistry, RegistryError> {
        let path = registry_path(data_dir);
        let unavailable = |message: String| RegistryError::Unavailable { path: path.display().to_string(), message };
        std::fs::create_dir_all(data_dir).map_err(|e| unavailable(format!("cannot create the data dir: {e}")))?;
        let key_file = key_path(data_dir);
        let key = load_or_create_key(&key_file).map_err(unavailable)?;
        let conn = Connection::open(&path).map_err(|e| unavailable(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| unavailable(e.to_string()))?;
        let _mode: String =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| unavailable(e.to_string()))?;
        conn.execute_batch(&format!("PRAGMA synchronous = FULL; {SCHEMA}")).map_err(|e| unavailable(e.to_string()))?;
        Ok(TenantRegistry { conn, key, path, key_file })
    }

    /// Whether a data dir has a registry (without creating one).
    pub fn exists(data_dir: &Path) -> bool {
        registry_path(data_dir).is_file()
    }

    fn sql(&self, e: rusqlite::Error) -> RegistryError {
        RegistryError::Unavailable { path: self.path.display().to_string(), message: e.to_string() }
    }

    pub fn add(&self, tenant: &Tenant, now: i64) -> Result<(), RegistryError> {
        tenant.check().map_err(RegistryError::Invalid)?;
        let (settings, sealed) = self.encode(tenant)?;
        let hub_id = tenant.hub_id.map(|h| h as i64);
        let inserted = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO tenants (id, enabled, settings, secrets, created_at, updated_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?5 WHERE {PORTAL_FREE} ON CONFLICT (id) DO NOTHING"
                ),
                params![tenant.id.as_str(), tenant.enabled, settings, sealed, now, hub_id],
            )
            .map_err(|e| self.sql(e))?;
        if inserted == 0 {
            self.check_portal(tenant)?;
            return Err(RegistryError::Exists(tenant.id.to_string()));
        }
        Ok(())
    }

    /// Another tenant with the portal of `tenant`, as an error.
    fn check_portal(&self, tenant: &Tenant) -> Result<(), RegistryError> {
        let Some(portal) = tenant.hub_id else { return Ok(()) };
        let other: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM tenants WHERE id <> ?1 AND json_extract(settings, '$.hub_id') = ?2 LIMIT 1",
                params![tenant.id.as_str(), portal as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        match other {
            Some(tenant) => Err(RegistryError::PortalTaken { portal, tenant }),
            None => Ok(()),
        }
    }

    /// Replaces a tenant's settings and secrets, if the stored row is still the one `read` (its `updated_at`):
    /// two writers (the CLI, serve's OAuth callback, the revoke handler) never overwrite each other unseen.
    /// `updated_at` moves on, at least by one, so serve sees the change.
    pub fn update(&self, read: &StoredTenant, tenant: &Tenant, now: i64) -> Result<(), RegistryError> {
        tenant.check().map_err(RegistryError::Invalid)?;
        let (settings, sealed) = self.encode(tenant)?;
        let hub_id = tenant.hub_id.map(|h| h as i64);
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE tenants SET enabled = ?2, settings = ?3, secrets = ?4, updated_at = max(?5, updated_at + 1)
                     WHERE id = ?1 AND updated_at = ?7 AND {PORTAL_FREE}"
                ),
                params![tenant.id.as_str(), tenant.enabled, settings, sealed, now, hub_id, read.updated_at],
            )
            .map_err(|e| self.sql(e))?;
        if changed == 0 {
            self.check_portal(tenant)?;
            return Err(match self.get(&tenant.id) {
                Ok(_) => RegistryError::Changed(tenant.id.to_string()),
                Err(e) => e,
            });
        }
        Ok(())
    }

    pub fn remove(&self, id: &TenantId) -> Result<(), RegistryError> {
        let removed =
            self.conn.execute("DELETE FROM tenants WHERE id = ?1", params![id.as_str()]).map_err(|e| self.sql(e))?;
        if removed == 0 {
            return Err(RegistryError::NotFound(id.to_string()));
        }
        Ok(())
    }

    pub fn get(&self, id: &TenantId) -> Result<StoredTenant, RegistryError> {
        let row = self
            .conn
            .query_row(
                "SELECT id, enabled, settings, secrets, created_at, updated_at FROM tenants WHERE id = ?1",
                params![id.as_str()],
                Row::read,
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        self.decode(row.ok_or_else(|| RegistryError::NotFound(id.to_string()))?)
    }

    /// Every tenant, by id (fails when any row cannot be read; [`Self::list_rows`] reads row by row).
    pub fn list(&self) -> Result<Vec<StoredTenant>, RegistryError> {
        self.list_rows()?.into_iter().map(|(_, row)| row).collect()
    }

    /// Every row by id, each read on its own: one that does not open (another key, a damaged record) is an
    /// `Err` beside the others.
    pub fn list_rows(&self) -> Result<Vec<RegistryRow>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, enabled, settings, secrets, created_at, updated_at FROM tenants ORDER BY id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], Row::read).map_err(|e| self.sql(e))?;
        let rows: Vec<Row> = rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?;
        Ok(rows.into_iter().map(|row| (row.id.clone(), self.decode(row))).collect())
    }

    /// Every tenant's portal (hub id) from the settings in the clear, readable rows or not: where HubSpot's app
    /// webhooks for a portal go.
    pub fn portals(&self) -> Result<Vec<(u64, String)>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT json_extract(settings, '$.hub_id'), id FROM tenants
                 WHERE json_valid(settings) AND json_type(settings, '$.hub_id') = 'integer' ORDER BY id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))).map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Changes when another connection commits to the registry (`PRAGMA data_version`): what serve polls
    /// before reading the tenants again.
    pub fn data_version(&self) -> Result<i64, RegistryError> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(|e| self.sql(e))
    }

    fn encode(&self, tenant: &Tenant) -> Result<(String, Vec<u8>), RegistryError> {
        let sealed = tenant.seal(&self.key).map_err(RegistryError::Invalid)?;
        Ok((sealed.settings, sealed.secrets))
    }

    fn decode(&self, row: Row) -> Result<StoredTenant, RegistryError> {
        let corrupt = |message: String| RegistryError::Corrupt { id: row.id.clone(), message };
        let id: TenantId = row.id.parse().map_err(corrupt)?;
        let sealed = SealedTenant { settings: row.settings.clone(), secrets: row.secrets.clone() };
        let tenant = Tenant::unseal(id, row.enabled, &sealed, &self.key, true).map_err(|e| match e {
            UnsealError::Sealed => {
                RegistryError::Sealed { id: row.id.clone(), key: self.key_file.display().to_string() }
            }
            UnsealError::Corrupt(message) => corrupt(message),
        })?;
        Ok(StoredTenant { tenant, created_at: row.created_at, updated_at: row.updated_at })
    }
}

struct Row {
    id: String,
    enabled: bool,
    settings: String,
    secrets: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            enabled: r.get(1)?,
            settings: r.get(2)?,
            secrets: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        })
    }
}

/// The 32-byte key, hex in an owner-only file; made on first use.
fn load_or_create_key(path: &Path) -> Result<SealingKey, String> {
    let bytes: [u8; 32] = match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{} is not a tenant secrets key (64 hex digits)", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = random_bytes().ok_or("no system randomness")?;
            create_owner_only(path, &hex::encode(key)).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            key
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(SealingKey::from_bytes(&bytes))
}

/// Creates `path`, which must not exist yet, readable by its owner only from the start (no window in which the
/// default mode applies), and syncs it: the data dir's secret files (this key, serve's tokens and OAuth key).
pub fn create_owner_only(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::tenant::{HubSpotAuth, MappingProfile, TenantSecrets};

    fn tenant(id: &str, token: &str) -> Tenant {
        Tenant {
            id: id.parse().unwrap(),
            hub_id: Some(4242),
            hubspot_base_url: None,
            mapping: MappingProfile::Builtin { name: "chat-widget".into() },
            rate_limit_per_10s: 190,
            daily_budget: Some(250_000),
            enabled: true,
            needs_reauth: false,
            partners: Default::default(),
            secrets: TenantSecrets {
                hubspot: HubSpotAuth::ServiceKey { token: "pat-na1-very-secret-service-key".into() },
                api_tokens: vec![token.into()],
                webhook_secrets: vec![],
                partners: Default::default(),
            },
        }
    }

    #[test]
    fn tenants_round_trip_and_their_secrets_are_not_stored_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TenantRegistry::open(dir.path()).unwrap();
        registry.add(&tenant("acme", "acme-sender-token-123"), 100).unwrap();
        registry.add(&Tenant { hub_id: Some(4343), ..tenant("lakeside", "lakeside-sender-token-456") }, 100).unwrap();
        assert!(matches!(registry.add(&tenant("acme", "x"), 101), Err(RegistryError::Exists(_))));
        let got = registry.get(&"acme".parse().unwrap()).unwrap();
        assert_eq!(got.tenant, tenant("acme", "acme-sender-token-123"));
        assert_eq!((got.created_at, got.updated_at), (100, 100));
        let ids: Vec<String> = registry.list().unwrap().into_iter().map(|t| t.tenant.id.to_string()).collect();
        assert_eq!(ids, ["acme", "lakeside"]);
        drop(registry);
        // Nothing secret in the database file or its WAL.
        for file in ["tenants.db", "tenants.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for secret in ["acme-sender-token-123", "very-secret-service-key", "lakeside-sender-token-456"] {
                assert!(!text.contains(secret), "{secret} in {file}");
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_sealed_row_opens_only_under_its_own_id_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TenantRegistry::open(dir.path()).unwrap();
        registry.add(&tenant("acme", "acme-token"), 1).unwrap();
        registry.add(&Tenant { hub_id: Some(4343), ..tenant("other", "other-token") }, 1).unwrap();
        // Copy acme's sealed secrets onto the other tenant: they must not open there.
        registry
            .conn
            .execute(
                "UPDATE tenants SET secrets = (SELECT secrets FROM tenants WHERE id = 'acme') WHERE id = 'other'",
                [],
            )
            .unwrap();
        assert!(matches!(registry.get(&"other".parse().unwrap()), Err(RegistryError::Sealed { .. })));
        // Listed row by row: the unreadable one beside the readable one.
        let rows = registry.list_rows().unwrap();
        assert!(rows[0].1.is_ok() && matches!(rows[1].1, Err(RegistryError::Sealed { .. })));
        assert!(registry.list().is_err());
        drop(registry);
        // Another key: nothing opens.
        std::fs::remove_file(key_path(dir.path())).unwrap();
        let registry = TenantRegistry::open(dir.path()).unwrap();
        assert!(matches!(registry.get(&"acme".parse().unwrap()), Err(RegistryError::Sealed { .. })));
    }

    #[test]
    fn update_moves_updated_at_and_remove_forgets_and_another_connection_sees_both() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TenantRegistry::open(dir.path()).unwrap();
        let watcher = TenantRegistry::open(dir.path()).unwrap();
        let before = watcher.data_version().unwrap();
        let mut t = tenant("acme", "a");
        registry.add(&t, 50).unwrap();
        t.enabled = false;
        t.secrets.api_tokens.push("b".into());
        // Same second: updated_at still moves on, so a poller sees the change.
        let read = registry.get(&t.id).unwrap();
        registry.update(&read, &t, 50).unwrap();
        // A writer holding the older read is refused, not silently overwriting.
        assert!(matches!(registry.update(&read, &t, 52), Err(RegistryError::Changed(_))));
        let got = watcher.get(&t.id).unwrap();
        assert_eq!((got.updated_at, got.tenant.enabled, got.tenant.secrets.api_tokens.len()), (51, false, 2));
        assert_ne!(watcher.data_version().unwrap(), before);
        registry.remove(&t.id).unwrap();
        assert!(matches!(watcher.get(&t.id), Err(RegistryError::NotFound(_))));
        assert!(matches!(registry.remove(&t.id), Err(RegistryError::NotFound(_))));
        assert!(matches!(registry.update(&read, &t, 60), Err(RegistryError::NotFound(_))));
        // A tenant that could not serve is refused before it is stored.
        let mut bad = tenant("bad", "x");
        bad.secrets.api_tokens.clear();
        assert!(matches!(registry.add(&bad, 1), Err(RegistryError::Invalid(_))));
    }

    #[test]
    fn a_portal_is_one_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TenantRegistry::open(dir.path()).unwrap();
        registry.add(&tenant("acme", "a"), 1).unwrap();
        let taken = registry.add(&tenant("other", "b"), 1).unwrap_err();
        assert!(matches!(&taken, RegistryError::PortalTaken { portal: 4242, tenant } if tenant == "acme"), "{taken}");
        registry.add(&Tenant { hub_id: None, ..tenant("other", "b") }, 1).unwrap();
        let read = registry.get(&"other".parse().unwrap()).unwrap();
        let moved = Tenant { hub_id: Some(4242), ..read.tenant.clone() };
        assert!(matches!(registry.update(&read, &moved, 2), Err(RegistryError::PortalTaken { .. })));
        // Its own portal again is no conflict; a free one is taken.
        let acme = registry.get(&"acme".parse().unwrap()).unwrap();
        registry.update(&acme, &acme.tenant, 2).unwrap();
        registry.update(&read, &Tenant { hub_id: Some(4343), ..read.tenant.clone() }, 2).unwrap();
    }
}
