//! Nothing personal in logs: masking for emails, phone numbers, tokens and JSON payloads.
//!
//! Masks keep just enough to tell values apart while debugging (`j***@e***.com`, `***00`, `pat-***`).
//! They are for logs and error messages only: never compare or store masked values.

use std::borrow::Cow;

use serde_json::{Map, Value};

const STARS: &str = "***";

/// `jane.doe@example.com` → `j***@e***.com`: first character of the local part and of the domain, then
/// the top-level domain. Something without `@` is masked like any text.
pub fn mask_email(email: &str) -> String {
    let email = email.trim();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return mask_text(email);
    };
    let mut out = first_char_masked(local);
    out.push('@');
    match domain.rsplit_once('.') {
        Some((name, tld)) if !name.is_empty() && !tld.is_empty() => {
            out.push_str(&first_char_masked(name));
            out.push('.');
            out.push_str(tld);
        }
        _ => out.push_str(&first_char_masked(domain)),
    }
    out
}

/// Keeps the last 2 digits: `+1 555 0100` → `***00`. Numbers with fewer than 4 digits give `***`.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return STARS.to_owned();
    }
    let mut out = STARS.to_owned();
    out.extend(&digits[digits.len() - 2..]);
    out
}

/// Keeps at most the first 4 characters, and never more than a quarter of the token:
/// `pat-na1-abcdef...` → `pat-***`; short tokens give `***`.
pub fn mask_token(token: &str) -> String {
    let token = token.trim();
    let keep = (token.chars().count() / 4).min(4);
    let mut out: String = token.chars().take(keep).collect();
    out.push_str(STARS);
    out
}

/// An upstream system's error text made safe to store and show: email addresses and phone numbers inside it
/// are masked (HubSpot quotes refused values: `Email address jane@x.com is invalid`). Record ids, which are
/// digits without separators, are left readable.
pub fn mask_message(message: &str) -> String {
    mask_phones_in_text(&mask_emails_in_text(message))
}

/// Runs like `+1 555 0100` or `(555) 010-0100`: at least 7 digits, and a `+` or separators between groups.
fn mask_phones_in_text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i] == '+' || chars[i] == '(' || chars[i].is_ascii_digit();
        if starts && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut end = i;
            while end < chars.len() && (chars[end].is_ascii_digit() || " +-().".contains(chars[end])) {
                end += 1;
            }
            // Trailing separators belong to the sentence.
            while end > i && !chars[end - 1].is_ascii_digit() {
                end -= 1;
            }
            let run: String = chars[i..end].iter().collect();
            let digits = run.chars().filter(char::is_ascii_digit).count();
            let separated = run.starts_with('+') || run.chars().any(|c| " -().".contains(c));
            let ends_clean = end == chars.len() || !chars[end].is_ascii_alphanumeric();
            // `2026-11-20` (and a time after it) is a date, not a phone.
            let b = run.as_bytes();
            let date = b.len() >= 10
                && b[4] == b'-'
                && b[7] == b'-'
                && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&k| b[k].is_ascii_digit());
            if digits >= 7 && separated && ends_clean && !date {
                out.push_str(&mask_phone(&run));
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Masks every value that looks personal or secret, at any depth:
///
/// - values under keys naming an email, phone, name (first/last/full...), address, token, secret,
///   password, API key or authorization (case-insensitive; `snake_case`, `camelCase`, `kebab-case` and
///   prefixed variants such as `contact_email` or `mobilePhone` included); objects and arrays under such a
///   key are masked throughout;
/// - name/value pairs such as HubSpot's `{"propertyName": "email", "propertyValue": "..."}` or
///   `{"property": "phone", "value": "..."}`;
/// - any string that is or contains an email address, or that looks like a bearer token, HubSpot private
///   app token or `whsec_` secret.
///
/// Booleans, nulls and empty strings are kept; numbers under personal keys become masked strings.
pub fn mask_json(value: &Value) -> Value {
    mask_value(value, None)
}

/// What kind of personal data a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Authorization,
    Secret,
    Email,
    Phone,
    Personal,
}

/// Lowercase letters and digits only: `First_Name`, `firstName` and `first-name` all become `firstname`.
fn normalise(key: &str) -> String {
    key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn classify_key(key: &str) -> Option<Kind> {
    let k = normalise(key);
    let has = |words: &[&str]| words.iter().any(|w| k.contains(w));
    if has(&["authorization"]) {
        Some(Kind::Authorization)
    } else if has(&["token", "secret", "password", "passwd", "apikey", "cookie", "credential"]) {
        Some(Kind::Secret)
    } else if has(&["email"]) {
        Some(Kind::Email)
    } else if has(&["phone"]) || matches!(k.as_str(), "mobile" | "mobilenumber" | "fax") {
        Some(Kind::Phone)
    } else if has(&[
        "firstname",
        "lastname",
        "fullname",
        "middlename",
        "givenname",
        "familyname",
        "surname",
        "contactname",
        "username",
        "address",
        "street",
        "postalcode",
        "postcode",
        "zipcode",
        "birthdate",
        "dateofbirth",
    ]) || matches!(k.as_str(), "name" | "zip" | "dob")
        // Free text and free properties: whatever a person typed or a sender mapped.
        || matches!(k.as_str(), "note" | "notes" | "comment" | "comments" | "remarks" | "body" | "properties")
    {
        Some(Kind::Personal)
    } else {
        None
    }
}

/// Keys that name a field in a name/value pair, and the keys holding its value.
const DESCRIPTOR_KEYS: &[&str] = &["property", "propertyname", "name", "key", "field", "fieldname"];
const VALUE_KEYS: &[&str] = &["value", "propertyvalue"];

fn mask_value(value: &Value, kind: Option<Kind>) -> Value {
    match value {
        Value::Object(map) => mask_object(map, kind),
        Value::Array(items) => Value::Array(items.iter().map(|v| mask_value(v, kind)).collect()),
        Value::String(s) => Value::String(match kind {
            _ if s.is_empty() => String::new(),
            Some(kind) => mask_as(kind, s),
            None => mask_free_text(s).into_owned(),
        }),
        Value::Number(n) => match kind {
            Some(Kind::Phone) => Value::String(mask_phone(&n.to_string())),
            Some(_) => Value::String(STARS.to_owned()),
            None => value.clone(),
        },
        Value::Bool(_) | Value::Null => value.clone(),
    }
}

fn mask_object(map: &Map<String, Value>, inherited: Option<Kind>) -> Value {
    // A name/value pair: the descriptor's value names the field, the value key holds the data.
    let pair = map.iter().find_map(|(k, v)| {
        let descriptor = DESCRIPTOR_KEYS.contains(&normalise(k).as_str());
        let has_value = map.keys().any(|k| VALUE_KEYS.contains(&normalise(k).as_str()));
        match v {
            Value::String(field) if descriptor && has_value => Some((k.as_str(), classify_key(field))),
            _ => None,
        }
    });
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        let masked = match pair {
            // A descriptor naming a personal field (`"email"`) is a field name, not personal data; any
            // other descriptor value is masked as usual (`{"name": "Jane Doe", "value": 5}`).
            Some((descriptor, Some(_))) if k == descriptor && inherited.is_none() => v.clone(),
            Some((_, Some(kind))) if VALUE_KEYS.contains(&normalise(k).as_str()) => mask_value(v, Some(kind)),
            _ => mask_value(v, classify_key(k).or(inherited)),
        };
        out.insert(k.clone(), masked);
    }
    Value::Object(out)
}

fn mask_as(kind: Kind, s: &str) -> String {
    match kind {
        Kind::Authorization => mask_authorization(s),
        Kind::Secret => mask_token(s),
        Kind::Email if looks_like_email(s) => mask_email(s),
        Kind::Email | Kind::Personal => mask_text(s),
        Kind::Phone => mask_phone(s),
    }
}

/// `Bearer pat-na1-...` → `Bearer pat-***`: the scheme stays, the credential is masked.
fn mask_authorization(s: &str) -> String {
    match s.trim().split_once(' ') {
        Some((scheme, credential)) => format!("{scheme} {}", mask_token(credential)),
        None => mask_token(s),
    }
}

/// Text with no personal key: mask tokens by their look and every email address inside it.
fn mask_free_text(s: &str) -> Cow<'_, str> {
    let trimmed = s.trim_start();
    let lower: String = trimmed.chars().take(7).flat_map(char::to_lowercase).collect();
    if lower.starts_with("bearer ") {
        return Cow::Owned(mask_authorization(s));
    }
    if trimmed.starts_with("whsec_") || trimmed.starts_with("pat-na") || trimmed.starts_with("pat-eu") {
        return Cow::Owned(mask_token(s));
    }
    if looks_like_email(s) {
        return Cow::Owned(mask_email(s));
    }
    // Notes, comments and free properties carry numbers too ("call me on +1 555 0100").
    match mask_emails_in_text(s) {
        Cow::Borrowed(text) => {
            let masked = mask_phones_in_text(text);
            if masked == text {
                Cow::Borrowed(s)
            } else {
                Cow::Owned(masked)
            }
        }
        Cow::Owned(text) => Cow::Owned(mask_phones_in_text(&text)),
    }
}

/// Masks like a name: first character and `***` (`***` alone for one or two characters).
fn mask_text(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 2 {
        return STARS.to_owned();
    }
    first_char_masked(s)
}

fn first_char_masked(s: &str) -> String {
    match s.chars().next() {
        Some(c) => format!("{c}{STARS}"),
        None => STARS.to_owned(),
    }
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic))
}

/// One `@`, a non-empty local part and a dotted domain, no whitespace.
fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.contains('@') && !s.chars().any(char::is_whitespace) && valid_domain(domain)
        }
        None => false,
    }
}

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Replaces every email address inside free text: `write to jane@example.com.` → `write to j***@e***.com.`
fn mask_emails_in_text(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut copied = 0; // bytes of `s` already handled
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' {
            let mut start = i;
            while start > copied && is_local_byte(bytes[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < bytes.len() && is_domain_byte(bytes[end]) {
                end += 1;
            }
            // A sentence's full stop is not part of the domain.
            while end > i + 1 && matches!(bytes[end - 1], b'.' | b'-') {
                end -= 1;
            }
            // All bytes scanned are ASCII, so these are char boundaries.
            if start < i && valid_domain(&s[i + 1..end]) {
                out.push_str(&s[copied..start]);
                out.push_str(&mask_email(&s[start..end]));
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        Cow::Borrowed(s)
    } else {
        out.push_str(&s[copied..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn upstream_messages_lose_emails_and_phones_but_keep_ids() {
        let m =
            super::mask_message("Email address jane.doe@example.com is invalid; call +1 555 0100 or (555) 010-0199.");
        assert_eq!(m, "Email address j***@e***.com is invalid; call ***00 or ***99.");
        let ids = "Contact already exists. Existing ID: 37765128953 (correlation 4ceb-80b4)";
        assert_eq!(super::mask_message(ids), ids);
        let date = "2026-11-20 10:00 is not midnight UTC";
        assert_eq!(super::mask_message(date), date);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn free_text_and_free_properties_are_masked() {
        let lead = json!({
            "notes": "Jane wants a call on +1 555 0100 after 5",
            "comment": "ring (555) 010-0199",
            "properties": {"vehicle_of_interest": "2026 Model X", "referrer": "bob@example.com"},
            "source": "call 555-010-0123 or bob@example.com",
            "lead_date": "2026-11-20 10:00",
        });
        assert_eq!(
            mask_json(&lead),
            json!({
                "notes": "J***",
                "comment": "r***",
                "properties": {"vehicle_of_interest": "2***", "referrer": "b***"},
                "source": "call ***23 or b***@e***.com",
                "lead_date": "2026-11-20 10:00",
            })
        );
    }

    #[test]
    fn emails() {
        assert_eq!(mask_email("jane.doe@example.com"), "j***@e***.com");
        assert_eq!(mask_email("  Bob@Mail.Example.co.uk "), "B***@M***.uk");
        assert_eq!(mask_email("x@localhost"), "x***@l***");
        assert_eq!(mask_email("@example.com"), "***@e***.com");
        assert_eq!(mask_email("élodie@exemple.fr"), "é***@e***.fr");
        assert_eq!(mask_email("not an email"), "n***");
        assert_eq!(mask_email(""), "***");
    }

    #[test]
    fn phones() {
        assert_eq!(mask_phone("+1 555 0100"), "***00");
        assert_eq!(mask_phone("(555) 010-0142"), "***42");
        assert_eq!(mask_phone("112"), "***");
        assert_eq!(mask_phone(""), "***");
    }

    #[test]
    fn tokens() {
        assert_eq!(mask_token("pat-na1-abcdef12-3456-7890-abcd-ef1234567890"), "pat-***");
        assert_eq!(mask_token("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "whse***");
        // Never more than a quarter.
        assert_eq!(mask_token("abcdefgh"), "ab***");
        assert_eq!(mask_token("abc"), "***");
        assert_eq!(mask_token(""), "***");
        assert_eq!(mask_token("ééééééééééééééééé"), "éééé***");
    }

    #[test]
    fn json_masks_personal_keys_at_any_depth() {
        let lead = json!({
            "event": "lead.captured.v1",
            "contact": {
                "email": "jane.doe@example.com",
                "Phone": "+1 555 0100",
                "mobilephone": 15550142,
                "first_name": "Jane",
                "lastName": "Doe",
                "full-name": "Jane Doe",
                "firstname": "Jane",
                "name": "Jane Doe",
                "address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
                "emails": ["a@b.co", "c@d.co"],
                "email_opt_in": true,
                "company": "Acme",
            },
            "dealership_name": "Springfield Motors",
            "lead_priority": "high",
            "budget": 30000,
            "notes": null,
        });
        let masked = mask_json(&lead);
        assert_eq!(
            masked,
            json!({
                "event": "lead.captured.v1",
                "contact": {
                    "email": "j***@e***.com",
                    "Phone": "***00",
                    "mobilephone": "***42",
                    "first_name": "J***",
                    "lastName": "D***",
                    "full-name": "J***",
                    "firstname": "J***",
                    "name": "J***",
                    "address": {"street": "1***", "city": "S***", "country": "***"},
                    "emails": ["a***@b***.co", "c***@d***.co"],
                    "email_opt_in": true,
                    "company": "Acme",
                },
                "dealership_name": "Springfield Motors",
                "lead_priority": "high",
                "budget": 30000,
                "notes": null,
            })
        );
    }

    #[test]
    fn json_masks_secrets() {
        let v = json!({
            "Authorization": "Bearer pat-na1-abcdef12-3456-7890",
            "headers": {"x-api-key": "zap-0123456789abcdef", "X-HubSpot-Signature-v3": "K36dawei4A"},
            "client_secret": "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            "accessToken": "abcdefghijklmnop",
            "password": "hunter2hunter2",
        });
        assert_eq!(
            mask_json(&v),
            json!({
                "Authorization": "Bearer pat-***",
                "headers": {"x-api-key": "zap-***", "X-HubSpot-Signature-v3": "K36dawei4A"},
                "client_secret": "yyyy***",
                "accessToken": "abcd***",
                "password": "hun***",
            })
        );
    }

    #[test]
    fn json_masks_emails_anywhere() {
        let v = json!({
            "objectId": 123,
            "message": "Call back jane.doe@example.com or j.d@work.example.org.",
            "contact": "jane@example.com",
            "list": ["ok", "bob@example.net"],
            "handle": "@jane",
            "price": "10 @ 5.00",
        });
        assert_eq!(
            mask_json(&v),
            json!({
                "objectId": 123,
                "message": "Call back j***@e***.com or j***@w***.org.",
                "contact": "j***@e***.com",
                "list": ["ok", "b***@e***.net"],
                "handle": "@jane",
                "price": "10 @ 5.00",
            })
        );
    }

    #[test]
    fn json_masks_token_looking_strings() {
        let v = json!({"a": "bearer abcdefghijklmnop", "b": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "c": "pat-eu1-0000-1111-2222"});
        assert_eq!(mask_json(&v), json!({"a": "bearer abcd***", "b": "whse***", "c": "pat-***"}));
    }

    #[test]
    fn json_masks_name_value_pairs() {
        let v = json!([
            {"propertyName": "phone", "propertyValue": "+44 20 7946 0958", "objectId": 1},
            {"property": "firstname", "value": "Jane"},
            {"name": "email", "value": "jane@example.com"},
            {"propertyName": "dealstage", "propertyValue": "closedwon"},
            {"name": "Jane Doe", "value": 5},
        ]);
        assert_eq!(
            mask_json(&v),
            json!([
                {"propertyName": "phone", "propertyValue": "***58", "objectId": 1},
                {"property": "firstname", "value": "J***"},
                {"name": "email", "value": "j***@e***.com"},
                {"propertyName": "dealstage", "propertyValue": "closedwon"},
                {"name": "J***", "value": 5},
            ])
        );
    }

    #[test]
    fn json_keeps_empty_and_non_string_scalars() {
        let v = json!({"email": "", "phone": null, "firstname": false, "token": 42});
        assert_eq!(mask_json(&v), json!({"email": "", "phone": null, "firstname": false, "token": "***"}));
    }

    #[test]
    fn free_text_without_emails_is_borrowed() {
        assert!(matches!(mask_emails_in_text("nothing here @ all"), Cow::Borrowed(_)));
        assert_eq!(mask_emails_in_text("a@b.c"), "a@b.c"); // one-letter TLD: not an address
        assert_eq!(mask_emails_in_text("x a@b.io y c@d.io"), "x a***@b***.io y c***@d***.io");
    }
}
