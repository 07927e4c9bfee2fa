//! Who may use the console: operators, each with a token of their own (never a sender's token). Signing in with a
//! token gives a session cookie that names the operator and expires; every form carries a CSRF token derived from
//! the session. Both are HMAC-SHA256 under the console's key and checked in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "hubrelay_console";

/// How long a session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

/// One operator: a name (what the audit trail records) and a token.
#[derive(Clone)]
pub struct Operator {
    pub name: String,
    token: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Operators from `name:token,name:token` (`HUBRELAY_CONSOLE_OPERATORS`; a name may come twice during a rotation).
pub fn parse_operators(spec: &str) -> Result<Vec<Operator>, String> {
    let mut operators = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, token) = entry.split_once(':').ok_or_else(|| format!("`{}…` is not name:token", short(entry)))?;
        let (name, token) = (name.trim(), token.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !name_ok {
            return Err(format!("operator name `{name}`: 1 to 64 letters, digits, - _ . @"));
        }
        if token.len() < 16 {
            return Err(format!("operator {name}: a token of at least 16 characters"));
        }
        operators.push(Operator { name: name.to_string(), token: token.to_string() });
    }
    if operators.is_empty() {
        return Err("no operator (name:token)".into());
    }
    Ok(operators)
}

fn short(s: &str) -> String {
    s.chars().take(4).collect()
}

/// A session key derived from the operators' tokens (`name:token,…`), for a deployment with no key of its own to
/// keep (the AWS console): as secret as the tokens, the same on every instance, and new when they change.
pub fn derived_key(operators_spec: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"hubrelay console session key").expect("any key length");
    mac.update(operators_spec.trim().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Signs and checks sessions and CSRF tokens.
#[derive(Clone)]
pub struct Gate {
    operators: Vec<Operator>,
    key: Vec<u8>,
}

impl Gate {
    pub fn new(operators: Vec<Operator>, key: Vec<u8>) -> Gate {
        Gate { operators, key }
    }

    fn mac(&self, purpose: &str, text: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The operator whose token this is: every token compared, as fixed-length MACs (so neither the match nor the
    /// tokens' lengths show in the time taken).
    pub fn operator_for(&self, token: &str) -> Option<&Operator> {
        let given = self.mac("token", token.trim());
        let mut found = None;
        for op in &self.operators {
            if bool::from(self.mac("token", &op.token).ct_eq(&given)) {
                found = Some(op);
            }
        }
        found
    }

    /// A session cookie's value for `name`, valid until `now + SESSION_SECS`.
    pub fn session(&self, name: &str, now: i64) -> String {
        let payload = format!("{}.{}", B64.encode(name), now + SESSION_SECS);
        format!("{payload}.{}", B64.encode(self.mac("session", &payload)))
    }

    /// The operator a session cookie names, while it is valid and its operator still exists.
    pub fn check_session(&self, value: &str, now: i64) -> Option<String> {
        let (payload, sig) = value.rsplit_once('.')?;
        let sig = B64.decode(sig).ok()?;
        if !bool::from(self.mac("session", payload).ct_eq(&sig)) {
            return None;
        }
        let (name, expires) = payload.split_once('.')?;
        let name = String::from_utf8(B64.decode(name).ok()?).ok()?;
        let live = expires.parse::<i64>().ok()? > now;
        (live && self.operators.iter().any(|o| o.name == name)).then_some(name)
    }

    /// The CSRF token of a session: every form sends it back.
    pub fn csrf(&self, session: &str) -> String {
        hex::encode(self.mac("csrf", session))
    }

    pub fn check_csrf(&self, session: &str, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(parse_operators("alice:alice-token-0123456789, bob:bob-token-0123456789").unwrap(), b"k".to_vec())
    }

    #[test]
    fn operators_are_name_token_pairs_with_real_tokens() {
        assert_eq!(parse_operators("a:0123456789abcdef").unwrap()[0].name, "a");
        assert!(parse_operators("a:short").unwrap_err().contains("16"));
        assert!(parse_operators("no-token").is_err());
        assert!(parse_operators("bad name:0123456789abcdef").is_err());
        assert!(parse_operators(" , ").is_err());
    }

    #[test]
    fn a_session_names_its_operator_until_it_expires_and_cannot_be_forged() {
        let gate = gate();
        assert_eq!(gate.operator_for("bob-token-0123456789").map(|o| o.name.as_str()), Some("bob"));
        assert!(gate.operator_for("bob-token-012345678").is_none());
        let session = gate.session("alice", 1_000);
        assert_eq!(gate.check_session(&session, 1_001).as_deref(), Some("alice"));
        assert_eq!(gate.check_session(&session, 1_000 + SESSION_SECS), None, "expired");
        let forged = session.replacen(&B64.encode("alice"), &B64.encode("bob"), 1);
        assert_eq!(gate.check_session(&forged, 1_001), None);
        let other_key = Gate::new(parse_operators("alice:alice-token-0123456789").unwrap(), b"other".to_vec());
        assert_eq!(other_key.check_session(&session, 1_001), None);
        let csrf = gate.csrf(&session);
        assert!(gate.check_csrf(&session, &csrf));
        assert!(!gate.check_csrf(&gate.session("alice", 2_000), &csrf));
    }
}
