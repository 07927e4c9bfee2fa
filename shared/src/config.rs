//! Configuration in layers — defaults → TOML file → environment → command-line flags — validated at
//! start-up with a message that names the setting at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthConfig, Authenticator};
use crate::mapping::Mapping;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAPPING: &str = "chat-widget";
/// Lead bodies are small; 256 KiB matches the largest SQS message a retry can carry.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{setting}: {message}")]
    Invalid { setting: &'static str, message: String },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, message: message.into() }
}

/// Everything a settings layer may set. Each field is optional so layers merge: a later layer wins.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub hubspot_token: Option<String>,
    pub hubspot_base_url: Option<String>,
    pub hubspot_client_secrets: Option<Vec<String>>,
    pub api_tokens: Option<Vec<String>>,
    pub webhook_secrets: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub mapping: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub hubspot_timeout_secs: Option<u64>,
    pub sandbox_listen: Option<String>,
}

impl Layer {
    /// Fields set in `other` override ours.
    pub fn merge(mut self, other: Layer) -> Layer {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            listen,
            data_dir,
            hubspot_token,
            hubspot_base_url,
            hubspot_client_secrets,
            api_tokens,
            webhook_secrets,
            public_url,
            mapping,
            max_body_bytes,
            hubspot_timeout_secs,
            sandbox_listen
        );
        self
    }

    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            ConfigError::File { path: path.display().to_string(), message: format!("{at}{}", e.message()) }
        })
    }

    /// The environment layer. `get` is injected so tests need not touch the process environment.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let list = |name: &str| get(name).map(|v| split_list(&v));
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|v| v.trim().parse::<u64>().map_err(|_| invalid(name, format!("`{v}` is not a whole number"))))
                .transpose()
        };
        Ok(Layer {
            listen: get("HUBRELAY_LISTEN"),
            data_dir: get("HUBRELAY_DATA_DIR").map(PathBuf::from),
            hubspot_token: get("HUBSPOT_TOKEN").filter(|t| !t.trim().is_empty()),
            hubspot_base_url: get("HUBSPOT_BASE_URL"),
            hubspot_client_secrets: list("HUBSPOT_CLIENT_SECRET"),
            api_tokens: list("HUBRELAY_API_TOKENS"),
            webhook_secrets: list("HUBRELAY_WEBHOOK_SECRETS"),
            public_url: get("HUBRELAY_PUBLIC_URL"),
            mapping: get("HUBRELAY_MAPPING"),
            max_body_bytes: number("HUBRELAY_MAX_BODY_BYTES")?.map(|n| n as usize),
            hubspot_timeout_secs: number("HUBSPOT_TIMEOUT_SECS")?,
            sandbox_listen: get("HUBRELAY_SANDBOX_LISTEN"),
        })
    }
}

/// Comma-separated list, blanks dropped.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Where HubSpot calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubSpotTarget {
    /// A real portal (or any HubSpot-compatible URL) with a private-app token.
    Api { base_url: String, token: String },
    /// No token configured: `hubrelay serve` starts the built-in sandbox.
    Sandbox,
}

/// Validated settings shared by every entry point.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub hubspot: HubSpotTarget,
    pub hubspot_timeout: Duration,
    pub auth: AuthConfig,
    pub mapping: Mapping,
    pub max_body_bytes: usize,
}

/// `hubrelay serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub sandbox_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub relay: RelaySettings,
}

impl RelaySettings {
    pub fn from_layer(layer: &Layer) -> Result<RelaySettings, ConfigError> {
        let hubspot = match &layer.hubspot_token {
            Some(token) => {
                let base_url =
                    layer.hubspot_base_url.clone().unwrap_or_else(|| crate::hubspot::client::DEFAULT_BASE_URL.into());
                check_url("HUBSPOT_BASE_URL", &base_url)?;
                HubSpotTarget::Api { base_url, token: token.clone() }
            }
            None => HubSpotTarget::Sandbox,
        };
        if let Some(url) = &layer.public_url {
            check_url("HUBRELAY_PUBLIC_URL", url)?;
        }
        let mapping_spec = layer.mapping.clone().unwrap_or_else(|| DEFAULT_MAPPING.into());
        let mapping = Mapping::load(&mapping_spec).map_err(|e| invalid("HUBRELAY_MAPPING", e.to_string()))?;
        let max_body_bytes = layer.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1024..=10 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(invalid("HUBRELAY_MAX_BODY_BYTES", "must be between 1024 and 10485760"));
        }
        let timeout = layer.hubspot_timeout_secs.unwrap_or(10);
        if !(1..=25).contains(&timeout) {
            return Err(invalid("HUBSPOT_TIMEOUT_SECS", "must be 1 to 25 seconds (API Gateway stops waiting at 30)"));
        }
        let auth = AuthConfig {
            api_tokens: layer.api_tokens.clone().unwrap_or_default(),
            webhook_secrets: layer.webhook_secrets.clone().unwrap_or_default(),
            hubspot_client_secrets: layer.hubspot_client_secrets.clone().unwrap_or_default(),
            public_url: layer.public_url.clone(),
            replay_window: Duration::from_secs(300),
        };
        Ok(RelaySettings { hubspot, hubspot_timeout: Duration::from_secs(timeout), auth, mapping, max_body_bytes })
    }

    /// Build the authenticator, turning its complaint into a config error.
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        Authenticator::new(self.auth.clone()).map_err(|e| invalid("auth", e.to_string()))
    }
}

impl ServeSettings {
    pub fn from_layer(layer: &Layer) -> Result<ServeSettings, ConfigError> {
        let listen = parse_addr("HUBRELAY_LISTEN", layer.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let sandbox_listen =
            parse_addr("HUBRELAY_SANDBOX_LISTEN", layer.sandbox_listen.as_deref().unwrap_or("127.0.0.1:0"))?;
        let data_dir = layer.data_dir.clone().unwrap_or_else(|| PathBuf::from(".hubrelay"));
        let relay = RelaySettings::from_layer(layer)?;
        Ok(ServeSettings { listen, sandbox_listen, data_dir, relay })
    }
}

fn parse_addr(setting: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| invalid(setting, format!("`{v}` is not an address like 127.0.0.1:8080")))
}

fn check_url(setting: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(setting, format!("`{v}` is not an http(s) URL")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hubrelay.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\napi_tokens = [\"a\"]\nmapping = \"aimbase\"\n").unwrap();
        let file = Layer::from_file(&path).unwrap();
        let envl =
            Layer::from_env(&env(&[("HUBRELAY_LISTEN", "127.0.0.1:9100"), ("HUBRELAY_API_TOKENS", "x, y,")])).unwrap();
        let s = ServeSettings::from_layer(&Layer::default().merge(file).merge(envl)).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.relay.auth.api_tokens, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(s.relay.mapping.name, "aimbase");
        assert_eq!(s.relay.hubspot, HubSpotTarget::Sandbox);
    }

    #[test]
    fn errors_name_the_setting_and_line() {
        let e =
            ServeSettings::from_layer(&Layer { listen: Some("localhost".into()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().starts_with("HUBRELAY_LISTEN:"), "{e}");
        let e = Layer::from_env(&env(&[("HUBRELAY_MAX_BODY_BYTES", "lots")])).unwrap_err();
        assert!(e.to_string().contains("HUBRELAY_MAX_BODY_BYTES"), "{e}");
        let e = RelaySettings::from_layer(&Layer { mapping: Some("nope-profile".into()), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().starts_with("HUBRELAY_MAPPING:"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nunknown_key = 3\n").unwrap();
        let e = Layer::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_token_selects_the_real_api() {
        let layer = Layer::from_env(&env(&[("HUBSPOT_TOKEN", "pat-1")])).unwrap();
        let s = RelaySettings::from_layer(&layer).unwrap();
        assert_eq!(s.hubspot, HubSpotTarget::Api { base_url: "https://api.hubapi.com".into(), token: "pat-1".into() });
        let bad =
            Layer { hubspot_token: Some("t".into()), hubspot_base_url: Some("ftp://x".into()), ..Default::default() };
        assert!(RelaySettings::from_layer(&bad).unwrap_err().to_string().starts_with("HUBSPOT_BASE_URL"));
    }
}
