//! Configuration in layers — defaults → TOML file → environment → command-line flags — validated at
//! start-up with a message that names the setting at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthConfig, Authenticator};
use crate::domain::RetrySchedule;
use crate::hubspot::ApiVersion;
use crate::mapping::Mapping;
pub mod oauth;
pub mod referral;

use crate::worker::Jitter;
use referral::{ReferralLayer, ReferralSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAPPING: &str = "chat-widget";
/// Lead bodies are small; 256 KiB matches the largest SQS message a retry can carry.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// HubSpot's lowest private-app tier (Free / Starter): 100 requests per rolling 10 s. Professional and
/// Enterprise portals allow 190 (250 with the API limit increase).
pub const DEFAULT_HUBSPOT_RATE_LIMIT_PER_10S: u32 = 100;
/// The most one schedule step may wait (the worker never parks an event for longer between attempts).
pub const MAX_RETRY_STEP: Duration = crate::worker::MAX_DELAY;

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
    /// The portal's OAuth refresh token (`HUBSPOT_REFRESH_TOKEN`): the single portal reached through the
    /// OAuth app (`HUBSPOT_CLIENT_ID`, `HUBSPOT_CLIENT_SECRET`) instead of a static token.
    pub hubspot_refresh_token: Option<String>,
    pub hubspot_base_url: Option<String>,
    /// `2026-09` (default), another dated release, or `v3` for the legacy paths.
    pub hubspot_api_version: Option<String>,
    pub hubspot_client_secrets: Option<Vec<String>>,
    /// The OAuth app's client id (`HUBSPOT_CLIENT_ID`): tenants connected by OAuth install need it.
    pub hubspot_client_id: Option<String>,
    /// Where installs start (`HUBSPOT_OAUTH_AUTHORIZE_URL`; default HubSpot's).
    pub hubspot_oauth_authorize_url: Option<String>,
    /// Scopes an install asks for (`HUBSPOT_OAUTH_SCOPES`, space- or comma-separated).
    pub hubspot_oauth_scopes: Option<Vec<String>>,
    pub api_tokens: Option<Vec<String>>,
    pub webhook_secrets: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub mapping: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub hubspot_timeout_secs: Option<u64>,
    pub sandbox_listen: Option<String>,
    /// `serve`: open connections at most; more are answered 503 and closed.
    pub max_connections: Option<usize>,
    /// Retry delays after each failed attempt, e.g. `["5s", "5m", "30m"]` (env: comma-separated).
    pub retry_schedule: Option<Vec<String>>,
    /// ± share of each delay drawn at random, 0.0 to 1.0.
    pub retry_jitter: Option<f64>,
    pub hubspot_rate_limit_per_10s: Option<u64>,
    /// `[referral]`: partner credentials, webhook secrets, event names, stages, targets.
    pub referral: Option<ReferralLayer>,
    /// The stack's resources, for the Lambdas (`template.yaml` sets them): the DynamoDB table, the retry
    /// queue and its dead-letter queue, the API stage.
    pub idempotency_table: Option<String>,
    pub retry_queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub stage: Option<String>,
    /// Where notices of dead-lettered and recovered events go (`HUBRELAY_NOTIFY_URL`), signed with
    /// `HUBRELAY_NOTIFY_SECRET` (a Standard Webhooks `whsec_…` secret).
    pub notify_url: Option<String>,
    pub notify_secret: Option<String>,
    /// How long event records keep what they hold of a person (`15d`, `36h`, …).
    pub personal_data_retention: Option<String>,
    /// Where HubSpot contact changes are sent (`HUBRELAY_OUTBOUND_URL`), signed with `HUBRELAY_OUTBOUND_SECRET`.
    pub outbound_url: Option<String>,
    pub outbound_secret: Option<String>,
    /// The properties a created contact is sent with (`HUBRELAY_OUTBOUND_PROPERTIES`, comma-separated).
    pub outbound_properties: Option<Vec<String>>,
    /// HubSpot `sourceId`s of hubrelay's own writes (its app's id): their changes are not sent back.
    pub outbound_own_source_ids: Option<Vec<String>>,
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
            hubspot_refresh_token,
            hubspot_base_url,
            hubspot_api_version,
            hubspot_client_secrets,
            hubspot_client_id,
            hubspot_oauth_authorize_url,
            hubspot_oauth_scopes,
            api_tokens,
            webhook_secrets,
            public_url,
            mapping,
            max_body_bytes,
            hubspot_timeout_secs,
            sandbox_listen,
            max_connections,
            retry_schedule,
            retry_jitter,
            hubspot_rate_limit_per_10s,
            idempotency_table,
            retry_queue_url,
            dlq_url,
            stage,
            notify_url,
            notify_secret,
            personal_data_retention,
            outbound_url,
            outbound_secret,
            outbound_properties,
            outbound_own_source_ids
        );
        if let Some(r) = other.referral {
            self.referral = Some(self.referral.take().unwrap_or_default().merge(r));
        }
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
            hubspot_refresh_token: get("HUBSPOT_REFRESH_TOKEN").filter(|t| !t.trim().is_empty()),
            hubspot_base_url: get("HUBSPOT_BASE_URL"),
            hubspot_api_version: get("HUBSPOT_API_VERSION").filter(|v| !v.trim().is_empty()),
            hubspot_client_secrets: list("HUBSPOT_CLIENT_SECRET"),
            hubspot_client_id: get("HUBSPOT_CLIENT_ID").filter(|v| !v.trim().is_empty()),
            hubspot_oauth_authorize_url: get("HUBSPOT_OAUTH_AUTHORIZE_URL").filter(|v| !v.trim().is_empty()),
            hubspot_oauth_scopes: get("HUBSPOT_OAUTH_SCOPES").map(|v| split_list(&v.replace(' ', ","))),
            api_tokens: list("HUBRELAY_API_TOKENS"),
            webhook_secrets: list("HUBRELAY_WEBHOOK_SECRETS"),
            public_url: get("HUBRELAY_PUBLIC_URL"),
            notify_url: get("HUBRELAY_NOTIFY_URL").filter(|v| !v.trim().is_empty()),
            notify_secret: get("HUBRELAY_NOTIFY_SECRET").filter(|v| !v.trim().is_empty()),
            personal_data_retention: get("HUBRELAY_PERSONAL_DATA_RETENTION").filter(|v| !v.trim().is_empty()),
            outbound_url: get("HUBRELAY_OUTBOUND_URL").filter(|v| !v.trim().is_empty()),
            outbound_secret: get("HUBRELAY_OUTBOUND_SECRET").filter(|v| !v.trim().is_empty()),
            outbound_properties: get("HUBRELAY_OUTBOUND_PROPERTIES").filter(|v| !v.is_empty()).map(|v| split_list(&v)),
            outbound_own_source_ids: get("HUBRELAY_OUTBOUND_OWN_SOURCE_IDS")
                .filter(|v| !v.is_empty())
                .map(|v| split_list(&v)),
            mapping: get("HUBRELAY_MAPPING"),
            max_body_bytes: number("HUBRELAY_MAX_BODY_BYTES")?.map(|n| n as usize),
            hubspot_timeout_secs: number("HUBSPOT_TIMEOUT_SECS")?,
            sandbox_listen: get("HUBRELAY_SANDBOX_LISTEN"),
            max_connections: number("HUBRELAY_MAX_CONNECTIONS")?.map(|n| n as usize),
            // Empty counts as unset (a template parameter left blank).
            retry_schedule: get("HUBRELAY_RETRY_SCHEDULE").filter(|v| !v.is_empty()).map(|v| split_list(&v)),
            retry_jitter: get("HUBRELAY_RETRY_JITTER")
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim().parse::<f64>().map_err(|_| {
                        invalid("HUBRELAY_RETRY_JITTER", format!("`{v}` is not a number (use 0.0 to 1.0, e.g. 0.2)"))
                    })
                })
                .transpose()?,
            hubspot_rate_limit_per_10s: number("HUBSPOT_RATE_LIMIT_PER_10S")?,
            referral: ReferralLayer::from_env(get)?,
            idempotency_table: get("HUBRELAY_IDEMPOTENCY_TABLE").filter(|v| !v.is_empty()),
            retry_queue_url: get("HUBRELAY_RETRY_QUEUE_URL").filter(|v| !v.is_empty()),
            dlq_url: get("HUBRELAY_DLQ_URL").filter(|v| !v.is_empty()),
            stage: get("HUBRELAY_STAGE").filter(|v| !v.is_empty()),
        })
    }
}

/// Comma-separated list, blanks dropped.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Where HubSpot calls go.
#[derive(Clone, PartialEq, Eq)]
pub enum HubSpotTarget {
    /// A real portal (or any HubSpot-compatible URL) with a bearer token: a Service Key, a project app's
    /// static token, or a legacy private-app token.
    Api { base_url: String, token: String },
    /// A portal that installed the OAuth app: access tokens refreshed from its refresh token.
    OAuth { base_url: String, client_id: String, client_secret: String, refresh_token: String },
    /// No token configured: `hubrelay serve` starts the built-in sandbox.
    Sandbox,
}

/// Without the credentials (settings are printed in errors and debug logs).
impl std::fmt::Debug for HubSpotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubSpotTarget::Api { base_url, .. } => {
                f.debug_struct("Api").field("base_url", base_url).finish_non_exhaustive()
            }
            HubSpotTarget::OAuth { base_url, client_id, .. } => f
                .debug_struct("OAuth")
                .field("base_url", base_url)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            HubSpotTarget::Sandbox => f.write_str("Sandbox"),
        }
    }
}

/// Validated settings shared by every entry point.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub hubspot: HubSpotTarget,
    /// `HUBSPOT_API_VERSION`: which paths every HubSpot call uses.
    pub hubspot_api_version: ApiVersion,
    pub hubspot_timeout: Duration,
    pub auth: AuthConfig,
    pub mapping: Mapping,
    pub max_body_bytes: usize,
    /// Delays between attempts (`HUBRELAY_RETRY_SCHEDULE`; default: the documented ~75.6 h schedule).
    pub retry_schedule: RetrySchedule,
    /// `HUBRELAY_RETRY_JITTER` (default ±20 %).
    pub retry_jitter: Jitter,
    /// Client-side cap on HubSpot calls per rolling 10 s (`HUBSPOT_RATE_LIMIT_PER_10S`).
    pub hubspot_rate_limit_per_10s: u32,
    pub referral: ReferralSettings,
    /// Notices of dead-lettered and recovered events (`HUBRELAY_NOTIFY_URL`), or none.
    pub notify: Option<NotifyTarget>,
    /// `HUBRELAY_PERSONAL_DATA_RETENTION`: how long event records keep a masked email and its hash (default 15
    /// days, the event records' lifetime on AWS).
    pub personal_data_retention: Duration,
    /// Where HubSpot contact changes go (`HUBRELAY_OUTBOUND_URL`), or nowhere.
    pub outbound: Option<OutboundTarget>,
}

/// Where HubSpot contact changes are sent, signed (Standard Webhooks), and what a change carries.
#[derive(Clone, PartialEq)]
pub struct OutboundTarget {
    pub url: String,
    pub secret: String,
    /// Read from HubSpot for a created contact (a property change carries its own value).
    pub properties: Vec<String>,
    /// `sourceId`s whose changes are hubrelay's own writes: never sent back.
    pub own_source_ids: Vec<String>,
}

impl std::fmt::Debug for OutboundTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTarget")
            .field("url", &self.url)
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

/// What a created contact is sent with when `HUBRELAY_OUTBOUND_PROPERTIES` is not set.
pub const DEFAULT_OUTBOUND_PROPERTIES: [&str; 6] =
    ["email", "firstname", "lastname", "phone", "lifecyclestage", "hs_lead_status"];

impl OutboundTarget {
    pub(crate) fn from_layer(layer: &Layer) -> Result<Option<OutboundTarget>, ConfigError> {
        let (url, secret) = match (&layer.outbound_url, &layer.outbound_secret) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(invalid(
                    "HUBRELAY_OUTBOUND_SECRET",
                    "HUBRELAY_OUTBOUND_URL needs a secret to sign changes with",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid("HUBRELAY_OUTBOUND_URL", "HUBRELAY_OUTBOUND_SECRET is set without a URL"))
            }
            (Some(url), Some(secret)) => (url.trim(), secret.trim()),
        };
        check_url("HUBRELAY_OUTBOUND_URL", url)?;
        crate::auth::sign_standard_webhook(secret, "check", 0, b"").map_err(|_| {
            invalid("HUBRELAY_OUTBOUND_SECRET", "not a Standard Webhooks secret (`whsec_` followed by base64)")
        })?;
        let properties = match &layer.outbound_properties {
            Some(list) if !list.is_empty() => list.clone(),
            _ => DEFAULT_OUTBOUND_PROPERTIES.iter().map(|p| p.to_string()).collect(),
        };
        Ok(Some(OutboundTarget {
            url: url.to_string(),
            secret: secret.to_string(),
            properties,
            own_source_ids: layer.outbound_own_source_ids.clone().unwrap_or_default(),
        }))
    }
}

/// Where notices go and the secret that signs them.
#[derive(Clone, PartialEq)]
pub struct NotifyTarget {
    pub url: String,
    /// A Standard Webhooks secret (`whsec_` and base64).
    pub secret: String,
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget").field("url", &self.url).finish_non_exhaustive()
    }
}

impl NotifyTarget {
    fn from_layer(layer: &Layer) -> Result<Option<NotifyTarget>, ConfigError> {
        let (url, secret) = match (&layer.notify_url, &layer.notify_secret) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(invalid(
                    "HUBRELAY_NOTIFY_SECRET",
                    "HUBRELAY_NOTIFY_URL needs a secret to sign notices with",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid("HUBRELAY_NOTIFY_URL", "HUBRELAY_NOTIFY_SECRET is set without a URL"))
            }
            (Some(url), Some(secret)) => (url.trim(), secret.trim()),
        };
        check_url("HUBRELAY_NOTIFY_URL", url)?;
        crate::auth::sign_standard_webhook(secret, "check", 0, b"").map_err(|_| {
            invalid("HUBRELAY_NOTIFY_SECRET", "not a Standard Webhooks secret (`whsec_` followed by base64)")
        })?;
        Ok(Some(NotifyTarget { url: url.to_string(), secret: secret.to_string() }))
    }
}

/// The AWS resources a Lambda works with (names only: the AWS crate makes the clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    pub idempotency_table: String,
    pub retry_queue_url: String,
    pub dlq_url: String,
    /// The HTTP API's named stage, whose prefix arrives in every path; `None` for `$default`.
    pub stage: Option<String>,
}

impl AwsResources {
    /// `Err` names the first missing setting.
    pub fn from_layer(layer: &Layer) -> Result<AwsResources, &'static str> {
        let required = |v: &Option<String>, name: &'static str| v.clone().ok_or(name);
        Ok(AwsResources {
            idempotency_table: required(&layer.idempotency_table, "HUBRELAY_IDEMPOTENCY_TABLE")?,
            retry_queue_url: required(&layer.retry_queue_url, "HUBRELAY_RETRY_QUEUE_URL")?,
            dlq_url: required(&layer.dlq_url, "HUBRELAY_DLQ_URL")?,
            stage: layer.stage.clone().filter(|s| s != "$default"),
        })
    }
}

/// `hubrelay serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub sandbox_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Open connections at most (idle ones are closed after the header read timeout).
    pub max_connections: usize,
    pub relay: RelaySettings,
}

/// `serve`'s default connection cap: far above what two cores answer at once, far below the file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl RelaySettings {
    pub fn from_layer(layer: &Layer) -> Result<RelaySettings, ConfigError> {
        let base_url = || -> Result<String, ConfigError> {
            let base_url = layer.hubspot_base_url.clone().unwrap_or_else(|| crate::hubspot::DEFAULT_BASE_URL.into());
            check_url("HUBSPOT_BASE_URL", &base_url)?;
            Ok(base_url)
        };
        let hubspot = match (&layer.hubspot_token, &layer.hubspot_refresh_token) {
            (Some(_), Some(_)) => {
                return Err(invalid("HUBSPOT_REFRESH_TOKEN", "set HUBSPOT_TOKEN or HUBSPOT_REFRESH_TOKEN, not both"))
            }
            (Some(token), None) => HubSpotTarget::Api { base_url: base_url()?, token: token.clone() },
            (None, Some(refresh_token)) => {
                let app = oauth::OAuthAppSettings::from_layer(layer)?.ok_or_else(|| {
                    invalid(
                        "HUBSPOT_REFRESH_TOKEN",
                        "needs the OAuth app's HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET",
                    )
                })?;
                HubSpotTarget::OAuth {
                    base_url: base_url()?,
                    client_id: app.client_id,
                    client_secret: app.client_secret,
                    refresh_token: refresh_token.clone(),
                }
            }
            (None, None) => HubSpotTarget::Sandbox,
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
        let retry_schedule = match &layer.retry_schedule {
            Some(steps) => parse_schedule(steps).map_err(|m| invalid("HUBRELAY_RETRY_SCHEDULE", m))?,
            None => RetrySchedule::default(),
        };
        let fraction = layer.retry_jitter.unwrap_or(Jitter::STANDARD.fraction);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(invalid(
                "HUBRELAY_RETRY_JITTER",
                format!("must be between 0.0 and 1.0 (0.2 = ±20 %), got {fraction}"),
            ));
        }
        let rate = layer.hubspot_rate_limit_per_10s.unwrap_or(u64::from(DEFAULT_HUBSPOT_RATE_LIMIT_PER_10S));
        if !(1..=10_000).contains(&rate) {
            return Err(invalid(
                "HUBSPOT_RATE_LIMIT_PER_10S",
                format!("must be 1 to 10000 requests per 10 s (HubSpot: 100 Free/Starter, 190 Professional/Enterprise), got {rate}"),
            ));
        }
        let hubspot_api_version = match &layer.hubspot_api_version {
            Some(v) => v.parse().map_err(|m| invalid("HUBSPOT_API_VERSION", m))?,
            None => ApiVersion::default(),
        };
        Ok(RelaySettings {
            hubspot,
            hubspot_api_version,
            hubspot_timeout: Duration::from_secs(timeout),
            auth,
            mapping,
            max_body_bytes,
            retry_schedule,
            retry_jitter: Jitter { fraction },
            hubspot_rate_limit_per_10s: rate as u32,
            referral: ReferralSettings::from_layer(layer.referral.as_ref())?,
            notify: NotifyTarget::from_layer(layer)?,
            outbound: OutboundTarget::from_layer(layer)?,
            personal_data_retention: match layer.personal_data_retention.as_deref() {
                Some(v) => parse_duration(v.trim()).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                    invalid("HUBRELAY_PERSONAL_DATA_RETENTION", format!("`{v}` is not a duration like 15d or 36h"))
                })?,
                None => crate::privacy::DEFAULT_RETENTION,
            },
        })
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
        let max_connections = layer.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=65_536).contains(&max_connections) {
            return Err(invalid("HUBRELAY_MAX_CONNECTIONS", "must be 1 to 65536"));
        }
        let relay = RelaySettings::from_layer(layer)?;
        Ok(ServeSettings { listen, sandbox_listen, data_dir, max_connections, relay })
    }
}

/// A retry schedule from its steps (`5s`, `5m`, `100ms`, `2h`, `1d`): one delay after each failed attempt.
/// Each step is positive and at most 24 h; the whole schedule must end within the idempotency window
/// ([`crate::store::IDEMPOTENCY_TTL`], 4 days), or a sender's late re-delivery could be taken for a new event.
pub fn parse_schedule(steps: &[String]) -> Result<RetrySchedule, String> {
    if steps.is_empty() {
        return Err("is empty: give at least one delay, e.g. `5s,5m,30m`".into());
    }
    let mut delays = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let d = parse_duration(step).map_err(|m| format!("step {} `{}`: {m}", i + 1, step.trim()))?;
        if d.is_zero() {
            return Err(format!("step {} `{}`: must be longer than zero", i + 1, step.trim()));
        }
        if d > MAX_RETRY_STEP {
            return Err(format!("step {} `{}`: longer than the 24h maximum", i + 1, step.trim()));
        }
        delays.push(d);
    }
    let schedule = RetrySchedule::new(delays);
    if schedule.total() > crate::store::IDEMPOTENCY_TTL {
        return Err(format!(
            "spans {}, longer than the {} idempotency window",
            format_duration(schedule.total()),
            format_duration(crate::store::IDEMPOTENCY_TTL)
        ));
    }
    Ok(schedule)
}

/// The one duration grammar (retry schedules, `--older-than`, `--since`): whole numbers with a unit — `ms`,
/// `s`, `m`, `h`, `d`, `w` — one or several in a row: `100ms`, `5s`, `2h`, `1d`, `1h30m`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    const USAGE: &str = "(ms, s, m, h or d), e.g. `5s`";
    let v = v.trim();
    let mut rest = v;
    let mut total: u64 = 0;
    loop {
        let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, after) = rest.split_at(split);
        if digits.is_empty() {
            return Err(format!("expected a whole number and a unit {USAGE}"));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let n: u64 = digits.parse().map_err(|_| format!("`{digits}` is too large"))?;
        let unit_ms: u64 = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(format!("missing unit {USAGE}")),
            other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
        };
        total =
            n.checked_mul(unit_ms).and_then(|ms| total.checked_add(ms)).ok_or_else(|| format!("`{v}` is too large"))?;
        if next.is_empty() {
            return Ok(Duration::from_millis(total));
        }
        rest = next;
    }
}

/// The shortest form [`parse_duration`] reads back, in hours at most: `100ms`, `5s`, `30m`, `24h`, `90s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
        // (not `is_multiple_of`: the crate supports Rust 1.85)
        if ms >= size && (ms / size) * size == ms {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A schedule as `HUBRELAY_RETRY_SCHEDULE` would spell it.
pub fn format_schedule(schedule: &RetrySchedule) -> String {
    (1..schedule.max_attempts())
        .filter_map(|a| schedule.delay_after(a))
        .map(format_duration)
        .collect::<Vec<_>>()
        .join(",")
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
    fn notices_need_an_http_url_and_a_whsec_secret_together() {
        let relay = |pairs: &[(&str, &str)]| RelaySettings::from_layer(&Layer::from_env(&env(pairs)).unwrap());
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let on = relay(&[("HUBRELAY_NOTIFY_URL", "https://ops.example.com/h"), ("HUBRELAY_NOTIFY_SECRET", secret)]);
        assert_eq!(on.unwrap().notify.unwrap().url, "https://ops.example.com/h");
        assert_eq!(relay(&[]).unwrap().notify, None);
        let refused = |pairs: &[(&str, &str)], setting: &str| {
            let e = relay(pairs).unwrap_err().to_string();
            assert!(e.starts_with(setting), "{e}");
        };
        refused(&[("HUBRELAY_NOTIFY_URL", "https://ops.example.com/h")], "HUBRELAY_NOTIFY_SECRET");
        refused(&[("HUBRELAY_NOTIFY_SECRET", secret)], "HUBRELAY_NOTIFY_URL");
        refused(
            &[("HUBRELAY_NOTIFY_URL", "https://x"), ("HUBRELAY_NOTIFY_SECRET", "hunter2")],
            "HUBRELAY_NOTIFY_SECRET",
        );
        refused(
            &[("HUBRELAY_NOTIFY_URL", "ops.example.com"), ("HUBRELAY_NOTIFY_SECRET", secret)],
            "HUBRELAY_NOTIFY_URL",
        );
    }

    #[test]
    fn outbound_sync_needs_a_url_and_a_secret_together_and_has_default_properties() {
        let relay = |pairs: &[(&str, &str)]| RelaySettings::from_layer(&Layer::from_env(&env(pairs)).unwrap());
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let on = relay(&[
            ("HUBRELAY_OUTBOUND_URL", "https://crm.example.com/hubspot"),
            ("HUBRELAY_OUTBOUND_SECRET", secret),
            ("HUBRELAY_OUTBOUND_OWN_SOURCE_IDS", "4242, 99"),
        ])
        .unwrap()
        .outbound
        .unwrap();
        assert_eq!(on.properties, DEFAULT_OUTBOUND_PROPERTIES.map(String::from));
        assert_eq!(on.own_source_ids, ["4242", "99"]);
        assert!(relay(&[]).unwrap().outbound.is_none());
        let refused = |pairs: &[(&str, &str)], setting: &str| {
            let e = relay(pairs).unwrap_err().to_string();
            assert!(e.starts_with(setting), "{e}");
        };
        refused(&[("HUBRELAY_OUTBOUND_URL", "https://x")], "HUBRELAY_OUTBOUND_SECRET");
        refused(&[("HUBRELAY_OUTBOUND_SECRET", secret)], "HUBRELAY_OUTBOUND_URL");
        refused(
            &[("HUBRELAY_OUTBOUND_URL", "https://x"), ("HUBRELAY_OUTBOUND_SECRET", "x")],
            "HUBRELAY_OUTBOUND_SECRET",
        );
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
        assert!(!format!("{:?}", s.hubspot).contains("pat-1"));
    }

    #[test]
    fn a_refresh_token_reaches_the_portal_through_the_oauth_app() {
        let layer = Layer { hubspot_refresh_token: Some("rt-1".into()), ..Default::default() };
        let e = RelaySettings::from_layer(&layer).unwrap_err().to_string();
        assert!(e.contains("HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET"), "{e}");
        let layer = Layer {
            hubspot_client_id: Some("app".into()),
            hubspot_client_secrets: Some(vec!["cs-1".into(), "cs-0".into()]),
            ..layer
        };
        let s = RelaySettings::from_layer(&layer).unwrap();
        assert_eq!(
            s.hubspot,
            HubSpotTarget::OAuth {
                base_url: "https://api.hubapi.com".into(),
                client_id: "app".into(),
                client_secret: "cs-1".into(),
                refresh_token: "rt-1".into()
            }
        );
        let shown = format!("{:?}", s.hubspot);
        assert!(!shown.contains("rt-1") && !shown.contains("cs-1"), "{shown}");
        let both = Layer { hubspot_token: Some("pat".into()), ..layer };
        assert!(RelaySettings::from_layer(&both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn retry_settings_default_to_the_documented_schedule() {
        let s = RelaySettings::from_layer(&Layer::default()).unwrap();
        assert_eq!(s.retry_schedule, RetrySchedule::default());
        assert_eq!(format_schedule(&s.retry_schedule), "5s,5m,30m,2h,5h,10h,14h,20h,24h");
        assert_eq!(s.retry_jitter, Jitter::STANDARD);
        assert_eq!(s.hubspot_rate_limit_per_10s, 100);
    }

    #[test]
    fn retry_schedule_jitter_and_rate_limit_from_env() {
        let layer = Layer::from_env(&env(&[
            ("HUBRELAY_RETRY_SCHEDULE", "100ms, 2s,5m,1h,1d"),
            ("HUBRELAY_RETRY_JITTER", "0"),
            ("HUBSPOT_RATE_LIMIT_PER_10S", "190"),
        ]))
        .unwrap();
        let s = RelaySettings::from_layer(&layer).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            s.retry_schedule,
            RetrySchedule::new(vec![ms(100), ms(2_000), ms(300_000), ms(3_600_000), ms(86_400_000)])
        );
        assert_eq!(format_schedule(&s.retry_schedule), "100ms,2s,5m,1h,24h");
        assert_eq!(s.retry_jitter, Jitter::NONE);
        assert_eq!(s.hubspot_rate_limit_per_10s, 190);
        // TOML spells the schedule as a list.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "retry_schedule = [\"1s\", \"90s\"]\nretry_jitter = 0.5\n").unwrap();
        let s = RelaySettings::from_layer(&Layer::from_file(&path).unwrap()).unwrap();
        assert_eq!(format_schedule(&s.retry_schedule), "1s,90s");
        assert_eq!(s.retry_jitter, Jitter { fraction: 0.5 });
    }

    #[test]
    fn bad_retry_settings_say_exactly_what_is_wrong() {
        let err = |pairs: &[(&str, &str)]| -> String {
            match Layer::from_env(&env(pairs)) {
                Err(e) => e.to_string(),
                Ok(layer) => RelaySettings::from_layer(&layer).unwrap_err().to_string(),
            }
        };
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "5s,5x")]),
            "HUBRELAY_RETRY_SCHEDULE: step 2 `5x`: unknown unit `x` (use ms, s, m, h or d)"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "5")]),
            "HUBRELAY_RETRY_SCHEDULE: step 1 `5`: missing unit (ms, s, m, h or d), e.g. `5s`"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "1s,m")]),
            "HUBRELAY_RETRY_SCHEDULE: step 2 `m`: expected a whole number and a unit (ms, s, m, h or d), e.g. `5s`"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "0s")]),
            "HUBRELAY_RETRY_SCHEDULE: step 1 `0s`: must be longer than zero"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "25h")]),
            "HUBRELAY_RETRY_SCHEDULE: step 1 `25h`: longer than the 24h maximum"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", " , ")]),
            "HUBRELAY_RETRY_SCHEDULE: is empty: give at least one delay, e.g. `5s,5m,30m`"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_SCHEDULE", "24h,24h,24h,24h,1s")]),
            "HUBRELAY_RETRY_SCHEDULE: spans 345601s, longer than the 96h idempotency window"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_JITTER", "lots")]),
            "HUBRELAY_RETRY_JITTER: `lots` is not a number (use 0.0 to 1.0, e.g. 0.2)"
        );
        assert_eq!(
            err(&[("HUBRELAY_RETRY_JITTER", "1.5")]),
            "HUBRELAY_RETRY_JITTER: must be between 0.0 and 1.0 (0.2 = ±20 %), got 1.5"
        );
        assert!(
            err(&[("HUBSPOT_RATE_LIMIT_PER_10S", "0")]).starts_with("HUBSPOT_RATE_LIMIT_PER_10S: must be 1 to 10000")
        );
        assert!(err(&[("HUBSPOT_API_VERSION", "2026-10")])
            .starts_with("HUBSPOT_API_VERSION: `2026-10` is not a HubSpot API version"));
    }

    #[test]
    fn the_api_version_defaults_to_the_newest_dated_release() {
        let settings =
            |vars: &[(&str, &str)]| RelaySettings::from_layer(&Layer::from_env(&env(vars)).unwrap()).unwrap();
        assert_eq!(settings(&[]).hubspot_api_version, ApiVersion::Dated("2026-09".into()));
        assert_eq!(settings(&[("HUBSPOT_API_VERSION", "v3")]).hubspot_api_version, ApiVersion::Legacy);
        assert_eq!(
            settings(&[("HUBSPOT_API_VERSION", "2026-03")]).hubspot_api_version,
            ApiVersion::Dated("2026-03".into())
        );
    }
}
