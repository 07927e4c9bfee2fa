//! Referral platforms as hubrelay sees them: Extole's events ([`extole`]) and impact.com conversions ([`impact`]),
//! behind the [`Extole`] and [`Impact`] traits (the HTTP clients live in `hubrelay-clients`).
//!
//! Both clients classify failures into a [`PartnerError`] whose [`PartnerError::outcome`] drives the retry
//! path exactly like `HubSpotError`: network trouble, 408, 429 and 5xx are retried, any other 4xx is parked with
//! the partner's own error text. Neither partner has an idempotency key, so the conversion ids built here
//! ([`partner_conversion_id`], [`impact_order_id`], [`signup_conversion_id`]) are deterministic: a retried or
//! replayed delivery carries the same id and the partner's own dedupe drops it.

use sha2::{Digest, Sha256};

use crate::domain::AttemptOutcome;

pub mod advocate;
pub mod extole;
pub mod impact;

pub use extole::{Extole, ExtoleAccepted, ExtoleEvent};
pub use impact::{Impact, ImpactAccepted, ImpactConversion, InvalidConversion};

/// Extole keeps `partner_conversion_id` values up to this length.
pub const EXTOLE_CONVERSION_ID_MAX: usize = 38;
/// impact.com keeps `OrderId` values up to this length.
pub const IMPACT_ORDER_ID_MAX: usize = 64;

/// Why a partner call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{partner} {}: {message}", status.map(|s| s.to_string()).unwrap_or_else(|| "unreachable".into()))]
pub struct PartnerError {
    /// `extole` or `impact`.
    pub partner: &'static str,
    /// HTTP status, `None` for network errors and timeouts.
    pub status: Option<u16>,
    /// Stable code: `{partner}_unreachable`, `{partner}_timeout`, `{partner}_unavailable`, `rate_limited`,
    /// `{partner}_unauthorized`, `{partner}_forbidden`, or the partner's own code (lowercased) for other 4xx.
    pub code: String,
    /// The partner's error text (impact: every `errors[].message`), kept so a parked event says what to fix.
    pub message: String,
    /// `Retry-After` (seconds), when the partner sent one.
    pub retry_after_secs: Option<u64>,
}

impl PartnerError {
    /// Retryable: network errors, timeouts, 408, 429 and 5xx (both partners document 429 and 500 as transient).
    /// Every other answer (400, 401, 403, 404, 415, ...) needs a fix first.
    pub fn outcome(&self) -> AttemptOutcome {
        match self.status {
            None => AttemptOutcome::Retryable,
            Some(408 | 429) => AttemptOutcome::Retryable,
            Some(s) if s >= 500 => AttemptOutcome::Retryable,
            Some(_) => AttemptOutcome::Rejected,
        }
    }

    /// The stable code of a status when the partner's body names none worth keeping.
    pub fn generic_code(partner: &'static str, status: u16) -> Option<String> {
        match status {
            401 => Some(format!("{partner}_unauthorized")),
            403 => Some(format!("{partner}_forbidden")),
            429 => Some("rate_limited".into()),
            s if s >= 500 => Some(format!("{partner}_unavailable")),
            _ => None,
        }
    }
}

/// SHA-256 hex (lowercase) of the trimmed, lowercased email: impact.com refuses plaintext `CustomerEmail`, and
/// normalising first makes `Jane@X.com ` and `jane@x.com` hash alike (the partner matches participants on it).
pub fn sha256_hex_email(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// Extole's `partner_conversion_id` for a deal reaching `stage`: `deal_{stage}_{deal_id}` when that fits in
/// 38 characters, else a hash form (see [`bounded_id`]). Deterministic per (deal, stage).
pub fn partner_conversion_id(deal_id: &str, stage: &str) -> String {
    bounded_id("deal", deal_id, stage, EXTOLE_CONVERSION_ID_MAX)
}

/// impact.com's `OrderId` for a deal reaching `stage` (the Aimbase guide's `deal_[stage]_id`), at most 64 characters.
pub fn impact_order_id(deal_id: &str, stage: &str) -> String {
    bounded_id("deal", deal_id, stage, IMPACT_ORDER_ID_MAX)
}

/// Extole's `partner_conversion_id` for a contact's sign-up: one per email (normalised), so the same person
/// reaching us through a form webhook and a property-change webhook is counted once.
pub fn signup_conversion_id(email: &str) -> String {
    bounded_id("signup", &email.trim().to_lowercase(), "", EXTOLE_CONVERSION_ID_MAX)
}

/// `{kind}_{stage}_{id}` (or `{kind}_{id}` without a stage) when `id` is all digits (HubSpot object ids are),
/// `stage` is ASCII letters, digits and `-` only, and the result fits in `max`: readable in partner dashboards,
/// and unambiguous because the id (digits) cannot contain the `_` separator. Otherwise `{kind}h_` and the first
/// hex digits of SHA-256 over `kind NUL stage NUL id`, as many as fit (at most 64). The `h` keeps the two forms
/// apart, so no natural id can equal a hashed one.
fn bounded_id(kind: &str, id: &str, stage: &str, max: usize) -> String {
    let simple_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let simple_stage = stage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if simple_id && simple_stage {
        let natural = if stage.is_empty() { format!("{kind}_{id}") } else { format!("{kind}_{stage}_{id}") };
        if natural.len() <= max {
            return natural;
        }
    }
    let mut hash = Sha256::new();
    for part in [kind, stage, id] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hex::encode(hash.finalize());
    let prefix = format!("{kind}h_");
    let take = max.saturating_sub(prefix.len()).min(digest.len());
    format!("{prefix}{}", &digest[..take])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_hash_is_normalised_sha256() {
        // printf 'jane@example.com' | sha256sum
        let want = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d";
        assert_eq!(sha256_hex_email("jane@example.com"), want);
        assert_eq!(sha256_hex_email("  Jane@Example.COM \n"), want);
        assert_eq!(sha256_hex_email("jane@example.com").len(), 64);
    }

    #[test]
    fn conversion_ids_are_readable_when_they_fit() {
        assert_eq!(partner_conversion_id("12345678901", "closedwon"), "deal_closedwon_12345678901");
        assert_eq!(impact_order_id("12345678901", "closedwon"), "deal_closedwon_12345678901");
        assert_eq!(partner_conversion_id("42", "contractsent"), "deal_contractsent_42");
    }

    #[test]
    fn long_or_odd_inputs_get_a_bounded_hash_form() {
        let uuid_stage = "3f1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7b";
        let id = partner_conversion_id("12345678901", uuid_stage);
        assert!(id.starts_with("dealh_") && id.len() == EXTOLE_CONVERSION_ID_MAX, "{id}");
        let order = impact_order_id("12345678901", uuid_stage);
        // deal_ + 36 + _ + 11 = 53 characters: fits impact's limit, so it stays readable there.
        assert_eq!(order, format!("deal_{uuid_stage}_12345678901"));
        let long = impact_order_id(&"9".repeat(80), "closedwon");
        assert!(long.starts_with("dealh_") && long.len() == IMPACT_ORDER_ID_MAX, "{long}");
        // Underscores, spaces, empty parts: hashed, never ambiguous.
        for (deal, stage) in [("12", "closed_won"), ("12", "closed won"), ("", "closedwon"), ("a_b", "x")] {
            let id = partner_conversion_id(deal, stage);
            assert!(id.starts_with("dealh_") && id.len() <= EXTOLE_CONVERSION_ID_MAX, "{id}");
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let stage = "3f1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7b";
        assert_eq!(partner_conversion_id("77", stage), partner_conversion_id("77", stage));
        assert_ne!(partner_conversion_id("77", stage), partner_conversion_id("78", stage));
        assert_ne!(partner_conversion_id("1", "closedwon"), partner_conversion_id("1", "closedlost"));
        // The separator cannot be moved between the parts to forge a collision.
        assert_ne!(partner_conversion_id("12", "a_b"), partner_conversion_id("b_12", "a"));
        assert_ne!(impact_order_id("1", "x"), partner_conversion_id("1", "y"));
    }

    #[test]
    fn signup_ids_follow_the_email() {
        let a = signup_conversion_id("Jane@Example.com");
        assert_eq!(a, signup_conversion_id(" jane@example.com"));
        assert_ne!(a, signup_conversion_id("john@example.com"));
        assert!(a.starts_with("signuph_") && a.len() == EXTOLE_CONVERSION_ID_MAX, "{a}");
    }

    #[test]
    fn outcome_follows_the_status() {
        let e = |status| PartnerError {
            partner: "extole",
            status,
            code: "x".into(),
            message: "m".into(),
            retry_after_secs: None,
        };
        for s in [None, Some(408), Some(429), Some(500), Some(502), Some(503)] {
            assert_eq!(e(s).outcome(), AttemptOutcome::Retryable, "{s:?}");
        }
        for s in [400, 401, 403, 404, 409, 415, 422] {
            assert_eq!(e(Some(s)).outcome(), AttemptOutcome::Rejected, "{s}");
        }
        assert_eq!(e(Some(400)).to_string(), "extole 400: m");
        assert_eq!(e(None).to_string(), "extole unreachable: m");
    }
}
