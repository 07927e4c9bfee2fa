//! Static API tokens, for senders that cannot sign (Zapier): `Authorization: Bearer <token>` or
//! `X-Api-Key: <token>`. Two tokens may be valid at once during a rotation.
//!
//! Only SHA-256 digests of the configured tokens are kept. A presented token is hashed and compared with
//! every digest in constant time, without an early exit, so the answer leaks neither which token matched
//! nor the tokens' lengths.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{header_str, AuthConfigError, AuthError};

pub const AUTHORIZATION: &str = "authorization";
pub const X_API_KEY: &str = "x-api-key";

/// The digests of the configured tokens.
#[derive(Clone, Default)]
pub(crate) struct TokenSet {
    digests: Vec<[u8; 32]>,
}

impl TokenSet {
    pub(crate) fn new(tokens: &[String]) -> Result<TokenSet, AuthConfigError> {
        let mut digests = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            let entry = i + 1;
            if token.trim().is_empty() {
                return Err(AuthConfigError::EmptyApiToken { entry });
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(AuthConfigError::InvalidApiToken { entry });
            }
            digests.push(digest(token.as_bytes()));
        }
        Ok(TokenSet { digests })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `token` is one of the configured tokens (constant-time over all of them).
    pub(crate) fn contains(&self, token: &str) -> bool {
        let presented = digest(token.as_bytes());
        let mut found = Choice::from(0);
        for configured in &self.digests {
            found |= configured.ct_eq(&presented);
        }
        bool::from(found)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token the request presents, if any: `Authorization: Bearer <token>` first, then `X-Api-Key`.
/// An `Authorization` header with another scheme (and no `X-Api-Key`) is malformed.
pub(crate) fn presented_token(headers: &http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let authorization = header_str(headers, AUTHORIZATION)?;
    if let Some(value) = authorization {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if token.is_empty() {
                return Err(AuthError::MalformedHeader("Authorization: Bearer without a token".into()));
            }
            return Ok(Some(token));
        }
    }
    if let Some(key) = header_str(headers, X_API_KEY)? {
        if key.is_empty() {
            return Err(AuthError::MalformedHeader("X-Api-Key is empty".into()));
        }
        return Ok(Some(key));
    }
    if authorization.is_some() {
        return Err(AuthError::MalformedHeader("Authorization scheme must be Bearer".into()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::headers;
    use super::super::{AuthConfig, AuthMethod, Authenticator, RequestParts};
    use super::*;
    use time::macros::datetime;

    const OLD: &str = "zap-old-3f9a1c2b7d8e4f60";
    const NEW: &str = "zap-new-a1b2c3d4e5f60718";

    fn auth() -> Authenticator {
        Authenticator::new(AuthConfig { api_tokens: vec![OLD.into(), NEW.into()], ..AuthConfig::default() }).unwrap()
    }

    fn verify(pairs: &[(&str, &str)]) -> Result<AuthMethod, AuthError> {
        let h = headers(pairs);
        let req = RequestParts { method: "POST", path_and_query: "/leads", headers: &h, body: b"{}" };
        auth().verify(&req, datetime!(2024-05-01 12:00 UTC))
    }

    #[test]
    fn both_tokens_valid_during_rotation() {
        assert_eq!(verify(&[("Authorization", &format!("Bearer {OLD}"))]), Ok(AuthMethod::ApiToken));
        assert_eq!(verify(&[("Authorization", &format!("Bearer {NEW}"))]), Ok(AuthMethod::ApiToken));
    }

    #[test]
    fn scheme_and_header_name_are_case_insensitive() {
        assert_eq!(verify(&[("AUTHORIZATION", &format!("bearer {NEW}"))]), Ok(AuthMethod::ApiToken));
        assert_eq!(verify(&[("authorization", &format!("BEARER   {NEW}  "))]), Ok(AuthMethod::ApiToken));
    }

    #[test]
    fn wrong_token_is_invalid() {
        assert_eq!(verify(&[("Authorization", "Bearer zap-old-3f9a1c2b7d8e4f6")]), Err(AuthError::InvalidToken));
        assert_eq!(verify(&[("Authorization", &format!("Bearer {OLD}x"))]), Err(AuthError::InvalidToken));
        // Tokens are case-sensitive.
        assert_eq!(
            verify(&[("Authorization", &format!("Bearer {}", OLD.to_uppercase()))]),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn x_api_key_works() {
        assert_eq!(verify(&[("X-Api-Key", OLD)]), Ok(AuthMethod::ApiToken));
        assert_eq!(verify(&[("x-api-key", NEW)]), Ok(AuthMethod::ApiToken));
        assert_eq!(verify(&[("X-API-KEY", "nope")]), Err(AuthError::InvalidToken));
    }

    #[test]
    fn bearer_wins_over_x_api_key() {
        assert_eq!(verify(&[("Authorization", "Bearer nope"), ("X-Api-Key", OLD)]), Err(AuthError::InvalidToken));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_malformed() {
        for pairs in [
            vec![("Authorization", "Basic dXNlcjpwYXNz")],
            vec![("Authorization", "Bearer")],
            vec![("Authorization", "Bearer    ")],
            vec![("X-Api-Key", "")],
        ] {
            let err = verify(&pairs).unwrap_err();
            assert_eq!(err.code(), "malformed_auth_header", "{pairs:?}");
        }
        // Basic plus a valid X-Api-Key: the key is used.
        assert_eq!(verify(&[("Authorization", "Basic dXNlcjpwYXNz"), ("X-Api-Key", NEW)]), Ok(AuthMethod::ApiToken));
    }

    #[test]
    fn token_set_matches_only_configured_tokens() {
        let set = TokenSet::new(&[OLD.to_string()]).unwrap();
        assert!(set.contains(OLD));
        assert!(!set.contains(""));
        assert!(!set.contains(NEW));
        assert!(TokenSet::new(&[]).unwrap().is_empty());
    }
}
