//! The object walker shared by both parsers, and the form-to-object step of [`super::parse_form`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{parse_bool, Lead, LeadError, ParsedLead, Product};

/// Where a top-level key goes.
enum Slot {
    Text(fn(&mut Lead) -> &mut Option<String>),
    FullName,
    Product,
    Consent,
    Dealer,
    Dealership,
    Properties,
}

fn top_level_slot(key: &str) -> Option<(&'static str, Slot)> {
    use Slot::Text;
    Some(match key {
        "lead_id" | "leadId" => ("lead_id", Text(|l| &mut l.lead_id)),
        "email" => ("email", Text(|l| &mut l.email)),
        "first_name" | "firstName" => ("first_name", Text(|l| &mut l.first_name)),
        "last_name" | "lastName" => ("last_name", Text(|l| &mut l.last_name)),
        "full_name" | "fullName" | "name" => ("full_name", Slot::FullName),
        "phone" => ("phone", Text(|l| &mut l.phone)),
        "lead_date" | "leadDate" => ("lead_date", Text(|l| &mut l.lead_date)),
        "type" | "lead_type" | "leadType" => ("type", Text(|l| &mut l.lead_type)),
        "source" => ("source", Text(|l| &mut l.source)),
        "category" => ("category", Text(|l| &mut l.category)),
        "comment" => ("comment", Text(|l| &mut l.comment)),
        "time_to_purchase" | "timeToPurchase" => ("time_to_purchase", Text(|l| &mut l.time_to_purchase)),
        "vehicle_of_interest" | "vehicleOfInterest" => ("vehicle_of_interest", Text(|l| &mut l.vehicle_of_interest)),
        "budget_range" | "budgetRange" => ("budget_range", Text(|l| &mut l.budget_range)),
        "priority" => ("priority", Text(|l| &mut l.priority)),
        "origin_channel" | "originChannel" => ("origin_channel", Text(|l| &mut l.origin_channel)),
        "status" => ("status", Text(|l| &mut l.status)),
        "notes" => ("notes", Text(|l| &mut l.notes)),
        "hubspot_contact_id" | "hubspotContactId" => ("hubspot_contact_id", Text(|l| &mut l.hubspot_contact_id)),
        "product" => ("product", Slot::Product),
        "consent" => ("consent", Slot::Consent),
        "dealer" => ("dealer", Slot::Dealer),
        "dealership" => ("dealership", Slot::Dealership),
        "properties" => ("properties", Slot::Properties),
        _ => return None,
    })
}

/// Where a product key goes: its canonical name and the field.
type ProductSlot = (&'static str, fn(&mut Product) -> &mut Option<String>);

fn product_slot(key: &str) -> Option<ProductSlot> {
    Some(match key {
        "year" => ("year", |p| &mut p.year),
        "name" => ("name", |p| &mut p.name),
        "brand" => ("brand", |p| &mut p.brand),
        "make" => ("make", |p| &mut p.make),
        "model" => ("model", |p| &mut p.model),
        "stock_number" | "stockNumber" => ("stock_number", |p| &mut p.stock_number),
        "msrp" => ("msrp", |p| &mut p.msrp),
        "display_price" | "displayPrice" => ("display_price", |p| &mut p.display_price),
        _ => return None,
    })
}

pub(super) fn from_object(map: &Map<String, Value>) -> Result<ParsedLead, LeadError> {
    let mut lead = Lead::default();
    let mut ignored = Vec::new();
    let mut full_name = None;
    let mut seen = BTreeMap::new();
    // (lead field path, the sender's dotted name) for each field that got a value.
    let mut given: Vec<(String, String)> = Vec::new();
    for (key, value) in map {
        let Some((name, slot)) = top_level_slot(key) else {
            ignored.push(key.clone());
            continue;
        };
        claim(&mut seen, name.to_string(), key, value)?;
        match slot {
            Slot::Text(place) => {
                if let Some(s) = text(value, name)? {
                    *place(&mut lead) = Some(s);
                    given.push((name.to_string(), key.clone()));
                }
            }
            Slot::FullName => full_name = text(value, name)?.map(|s| (s, key.clone())),
            Slot::Product => {
                for (k, v) in object(value, name)? {
                    match product_slot(k) {
                        Some((n, place)) => {
                            let path = format!("product.{n}");
                            claim(&mut seen, path.clone(), k, v)?;
                            *place(&mut lead.product) = text(v, &path)?;
                            if place(&mut lead.product).is_some() {
                                given.push((path, format!("{key}.{k}")));
                            }
                        }
                        None => ignored.push(format!("product.{k}")),
                    }
                }
            }
            Slot::Consent => {
                for (k, v) in object(value, name)? {
                    let place = match k.as_str() {
                        "sms" => &mut lead.consent.sms,
                        "email" => &mut lead.consent.email,
                        _ => {
                            ignored.push(format!("consent.{k}"));
                            continue;
                        }
                    };
                    let path = format!("consent.{k}");
                    *place = boolean(v, &path)?;
                    if place.is_some() {
                        given.push((path, format!("{key}.{k}")));
                    }
                }
            }
            Slot::Dealer => {
                for (k, v) in object(value, name)? {
                    let place = match k.as_str() {
                        "name" => &mut lead.dealer.name,
                        "id" => &mut lead.dealer.id,
                        _ => {
                            ignored.push(format!("dealer.{k}"));
                            continue;
                        }
                    };
                    let path = format!("dealer.{k}");
                    *place = text(v, &path)?;
                    if place.is_some() {
                        given.push((path, format!("{key}.{k}")));
                    }
                }
            }
            Slot::Dealership => {
                for (k, v) in object(value, name)? {
                    let place = match k.as_str() {
                        "name" => &mut lead.dealership.name,
                        "slug" => &mut lead.dealership.slug,
                        _ => {
                            ignored.push(format!("dealership.{k}"));
                            continue;
                        }
                    };
                    let path = format!("dealership.{k}");
                    *place = text(v, &path)?;
                    if place.is_some() {
                        given.push((path, format!("{key}.{k}")));
                    }
                }
            }
            Slot::Properties => {
                for (k, v) in object(value, name)? {
                    let field = format!("properties.{k}");
                    let key = k.trim();
                    if key.is_empty() {
                        return Err(LeadError::InvalidValue {
                            field,
                            message: "a property name cannot be empty".into(),
                        });
                    }
                    let value = match v {
                        Value::Bool(b) => Some(b.to_string()),
                        Value::Object(_) | Value::Array(_) => {
                            return Err(LeadError::InvalidType { field, expected: "a string, number or boolean" })
                        }
                        other => text(other, &field)?,
                    };
                    if let Some(value) = value {
                        lead.properties.insert(key.to_string(), value);
                    }
                }
            }
        }
    }
    if let Some(email) = lead.email.take() {
        let email = crate::email::normalize_email(&email)
            .map_err(|e| LeadError::InvalidEmail { field: "email".into(), message: e.0 })?;
        lead.email = Some(email);
    }
    // Checked whatever the profile: a date we cannot read is refused, not carried along unread.
    if let Some(date) = &lead.lead_date {
        if let Err(e) = crate::dates::parse_lead_date(date) {
            return Err(LeadError::InvalidValue { field: "lead_date".into(), message: e.to_string() });
        }
    }
    if let Some((full, key)) = full_name {
        let mut words = full.split_whitespace();
        let first = words.next().map(str::to_string);
        let rest = words.collect::<Vec<_>>().join(" ");
        if lead.first_name.is_none() && first.is_some() {
            lead.first_name = first;
            given.push(("first_name".into(), key.clone()));
        }
        if lead.last_name.is_none() && !rest.is_empty() {
            lead.last_name = Some(rest);
            given.push(("last_name".into(), key.clone()));
        }
        // Both names given as well: nothing of the full name is used.
        if !given.iter().any(|(_, name)| *name == key) {
            ignored.push(key);
        }
    }
    ignored.sort();
    ignored.dedup();
    Ok(ParsedLead { lead, ignored, given })
}

/// Records that `path` was given (as `key`); the same field twice under different aliases
/// (`first_name` and `firstName`) is refused rather than resolved by key order.
fn claim(seen: &mut BTreeMap<String, String>, path: String, key: &str, value: &Value) -> Result<(), LeadError> {
    if value.is_null() {
        return Ok(());
    }
    match seen.insert(path.clone(), key.to_string()) {
        Some(previous) => {
            Err(LeadError::InvalidValue { field: path, message: format!("given twice (as `{previous}` and `{key}`)") })
        }
        None => Ok(()),
    }
}

/// A string-ish value: trimmed string (empty → `None`), number (stringified), `null` → `None`.
fn text(value: &Value, field: &str) -> Result<Option<String>, LeadError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        Value::Number(n) => {
            // Integers beyond 64 bits arrive as f64: stringifying them would silently change an id.
            let exact = n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.abs() < 9.0e15);
            if !exact {
                return Err(LeadError::InvalidValue {
                    field: field.to_string(),
                    message: "number too large to keep exactly; send it as a string".into(),
                });
            }
            Ok(Some(n.to_string()))
        }
        _ => Err(LeadError::InvalidType { field: field.to_string(), expected: "a string" }),
    }
}

/// A nested object's entries (`null` → none); anything else is `InvalidType`.
fn object<'a>(value: &'a Value, field: &str) -> Result<Vec<(&'a String, &'a Value)>, LeadError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(map.iter().collect()),
        _ => Err(LeadError::InvalidType { field: field.to_string(), expected: "an object" }),
    }
}

/// A consent flag: JSON boolean, 0/1, or `true/false/yes/no/1/0/on/off` (any case); empty/`null` → `None`.
fn boolean(value: &Value, field: &str) -> Result<Option<bool>, LeadError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(true)),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(false)),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            parse_bool(s).map(Some).ok_or_else(|| LeadError::InvalidValue {
                field: field.to_string(),
                message: "expected true/false, yes/no, 1/0 or on/off".into(),
            })
        }
        _ => Err(LeadError::InvalidType { field: field.to_string(), expected: "a boolean" }),
    }
}

/// A urlencoded form as the JSON object the walker takes: `a__b`, `a.b` and `a[b]` nest one level (the
/// rest of the key is kept whole: `properties__my__prop` is the property `my__prop`); empty values are
/// dropped; a path given twice is refused.
pub(super) fn form_to_object(body: &[u8]) -> Result<Map<String, Value>, LeadError> {
    pairs_to_object(form_pairs(body)?)
}

/// Key-value pairs with a form's rules (nested keys, empty values absent, a key twice refused).
pub(super) fn pairs_to_object(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, LeadError> {
    let mut root = Map::new();
    for (key, value) in pairs {
        if value.trim().is_empty() {
            continue;
        }
        let (head, tail) = split_form_key(&key)?;
        let twice = |path: &str| LeadError::MalformedForm(format!("`{}` is given twice", short(path)));
        let target = match tail {
            None => {
                if root.contains_key(head) {
                    return Err(twice(head));
                }
                root.insert(head.to_string(), Value::String(value));
                continue;
            }
            Some(tail) => (tail, root.entry(head).or_insert_with(|| Value::Object(Map::new()))),
        };
        let (tail, Value::Object(inner)) = target else {
            return Err(twice(head));
        };
        if inner.contains_key(tail) {
            return Err(twice(&format!("{head}.{tail}")));
        }
        inner.insert(tail.to_string(), Value::String(value));
    }
    Ok(root)
}

/// The body's `key=value` pairs, `+`- and percent-decoded as every form parser does — except that bytes
/// which are not UTF-8 once decoded are refused (the usual parsers turn them into U+FFFD, so the sender's data
/// would reach HubSpot changed), and so is a NUL.
fn form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, LeadError> {
    let mut pairs = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = percent_decode(key)
            .ok_or_else(|| LeadError::InvalidEncoding("a form key is not valid UTF-8 once decoded".into()))?;
        let value = percent_decode(value).ok_or_else(|| {
            LeadError::InvalidEncoding(format!("the value of `{}` is not valid UTF-8 once decoded", short(&key)))
        })?;
        if key.contains('\0') || value.contains('\0') {
            return Err(LeadError::NulCharacter { field: short(&key) });
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `+` → space, `%hh` → that byte (a `%` not followed by two hex digits stays as it is); `None` unless the
/// result is UTF-8.
fn percent_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (raw[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(h)) => {
                let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                out.push(digit(h[0]) << 4 | digit(h[1]));
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Splits a form key at its first `__`, `.` or `[` (which must then close with a final `]`).
fn split_form_key(key: &str) -> Result<(&str, Option<&str>), LeadError> {
    let malformed = || LeadError::MalformedForm(format!("malformed key `{}`", short(key)));
    let cut = [("__", 2), (".", 1), ("[", 1)]
        .iter()
        .filter_map(|(sep, len)| key.find(sep).map(|i| (i, *len, *sep == "[")))
        .min_by_key(|(i, _, _)| *i);
    let (head, tail) = match cut {
        None => (key, None),
        Some((i, len, bracket)) => {
            let rest = &key[i + len..];
            let tail = if bracket { rest.strip_suffix(']').ok_or_else(malformed)? } else { rest };
            (&key[..i], Some(tail))
        }
    };
    if head.is_empty() || tail == Some("") {
        return Err(malformed());
    }
    Ok((head, tail))
}

/// At most 64 characters of `s`, for error messages.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
