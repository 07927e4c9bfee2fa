//! One portal's OAuth access token shared by every process that calls HubSpot for it (all of a stack's
//! Lambdas): the token last granted, and a lease so that one process refreshes it while the others wait and
//! read the result. HubSpot's token endpoint is rate limited and every refresh mints a new token, so a stack
//! refreshes once per expiry, not once per Lambda instance.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreError;

/// An access token, when to refresh it, and when it expires (it still serves while another process refreshes).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedToken {
    pub access_token: String,
    pub refresh_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken")
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where the processes of a stack keep a portal's access token.
#[async_trait]
pub trait SharedTokenStore: Send + Sync {
    /// The token last stored, if any (fresh or not).
    async fn current(&self) -> Result<Option<SharedToken>, StoreError>;
    /// Takes the refresh lease for `owner` until `until`, unless another owner holds one that has not run out;
    /// `true` when taken.
    async fn lease(&self, owner: &str, now: OffsetDateTime, until: OffsetDateTime) -> Result<bool, StoreError>;
    /// Stores a token just granted and ends `owner`'s lease.
    async fn store(&self, token: &SharedToken, owner: &str) -> Result<(), StoreError>;
    /// Ends `owner`'s lease without a token (the refresh failed).
    async fn release(&self, owner: &str) -> Result<(), StoreError>;
}

/// The shared token's record name for one app's refresh token (a reconnect, with a new refresh token, starts a
/// new record): no secret in it.
pub fn token_key(client_id: &str, refresh_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(client_id).chain_update([0]).chain_update(refresh_token).finalize();
    format!("oauth:{}", hex::encode(&digest[..8]))
}

/// The key a shared access token is sealed with at rest: derived from the refresh token and the app's client
/// secret, so only a holder of both (who could mint access tokens anyway) can read it.
pub fn sealing_key(client_secret: &str, refresh_token: &str) -> crate::sealed::SealingKey {
    let material = [client_secret.as_bytes(), &[0], refresh_token.as_bytes()].concat();
    crate::sealed::SealingKey::derive(&material, "hubspot access token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_name_depends_on_app_and_refresh_token_and_reveals_neither() {
        let key = token_key("app-1", "refresh-1");
        assert!(key.starts_with("oauth:") && key.len() == 6 + 16, "{key}");
        assert!(!key.contains("refresh") && !key.contains("app-1"));
        assert_ne!(key, token_key("app-1", "refresh-2"));
        assert_ne!(key, token_key("app-2", "refresh-1"));
        assert_eq!(key, token_key("app-1", "refresh-1"));
    }

    #[test]
    fn a_sealed_token_opens_only_with_the_same_secret_and_refresh_token() {
        let sealed = sealing_key("secret", "refresh").seal("oauth:x", b"access").unwrap();
        assert!(sealing_key("secret", "refresh").open("oauth:x", &sealed).is_some());
        assert!(sealing_key("secret", "other").open("oauth:x", &sealed).is_none());
        assert!(sealing_key("other", "refresh").open("oauth:x", &sealed).is_none());
    }
}
