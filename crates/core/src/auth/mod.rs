//! Who may call us: static API tokens (Zapier and friends), Standard Webhooks / Svix signatures and
//! HubSpot v3 request signatures.
//!
//! An [`Authenticator`] is built once at start-up from an [`AuthConfig`] (secrets are decoded and checked
//! there) and then [`Authenticator::verify`]s each request's raw parts. The scheme is chosen from the headers:
//!
//! 1. `webhook-signature` (or `svix-signature`) → Standard Webhooks ([`standard_webhooks`]);
//! 2. `X-HubSpot-Signature-v3` → HubSpot v3 ([`hubspot`]);
//! 3. `Authorization: Bearer <token>` or `X-Api-Key: <token>` → a static API token ([`bearer`]);
//! 4. nothing → [`AuthError::MissingCredentials`].
//!
//! A scheme that is present but not configured fails (`InvalidSignature` / `InvalidToken`); it never falls
//! through to another scheme. HubSpot's older v1/v2 signatures carry no timestamp (replayable forever), so
//! they are not accepted on their own; their helpers exist for tests and tooling.
//!
//! Every comparison is constant-time; secrets and tokens are never logged or printed (`Debug` redacts them).

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

pub mod bearer;
pub mod hubspot;
pub mod partners;
pub mod standard_webhooks;

pub use hubspot::{hubspot_v1_signature, hubspot_v2_signature, hubspot_v3_signature, hubspot_v3_uri};
pub use partners::{extole_signature, hook_signature, PartnerScheme, PartnerVerifier};
pub use standard_webhooks::sign_standard_webhook;

/// Environment variable names used in configuration error messages (the config module reads them).
pub const ENV_API_TOKENS: &str = "HUBRELAY_API_TOKENS";
pub const ENV_WEBHOOK_SECRETS: &str = "HUBRELAY_WEBHOOK_SECRETS";
pub const ENV_HUBSPOT_CLIENT_SECRET: &str = "HUBSPOT_CLIENT_SECRET";
pub const ENV_PUBLIC_URL: &str = "HUBRELAY_PUBLIC_URL";

/// The default tolerance for signature timestamps (Standard Webhooks and HubSpot both use 5 minutes).
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(5 * 60);

/// What the operator configured. Build an [`Authenticator`] from it.
#[derive(Clone)]
pub struct AuthConfig {
    /// Static bearer tokens (Zapier); two are valid at once during a rotation.
    pub api_tokens: Vec<String>,
    /// Standard Webhooks `whsec_<base64>` secrets; any may match.
    pub webhook_secrets: Vec<String>,
    /// HubSpot app client secret(s) for v3 signatures (two during a rotation).
    pub hubspot_client_secrets: Vec<String>,
    /// The base URL senders call, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com`; needed for HubSpot v3,
    /// whose signature covers the full URI (rebuilt from this and the raw path + query, never from `Host`).
    pub public_url: Option<String>,
    /// How far a signature timestamp may be from `now`, in either direction.
    pub replay_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_tokens: Vec::new(),
            webhook_secrets: Vec::new(),
            hubspot_client_secrets: Vec::new(),
            public_url: None,
            replay_window: DEFAULT_REPLAY_WINDOW,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_tokens", &Redacted(self.api_tokens.len()))
            .field("webhook_secrets", &Redacted(self.webhook_secrets.len()))
            .field("hubspot_client_secrets", &Redacted(self.hubspot_client_secrets.len()))
            .field("public_url", &self.public_url)
            .field("replay_window", &self.replay_window)
            .finish()
    }
}

/// Prints "N redacted" in place of a list of secrets.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} redacted>", self.0)
    }
}

/// A configuration the [`Authenticator`] refuses to start with. Entry numbers are 1-based. Messages never
/// contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "no auth configured: set {ENV_API_TOKENS}, {ENV_WEBHOOK_SECRETS} or \
         {ENV_HUBSPOT_CLIENT_SECRET} (with {ENV_PUBLIC_URL})"
    )]
    NothingConfigured,
    #[error("{ENV_API_TOKENS}: entry {entry} is empty")]
    EmptyApiToken { entry: usize },
    #[error("{ENV_API_TOKENS}: entry {entry} contains whitespace or control characters")]
    InvalidApiToken { entry: usize },
    #[error("{ENV_WEBHOOK_SECRETS}: entry {entry} is not a whsec_ secret (base64 after the prefix)")]
    InvalidWebhookSecret { entry: usize },
    #[error("{ENV_HUBSPOT_CLIENT_SECRET}: entry {entry} is empty")]
    EmptyHubSpotSecret { entry: usize },
    #[error("{ENV_HUBSPOT_CLIENT_SECRET} set but {ENV_PUBLIC_URL} missing")]
    MissingPublicUrl,
    #[error("{ENV_PUBLIC_URL} must be an absolute http(s) URL without query or fragment, got {0:?}")]
    InvalidPublicUrl(String),
    #[error("the replay window must be at least one second")]
    InvalidReplayWindow,
    /// A single secret handed to a signing helper is not `whsec_<base64>`.
    #[error("not a whsec_ secret (base64 after the prefix)")]
    NotAWhsecSecret,
}

/// What the caller got wrong. [`AuthError::code`] is the stable code for responses and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    MissingCredentials,
    #[error("invalid token")]
    InvalidToken,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("signature timestamp outside the replay window")]
    StaleTimestamp,
    #[error("malformed auth header: {0}")]
    MalformedHeader(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::InvalidToken => "invalid_token",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::StaleTimestamp => "stale_timestamp",
            AuthError::MalformedHeader(_) => "malformed_auth_header",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    ApiToken,
    /// `webhook_id` is the sender's delivery id (the same on every re-delivery): a natural idempotency key.
    StandardWebhooks {
        webhook_id: String,
    },
    HubSpotV3,
}

/// The raw request, as received.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The raw path and query exactly as received (still percent-encoded), e.g. `/leads?src=a%20b`.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The raw body bytes (after undoing any transport base64 encoding), never a re-serialisation.
    pub body: &'a [u8],
}

/// Verifies requests against the configured schemes. Cheap to clone; build once at start-up.
#[derive(Clone)]
pub struct Authenticator {
    tokens: bearer::TokenSet,
    webhooks: standard_webhooks::Verifier,
    hubspot: Option<hubspot::V3Verifier>,
    replay_window: Duration,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("modes", &self.modes())
            .field("replay_window", &self.replay_window)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks and decodes the configuration. Fails when nothing is configured, when a secret is malformed,
    /// or when HubSpot secrets are set without a public URL.
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        if config.replay_window < Duration::from_secs(1) {
            return Err(AuthConfigError::InvalidReplayWindow);
        }
        let tokens = bearer::TokenSet::new(&config.api_tokens)?;
        let webhooks = standard_webhooks::Verifier::new(&config.webhook_secrets)?;
        let hubspot = if config.hubspot_client_secrets.is_empty() {
            None
        } else {
            let public_url = config
                .public_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .ok_or(AuthConfigError::MissingPublicUrl)?;
            Some(hubspot::V3Verifier::new(&config.hubspot_client_secrets, public_url)?)
        };
        if tokens.is_empty() && webhooks.is_empty() && hubspot.is_none() {
            return Err(AuthConfigError::NothingConfigured);
        }
        Ok(Authenticator { tokens, webhooks, hubspot, replay_window: config.replay_window })
    }

    /// The configured schemes, for the start-up banner: `api-token`, `standard-webhooks`, `hubspot-v3`.
    pub fn modes(&self) -> Vec<&'static str> {
        let mut modes = Vec::new();
        if !self.tokens.is_empty() {
            modes.push("api-token");
        }
        if !self.webhooks.is_empty() {
            modes.push("standard-webhooks");
        }
        if self.hubspot.is_some() {
            modes.push("hubspot-v3");
        }
        modes
    }

    /// Decides whether `req` is authentic at `now`. See the module docs for how the scheme is chosen.
    pub fn verify(&self, req: &RequestParts<'_>, now: OffsetDateTime) -> Result<AuthMethod, AuthError> {
        let headers = req.headers;
        if let Some(prefix) = standard_webhooks::header_prefix(headers) {
            return self.webhooks.verify(prefix, req, now, self.replay_window);
        }
        if headers.contains_key(hubspot::SIGNATURE_V3) {
            return match &self.hubspot {
                Some(v3) => v3.verify(req, now, self.replay_window),
                None => Err(AuthError::InvalidSignature),
            };
        }
        if let Some(token) = bearer::presented_token(headers)? {
            return if self.tokens.contains(token) { Ok(AuthMethod::ApiToken) } else { Err(AuthError::InvalidToken) };
        }
        if headers.contains_key(hubspot::SIGNATURE_V1_V2) {
            return Err(AuthError::MalformedHeader(
                "X-HubSpot-Signature (v1/v2) is not accepted; X-HubSpot-Signature-v3 is required".into(),
            ));
        }
        Err(AuthError::MissingCredentials)
    }
}

/// A header as trimmed visible ASCII, `None` when absent.
pub(crate) fn header_str<'h>(headers: &'h http::HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| AuthError::MalformedHeader(format!("{name} is not visible ASCII"))),
    }
}

/// Parses a decimal timestamp header strictly (digits only, optional leading `-` is refused).
pub(crate) fn parse_timestamp(name: &str, value: &str) -> Result<i64, AuthError> {
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::MalformedHeader(format!("{name} is not a Unix timestamp")));
    }
    value.parse().map_err(|_| AuthError::MalformedHeader(format!("{name} is not a Unix timestamp")))
}

/// `Ok` when `|now - at| <= window` (all three in the same unit).
pub(crate) fn check_window(at: i128, now: i128, window: i128) -> Result<(), AuthError> {
    if (now - at).abs() > window {
        Err(AuthError::StaleTimestamp)
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use http::{HeaderMap, HeaderName, HeaderValue};

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::headers;
    use super::*;
    use time::macros::datetime;

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const HS_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

    fn all_modes() -> Authenticator {
        Authenticator::new(AuthConfig {
            api_tokens: vec!["token-one-aaaaaaaaaaaa".into()],
            webhook_secrets: vec![WHSEC.into()],
            hubspot_client_secrets: vec![HS_SECRET.into()],
            public_url: Some("https://www.example.com".into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn req<'a>(h: &'a http::HeaderMap, body: &'a [u8]) -> RequestParts<'a> {
        RequestParts { method: "POST", path_and_query: "/webhook_uri", headers: h, body }
    }

    #[test]
    fn nothing_configured_is_an_error() {
        let err = Authenticator::new(AuthConfig::default()).unwrap_err();
        assert_eq!(err, AuthConfigError::NothingConfigured);
        assert!(err.to_string().starts_with("no auth configured"));
    }

    #[test]
    fn hubspot_secret_needs_public_url() {
        let err =
            Authenticator::new(AuthConfig { hubspot_client_secrets: vec![HS_SECRET.into()], ..AuthConfig::default() })
                .unwrap_err();
        assert_eq!(err, AuthConfigError::MissingPublicUrl);
        assert_eq!(err.to_string(), "HUBSPOT_CLIENT_SECRET set but HUBRELAY_PUBLIC_URL missing");
    }

    #[test]
    fn bad_public_url_is_an_error() {
        for url in ["example.com", "ftp://example.com", "https://", "https://x.com/a?b=c"] {
            let err = Authenticator::new(AuthConfig {
                hubspot_client_secrets: vec![HS_SECRET.into()],
                public_url: Some(url.into()),
                ..AuthConfig::default()
            })
            .unwrap_err();
            assert!(matches!(err, AuthConfigError::InvalidPublicUrl(_)), "{url}: {err:?}");
        }
    }

    #[test]
    fn bad_webhook_secret_names_the_entry() {
        let err = Authenticator::new(AuthConfig {
            webhook_secrets: vec![WHSEC.into(), "not-a-secret".into()],
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert_eq!(err, AuthConfigError::InvalidWebhookSecret { entry: 2 });
        assert_eq!(
            err.to_string(),
            "HUBRELAY_WEBHOOK_SECRETS: entry 2 is not a whsec_ secret (base64 after the prefix)"
        );
        for bad in ["whsec_", "whsec_***notbase64***", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            let err = Authenticator::new(AuthConfig { webhook_secrets: vec![bad.into()], ..AuthConfig::default() })
                .unwrap_err();
            assert_eq!(err, AuthConfigError::InvalidWebhookSecret { entry: 1 }, "{bad}");
        }
    }

    #[test]
    fn empty_entries_are_errors() {
        let err = Authenticator::new(AuthConfig {
            api_tokens: vec!["good-token".into(), "".into()],
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert_eq!(err, AuthConfigError::EmptyApiToken { entry: 2 });
        let err = Authenticator::new(AuthConfig { api_tokens: vec!["has space".into()], ..AuthConfig::default() })
            .unwrap_err();
        assert_eq!(err, AuthConfigError::InvalidApiToken { entry: 1 });
        let err = Authenticator::new(AuthConfig {
            hubspot_client_secrets: vec![" ".into()],
            public_url: Some("https://x.example".into()),
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert_eq!(err, AuthConfigError::EmptyHubSpotSecret { entry: 1 });
    }

    #[test]
    fn zero_replay_window_is_an_error() {
        let err = Authenticator::new(AuthConfig {
            api_tokens: vec!["t".into()],
            replay_window: Duration::ZERO,
            ..AuthConfig::default()
        })
        .unwrap_err();
        assert_eq!(err, AuthConfigError::InvalidReplayWindow);
    }

    #[test]
    fn modes_list_what_is_configured() {
        assert_eq!(all_modes().modes(), vec!["api-token", "standard-webhooks", "hubspot-v3"]);
        let only_tokens =
            Authenticator::new(AuthConfig { api_tokens: vec!["t".into()], ..AuthConfig::default() }).unwrap();
        assert_eq!(only_tokens.modes(), vec!["api-token"]);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = AuthConfig {
            api_tokens: vec!["token-one-aaaaaaaaaaaa".into()],
            webhook_secrets: vec![WHSEC.into()],
            hubspot_client_secrets: vec![HS_SECRET.into()],
            public_url: Some("https://www.example.com".into()),
            ..AuthConfig::default()
        };
        let shown = format!("{config:?} {:?}", Authenticator::new(config.clone()).unwrap());
        assert!(!shown.contains("token-one"), "{shown}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(!shown.contains("yyyy"), "{shown}");
    }

    #[test]
    fn no_credentials_is_missing_credentials() {
        let h = headers(&[("content-type", "application/json")]);
        let err = all_modes().verify(&req(&h, b"{}"), datetime!(2024-01-01 0:00 UTC)).unwrap_err();
        assert_eq!(err, AuthError::MissingCredentials);
        assert_eq!(err.code(), "missing_credentials");
    }

    #[test]
    fn legacy_hubspot_signature_alone_is_refused() {
        let h = headers(&[("X-HubSpot-Signature", "abc"), ("X-HubSpot-Signature-Version", "v1")]);
        let err = all_modes().verify(&req(&h, b"{}"), datetime!(2024-01-01 0:00 UTC)).unwrap_err();
        assert_eq!(err.code(), "malformed_auth_header");
    }

    #[test]
    fn unconfigured_scheme_is_refused_not_skipped() {
        let tokens_only = Authenticator::new(AuthConfig {
            api_tokens: vec!["token-one-aaaaaaaaaaaa".into()],
            ..AuthConfig::default()
        })
        .unwrap();
        let now = datetime!(2021-02-22 3:42:10 UTC);
        // A signed webhook with a valid bearer token alongside: the signature decides, and it cannot be checked.
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.unix_timestamp().to_string()),
            ("webhook-signature", "v1,AAAA"),
            ("authorization", "Bearer token-one-aaaaaaaaaaaa"),
        ]);
        assert_eq!(tokens_only.verify(&req(&h, b"{}"), now), Err(AuthError::InvalidSignature));
        let h = headers(&[("X-HubSpot-Signature-v3", "AAAA"), ("X-HubSpot-Request-Timestamp", "1693657560000")]);
        assert_eq!(tokens_only.verify(&req(&h, b"{}"), now), Err(AuthError::InvalidSignature));

        let webhooks_only =
            Authenticator::new(AuthConfig { webhook_secrets: vec![WHSEC.into()], ..AuthConfig::default() }).unwrap();
        let h = headers(&[("authorization", "Bearer token-one-aaaaaaaaaaaa")]);
        assert_eq!(webhooks_only.verify(&req(&h, b"{}"), now), Err(AuthError::InvalidToken));
    }

    #[test]
    fn error_codes() {
        assert_eq!(AuthError::InvalidToken.code(), "invalid_token");
        assert_eq!(AuthError::InvalidSignature.code(), "invalid_signature");
        assert_eq!(AuthError::StaleTimestamp.code(), "stale_timestamp");
        assert_eq!(AuthError::MalformedHeader("x".into()).code(), "malformed_auth_header");
    }
}
