//! `serve`'s OAuth install (`hubrelay_http::oauth_install`): tenants from the data dir's registry, the states
//! taken kept in memory (a state lasts 10 minutes; a restart forgets them, and the callback of a state taken
//! before it then fails on the code, which HubSpot takes once), links and states signed with the data dir's
//! `oauth-state.key`. serve's registry poll rebuilds a connected tenant and delivers what was queued meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hubrelay_core::config::Layer;
use hubrelay_core::tenant::{OAuthAppSettings, StoredTenant, Tenant, TenantId};
use hubrelay_http::oauth_install::{InstallRegistry, OAuthInstall};
use hubrelay_local::tenants::{RegistryError, TenantRegistry};

pub use hubrelay_http::oauth_install::not_configured;

struct LocalInstallRegistry {
    data_dir: PathBuf,
    /// States already taken (nonce → expiry), forgotten once expired.
    taken: Mutex<HashMap<String, i64>>,
}

#[async_trait]
impl InstallRegistry for LocalInstallRegistry {
    async fn get(&self, id: &TenantId) -> Result<Option<StoredTenant>, String> {
        match TenantRegistry::open(&self.data_dir).and_then(|r| r.get(id)) {
            Ok(stored) => Ok(Some(stored)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn update(&self, read: &StoredTenant, tenant: &Tenant) -> Result<(), String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        TenantRegistry::open(&self.data_dir).and_then(|r| r.update(read, tenant, now)).map_err(|e| e.to_string())
    }

    async fn take_nonce(&self, nonce: &str, expires: i64) -> Result<bool, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.retain(|_, until| *until >= now);
        Ok(taken.insert(nonce.to_string(), expires).is_none())
    }
}

/// serve's install routes over the registry in `data_dir`.
pub fn install(
    app: OAuthAppSettings,
    public_url: &str,
    data_dir: PathBuf,
    base: Layer,
) -> Result<OAuthInstall, String> {
    let key = state_key(&data_dir)?;
    let registry = Arc::new(LocalInstallRegistry { data_dir, taken: Mutex::new(HashMap::new()) });
    Ok(OAuthInstall::new(app, public_url, key, registry, base))
}

fn state_key(data_dir: &Path) -> Result<Vec<u8>, String> {
    Ok(crate::serve::kept_secret(&data_dir.join("oauth-state.key"), "state")?.into_bytes())
}

/// The install link for a tenant of the registry in `data_dir` (`hubrelay tenants connect`).
pub fn install_link(data_dir: &Path, public_url: &str, tenant: &TenantId, now: i64) -> Result<String, String> {
    Ok(hubrelay_http::oauth_install::install_link(&state_key(data_dir)?, public_url, tenant, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_signed_with_the_data_dirs_key() {
        let dir = tempfile::tempdir().unwrap();
        let id: TenantId = "acme".parse().unwrap();
        let link = install_link(dir.path(), "http://relay/", &id, 1_000).unwrap();
        let key = state_key(dir.path()).unwrap();
        assert_eq!(link, hubrelay_http::oauth_install::install_link(&key, "http://relay/", &id, 1_000));
        // The key is kept: the same link again.
        assert_eq!(install_link(dir.path(), "http://relay/", &id, 1_000).unwrap(), link);
    }
}
