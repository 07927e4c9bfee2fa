//! Email normalisation, in one place: every path that takes an email from a sender (leads, status updates,
//! activities, referral webhooks) and the mapping call [`normalize_email`], so two spellings of one address
//! give one idempotency hash, one version record and one HubSpot contact.
//!
//! - Unicode format characters (general category Cf: U+200B zero-width space, U+200D joiner, U+00AD soft hyphen,
//!   U+FEFF, bidi controls...) are refused: they are invisible, so an address carrying one is a typo or a trick,
//!   and dropping them silently would hide either.
//! - The address is put in NFC and lower-cased (NFC again after: lower-casing can decompose).
//! - The domain goes through IDNA (UTS-46) to its ASCII form: `bücher.de` and `xn--bcher-kva.de` are one domain,
//!   and the ASCII form is what HubSpot (and the sandbox) take as an email domain.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::GeneralCategory;
use icu_properties::CodePointMapData;

/// Why an email was refused. The message never repeats the address (it is PII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EmailError(pub String);

/// The address senders mean by `raw`: trimmed, without format characters, NFC, lower-case, ASCII domain.
pub fn normalize_email(raw: &str) -> Result<String, EmailError> {
    let raw = raw.trim();
    let categories = CodePointMapData::<GeneralCategory>::new();
    if let Some(c) = raw.chars().find(|c| categories.get(*c) == GeneralCategory::Format) {
        return Err(EmailError(format!(
            "not a valid email address: it contains an invisible format character (U+{:04X})",
            c as u32
        )));
    }
    let nfc = ComposingNormalizerBorrowed::new_nfc();
    let lower = nfc.normalize(&nfc.normalize(raw).to_lowercase()).into_owned();
    let invalid = || EmailError("not a valid email address".into());
    let (local, domain) = lower.split_once('@').ok_or_else(invalid)?;
    // Non-strict UTS-46 (no STD3 rules): the plausibility check below judges the result's characters.
    let domain = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
    let email = format!("{local}@{domain}");
    if !is_plausible_email(&email) {
        return Err(invalid());
    }
    Ok(email)
}

/// Whether `s` (already trimmed and lowercased) looks like an email: one `@`, a non-empty local part, a
/// domain with an inner dot and no empty labels, no whitespace or control characters.
pub fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_characters_are_refused() {
        for c in ['\u{200B}', '\u{200D}', '\u{200C}', '\u{00AD}', '\u{FEFF}', '\u{2060}', '\u{202E}'] {
            for at in [format!("ja{c}ne@example.com"), format!("jane@exam{c}ple.com"), format!("{c}jane@example.com")] {
                let e = normalize_email(&at).unwrap_err();
                assert!(e.0.contains(&format!("U+{:04X}", c as u32)), "{at:?}: {e}");
                assert!(!e.0.contains("jane"), "no PII in the message: {e}");
            }
        }
    }

    #[test]
    fn nfc_and_nfd_give_one_address() {
        let nfc = "j\u{f6}rg@example.com";
        let nfd = "jo\u{308}rg@example.com";
        assert_ne!(nfc, nfd);
        assert_eq!(normalize_email(nfc).unwrap(), nfc);
        assert_eq!(normalize_email(nfd).unwrap(), nfc);
        assert_eq!(normalize_email("JO\u{308}RG@Example.COM").unwrap(), nfc);
    }

    #[test]
    fn idn_and_punycode_give_one_address() {
        let ascii = "jane@xn--bcher-kva.de";
        assert_eq!(normalize_email("jane@bücher.de").unwrap(), ascii);
        assert_eq!(normalize_email("jane@BÜCHER.de").unwrap(), ascii);
        assert_eq!(normalize_email("jane@bu\u{308}cher.de").unwrap(), ascii);
        assert_eq!(normalize_email(ascii).unwrap(), ascii);
        assert_eq!(normalize_email(" Jane@XN--BCHER-KVA.DE ").unwrap(), ascii);
    }

    #[test]
    fn plain_addresses_are_trimmed_and_lowercased_only() {
        assert_eq!(normalize_email("  Jane.Doe+Tag@Example.COM ").unwrap(), "jane.doe+tag@example.com");
        // Idempotent: the queue and the mapping normalise again.
        let once = normalize_email("ÜNÏ@exämple.de").unwrap();
        assert_eq!(normalize_email(&once).unwrap(), once);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
            "a@b@c.com",
            "a@.com",
            "a@b..com",
            "a@xn--.com",
        ] {
            assert_eq!(normalize_email(bad), Err(EmailError("not a valid email address".into())), "{bad:?}");
        }
    }
}
