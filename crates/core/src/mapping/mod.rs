//! The field mapping from a [`Lead`] to a HubSpot contact write, as data: a TOML profile per sender.
//!
//! Two profiles are built in (`profiles/aimbase.toml`, `profiles/chat-widget.toml`); [`Mapping::load`]
//! also reads a profile from a file. The format is documented at the top of each built-in profile.
//! A profile is checked entirely when it loads (lead fields, types, options, property names, duplicates),
//! with errors naming the origin and line, so [`Mapping::apply`] only meets problems with the lead itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hubspot::{PropertyDefinition, PropertyOption};
use crate::lead::{Lead, ParsedLead};

mod apply;
mod followups;
#[cfg(test)]
mod load_tests;
mod parse;
#[cfg(test)]
mod tests;
mod updates;

pub use apply::FieldError;
pub use followups::{DealMapping, HistoryMapping};
pub use updates::{allowed_objects, ActivityMapping, StatusMapping};

/// A loaded, validated mapping profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub name: String,
    pub description: Option<String>,
    /// Where it came from (`builtin:aimbase` or a file path), for messages.
    pub origin: String,
    /// HubSpot property group for the definitions this profile creates (`contactinformation` by default).
    pub group: String,
    fields: Vec<FieldMapping>,
    constants: BTreeMap<String, String>,
    /// Where `status-update` writes (the `[status]` section).
    pub status: StatusMapping,
    /// What `activity` creates and updates (the `[activity]` section).
    pub activity: ActivityMapping,
    /// A deal per delivered lead (the `[deal]` section), or none.
    pub deal: Option<DealMapping>,
    /// A note per delivered lead on its contact (the `[history]` section).
    pub history: HistoryMapping,
}

/// One lead field written to one HubSpot property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMapping {
    /// The lead field path (`product.year`), one of [`Lead::known_fields`].
    pub from: String,
    /// The HubSpot property's internal name.
    pub property: String,
    pub kind: PropertyType,
    pub required: bool,
    /// The label for the property definition (derived from the name when absent).
    pub label: Option<String>,
    /// The property group, overriding the profile's.
    pub group: Option<String>,
    /// Enumeration options, in order.
    pub options: Vec<EnumOption>,
    /// Sender value (lowercased) → option value, applied before matching the options.
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumOption {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    String,
    Number,
    Bool,
    Date,
    Datetime,
    Enumeration,
}

impl PropertyType {
    pub const ALL: [PropertyType; 6] = [
        PropertyType::String,
        PropertyType::Number,
        PropertyType::Bool,
        PropertyType::Date,
        PropertyType::Datetime,
        PropertyType::Enumeration,
    ];

    /// HubSpot's `type` name, also the name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Number => "number",
            PropertyType::Bool => "bool",
            PropertyType::Date => "date",
            PropertyType::Datetime => "datetime",
            PropertyType::Enumeration => "enumeration",
        }
    }

    pub fn parse(s: &str) -> Option<PropertyType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// HubSpot's `fieldType` for a property of this type.
    pub fn field_type(self) -> &'static str {
        match self {
            PropertyType::String => "text",
            PropertyType::Number => "number",
            PropertyType::Bool => "booleancheckbox",
            PropertyType::Date | PropertyType::Datetime => "date",
            PropertyType::Enumeration => "select",
        }
    }
}

/// A profile that cannot be used. `Display` names the origin and, where known, the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {origin}: {message}")]
    Io { origin: String, message: String },
    /// TOML syntax, or a shape serde refused (missing `from`, unknown key, wrong value type).
    #[error("mapping {origin}{}: {message}", at(*line, *column))]
    Toml { origin: String, line: Option<usize>, column: Option<usize>, message: String },
    /// Well-formed TOML that does not make a usable mapping (unknown lead field, unknown type, ...).
    #[error("mapping {origin}, line {line}: {message}")]
    Invalid { origin: String, line: usize, message: String },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(", line {l}, column {c}"),
        (Some(l), None) => format!(", line {l}"),
        _ => String::new(),
    }
}

const BUILTINS: &[(&str, &str)] =
    &[("aimbase", include_str!("profiles/aimbase.toml")), ("chat-widget", include_str!("profiles/chat-widget.toml"))];

/// HubSpot's own contact properties: never created by [`Mapping::property_definitions`]. Anything
/// starting with `hs_` is HubSpot's too.
const STANDARD_PROPERTIES: &[&str] = &[
    "address",
    "annualrevenue",
    "city",
    "company",
    "country",
    "date_of_birth",
    "email",
    "fax",
    "firstname",
    "hubspot_owner_id",
    "industry",
    "jobtitle",
    "lastname",
    "lifecyclestage",
    "message",
    "mobilephone",
    "numemployees",
    "phone",
    "salutation",
    "state",
    "website",
    "zip",
];

/// Whether HubSpot defines `property` itself.
pub fn is_standard_property(property: &str) -> bool {
    property.starts_with("hs_") || STANDARD_PROPERTIES.contains(&property)
}

impl Mapping {
    pub fn builtin_names() -> &'static [&'static str] {
        &["aimbase", "chat-widget"]
    }

    /// A built-in profile (the unit tests prove each parses).
    pub fn builtin(name: &str) -> Option<Mapping> {
        let (name, source) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        Mapping::from_toml(source, &format!("builtin:{name}")).ok()
    }

    /// Parses and checks a TOML profile; `origin` (a path, `builtin:aimbase`) is used in messages.
    pub fn from_toml(source: &str, origin: &str) -> Result<Mapping, MappingError> {
        parse::from_toml(source, origin)
    }

    /// A built-in profile by name, else a TOML file at that path.
    pub fn load(spec: &str) -> Result<Mapping, MappingError> {
        if let Some((name, source)) = BUILTINS.iter().find(|(n, _)| *n == spec) {
            return Mapping::from_toml(source, &format!("builtin:{name}"));
        }
        let source = std::fs::read_to_string(spec).map_err(|e| MappingError::Io {
            origin: spec.to_string(),
            message: format!(
                "not a built-in mapping ({}) and cannot read it as a file: {e}",
                Mapping::builtin_names().join(", ")
            ),
        })?;
        Mapping::from_toml(&source, spec)
    }

    /// The field mappings, in profile order.
    pub fn fields(&self) -> &[FieldMapping] {
        &self.fields
    }

    /// Constant properties written on every contact.
    pub fn constants(&self) -> &BTreeMap<String, String> {
        &self.constants
    }

    /// Maps a lead to a contact write:
    /// 1. `email` is required: it becomes [`ContactUpsert::email`](crate::domain::ContactUpsert) and the
    ///    `email` property;
    /// 2. each field in profile order, converted by type (absent: skipped, or `missing_required_field`);
    /// 3. the constants;
    /// 4. the lead's free `properties`, verbatim: they may add or override properties, never `email`.
    pub fn apply(&self, lead: &Lead) -> Result<crate::domain::ContactUpsert, FieldError> {
        apply::apply(self, lead)
    }

    /// The answer's `ignored`: the sender's unknown keys, and each known field they sent that this profile does
    /// not write (by the sender's own name: `product.stockNumber`, `full_name`), sorted. `email` and `lead_id`
    /// are used by every profile (the contact's key; the idempotency key and the lead-id link).
    pub fn ignored(&self, parsed: &ParsedLead) -> Vec<String> {
        let written = |path: &str| matches!(path, "email" | "lead_id") || self.fields.iter().any(|f| f.from == path);
        // A name can fill several fields (`full_name`): it is used when any of them is written.
        let used: std::collections::BTreeSet<&str> =
            parsed.given.iter().filter(|(path, _)| written(path)).map(|(_, name)| name.as_str()).collect();
        let mut out = parsed.ignored.clone();
        out.extend(parsed.given.iter().filter(|(_, name)| !used.contains(name.as_str())).map(|(_, n)| n.clone()));
        out.sort();
        out.dedup();
        out
    }

    /// Every HubSpot property the profile writes (`email` first, then fields, then constants); the lead's
    /// free `properties` come on top of these.
    pub fn properties(&self) -> Vec<&str> {
        let mut out = vec!["email"];
        let names = self.fields.iter().map(|f| f.property.as_str());
        for name in names.chain(self.constants.keys().map(String::as_str)) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// The custom properties this profile needs in HubSpot (HubSpot's standard ones left out).
    /// Constants for custom properties are defined as single-line text.
    pub fn property_definitions(&self) -> Vec<PropertyDefinition> {
        let fields = self.fields.iter().map(|f| {
            let options = match f.kind {
                PropertyType::Bool => vec![option("Yes", "true"), option("No", "false")],
                PropertyType::Enumeration => f.options.iter().map(|o| option(&o.label, &o.value)).collect(),
                _ => Vec::new(),
            };
            PropertyDefinition {
                name: f.property.clone(),
                label: f.label.clone().unwrap_or_else(|| label_from_name(&f.property)),
                kind: f.kind.as_str().to_string(),
                field_type: f.kind.field_type().to_string(),
                group_name: f.group.clone().unwrap_or_else(|| self.group.clone()),
                options,
            }
        });
        let constants = self.constants.keys().map(|name| PropertyDefinition {
            name: name.clone(),
            label: label_from_name(name),
            kind: PropertyType::String.as_str().to_string(),
            field_type: PropertyType::String.field_type().to_string(),
            group_name: self.group.clone(),
            options: Vec::new(),
        });
        fields.chain(constants).filter(|d| !is_standard_property(&d.name)).collect()
    }

    /// What `status-update` and `activity` write (the `[status]` and `[activity]` sections), custom only.
    pub fn update_property_definitions(&self) -> Vec<PropertyDefinition> {
        updates::property_definitions(&self.status, &self.activity, &self.group)
            .into_iter()
            .filter(|d| !is_standard_property(&d.name))
            .collect()
    }

    /// Every custom property the functions need: the lead fields', then the updates' (each name once).
    pub fn all_property_definitions(&self) -> Vec<PropertyDefinition> {
        let mut out = self.property_definitions();
        for d in self.update_property_definitions() {
            if !out.iter().any(|o| o.name == d.name) {
                out.push(d);
            }
        }
        out
    }
}

pub(crate) fn option(label: &str, value: &str) -> PropertyOption {
    PropertyOption { label: label.to_string(), value: value.to_string(), hidden: false }
}

/// `aimbase_prodyear` → `Aimbase Prodyear`.
pub(crate) fn label_from_name(name: &str) -> String {
    name.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
