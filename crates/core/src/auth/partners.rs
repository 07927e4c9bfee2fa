//! Signatures of the referral partners' webhooks (they call us), separate from [`super::Authenticator`] because
//! each partner route accepts exactly one partner's scheme.
//!
//! - Extole: `X-Extole-Signature` = lowercase hex HMAC-SHA256 of the exact raw body, keyed with the webhook key
//!   (`partners.md`). Upper-case hex is accepted too (same bytes).
//! - impact.com Advocate (SaaSquatch), legacy: `X-Hook-Signature` = HMAC-SHA1 of the raw body keyed with the
//!   tenant API key. SaaSquatch documents the value as base64 of the MAC; that is what [`hook_signature`]
//!   produces. Because the encoding is only documented in prose, a 40-digit hex MAC is accepted as well: both
//!   encodings carry the same 20 bytes, so accepting either does not weaken the check. (The newer
//!   `X-Hook-JWS-RFC-7797` needs SaaSquatch's JWKS over the network and is not verified here.)
//!
//! Neither scheme carries a timestamp, so a captured request can be replayed; the routes' idempotency
//! (webhook ids, deterministic upserts) makes a replay harmless. Two secrets are accepted during a rotation;
//! every configured key is checked, in constant time, without an early exit.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::{header_str, AuthError};

pub const EXTOLE_SIGNATURE: &str = "x-extole-signature";
pub const HOOK_SIGNATURE: &str = "x-hook-signature";

/// A partner secret list the verifier refuses to start with (entry numbers are 1-based; never the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerSecretError {
    #[error("{scheme}: no secret configured")]
    NoSecret { scheme: &'static str },
    #[error("{scheme}: secret entry {entry} is empty")]
    EmptySecret { scheme: &'static str, entry: usize },
}

/// Which partner scheme a [`PartnerVerifier`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerScheme {
    /// `X-Extole-Signature`, hex HMAC-SHA256.
    Extole,
    /// SaaSquatch / impact.com Advocate legacy `X-Hook-Signature`, base64 (or hex) HMAC-SHA1.
    SaasquatchHook,
}

impl PartnerScheme {
    pub fn header(self) -> &'static str {
        match self {
            PartnerScheme::Extole => EXTOLE_SIGNATURE,
            PartnerScheme::SaasquatchHook => HOOK_SIGNATURE,
        }
    }

    fn mac(self, key: &[u8], body: &[u8]) -> Vec<u8> {
        match self {
            PartnerScheme::Extole => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            PartnerScheme::SaasquatchHook => {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn mac_len(self) -> usize {
        match self {
            PartnerScheme::Extole => 32,
            PartnerScheme::SaasquatchHook => 20,
        }
    }
}

/// `X-Extole-Signature` for `body`: lowercase hex HMAC-SHA256 (for tests and tooling).
pub fn extole_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(PartnerScheme::Extole.mac(secret.as_bytes(), body))
}

/// `X-Hook-Signature` for `body`: base64 HMAC-SHA1 keyed with the tenant API key (for tests and tooling).
pub fn hook_signature(api_key: &str, body: &[u8]) -> String {
    STANDARD.encode(PartnerScheme::SaasquatchHook.mac(api_key.as_bytes(), body))
}

/// Checks one partner's signature header against its configured secrets.
#[derive(Clone)]
pub struct PartnerVerifier {
    scheme: PartnerScheme,
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PartnerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartnerVerifier({:?}, <{} redacted>)", self.scheme, self.keys.len())
    }
}

impl PartnerVerifier {
    /// At least one non-empty secret; two during a rotation. Surrounding whitespace is dropped (a secret pasted
    /// into an environment variable often carries a newline).
    pub fn new(scheme: PartnerScheme, secrets: &[String]) -> Result<Self, PartnerSecretError> {
        let name = scheme.header();
        if secrets.is_empty() {
            return Err(PartnerSecretError::NoSecret { scheme: name });
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for (i, s) in secrets.iter().enumerate() {
            if s.trim().is_empty() {
                return Err(PartnerSecretError::EmptySecret { scheme: name, entry: i + 1 });
            }
            keys.push(s.trim().as_bytes().to_vec());
        }
        Ok(PartnerVerifier { scheme, keys })
    }

    pub fn scheme(&self) -> PartnerScheme {
        self.scheme
    }

    /// `Ok` when the scheme's header holds the MAC of `body` under any configured key.
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), AuthError> {
        let name = self.scheme.header();
        let value = header_str(headers, name)?.ok_or(AuthError::MissingCredentials)?;
        let presented = self.decode(value).ok_or_else(|| {
            AuthError::MalformedHeader(format!("{name} is not a {}-byte hex or base64 MAC", self.scheme.mac_len()))
        })?;
        let mut ok = Choice::from(0);
        for key in &self.keys {
            ok |= self.scheme.mac(key, body).ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }

    /// The MAC bytes of a header value: hex of the right length, or (hook scheme) base64 in any common alphabet.
    /// An optional `sha256=` / `sha1=` prefix is tolerated.
    fn decode(&self, value: &str) -> Option<Vec<u8>> {
        let value = value.trim();
        let value = value.split_once('=').filter(|(p, _)| p.starts_with("sha")).map_or(value, |(_, v)| v);
        let len = self.scheme.mac_len();
        if value.len() == 2 * len {
            if let Ok(bytes) = hex::decode(value) {
                return Some(bytes);
            }
        }
        if self.scheme == PartnerScheme::SaasquatchHook {
            for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                if let Ok(bytes) = engine.decode(value) {
                    if bytes.len() == len {
                        return Some(bytes);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::headers;
    use super::*;

    const EXTOLE_BODY: &[u8] = br#"{"event":"Share Link Created","email":"jane@example.com","share_code":"jane123"}"#;
    /// python3: hmac.new(b"extole-secret-1", EXTOLE_BODY, hashlib.sha256).hexdigest()
    const EXTOLE_SIG: &str = "6a0d84980f6b6fc3c321dd26e69e4b418e0351e8a75cc8aa2b88f2f79df10d66";
    const HOOK_BODY: &[u8] =
        br#"{"id":"wh_1","type":"user.created","tenantAlias":"test_abc","live":false,"created":1700000000000,"data":{}}"#;
    /// python3: base64.b64encode(hmac.new(b"TEST_apikey_123", HOOK_BODY, hashlib.sha1).digest())
    const HOOK_SIG_B64: &str = "TQABXa6+HjGG9IvSRC6ZSLMACmo=";
    const HOOK_SIG_HEX: &str = "4d00015daebe1e3186f48bd2442e9948b3000a6a";

    fn extole(secrets: &[&str]) -> PartnerVerifier {
        PartnerVerifier::new(PartnerScheme::Extole, &secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn hook(secrets: &[&str]) -> PartnerVerifier {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        PartnerVerifier::new(PartnerScheme::SaasquatchHook, &secrets).unwrap()
    }

    #[test]
    fn signing_helpers_match_independent_vectors() {
        assert_eq!(extole_signature("extole-secret-1", EXTOLE_BODY), EXTOLE_SIG);
        assert_eq!(hook_signature("TEST_apikey_123", HOOK_BODY), HOOK_SIG_B64);
    }

    #[test]
    fn extole_accepts_either_rotation_secret_and_either_hex_case() {
        let v = extole(&["old-secret", "extole-secret-1"]);
        assert_eq!(v.verify(&headers(&[("X-Extole-Signature", EXTOLE_SIG)]), EXTOLE_BODY), Ok(()));
        let upper = EXTOLE_SIG.to_ascii_uppercase();
        assert_eq!(v.verify(&headers(&[("x-extole-signature", &upper)]), EXTOLE_BODY), Ok(()));
        let sig = extole_signature("old-secret", EXTOLE_BODY);
        assert_eq!(v.verify(&headers(&[("x-extole-signature", &sig)]), EXTOLE_BODY), Ok(()));
    }

    #[test]
    fn extole_refuses_tampering_wrong_keys_and_garbage() {
        let v = extole(&["extole-secret-1"]);
        let h = headers(&[("x-extole-signature", EXTOLE_SIG)]);
        assert_eq!(v.verify(&h, b"{}"), Err(AuthError::InvalidSignature));
        assert_eq!(extole(&["other"]).verify(&h, EXTOLE_BODY), Err(AuthError::InvalidSignature));
        assert_eq!(v.verify(&headers(&[]), EXTOLE_BODY), Err(AuthError::MissingCredentials));
        let short = headers(&[("x-extole-signature", "abcd")]);
        assert_eq!(v.verify(&short, EXTOLE_BODY).unwrap_err().code(), "malformed_auth_header");
        // A hook-style base64 value is not an Extole signature.
        let b64 = headers(&[("x-extole-signature", HOOK_SIG_B64)]);
        assert_eq!(v.verify(&b64, EXTOLE_BODY).unwrap_err().code(), "malformed_auth_header");
    }

    #[test]
    fn hook_accepts_base64_and_hex_encodings() {
        let v = hook(&["TEST_apikey_123"]);
        for sig in [HOOK_SIG_B64, HOOK_SIG_HEX, "TQABXa6+HjGG9IvSRC6ZSLMACmo", "TQABXa6-HjGG9IvSRC6ZSLMACmo="] {
            assert_eq!(v.verify(&headers(&[("X-Hook-Signature", sig)]), HOOK_BODY), Ok(()), "{sig}");
        }
        assert_eq!(v.verify(&headers(&[("X-Hook-Signature", HOOK_SIG_B64)]), b"{}"), Err(AuthError::InvalidSignature));
        let rotated = hook(&["new-key", "TEST_apikey_123"]);
        assert_eq!(rotated.verify(&headers(&[("x-hook-signature", HOOK_SIG_B64)]), HOOK_BODY), Ok(()));
        // An Extole header does not satisfy the hook scheme.
        let wrong_header = headers(&[("x-extole-signature", HOOK_SIG_HEX)]);
        assert_eq!(v.verify(&wrong_header, HOOK_BODY), Err(AuthError::MissingCredentials));
    }

    #[test]
    fn configuration_is_checked_and_never_printed() {
        let none = PartnerVerifier::new(PartnerScheme::Extole, &[]).unwrap_err();
        assert_eq!(none.to_string(), "x-extole-signature: no secret configured");
        let empty = PartnerVerifier::new(PartnerScheme::SaasquatchHook, &["k".into(), " ".into()]).unwrap_err();
        assert_eq!(empty, PartnerSecretError::EmptySecret { scheme: HOOK_SIGNATURE, entry: 2 });
        assert!(!format!("{:?}", hook(&["TEST_apikey_123"])).contains("apikey"));
        // A secret with a trailing newline (pasted into an env var) still verifies.
        let v = extole(&["extole-secret-1\n"]);
        assert_eq!(v.verify(&headers(&[("x-extole-signature", EXTOLE_SIG)]), EXTOLE_BODY), Ok(()));
    }
}
