//! Tenants: one HubSpot portal each, with its own mapping, senders' credentials and HubSpot budget, on one
//! deployment. The routes without a prefix are the `default` tenant, configured as before (settings and
//! environment); every other tenant lives under `/t/{tenant}/` and is kept in a tenant registry.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::config::oauth::{OAuthAppSettings, DEFAULT_AUTHORIZE_URL, DEFAULT_OAUTH_SCOPES};
use crate::config::{ConfigError, Layer, RelaySettings};
pub use crate::domain::{TenantId, DEFAULT_TENANT};
use crate::mapping::Mapping;

pub mod partners;
pub use partners::{PartnerSecrets, PartnerSettings};

/// At most this many credentials of one kind are valid at once: the current one and, during a rotation, the
/// one it replaces.
pub const MAX_VALID_SECRETS: usize = 2;

/// How hubrelay calls the tenant's portal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HubSpotAuth {
    /// No credentials: `hubrelay serve` gives the tenant a sandbox portal of its own.
    Sandbox,
    /// A Service Key (the portal's own key, since October 2026).
    ServiceKey { token: String },
    /// A static token: a project app's or a legacy private app's.
    AppToken { token: String },
    /// Installed through the deployment's OAuth app (`/oauth/install`): the refresh token HubSpot granted,
    /// `None` until the portal's admin has approved the install.
    #[serde(rename = "oauth")]
    OAuth { refresh_token: Option<String> },
}

impl HubSpotAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            HubSpotAuth::Sandbox => "sandbox",
            HubSpotAuth::ServiceKey { .. } => "service_key",
            HubSpotAuth::AppToken { .. } => "app_token",
            HubSpotAuth::OAuth { .. } => "oauth",
        }
    }

    /// The static bearer token (Service Key or app token); OAuth's access tokens are fetched, not stored.
    pub fn token(&self) -> Option<&str> {
        match self {
            HubSpotAuth::Sandbox | HubSpotAuth::OAuth { .. } => None,
            HubSpotAuth::ServiceKey { token } | HubSpotAuth::AppToken { token } => Some(token),
        }
    }

    /// Secrets to mask or reveal: the static token, or the refresh token.
    pub fn secret(&self) -> Option<&str> {
        match self {
            HubSpotAuth::OAuth { refresh_token } => refresh_token.as_deref(),
            other => other.token(),
        }
    }
}

/// Which mapping profile turns the tenant's leads into contacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MappingProfile {
    /// A built-in profile by name (`chat-widget`, `aimbase`).
    Builtin { name: String },
    /// A TOML profile stored with the tenant; `origin` names where it was read from (for messages).
    Document { toml: String, origin: String },
}

impl MappingProfile {
    /// A built-in name as it is; anything else is read as a TOML file now and stored with the tenant, so the
    /// tenant keeps working when the file moves.
    pub fn from_spec(spec: &str) -> Result<MappingProfile, String> {
        if Mapping::builtin(spec).is_some() {
            return Ok(MappingProfile::Builtin { name: spec.to_string() });
        }
        let toml = std::fs::read_to_string(spec).map_err(|e| {
            format!(
                "mapping `{spec}` is not a built-in profile ({}) and cannot be read as a file: {e}",
                Mapping::builtin_names().join(", ")
            )
        })?;
        let profile = MappingProfile::Document { toml, origin: spec.to_string() };
        profile.load().map_err(|e| format!("mapping {spec}: {e}"))?;
        Ok(profile)
    }

    pub fn load(&self) -> Result<Mapping, String> {
        match self {
            MappingProfile::Builtin { name } => {
                Mapping::builtin(name).ok_or_else(|| format!("no built-in mapping profile `{name}`"))
            }
            MappingProfile::Document { toml, origin } => Mapping::from_toml(toml, origin).map_err(|e| e.to_string()),
        }
    }

    /// `chat-widget`, or `file crm/acme.toml`.
    pub fn describe(&self) -> String {
        match self {
            MappingProfile::Builtin { name } => name.clone(),
            MappingProfile::Document { origin, .. } => format!("stored copy of {origin}"),
        }
    }
}

/// A tenant's secrets: kept encrypted at rest, never listed unless an operator reveals them (nor printed by
/// `Debug`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSecrets {
    pub hubspot: HubSpotAuth,
    /// Bearer tokens / `X-Api-Key` of the tenant's senders, newest last (two during a rotation).
    #[serde(default)]
    pub api_tokens: Vec<String>,
    /// Standard Webhooks secrets (`whsec_…`) of the tenant's senders, newest last.
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// Its referral partners' credentials and webhook secrets.
    #[serde(default)]
    pub partners: PartnerSecrets,
}

impl fmt::Debug for HubSpotAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.secret().is_some();
        f.debug_struct("HubSpotAuth").field("kind", &self.kind()).field("secret_set", &set).finish()
    }
}

impl fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSecrets")
            .field("hubspot", &self.hubspot)
            .field("api_tokens", &self.api_tokens.len())
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("partners", &self.partners)
            .finish()
    }
}

/// One tenant: a HubSpot portal and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    /// The portal's hub id (known from a Service Key's portal, an OAuth install, or the operator).
    pub hub_id: Option<u64>,
    /// Another HubSpot-compatible base URL (a test portal); `None`: HubSpot's API.
    pub hubspot_base_url: Option<String>,
    pub mapping: MappingProfile,
    /// The portal's rolling 10 s budget, shared by everything that calls it for this tenant.
    pub rate_limit_per_10s: u32,
    /// The portal's daily budget, when the operator set one (HubSpot's own daily limit otherwise).
    pub daily_budget: Option<u32>,
    pub enabled: bool,
    /// HubSpot refused the tenant's OAuth refresh token (the app was uninstalled or the token revoked): its
    /// events stay queued until the portal is connected again.
    pub needs_reauth: bool,
    /// Where its referral partner accounts are (their credentials are in `secrets`).
    pub partners: PartnerSettings,
    pub secrets: TenantSecrets,
}

/// A tenant as its registry keeps it: when it was created and last changed (epoch ms; whoever runs a tenant
/// rebuilds it when `updated_at` moved, and writes are conditional on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTenant {
    pub tenant: Tenant,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A tenant as a registry stores it: its settings as JSON in the clear, its secrets sealed with the tenant id,
/// `enabled` and the settings as associated data — sealed secrets copied onto another tenant do not open, and
/// settings changed by someone without the key (a base URL pointing elsewhere, to collect the credential) make
/// the tenant unreadable rather than obeyed.
#[derive(Debug, Clone)]
pub struct SealedTenant {
    pub settings: String,
    pub secrets: Vec<u8>,
}

/// Everything of a tenant but its id, `enabled` and secrets.
#[derive(Serialize, Deserialize)]
struct StoredSettings {
    hub_id: Option<u64>,
    hubspot_base_url: Option<String>,
    mapping: MappingProfile,
    rate_limit_per_10s: u32,
    daily_budget: Option<u32>,
    #[serde(default)]
    needs_reauth: bool,
    #[serde(default)]
    partners: PartnerSettings,
}

/// Why a stored tenant cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// Its secrets do not open with this key (another key, or altered).
    #[error("its secrets do not open with this key")]
    Sealed,
    #[error("{0}")]
    Corrupt(String),
}

/// What a tenant's sealed secrets are bound to.
fn sealed_record(id: &TenantId, enabled: bool, settings: &str) -> String {
    format!("tenant {id}\nenabled {enabled}\n{settings}")
}

impl Tenant {
    pub fn seal(&self, key: &crate::sealed::SealingKey) -> Result<SealedTenant, String> {
        let settings = StoredSettings {
            hub_id: self.hub_id,
            hubspot_base_url: self.hubspot_base_url.clone(),
            mapping: self.mapping.clone(),
            rate_limit_per_10s: self.rate_limit_per_10s,
            daily_budget: self.daily_budget,
            needs_reauth: self.needs_reauth,
            partners: self.partners.clone(),
        };
        let settings = serde_json::to_string(&settings).map_err(|e| e.to_string())?;
        let secrets = serde_json::to_vec(&self.secrets).map_err(|e| e.to_string())?;
        let record = sealed_record(&self.id, self.enabled, &settings);
        let secrets = key.seal(&record, &secrets).ok_or("no system randomness")?;
        Ok(SealedTenant { settings, secrets })
    }

    /// `legacy`: also open secrets sealed with the tenant id alone (a local registry's rows from before the
    /// settings were bound; each is bound on its next write).
    pub fn unseal(
        id: TenantId,
        enabled: bool,
        sealed: &SealedTenant,
        key: &crate::sealed::SealingKey,
        legacy: bool,
    ) -> Result<Tenant, UnsealError> {
        let settings: StoredSettings =
            serde_json::from_str(&sealed.settings).map_err(|e| UnsealError::Corrupt(e.to_string()))?;
        let plain = key
            .open(&sealed_record(&id, enabled, &sealed.settings), &sealed.secrets)
            .or_else(|| legacy.then(|| key.open(id.as_str(), &sealed.secrets)).flatten())
            .ok_or(UnsealError::Sealed)?;
        let secrets: TenantSecrets = serde_json::from_slice(&plain).map_err(|e| UnsealError::Corrupt(e.to_string()))?;
        Ok(Tenant {
            id,
            hub_id: settings.hub_id,
            hubspot_base_url: settings.hubspot_base_url,
            mapping: settings.mapping,
            rate_limit_per_10s: settings.rate_limit_per_10s,
            daily_budget: settings.daily_budget,
            enabled,
            needs_reauth: settings.needs_reauth,
            partners: settings.partners,
            secrets,
        })
    }
}

/// The key that signs a stack's OAuth install links and states, derived from its tenant-secrets key (so the
/// stack and `hubrelay tenants connect --stack` share it without another secret to keep).
pub fn install_signing_key(tenant_secrets_key: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::new().chain_update(b"hubrelay oauth install\0").chain_update(tenant_secrets_key.trim()).finalize().to_vec()
}

/// HubSpot Professional and Enterprise portals: 190 calls per rolling 10 s per app.
pub const DEFAULT_TENANT_RATE_LIMIT_PER_10S: u32 = 190;

impl Tenant {
    /// Refuses a tenant that could not serve: no sender credentials, a mapping that does not load, more
    /// than [`MAX_VALID_SECRETS`] credentials of a kind, a rate outside HubSpot's range.
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_default() {
            return Err(format!(
                "`{DEFAULT_TENANT}` is the tenant of the routes without a prefix, configured by settings, not here"
            ));
        }
        let s = &self.secrets;
        if s.api_tokens.is_empty() && s.webhook_secrets.is_empty() {
            return Err("a tenant needs a sender credential: an API token or a webhook secret".into());
        }
        let p = &s.partners;
        let most = [&s.api_tokens, &s.webhook_secrets, &p.extole_webhook_secrets, &p.impact_webhook_secrets]
            .iter()
            .map(|v| v.len())
            .max()
            .unwrap_or(0);
        if most > MAX_VALID_SECRETS {
            return Err(format!(
                "at most {MAX_VALID_SECRETS} API tokens, and {MAX_VALID_SECRETS} webhook secrets of each sender, are valid at once (the new one and, during a rotation, the old)"
            ));
        }
        if !(1..=10_000).contains(&self.rate_limit_per_10s) {
            return Err(format!(
                "the rate limit must be 1 to 10000 calls per 10 s (HubSpot: 100 Free/Starter, 190 Professional/Enterprise), got {}",
                self.rate_limit_per_10s
            ));
        }
        if self.daily_budget == Some(0) {
            return Err("a daily budget of 0 would deliver nothing: leave it unset for HubSpot's own limit".into());
        }
        if let Some(url) = &self.hubspot_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("the HubSpot base URL must start with http:// or https://, got `{url}`"));
            }
            if self.secrets.hubspot == HubSpotAuth::Sandbox {
                return Err(
                    "a HubSpot base URL needs a HubSpot credential (a Service Key, an app token or OAuth)".into()
                );
            }
        }
        let referral = partners::referral_layer(&self.partners, &s.partners, None);
        crate::config::referral::ReferralSettings::from_layer(Some(&referral))
            .map_err(|e| format!("referral partners: {e}"))?;
        if let Some(url) = &self.partners.outbound_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("the outbound URL must start with http:// or https://, got `{url}`"));
            }
            if s.partners.outbound_secret.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err("an outbound URL needs the secret its changes are signed with".into());
            }
            let layer = Layer {
                outbound_url: Some(url.clone()),
                outbound_secret: s.partners.outbound_secret.clone(),
                ..Layer::default()
            };
            crate::config::OutboundTarget::from_layer(&layer).map_err(|e| format!("outbound sync: {e}"))?;
        }
        self.mapping.load().map(|_| ())
    }

    /// The tenant's settings: the deployment's (`base`: retries, body limit, timeouts, the referral program's
    /// event names and stages) with the tenant's portal, credentials, mapping, budget and referral partner
    /// accounts in place of the default tenant's.
    pub fn relay_settings(&self, base: &Layer) -> Result<RelaySettings, ConfigError> {
        let layer = Layer {
            hubspot_token: self.secrets.hubspot.token().map(str::to_string),
            // The default portal's; a tenant's OAuth tokens are its own (serve's tenant host builds them).
            hubspot_refresh_token: None,
            hubspot_base_url: self.hubspot_base_url.clone(),
            hubspot_client_secrets: None,
            api_tokens: Some(self.secrets.api_tokens.clone()),
            webhook_secrets: Some(self.secrets.webhook_secrets.clone()),
            // The mapping is set below from the stored profile, not from a path.
            mapping: None,
            hubspot_rate_limit_per_10s: Some(u64::from(self.rate_limit_per_10s)),
            referral: Some(partners::referral_layer(&self.partners, &self.secrets.partners, base.referral.as_ref())),
            // Its own endpoint when it has one; else the deployment's (each change names its tenant).
            outbound_url: self.partners.outbound_url.clone().or_else(|| base.outbound_url.clone()),
            outbound_secret: match &self.partners.outbound_url {
                Some(_) => self.secrets.partners.outbound_secret.clone(),
                None => base.outbound_secret.clone(),
            },
            ..base.clone()
        };
        let mut settings = RelaySettings::from_layer(&layer)?;
        settings.mapping = self.mapping.load().map_err(|m| ConfigError::Invalid {
            setting: "tenant mapping",
            message: format!("tenant {}: {m}", self.id),
        })?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_are_bound_to_the_id_the_state_and_the_settings() {
        let key = crate::sealed::SealingKey::from_bytes(&[3; 32]);
        let t = tenant("acme");
        let sealed = t.seal(&key).unwrap();
        let open = |id: &str, enabled: bool, sealed: &SealedTenant, legacy: bool| {
            Tenant::unseal(id.parse().unwrap(), enabled, sealed, &key, legacy)
        };
        assert_eq!(open("acme", t.enabled, &sealed, false).unwrap(), t);
        assert_eq!(open("other", t.enabled, &sealed, true), Err(UnsealError::Sealed));
        assert_eq!(open("acme", !t.enabled, &sealed, true), Err(UnsealError::Sealed));
        let moved = SealedTenant { settings: sealed.settings.replace("aimbase", "chat-widget"), ..sealed.clone() };
        assert_eq!(open("acme", t.enabled, &moved, true), Err(UnsealError::Sealed));
        // Rows sealed before the binding (the id alone) open where legacy rows are allowed.
        let secrets = serde_json::to_vec(&t.secrets).unwrap();
        let legacy = SealedTenant { settings: sealed.settings.clone(), secrets: key.seal("acme", &secrets).unwrap() };
        assert_eq!(open("acme", t.enabled, &legacy, true).unwrap(), t);
        assert_eq!(open("acme", t.enabled, &legacy, false), Err(UnsealError::Sealed));
    }

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.parse().unwrap(),
            hub_id: Some(1001),
            hubspot_base_url: None,
            mapping: MappingProfile::Builtin { name: "aimbase".into() },
            rate_limit_per_10s: 190,
            daily_budget: None,
            enabled: true,
            needs_reauth: false,
            partners: PartnerSettings::default(),
            secrets: TenantSecrets {
                hubspot: HubSpotAuth::Sandbox,
                api_tokens: vec!["t-1".into()],
                webhook_secrets: vec![],
                partners: PartnerSecrets::default(),
            },
        }
    }

    #[test]
    fn a_tenant_has_its_own_outbound_endpoint_or_the_deployments() {
        let base = Layer {
            outbound_url: Some("https://ops.example.com/hooks".into()),
            outbound_secret: Some("whsec_ZGVwbG95bWVudC1zZWNyZXQ=".into()),
            ..Layer::default()
        };
        let mut t = tenant("acme");
        let shared = t.relay_settings(&base).unwrap().outbound.expect("the deployment's endpoint");
        assert_eq!(
            (shared.url.as_str(), shared.secret.as_str()),
            ("https://ops.example.com/hooks", "whsec_ZGVwbG95bWVudC1zZWNyZXQ=")
        );
        t.partners.outbound_url = Some("https://acme.example.com/hubspot".into());
        assert!(t.check().unwrap_err().contains("secret"), "a URL without its secret is refused");
        t.secrets.partners.outbound_secret = Some("not a secret".into());
        assert!(t.check().unwrap_err().contains("Standard Webhooks"), "a malformed secret is refused");
        t.secrets.partners.outbound_secret = Some("whsec_YWNtZS1zZWNyZXQ=".into());
        t.check().unwrap();
        let own = t.relay_settings(&base).unwrap().outbound.expect("its own endpoint");
        assert_eq!(
            (own.url.as_str(), own.secret.as_str()),
            ("https://acme.example.com/hubspot", "whsec_YWNtZS1zZWNyZXQ=")
        );
        t.partners.outbound_url = Some("ftp://acme.example.com".into());
        assert!(t.check().is_err());
    }

    #[test]
    fn debug_output_names_no_secret() {
        let mut t = tenant("acme");
        t.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: Some("na1-refresh-secret".into()) };
        t.secrets.webhook_secrets.push("whsec_secretsecret".into());
        let shown = format!("{t:?}");
        assert!(!shown.contains("refresh-secret") && !shown.contains("whsec_") && !shown.contains("t-1"), "{shown}");
        assert!(shown.contains("oauth") && shown.contains("webhook_secrets: 1"), "{shown}");
    }

    #[test]
    fn ids_are_url_and_folder_safe_slugs() {
        for good in ["a", "lakeside-motors", "oem42", &"x".repeat(40)] {
            assert!(good.parse::<TenantId>().is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a/b", "..", "a.b", "ü", &"x".repeat(41)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TenantId>("\"../etc\"").is_err());
    }

    #[test]
    fn a_tenant_needs_a_sender_credential_and_at_most_two_of_a_kind() {
        assert_eq!(tenant("acme").check(), Ok(()));
        let mut t = tenant("acme");
        t.secrets.api_tokens.clear();
        assert!(t.check().unwrap_err().contains("sender credential"));
        t.secrets.webhook_secrets = vec!["whsec_a".into(), "whsec_b".into(), "whsec_c".into()];
        assert!(t.check().unwrap_err().contains("at most 2"));
        assert!(tenant("default").check().unwrap_err().contains("without a prefix"));
        let mut t = tenant("acme");
        t.rate_limit_per_10s = 0;
        assert!(t.check().is_err());
        let mut t = tenant("acme");
        t.hubspot_base_url = Some("http://127.0.0.1:9".into());
        assert!(t.check().unwrap_err().contains("needs a HubSpot credential"));
    }

    #[test]
    fn settings_are_the_deployments_with_the_tenants_portal_credentials_mapping_and_budget() {
        let base = Layer {
            hubspot_token: Some("default-portal-token".into()),
            api_tokens: Some(vec!["default-sender".into()]),
            mapping: Some("chat-widget".into()),
            retry_schedule: Some(vec!["5s".into(), "5m".into()]),
            ..Layer::default()
        };
        let mut t = tenant("acme");
        t.secrets.hubspot = HubSpotAuth::ServiceKey { token: "acme-key".into() };
        t.rate_limit_per_10s = 100;
        let s = t.relay_settings(&base).unwrap();
        assert_eq!(
            s.hubspot,
            crate::config::HubSpotTarget::Api {
                base_url: crate::hubspot::DEFAULT_BASE_URL.into(),
                token: "acme-key".into()
            }
        );
        assert_eq!(s.auth.api_tokens, vec!["t-1".to_string()]);
        assert_eq!(s.mapping.name, "aimbase");
        assert_eq!(s.hubspot_rate_limit_per_10s, 100);
        assert_eq!(s.retry_schedule, crate::config::parse_schedule(&["5s".into(), "5m".into()]).unwrap());
        // A sandbox tenant never inherits the default tenant's portal.
        assert_eq!(tenant("b").relay_settings(&base).unwrap().hubspot, crate::config::HubSpotTarget::Sandbox);
    }
}
