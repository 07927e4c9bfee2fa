//! What a lead is, and how it arrives: JSON (dealer sites, chat widgets, Zapier "JSON") or a urlencoded
//! form (Zapier "Form", nested keys as `product__year`, `product.year` or `product[year]`).
//!
//! Both parsers normalise the same way: strings trimmed, empty strings and `null` mean absent, numbers
//! accepted where a string is expected, email normalised and checked ([`crate::email`]), `lead_date` checked.
//! Both refuse what cannot be delivered faithfully: invalid UTF-8, NUL characters, a key given twice. Unknown
//! keys are not errors: they are reported in [`ParsedLead::ignored`] so the sender can be told what was dropped;
//! [`crate::mapping::Mapping::ignored`] adds the known fields the profile does not write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod parse;
#[cfg(test)]
pub(crate) mod tests;

/// A normalised lead. The serde shape is the canonical one (snake_case; `lead_type` is `type`); the
/// derived `Deserialize` reads it back (from the retry queue) without re-validating — use
/// [`parse_json`] / [`parse_form`] for input from senders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lead {
    #[serde(alias = "leadId", skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(alias = "firstName", skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(alias = "lastName", skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(alias = "leadDate", skip_serializing_if = "Option::is_none")]
    pub lead_date: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub lead_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Product::is_empty")]
    pub product: Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(alias = "timeToPurchase", skip_serializing_if = "Option::is_none")]
    pub time_to_purchase: Option<String>,
    #[serde(skip_serializing_if = "Consent::is_empty")]
    pub consent: Consent,
    #[serde(skip_serializing_if = "Dealer::is_empty")]
    pub dealer: Dealer,
    #[serde(skip_serializing_if = "Dealership::is_empty")]
    pub dealership: Dealership,
    #[serde(alias = "vehicleOfInterest", skip_serializing_if = "Option::is_none")]
    pub vehicle_of_interest: Option<String>,
    #[serde(alias = "budgetRange", skip_serializing_if = "Option::is_none")]
    pub budget_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(alias = "originChannel", skip_serializing_if = "Option::is_none")]
    pub origin_channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(alias = "hubspotContactId", skip_serializing_if = "Option::is_none")]
    pub hubspot_contact_id: Option<String>,
    /// Free HubSpot properties (name → value), passed through by the mapping.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Product {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(alias = "stockNumber", skip_serializing_if = "Option::is_none")]
    pub stock_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msrp: Option<String>,
    #[serde(alias = "displayPrice", skip_serializing_if = "Option::is_none")]
    pub display_price: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Consent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dealer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dealership {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

impl Product {
    fn is_empty(&self) -> bool {
        *self == Product::default()
    }
}
impl Consent {
    fn is_empty(&self) -> bool {
        *self == Consent::default()
    }
}
impl Dealer {
    fn is_empty(&self) -> bool {
        *self == Dealer::default()
    }
}
impl Dealership {
    fn is_empty(&self) -> bool {
        *self == Dealership::default()
    }
}

/// A parsed lead and the field paths that were dropped as unknown (sorted, e.g. `["favourite_colour",
/// "product.wheels"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLead {
    pub lead: Lead,
    pub ignored: Vec<String>,
    /// Each known field the sender filled: (the lead field path, the dotted name the sender used), e.g.
    /// `("product.stock_number", "product.stockNumber")`, `("first_name", "full_name")`. A profile that does not
    /// write the path reports the name as ignored.
    pub given: Vec<(String, String)>,
}

/// A lead field's value, as the mapping reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    #[error("the request body is empty")]
    EmptyBody,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("`{field}` must be {expected}")]
    InvalidType { field: String, expected: &'static str },
    #[error("`{field}`: {message}")]
    InvalidValue { field: String, message: String },
    #[error("the form body is malformed: {0}")]
    MalformedForm(String),
    #[error("{0}")]
    InvalidEncoding(String),
    #[error("the key `{0}` is given twice")]
    DuplicateKey(String),
    #[error("`{field}` contains a NUL character (U+0000)")]
    NulCharacter { field: String },
    #[error("`{field}`: {message}")]
    InvalidEmail { field: String, message: String },
}

impl LeadError {
    /// A stable code for API answers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LeadError::EmptyBody => "empty_body",
            LeadError::MalformedJson(_) => "malformed_json",
            LeadError::NotAnObject => "invalid_body",
            LeadError::InvalidType { .. } => "invalid_type",
            LeadError::InvalidValue { .. } => "invalid_value",
            LeadError::MalformedForm(_) => "malformed_form",
            LeadError::InvalidEncoding(_) => "invalid_encoding",
            LeadError::DuplicateKey(_) => "duplicate_key",
            LeadError::NulCharacter { .. } => "nul_character",
            LeadError::InvalidEmail { .. } => "invalid_email",
        }
    }

    /// The field (or key path) at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            LeadError::InvalidType { field, .. }
            | LeadError::InvalidValue { field, .. }
            | LeadError::NulCharacter { field }
            | LeadError::InvalidEmail { field, .. }
            | LeadError::DuplicateKey(field) => Some(field),
            _ => None,
        }
    }

    /// Bodies that cannot be read are 400 for the HTTP layer; readable ones with a bad field 422.
    pub fn is_syntax(&self) -> bool {
        !matches!(
            self,
            LeadError::InvalidType { .. }
                | LeadError::InvalidValue { .. }
                | LeadError::NulCharacter { .. }
                | LeadError::InvalidEmail { .. }
        )
    }
}

impl From<crate::json::JsonError> for LeadError {
    fn from(e: crate::json::JsonError) -> Self {
        use crate::json::JsonError;
        match e {
            JsonError::InvalidEncoding(m) => LeadError::InvalidEncoding(format!("the body is not valid UTF-8: {m}")),
            JsonError::Syntax(m) => LeadError::MalformedJson(m),
            JsonError::DuplicateKey(path) => LeadError::DuplicateKey(path),
            JsonError::NulCharacter(field) => LeadError::NulCharacter { field },
        }
    }
}

/// Parses a JSON lead (an object; see the module docs for the rules).
pub fn parse_json(body: &[u8]) -> Result<ParsedLead, LeadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LeadError::EmptyBody);
    }
    match crate::json::parse_strict(body)? {
        Value::Object(map) => parse::from_object(&map),
        _ => Err(LeadError::NotAnObject),
    }
}

/// Parses a lead given as named text values, with the rules of a form body ([`parse_form`]): a CSV row of an
/// import, its header naming each column.
pub fn parse_pairs(pairs: Vec<(String, String)>) -> Result<ParsedLead, LeadError> {
    parse::from_object(&parse::pairs_to_object(pairs)?)
}

/// Parses an `application/x-www-form-urlencoded` lead as Zapier's "Form" payload sends it: nested keys as
/// `product__year`, `product.year` or `product[year]`, `properties__x` for free properties; all values are
/// strings, booleans as `true/false/yes/no/1/0/on/off` in any case. Empty values are absent; a key given
/// twice is an error, and so is a key or value that is not UTF-8 once percent-decoded.
pub fn parse_form(body: &[u8]) -> Result<ParsedLead, LeadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LeadError::EmptyBody);
    }
    parse::from_object(&parse::form_to_object(body)?)
}

/// The field paths [`Lead::field`] knows, in display order.
const KNOWN_FIELDS: &[&str] = &[
    "lead_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "lead_date",
    "type",
    "source",
    "category",
    "product.year",
    "product.name",
    "product.brand",
    "product.make",
    "product.model",
    "product.stock_number",
    "product.msrp",
    "product.display_price",
    "comment",
    "time_to_purchase",
    "consent.sms",
    "consent.email",
    "dealer.name",
    "dealer.id",
    "dealership.name",
    "dealership.slug",
    "vehicle_of_interest",
    "budget_range",
    "priority",
    "origin_channel",
    "status",
    "notes",
    "hubspot_contact_id",
];

impl Lead {
    /// A lead field by path (`"email"`, `"product.year"`, `"consent.sms"`, `"type"`, ...): `None` when
    /// absent or for an unknown path (mappings check their paths with [`Lead::is_known_field`] on load).
    pub fn field(&self, path: &str) -> Option<FieldValue> {
        let text = |v: &Option<String>| v.clone().map(FieldValue::Text);
        let flag = |v: Option<bool>| v.map(FieldValue::Bool);
        let p = &self.product;
        match path {
            "lead_id" => text(&self.lead_id),
            "email" => text(&self.email),
            "first_name" => text(&self.first_name),
            "last_name" => text(&self.last_name),
            "phone" => text(&self.phone),
            "lead_date" => text(&self.lead_date),
            "type" => text(&self.lead_type),
            "source" => text(&self.source),
            "category" => text(&self.category),
            "product.year" => text(&p.year),
            "product.name" => text(&p.name),
            "product.brand" => text(&p.brand),
            "product.make" => text(&p.make),
            "product.model" => text(&p.model),
            "product.stock_number" => text(&p.stock_number),
            "product.msrp" => text(&p.msrp),
            "product.display_price" => text(&p.display_price),
            "comment" => text(&self.comment),
            "time_to_purchase" => text(&self.time_to_purchase),
            "consent.sms" => flag(self.consent.sms),
            "consent.email" => flag(self.consent.email),
            "dealer.name" => text(&self.dealer.name),
            "dealer.id" => text(&self.dealer.id),
            "dealership.name" => text(&self.dealership.name),
            "dealership.slug" => text(&self.dealership.slug),
            "vehicle_of_interest" => text(&self.vehicle_of_interest),
            "budget_range" => text(&self.budget_range),
            "priority" => text(&self.priority),
            "origin_channel" => text(&self.origin_channel),
            "status" => text(&self.status),
            "notes" => text(&self.notes),
            "hubspot_contact_id" => text(&self.hubspot_contact_id),
            _ => None,
        }
        .filter(|v| !matches!(v, FieldValue::Text(s) if s.is_empty()))
    }

    pub fn is_known_field(path: &str) -> bool {
        KNOWN_FIELDS.contains(&path)
    }

    pub fn known_fields() -> &'static [&'static str] {
        KNOWN_FIELDS
    }

    /// Canonical JSON of the lead: absent fields left out, object keys sorted at every level, no
    /// whitespace. Hashed for idempotency and stored on the retry queue (the derived `Deserialize` reads it
    /// back).
    pub fn canonical_json(&self) -> String {
        // serde_json's `Map` is sorted unless some crate turns on `preserve_order`; sort explicitly so the
        // hash never depends on feature unification.
        fn sorted(v: Value) -> Value {
            match v {
                Value::Object(map) => {
                    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
                }
                other => other,
            }
        }
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        sorted(value).to_string()
    }
}

pub use crate::email::is_plausible_email;

/// `true/false/yes/no/1/0/on/off`, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}
