//! Applying a mapping to a lead.
//!
//! 1. `email` is required: it becomes [`ContactUpsert::email`] and the `email` property.
//! 2. Each field, in profile order: absent → skipped, or `missing_required_field` when required; present →
//!    converted by type: `string` as is; `number` a plain decimal (`$` and thousands `,` removed);
//!    `bool` `true`/`false`; `date` midnight UTC of the sender's calendar date, `datetime` the instant,
//!    both epoch ms; `enumeration` translated by `values`, then matched case-insensitively against the
//!    options' values and labels, sent as the option's value.
//! 3. The constants.
//! 4. The lead's free `properties`, verbatim: they may add or override properties, never `email`.

use crate::dates::{hubspot_date, hubspot_datetime, parse_lead_date};
use crate::domain::ContactUpsert;
use crate::email::normalize_email;
use crate::lead::{parse_bool, FieldValue, Lead};

use super::{FieldMapping, Mapping, PropertyType};

/// Why a lead cannot be mapped. `code`: `missing_required_field`, `invalid_option`, `invalid_date`,
/// `invalid_number`, `invalid_email`; `field` is the lead field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(code: &'static str, field: &str, message: String) -> FieldError {
        FieldError { code, field: field.to_string(), message }
    }
}

pub(super) fn apply(mapping: &Mapping, lead: &Lead) -> Result<ContactUpsert, FieldError> {
    let Some(raw) = lead.email.as_deref().filter(|e| !e.trim().is_empty()) else {
        return Err(FieldError::new(
            "missing_required_field",
            "email",
            "the lead has no email: HubSpot contacts are matched by email".into(),
        ));
    };
    // Parsed leads are normalised already; a lead read back from the queue or a redrive goes the same way.
    let email = normalize_email(raw).map_err(|e| FieldError::new("invalid_email", "email", e.0))?;

    let mut properties = std::collections::BTreeMap::new();
    properties.insert("email".to_string(), email.clone());
    for f in mapping.fields() {
        let value = match (lead.field(&f.from), f.from.as_str()) {
            (_, "email") => Some(FieldValue::Text(email.clone())),
            (Some(v), _) => Some(v),
            (None, _) => None,
        };
        match value {
            Some(v) => {
                properties.insert(f.property.clone(), convert(f, v)?);
            }
            None if f.required => {
                return Err(FieldError::new(
                    "missing_required_field",
                    &f.from,
                    format!("the lead field `{}` is required (HubSpot property `{}`)", f.from, f.property),
                ))
            }
            None => {}
        }
    }
    for (name, value) in mapping.constants() {
        properties.insert(name.clone(), value.clone());
    }
    for (name, value) in &lead.properties {
        if !name.eq_ignore_ascii_case("email") {
            properties.insert(name.clone(), value.clone());
        }
    }
    Ok(ContactUpsert { email, properties })
}

fn convert(f: &FieldMapping, value: FieldValue) -> Result<String, FieldError> {
    let text = match value {
        FieldValue::Text(s) => s,
        FieldValue::Bool(b) => b.to_string(),
    };
    let text = text.trim();
    match f.kind {
        PropertyType::String => Ok(text.to_string()),
        PropertyType::Number => decimal(text).ok_or_else(|| {
            FieldError::new("invalid_number", &f.from, format!("`{}`: `{text}` is not a number", f.from))
        }),
        PropertyType::Bool => parse_bool(text).map(|b| b.to_string()).ok_or_else(|| {
            FieldError::new("invalid_option", &f.from, format!("`{}`: `{text}` is not true or false", f.from))
        }),
        PropertyType::Date | PropertyType::Datetime => {
            let date = parse_lead_date(text)
                .map_err(|e| FieldError::new("invalid_date", &f.from, format!("`{}`: {e}", f.from)))?;
            Ok(match f.kind {
                PropertyType::Date => hubspot_date(&date),
                _ => hubspot_datetime(&date),
            })
        }
        PropertyType::Enumeration => {
            let wanted = f.values.get(&text.to_lowercase()).map(String::as_str).unwrap_or(text);
            f.options
                .iter()
                .find(|o| o.value.eq_ignore_ascii_case(wanted) || o.label.eq_ignore_ascii_case(wanted))
                .map(|o| o.value.clone())
                .ok_or_else(|| {
                    let options: Vec<_> = f.options.iter().map(|o| o.value.as_str()).collect();
                    FieldError::new(
                        "invalid_option",
                        &f.from,
                        format!(
                            "`{}`: `{text}` is not one of the options of `{}`: {}",
                            f.from,
                            f.property,
                            options.join(", ")
                        ),
                    )
                })
        }
    }
}

/// A plain decimal from `45999`, `-12.5`, `$45,999.00`: an optional `-`, an optional `$`, digits (with
/// `,` only between groups of three), an optional fraction. `None` for anything else (`45,5`, `1e3`).
pub(crate) fn decimal(s: &str) -> Option<String> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let s = s.strip_prefix('$').unwrap_or(s).trim_start();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let groups: Vec<&str> = int.split(',').collect();
    let grouped_ok = groups.len() == 1
        || (!groups[0].is_empty() && groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !grouped_ok || !groups.iter().all(|g| digits(g)) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 1);
    if negative {
        out.push('-');
    }
    out.extend(groups);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}
