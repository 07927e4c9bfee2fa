//! Property value validation (every write), value normalisation and the sandbox's clock helpers.
//!
//! Values travel as strings. A value that passes is stored normalised the way HubSpot reads it back:
//! `date` as `YYYY-MM-DD`, `datetime` as ISO-8601 UTC with milliseconds, `bool` as `true`/`false`,
//! emails lowercased. `""` always passes and clears the property.

use std::collections::BTreeMap;

use serde_json::Value;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::error::{ApiError, PropIssue};
use super::properties::Property;

const DAY_MS: i64 = 86_400_000;

pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// `2024-05-01T10:20:30.123Z`
pub(crate) fn iso_ms(ms: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    from_ms(ms).and_then(|t| t.format(&fmt).ok()).unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// A JSON `properties` object as (name, string value) pairs. Numbers and booleans are stringified like
/// HubSpot does, `null` clears like `""`; objects and arrays are refused.
pub(crate) fn coerce_properties(v: Option<&Value>) -> Result<Vec<(String, String)>, ApiError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::invalid_json("properties must be an object of property name to value")),
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let s = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::invalid_json(format!(
                    "Cannot deserialize value of type `java.lang.String` from {} value for property \"{name}\"",
                    if value.is_array() { "Array" } else { "Object" }
                )))
            }
        };
        out.push((name.clone(), s));
    }
    Ok(out)
}

/// Validates and normalises every pair; all problems are reported, not just the first.
pub(crate) fn validate_all<'a>(
    pairs: &[(String, String)],
    lookup: impl Fn(&str) -> Option<&'a Property>,
) -> Result<BTreeMap<String, String>, Vec<PropIssue>> {
    let mut out = BTreeMap::new();
    let mut issues = Vec::new();
    for (name, value) in pairs {
        match check_value(lookup(name), name, value) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(issue) => issues.push(issue),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

fn issue(code: &'static str, name: &str, message: String) -> PropIssue {
    PropIssue { code, name: name.into(), message }
}

/// One value against its definition (`None` = no such property). Returns the normalised value.
pub(crate) fn check_value(prop: Option<&Property>, name: &str, value: &str) -> Result<String, PropIssue> {
    let Some(prop) = prop else {
        return Err(issue("PROPERTY_DOESNT_EXIST", name, format!("Property \"{name}\" does not exist")));
    };
    if prop.read_only {
        return Err(issue(
            "READ_ONLY_VALUE",
            name,
            format!("\"{name}\" is a read only property; its value cannot be set."),
        ));
    }
    if value.is_empty() {
        return Ok(String::new());
    }
    if name == "email" {
        return if is_email(value) {
            Ok(value.to_lowercase())
        } else {
            Err(issue("INVALID_EMAIL", name, format!("Email address {value} is invalid")))
        };
    }
    match prop.def.kind.as_str() {
        "enumeration" => check_option(prop, name, value),
        "date" => check_date(value).ok_or_else(|| {
            let why = match epoch_ms(value).and_then(from_ms) {
                Some(t) => format!(
                    "{value} is at {}:{}:{}.{} UTC, not midnight!",
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                ),
                None => format!("{value} is not a valid date; use midnight UTC epoch milliseconds or YYYY-MM-DD"),
            };
            issue("INVALID_DATE", name, why)
        }),
        "datetime" => check_datetime(value).ok_or_else(|| {
            issue(
                "INVALID_DATETIME",
                name,
                format!("{value} is not a valid datetime; use epoch milliseconds or ISO-8601"),
            )
        }),
        "number" if !is_decimal(value) => {
            Err(issue("INVALID_INTEGER", name, format!("{value} was not a valid number.")))
        }
        "bool" => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => Err(issue("INVALID_BOOLEAN", name, format!("{value} was not a valid boolean; use true or false."))),
        },
        _ => Ok(value.to_string()),
    }
}

fn check_option(prop: &Property, name: &str, value: &str) -> Result<String, PropIssue> {
    let allowed = |v: &str| prop.def.options.iter().any(|o| o.value == v);
    // Multiple checkboxes take several values separated by `;`.
    let bad = if prop.def.field_type == "checkbox" {
        value.split(';').filter(|v| !v.is_empty()).find(|v| !allowed(v))
    } else if allowed(value) {
        None
    } else {
        Some(value)
    };
    match bad {
        None => Ok(value.to_string()),
        Some(bad) => {
            let values: Vec<&str> = prop.def.options.iter().map(|o| o.value.as_str()).collect();
            Err(issue(
                "INVALID_OPTION",
                name,
                format!("{bad} was not one of the allowed options: [{}]", values.join(", ")),
            ))
        }
    }
}

/// An integer (optionally negative) of epoch milliseconds.
fn epoch_ms(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Strict `YYYY-MM-DD`.
fn ymd(value: &str) -> Option<Date> {
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    Date::parse(value, format_description!("[year]-[month]-[day]")).ok()
}

/// `date`: midnight-UTC epoch ms or `YYYY-MM-DD`, normalised to `YYYY-MM-DD`.
fn check_date(value: &str) -> Option<String> {
    let date = match epoch_ms(value) {
        Some(ms) if ms.rem_euclid(DAY_MS) == 0 => from_ms(ms)?.date(),
        Some(_) => return None,
        None => ymd(value)?,
    };
    date.format(format_description!("[year]-[month]-[day]")).ok()
}

/// `datetime`: epoch ms or ISO-8601 (with offset, without one meaning UTC, or a bare date),
/// normalised to ISO-8601 UTC with milliseconds.
pub(crate) fn check_datetime(value: &str) -> Option<String> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let t = if let Some(ms) = epoch_ms(value) {
        from_ms(ms)?
    } else if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        t
    } else if let Ok(t) = OffsetDateTime::parse(value, &Iso8601::DEFAULT) {
        t
    } else if let Ok(t) = PrimitiveDateTime::parse(value, &Iso8601::DEFAULT) {
        t.assume_utc()
    } else {
        ymd(value)?.midnight().assume_utc()
    };
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    Some(iso_ms(i64::try_from(ms).ok()?))
}

/// `[+-]digits[.digits]`, `[+-]digits.` or `[+-].digits`.
pub(crate) fn is_decimal(value: &str) -> bool {
    let v = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() || !frac.is_empty()) && digits(int) && digits(frac)
}

/// Loose but useful: `local@domain.tld`, no spaces, one `@`, domain labels of letters, digits and `-`.
pub(crate) fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[],;:\\\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit()));
    local_ok && domain_ok
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::hubspot::properties::find_builtin;

    fn prop(kind: &str, field_type: &str, options: &[&str]) -> Property {
        let mut p = find_builtin("firstname").unwrap().clone();
        p.def.kind = kind.into();
        p.def.field_type = field_type.into();
        p.def.options = options
            .iter()
            .map(|v| hubrelay_core::hubspot::PropertyOption {
                label: v.to_uppercase(),
                value: (*v).into(),
                hidden: false,
            })
            .collect();
        p
    }

    fn code(p: &Property, value: &str) -> Result<String, &'static str> {
        check_value(Some(p), "x", value).map_err(|i| i.code)
    }

    #[test]
    fn dates_must_be_midnight_utc() {
        let d = prop("date", "date", &[]);
        assert_eq!(code(&d, "1430438400000"), Ok("2015-05-01".into()));
        assert_eq!(code(&d, "2015-05-01"), Ok("2015-05-01".into()));
        assert_eq!(code(&d, "1430438400001"), Err("INVALID_DATE"));
        assert_eq!(code(&d, "1430438400"), Err("INVALID_DATE"), "seconds instead of ms");
        assert_eq!(code(&d, "2015-5-1"), Err("INVALID_DATE"));
        assert_eq!(code(&d, "2015-02-30"), Err("INVALID_DATE"));
        assert_eq!(code(&d, "2015-05-01T00:00:00Z"), Err("INVALID_DATE"));
        assert_eq!(code(&d, ""), Ok(String::new()));
        let msg = check_value(Some(&d), "x", "1430438400001").unwrap_err().message;
        assert!(msg.contains("not midnight"), "{msg}");
    }

    #[test]
    fn datetimes_take_ms_or_iso() {
        let d = prop("datetime", "date", &[]);
        assert_eq!(code(&d, "1430438400123"), Ok("2015-05-01T00:00:00.123Z".into()));
        assert_eq!(code(&d, "2015-05-01T10:00:00Z"), Ok("2015-05-01T10:00:00.000Z".into()));
        assert_eq!(code(&d, "2015-05-01T12:00:00+02:00"), Ok("2015-05-01T10:00:00.000Z".into()));
        assert_eq!(code(&d, "2015-05-01T10:00:00"), Ok("2015-05-01T10:00:00.000Z".into()));
        assert_eq!(code(&d, "2015-05-01"), Ok("2015-05-01T00:00:00.000Z".into()));
        assert_eq!(code(&d, "yesterday"), Err("INVALID_DATETIME"));
    }

    #[test]
    fn numbers_booleans_options() {
        let n = prop("number", "number", &[]);
        for ok in ["17", "-3.5", "+2", ".5", "10."] {
            assert!(code(&n, ok).is_ok(), "{ok}");
        }
        for bad in ["abc", "1e5", "NaN", "inf", "1.2.3", "-", ".", " 1"] {
            assert_eq!(code(&n, bad), Err("INVALID_INTEGER"), "{bad}");
        }
        let b = prop("bool", "booleancheckbox", &[]);
        assert_eq!(code(&b, "TRUE"), Ok("true".into()));
        assert_eq!(code(&b, "yes"), Err("INVALID_BOOLEAN"));
        let radio = prop("enumeration", "radio", &["a", "b"]);
        assert_eq!(code(&radio, "a"), Ok("a".into()));
        assert_eq!(code(&radio, "A"), Err("INVALID_OPTION"), "labels are not values");
        assert_eq!(code(&radio, "a;b"), Err("INVALID_OPTION"));
        let multi = prop("enumeration", "checkbox", &["a", "b"]);
        assert_eq!(code(&multi, "a;b"), Ok("a;b".into()));
        assert_eq!(code(&multi, "a;c"), Err("INVALID_OPTION"));
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org", "ünï@exämple.de"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.com", "a@@b.com", "a b@c.com", "a@b..com", "a@-b.com", "a@b.c", ".a@b.com"] {
            assert!(!is_email(bad), "{bad}");
        }
        let e = find_builtin("email").unwrap();
        assert_eq!(check_value(Some(e), "email", "A@B.com").unwrap(), "a@b.com");
        assert_eq!(check_value(Some(e), "email", "nope").unwrap_err().code, "INVALID_EMAIL");
    }

    #[test]
    fn unknown_and_read_only() {
        assert_eq!(check_value(None, "nope", "x").unwrap_err().code, "PROPERTY_DOESNT_EXIST");
        let ro = find_builtin("createdate").unwrap();
        assert_eq!(check_value(Some(ro), "createdate", "").unwrap_err().code, "READ_ONLY_VALUE");
    }

    #[test]
    fn coercion() {
        let v = serde_json::json!({"a": "x", "b": 17, "c": true, "d": null, "e": 1.5});
        let got = coerce_properties(Some(&v)).unwrap();
        let got: BTreeMap<_, _> = got.into_iter().collect();
        assert_eq!(got["a"], "x");
        assert_eq!(got["b"], "17");
        assert_eq!(got["c"], "true");
        assert_eq!(got["d"], "");
        assert_eq!(got["e"], "1.5");
        assert!(coerce_properties(Some(&serde_json::json!({"a": {"b": 1}}))).is_err());
        assert!(coerce_properties(Some(&serde_json::json!({"a": [1]}))).is_err());
        assert!(coerce_properties(Some(&serde_json::json!([1]))).is_err());
    }
}
