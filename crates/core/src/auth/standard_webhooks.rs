//! Standard Webhooks (and Svix, which uses the same scheme with `svix-` headers).
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds), `webhook-signature`: space-separated
//! `v1,<base64 HMAC-SHA256>` entries (several during a key rotation; any may match). The signed content is
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64-decoded part of a `whsec_` secret.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use time::OffsetDateTime;

use super::{check_window, header_str, parse_timestamp, AuthConfigError, AuthError, AuthMethod, RequestParts};

const WHSEC_PREFIX: &str = "whsec_";

/// Standard base64, padding optional on input (senders and secret generators differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which header family a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    Webhook,
    Svix,
}

impl Prefix {
    fn id(self) -> &'static str {
        match self {
            Prefix::Webhook => "webhook-id",
            Prefix::Svix => "svix-id",
        }
    }
    fn timestamp(self) -> &'static str {
        match self {
            Prefix::Webhook => "webhook-timestamp",
            Prefix::Svix => "svix-timestamp",
        }
    }
    fn signature(self) -> &'static str {
        match self {
            Prefix::Webhook => "webhook-signature",
            Prefix::Svix => "svix-signature",
        }
    }
}

/// The header family of a Standard Webhooks request, `None` when there is no signature header.
pub(crate) fn header_prefix(headers: &http::HeaderMap) -> Option<Prefix> {
    if headers.contains_key(Prefix::Webhook.signature()) {
        Some(Prefix::Webhook)
    } else if headers.contains_key(Prefix::Svix.signature()) {
        Some(Prefix::Svix)
    } else {
        None
    }
}

/// The decoded secrets.
#[derive(Clone, Default)]
pub(crate) struct Verifier {
    keys: Vec<Vec<u8>>,
}

/// The key bytes of a `whsec_<base64>` secret.
fn decode_whsec(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.trim().strip_prefix(WHSEC_PREFIX)?;
    let key = B64.decode(encoded).ok()?;
    (!key.is_empty()).then_some(key)
}

fn mac(key: &[u8], webhook_id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

impl Verifier {
    pub(crate) fn new(secrets: &[String]) -> Result<Verifier, AuthConfigError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| decode_whsec(s).ok_or(AuthConfigError::InvalidWebhookSecret { entry: i + 1 }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Verifier { keys })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn verify(
        &self,
        prefix: Prefix,
        req: &RequestParts<'_>,
        now: OffsetDateTime,
        window: std::time::Duration,
    ) -> Result<AuthMethod, AuthError> {
        if self.keys.is_empty() {
            return Err(AuthError::InvalidSignature);
        }
        let headers = req.headers;
        let webhook_id = header_str(headers, prefix.id())?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AuthError::MalformedHeader(format!("{} missing", prefix.id())))?;
        let timestamp_raw = header_str(headers, prefix.timestamp())?
            .ok_or_else(|| AuthError::MalformedHeader(format!("{} missing", prefix.timestamp())))?;
        let timestamp = parse_timestamp(prefix.timestamp(), timestamp_raw)?;
        check_window(i128::from(timestamp), i128::from(now.unix_timestamp()), i128::from(window.as_secs()))?;

        let signature_header = header_str(headers, prefix.signature())?.unwrap_or_default();
        let mut well_formed = false;
        let mut candidates = Vec::new();
        for entry in signature_header.split_whitespace() {
            let Some((version, signature)) = entry.split_once(',') else {
                continue;
            };
            well_formed = true;
            if version != "v1" {
                continue; // e.g. v1a (asymmetric): not supported, may sit alongside a v1
            }
            if let Ok(bytes) = B64.decode(signature) {
                candidates.push(bytes);
            }
        }
        if !well_formed {
            return Err(AuthError::MalformedHeader(format!(
                "{} holds no <version>,<signature> entry",
                prefix.signature()
            )));
        }

        let mut matched = Choice::from(0);
        for key in &self.keys {
            let expected = mac(key, webhook_id, timestamp_raw, req.body);
            for candidate in &candidates {
                matched |= expected.as_slice().ct_eq(candidate.as_slice());
            }
        }
        if bool::from(matched) {
            Ok(AuthMethod::StandardWebhooks { webhook_id: webhook_id.to_owned() })
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

/// Signs like a Standard Webhooks sender: returns the `webhook-signature` value `v1,<base64>`.
pub fn sign_standard_webhook(
    secret_whsec: &str,
    webhook_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<String, AuthConfigError> {
    let key = decode_whsec(secret_whsec).ok_or(AuthConfigError::NotAWhsecSecret)?;
    let signature = mac(&key, webhook_id, &timestamp_secs.to_string(), body);
    Ok(format!("v1,{}", B64.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::headers;
    use super::super::{AuthConfig, Authenticator};
    use super::*;
    use std::time::Duration;

    // The svix library's test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A second secret (rotation): 32 random-looking bytes.
    const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn auth(secrets: &[&str]) -> Authenticator {
        Authenticator::new(AuthConfig {
            webhook_secrets: secrets.iter().map(|s| s.to_string()).collect(),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn verify(a: &Authenticator, pairs: &[(&str, &str)], now: i64) -> Result<AuthMethod, AuthError> {
        let h = headers(pairs);
        let req = RequestParts { method: "POST", path_and_query: "/leads", headers: &h, body: BODY };
        a.verify(&req, at(now))
    }

    fn signed(signature: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", MSG_ID.to_string()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", signature.to_string()),
        ]
    }

    fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn ok() -> Result<AuthMethod, AuthError> {
        Ok(AuthMethod::StandardWebhooks { webhook_id: MSG_ID.into() })
    }

    #[test]
    fn svix_known_vector() {
        assert_eq!(sign_standard_webhook(SECRET, MSG_ID, TS, BODY).unwrap(), SIGNATURE);
    }

    #[test]
    fn good_signature_verifies() {
        assert_eq!(verify(&auth(&[SECRET]), &as_refs(&signed(SIGNATURE)), TS), ok());
    }

    #[test]
    fn svix_prefixed_headers_verify() {
        let pairs = [
            ("svix-id", MSG_ID.to_string()),
            ("svix-timestamp", TS.to_string()),
            ("svix-signature", SIGNATURE.to_string()),
        ];
        assert_eq!(verify(&auth(&[SECRET]), &as_refs(&pairs), TS + 10), ok());
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let pairs = [
            ("Webhook-Id", MSG_ID.to_string()),
            ("WEBHOOK-TIMESTAMP", TS.to_string()),
            ("Webhook-Signature", SIGNATURE.to_string()),
        ];
        assert_eq!(verify(&auth(&[SECRET]), &as_refs(&pairs), TS), ok());
    }

    #[test]
    fn rotation_header_with_two_entries() {
        let other = sign_standard_webhook(OTHER_SECRET, MSG_ID, TS, BODY).unwrap();
        let a = auth(&[SECRET]);
        // The matching entry second, then first; an unknown version alongside is ignored.
        for header in [
            format!("{other} {SIGNATURE}"),
            format!("{SIGNATURE} {other}"),
            format!("v1a,bm90LWNoZWNrZWQ= {SIGNATURE}"),
        ] {
            assert_eq!(verify(&a, &as_refs(&signed(&header)), TS), ok(), "{header}");
        }
    }

    #[test]
    fn second_secret_valid() {
        let sig = sign_standard_webhook(OTHER_SECRET, MSG_ID, TS, BODY).unwrap();
        assert_eq!(verify(&auth(&[SECRET, OTHER_SECRET]), &as_refs(&signed(&sig)), TS), ok());
        assert_eq!(verify(&auth(&[SECRET]), &as_refs(&signed(&sig)), TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn wrong_signature_is_invalid() {
        let a = auth(&[SECRET]);
        for sig in [
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,not base64!",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,",
        ] {
            assert_eq!(verify(&a, &as_refs(&signed(sig)), TS), Err(AuthError::InvalidSignature), "{sig}");
        }
        // The body is part of the signature.
        let h = headers(&as_refs(&signed(SIGNATURE)));
        let req = RequestParts { method: "POST", path_and_query: "/", headers: &h, body: br#"{"test": 1}"# };
        assert_eq!(a.verify(&req, at(TS)), Err(AuthError::InvalidSignature));
        // So is the id.
        let mut pairs = signed(SIGNATURE);
        pairs[0].1 = "msg_other".into();
        assert_eq!(verify(&a, &as_refs(&pairs), TS), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn signature_header_without_entries_is_malformed() {
        let err = verify(&auth(&[SECRET]), &as_refs(&signed("garbage")), TS).unwrap_err();
        assert_eq!(err.code(), "malformed_auth_header");
    }

    #[test]
    fn stale_timestamp_both_directions() {
        let a = auth(&[SECRET]);
        let window = 300;
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS + window), ok());
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS - window), ok());
        // Too old.
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS + window + 1), Err(AuthError::StaleTimestamp));
        // Too far in the future.
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS - window - 1), Err(AuthError::StaleTimestamp));
    }

    #[test]
    fn replay_window_is_configurable() {
        let a = Authenticator::new(AuthConfig {
            webhook_secrets: vec![SECRET.into()],
            replay_window: Duration::from_secs(60),
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS + 60), ok());
        assert_eq!(verify(&a, &as_refs(&signed(SIGNATURE)), TS + 61), Err(AuthError::StaleTimestamp));
    }

    #[test]
    fn missing_webhook_id_is_malformed() {
        let pairs = [("webhook-timestamp", TS.to_string()), ("webhook-signature", SIGNATURE.to_string())];
        let err = verify(&auth(&[SECRET]), &as_refs(&pairs), TS).unwrap_err();
        assert_eq!(err, AuthError::MalformedHeader("webhook-id missing".into()));
    }

    #[test]
    fn missing_or_bad_timestamp_is_malformed() {
        let a = auth(&[SECRET]);
        let pairs = [("webhook-id", MSG_ID.to_string()), ("webhook-signature", SIGNATURE.to_string())];
        assert_eq!(verify(&a, &as_refs(&pairs), TS).unwrap_err().code(), "malformed_auth_header");
        for ts in ["", "-1", "1614265330.5", "+1614265330", "99999999999999999999"] {
            let mut pairs = signed(SIGNATURE);
            pairs[1].1 = ts.into();
            assert_eq!(verify(&a, &as_refs(&pairs), TS).unwrap_err().code(), "malformed_auth_header", "{ts:?}");
        }
    }

    #[test]
    fn signing_helper_rejects_bad_secret() {
        assert_eq!(sign_standard_webhook("nope", "id", 1, b""), Err(AuthConfigError::NotAWhsecSecret));
    }

    #[test]
    fn unpadded_secret_is_accepted() {
        // 31 bytes → base64 ending in `==`; the same secret without the padding decodes to the same key.
        let padded = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==";
        let unpadded = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg";
        assert_eq!(
            sign_standard_webhook(padded, MSG_ID, TS, BODY).unwrap(),
            sign_standard_webhook(unpadded, MSG_ID, TS, BODY).unwrap()
        );
    }
}
