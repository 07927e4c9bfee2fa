//! HubSpot request signatures.
//!
//! - v1: `hex(SHA-256(secret + body))`;
//! - v2: `hex(SHA-256(secret + METHOD + URI + body))`;
//! - v3: `base64(HMAC-SHA256(secret, METHOD + URI + body + timestamp))`, with `X-HubSpot-Request-Timestamp`
//!   in Unix milliseconds. Only v3 is accepted by [`super::Authenticator`] (v1/v2 have no timestamp, so a
//!   captured request could be replayed forever); v1/v2 helpers are here for tests and tooling.
//!
//! The URI is the full URL the sender called. Behind API Gateway it is rebuilt from the configured public
//! base URL plus the raw path and query ([`hubspot_v3_uri`]), never from `Host` headers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use time::OffsetDateTime;

use super::{check_window, header_str, parse_timestamp, AuthConfigError, AuthError, AuthMethod, RequestParts};

pub const SIGNATURE_V1_V2: &str = "x-hubspot-signature";
pub const SIGNATURE_V3: &str = "x-hubspot-signature-v3";
pub const REQUEST_TIMESTAMP: &str = "x-hubspot-request-timestamp";

/// v1: hex SHA-256 of `secret + body`.
pub fn hubspot_v1_signature(secret: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(body);
    hex::encode(hash.finalize())
}

/// v2: hex SHA-256 of `secret + method + uri + body` (the URI exactly as called, scheme included).
pub fn hubspot_v2_signature(secret: &str, method: &str, uri: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(method.as_bytes());
    hash.update(uri.as_bytes());
    hash.update(body);
    hex::encode(hash.finalize())
}

fn v3_mac(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().into()
}

/// v3: base64 HMAC-SHA256 (key = secret) of `method + uri + body + timestamp_ms`. `uri` must already be
/// in the form [`hubspot_v3_uri`] produces.
pub fn hubspot_v3_signature(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    STANDARD.encode(v3_mac(secret.as_bytes(), method, uri, body, &timestamp_ms.to_string()))
}

/// The characters HubSpot decodes in the URI before signing (v3); every other escape stays as received.
fn v3_decodes(byte: u8) -> bool {
    matches!(byte, b':' | b'/' | b'?' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b';')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The URI HubSpot signs for v3: `public_url` (trailing `/` dropped) + the raw `path_and_query`, with only
/// `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded (hex digits in either case). Everything else,
/// e.g. `%20`, `%26`, `%3D`, stays encoded exactly as received.
pub fn hubspot_v3_uri(public_url: &str, path_and_query: &str) -> String {
    let base = public_url.trim().trim_end_matches('/');
    let mut joined = String::with_capacity(base.len() + path_and_query.len() + 1);
    joined.push_str(base);
    if !path_and_query.is_empty() && !path_and_query.starts_with(['/', '?']) {
        joined.push('/');
    }
    joined.push_str(path_and_query);

    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                let decoded = hi << 4 | lo;
                if v3_decodes(decoded) {
                    out.push(decoded);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were substituted for ASCII escapes, so the result is still valid UTF-8.
    String::from_utf8(out).expect("decoding ASCII escapes keeps UTF-8 valid")
}

/// Checks v3 signatures against the configured client secrets.
#[derive(Clone)]
pub(crate) struct V3Verifier {
    secrets: Vec<Vec<u8>>,
    public_url: String,
}

fn valid_public_url(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return None;
    }
    Some(url.trim_end_matches('/').to_owned())
}

impl V3Verifier {
    pub(crate) fn new(secrets: &[String], public_url: &str) -> Result<V3Verifier, AuthConfigError> {
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.trim();
                if s.is_empty() {
                    Err(AuthConfigError::EmptyHubSpotSecret { entry: i + 1 })
                } else {
                    Ok(s.as_bytes().to_vec())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let public_url =
            valid_public_url(public_url).ok_or_else(|| AuthConfigError::InvalidPublicUrl(public_url.to_owned()))?;
        Ok(V3Verifier { secrets, public_url })
    }

    pub(crate) fn verify(
        &self,
        req: &RequestParts<'_>,
        now: OffsetDateTime,
        window: std::time::Duration,
    ) -> Result<AuthMethod, AuthError> {
        let signature = header_str(req.headers, SIGNATURE_V3)?.unwrap_or_default();
        let timestamp_raw = header_str(req.headers, REQUEST_TIMESTAMP)?
            .ok_or_else(|| AuthError::MalformedHeader("X-HubSpot-Request-Timestamp missing".into()))?;
        let timestamp = parse_timestamp("X-HubSpot-Request-Timestamp", timestamp_raw)?;
        let now_ms = now.unix_timestamp_nanos() / 1_000_000;
        let window_ms = i128::try_from(window.as_millis()).unwrap_or(i128::MAX / 4);
        check_window(i128::from(timestamp), now_ms, window_ms)?;

        let Ok(presented) = STANDARD.decode(signature) else {
            return Err(AuthError::InvalidSignature);
        };
        let uri = hubspot_v3_uri(&self.public_url, req.path_and_query);
        let mut matched = Choice::from(0);
        for secret in &self.secrets {
            let expected = v3_mac(secret, req.method, &uri, req.body, timestamp_raw);
            matched |= expected.as_slice().ct_eq(presented.as_slice());
        }
        if bool::from(matched) {
            Ok(AuthMethod::HubSpotV3)
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::headers;
    use super::super::{AuthConfig, Authenticator};
    use super::*;

    // HubSpot's official test vectors.
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URI: &str = "https://www.example.com/webhook_uri";
    const V1_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const V3_BODY: &str = "{'example_field':'example_value'}";
    const V3_TS: i64 = 1693657560000;
    const V3_SIG: &str = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";

    #[test]
    fn official_v1_vector() {
        assert_eq!(
            hubspot_v1_signature(SECRET, V1_BODY.as_bytes()),
            "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
        );
    }

    #[test]
    fn official_v2_get_vector() {
        assert_eq!(
            hubspot_v2_signature(SECRET, "GET", URI, b""),
            "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
        );
    }

    #[test]
    fn official_v2_post_vector() {
        assert_eq!(
            hubspot_v2_signature(SECRET, "POST", URI, br#"{"example_field":"example_value"}"#),
            "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
        );
    }

    #[test]
    fn official_v3_vector() {
        assert_eq!(hubspot_v3_signature(SECRET, "POST", URI, V3_BODY.as_bytes(), V3_TS), V3_SIG);
    }

    #[test]
    fn uri_decodes_only_the_listed_escapes() {
        let base = "https://h.example";
        assert_eq!(hubspot_v3_uri(base, "/a%3Ab"), "https://h.example/a:b");
        assert_eq!(hubspot_v3_uri(base, "/a%3ab"), "https://h.example/a:b");
        assert_eq!(hubspot_v3_uri(base, "/a%20b"), "https://h.example/a%20b");
        assert_eq!(hubspot_v3_uri(base, "/x?q=a%26b"), "https://h.example/x?q=a%26b");
        assert_eq!(hubspot_v3_uri(base, "/x?q=a%3Db"), "https://h.example/x?q=a%3Db");
        assert_eq!(hubspot_v3_uri(base, "/%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B"), "https://h.example/:/?@!$'()*,;");
        assert_eq!(hubspot_v3_uri(base, "/%3a%2f%3f%40%21%24%27%28%29%2a%2c%3b"), "https://h.example/:/?@!$'()*,;");
        // Other escapes keep their case; broken escapes are left alone.
        assert_eq!(hubspot_v3_uri(base, "/%e2%82%ac%2"), "https://h.example/%e2%82%ac%2");
        assert_eq!(hubspot_v3_uri(base, "/%%3A%zz%"), "https://h.example/%:%zz%");
        assert_eq!(hubspot_v3_uri(base, "/a%2"), "https://h.example/a%2");
        assert_eq!(hubspot_v3_uri(base, "/a%3"), "https://h.example/a%3");
    }

    #[test]
    fn uri_joins_base_and_path() {
        assert_eq!(hubspot_v3_uri("https://h.example/", "/hook"), "https://h.example/hook");
        assert_eq!(hubspot_v3_uri("https://h.example/prod", "/hook?a=1"), "https://h.example/prod/hook?a=1");
        assert_eq!(hubspot_v3_uri("https://h.example", "hook"), "https://h.example/hook");
        assert_eq!(hubspot_v3_uri("https://h.example", "?a=1"), "https://h.example?a=1");
        assert_eq!(hubspot_v3_uri("https://h.example", ""), "https://h.example");
    }

    fn auth(secrets: &[&str]) -> Authenticator {
        Authenticator::new(AuthConfig {
            hubspot_client_secrets: secrets.iter().map(|s| s.to_string()).collect(),
            public_url: Some("https://www.example.com/".into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn at_ms(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    }

    fn verify(a: &Authenticator, sig: &str, ts: &str, path: &str, now_ms: i64) -> Result<AuthMethod, AuthError> {
        let h = headers(&[("X-HubSpot-Signature-v3", sig), ("X-HubSpot-Request-Timestamp", ts)]);
        let req = RequestParts { method: "POST", path_and_query: path, headers: &h, body: V3_BODY.as_bytes() };
        a.verify(&req, at_ms(now_ms))
    }

    #[test]
    fn official_v3_vector_verifies_end_to_end() {
        let ts = V3_TS.to_string();
        assert_eq!(verify(&auth(&[SECRET]), V3_SIG, &ts, "/webhook_uri", V3_TS + 1_000), Ok(AuthMethod::HubSpotV3));
    }

    #[test]
    fn any_client_secret_may_match() {
        let ts = V3_TS.to_string();
        let a = auth(&["zzzzzzzz-new-secret", SECRET]);
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS), Ok(AuthMethod::HubSpotV3));
        let a = auth(&["zzzzzzzz-new-secret"]);
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn signature_covers_uri_with_decoding() {
        let a = auth(&[SECRET]);
        let uri = hubspot_v3_uri("https://www.example.com", "/hook%3Aa?x=%20y%2C");
        assert_eq!(uri, "https://www.example.com/hook:a?x=%20y,");
        let sig = hubspot_v3_signature(SECRET, "POST", &uri, V3_BODY.as_bytes(), V3_TS);
        let ts = V3_TS.to_string();
        assert_eq!(verify(&a, &sig, &ts, "/hook%3Aa?x=%20y%2C", V3_TS), Ok(AuthMethod::HubSpotV3));
        // Another path is another signature.
        assert_eq!(verify(&a, &sig, &ts, "/hook%3Aa?x=%20y", V3_TS), Err(AuthError::InvalidSignature));
        assert_eq!(verify(&a, V3_SIG, &ts, "/other", V3_TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn wrong_or_undecodable_signature_is_invalid() {
        let ts = V3_TS.to_string();
        let a = auth(&[SECRET]);
        for sig in ["K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Z=", "%%%", ""] {
            assert_eq!(verify(&a, sig, &ts, "/webhook_uri", V3_TS), Err(AuthError::InvalidSignature), "{sig}");
        }
    }

    #[test]
    fn stale_timestamp_both_directions() {
        let a = auth(&[SECRET]);
        let five_min = 5 * 60 * 1000;
        // The signature is right; only the clock differs.
        let ts = V3_TS.to_string();
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS + five_min), Ok(AuthMethod::HubSpotV3));
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS - five_min), Ok(AuthMethod::HubSpotV3));
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS + five_min + 1), Err(AuthError::StaleTimestamp));
        assert_eq!(verify(&a, V3_SIG, &ts, "/webhook_uri", V3_TS - five_min - 1), Err(AuthError::StaleTimestamp));
    }

    #[test]
    fn seconds_instead_of_millis_is_stale() {
        let a = auth(&[SECRET]);
        let secs = (V3_TS / 1000).to_string();
        assert_eq!(verify(&a, V3_SIG, &secs, "/webhook_uri", V3_TS), Err(AuthError::StaleTimestamp));
    }

    #[test]
    fn missing_timestamp_is_malformed() {
        let h = headers(&[("X-HubSpot-Signature-v3", V3_SIG)]);
        let req = RequestParts { method: "POST", path_and_query: "/webhook_uri", headers: &h, body: b"" };
        let err = auth(&[SECRET]).verify(&req, at_ms(V3_TS)).unwrap_err();
        assert_eq!(err.code(), "malformed_auth_header");
    }
}
