//! Reading a TOML profile into a checked [`Mapping`]. Every semantic error names the line of the value at
//! fault, from the spans toml keeps (`toml::Spanned`).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{EnumOption, FieldMapping, Mapping, MappingError, PropertyType};
use crate::lead::Lead;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    name: Spanned<String>,
    description: Option<String>,
    group: Option<Spanned<String>>,
    #[serde(default, rename = "field")]
    fields: Vec<RawField>,
    #[serde(default)]
    constants: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    status: Option<super::updates::RawStatus>,
    activity: Option<super::updates::RawActivity>,
    deal: Option<super::followups::RawDeal>,
    history: Option<super::followups::RawHistory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    from: Spanned<String>,
    property: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    required: bool,
    label: Option<String>,
    group: Option<Spanned<String>>,
    options: Option<Spanned<Vec<RawOption>>>,
    values: Option<Spanned<BTreeMap<String, String>>>,
}

/// `"high"`, or `{ value = "IN_PROGRESS", label = "In Progress" }`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "an option: a string, or { value = \"...\", label = \"...\" }")]
enum RawOption {
    Value(String),
    Full { value: String, label: String },
}

/// Turns byte offsets into lines for one source.
pub(super) struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    pub(super) fn invalid(&self, span: Range<usize>, message: String) -> MappingError {
        MappingError::Invalid { origin: self.origin.to_string(), line: self.position(span.start).0, message }
    }
}

pub(super) fn from_toml(text: &str, origin: &str) -> Result<Mapping, MappingError> {
    let src = Source { text, origin };
    let raw: RawMapping = toml::from_str(text).map_err(|e| {
        let position = e.span().map(|s| src.position(s.start));
        MappingError::Toml {
            origin: origin.to_string(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            message: e.message().trim().to_string(),
        }
    })?;

    let name = raw.name.get_ref().trim();
    if name.is_empty() {
        return Err(src.invalid(raw.name.span(), "`name` cannot be empty".into()));
    }
    let group = match &raw.group {
        Some(g) => checked_group(&src, g)?,
        None => "contactinformation".to_string(),
    };

    // property name → where it was first written, for duplicate reports.
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    let mut claim = |property: &Spanned<String>| -> Result<(), MappingError> {
        let line = src.position(property.span().start).0;
        match written.insert(property.get_ref().clone(), line) {
            Some(first) => Err(src.invalid(
                property.span(),
                format!("duplicate property `{}` (first written on line {first})", property.get_ref()),
            )),
            None => Ok(()),
        }
    };

    let mut fields = Vec::with_capacity(raw.fields.len());
    for f in raw.fields {
        fields.push(field(&src, &f)?);
        claim(&f.property)?;
    }

    let mut constants = BTreeMap::new();
    for (key, value) in &raw.constants {
        check_property_name(&src, key)?;
        if key.get_ref() == "email" {
            return Err(src.invalid(key.span(), "`email` cannot be a constant: it is the lead's email".into()));
        }
        claim(key)?;
        let text = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(src.invalid(
                    value.span(),
                    format!("constant `{}` must be a string, number or boolean", key.get_ref()),
                ))
            }
        };
        constants.insert(key.get_ref().clone(), text);
    }

    let status = super::updates::status(&src, raw.status.as_ref())?;
    let activity = super::updates::activity(&src, raw.activity.as_ref())?;
    let deal = super::followups::deal(&src, raw.deal.as_ref())?;
    let history = super::followups::history(raw.history.as_ref());
    Ok(Mapping {
        name: name.to_string(),
        description: raw.description,
        origin: origin.to_string(),
        group,
        fields,
        constants,
        status,
        activity,
        deal,
        history,
    })
}

fn field(src: &Source, f: &RawField) -> Result<FieldMapping, MappingError> {
    let from = f.from.get_ref().as_str();
    if !Lead::is_known_field(from) {
        return Err(src.invalid(
            f.from.span(),
            format!("unknown lead field `{from}` (known: {})", Lead::known_fields().join(", ")),
        ));
    }
    check_property_name(src, &f.property)?;
    let property = f.property.get_ref().as_str();
    if property == "email" && from != "email" {
        return Err(
            src.invalid(f.property.span(), "property `email` can only be mapped from the lead field `email`".into())
        );
    }
    let kind = PropertyType::parse(f.kind.get_ref()).ok_or_else(|| {
        let known: Vec<_> = PropertyType::ALL.iter().map(|t| t.as_str()).collect();
        src.invalid(f.kind.span(), format!("unknown type `{}` (known: {})", f.kind.get_ref(), known.join(", ")))
    })?;

    let options = match (&f.options, kind) {
        (None, PropertyType::Enumeration) => {
            return Err(src.invalid(f.kind.span(), format!("enumeration `{property}` needs `options`")))
        }
        (Some(o), PropertyType::Enumeration) => enum_options(src, o, property)?,
        (Some(o), _) => {
            return Err(src.invalid(
                o.span(),
                format!("`options` only applies to enumerations (`{property}` is {})", kind.as_str()),
            ))
        }
        (None, _) => Vec::new(),
    };
    let values = match &f.values {
        None => BTreeMap::new(),
        Some(v) if kind != PropertyType::Enumeration => {
            return Err(src.invalid(
                v.span(),
                format!("`values` only applies to enumerations (`{property}` is {})", kind.as_str()),
            ))
        }
        Some(v) => translations(src, v, &options, property)?,
    };
    let group = match &f.group {
        Some(g) => Some(checked_group(src, g)?),
        None => None,
    };
    Ok(FieldMapping {
        from: from.to_string(),
        property: property.to_string(),
        kind,
        required: f.required,
        label: f.label.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string),
        group,
        options,
        values,
    })
}

fn enum_options(src: &Source, raw: &Spanned<Vec<RawOption>>, property: &str) -> Result<Vec<EnumOption>, MappingError> {
    if raw.get_ref().is_empty() {
        return Err(src.invalid(raw.span(), format!("enumeration `{property}` needs at least one option")));
    }
    let mut out: Vec<EnumOption> = Vec::new();
    for o in raw.get_ref() {
        let (value, label) = match o {
            RawOption::Value(v) => (v.trim(), v.trim()),
            RawOption::Full { value, label } => (value.trim(), label.trim()),
        };
        if value.is_empty() || label.is_empty() {
            return Err(src.invalid(raw.span(), format!("enumeration `{property}` has an empty option")));
        }
        if out.iter().any(|e| e.value.eq_ignore_ascii_case(value)) {
            return Err(src.invalid(raw.span(), format!("enumeration `{property}` lists option `{value}` twice")));
        }
        out.push(EnumOption { value: value.to_string(), label: label.to_string() });
    }
    Ok(out)
}

/// The `values` table: keys lowercased, each target one of the options (stored as its canonical value).
fn translations(
    src: &Source,
    raw: &Spanned<BTreeMap<String, String>>,
    options: &[EnumOption],
    property: &str,
) -> Result<BTreeMap<String, String>, MappingError> {
    let mut out = BTreeMap::new();
    for (from, to) in raw.get_ref() {
        let Some(option) = options.iter().find(|o| o.value.eq_ignore_ascii_case(to.trim())) else {
            return Err(src.invalid(
                raw.span(),
                format!("`values` maps `{from}` to `{to}`, which is not an option of `{property}`"),
            ));
        };
        let key = from.trim().to_lowercase();
        if out.insert(key, option.value.clone()).is_some() {
            return Err(src.invalid(
                raw.span(),
                format!("`values` of `{property}` lists `{from}` twice (keys are case-insensitive)"),
            ));
        }
    }
    Ok(out)
}

/// HubSpot internal names: a lowercase letter, then lowercase letters, digits, `_` or `-`; at most 100.
pub(super) fn check_property_name(src: &Source, name: &Spanned<String>) -> Result<(), MappingError> {
    let n = name.get_ref();
    let ok = n.len() <= 100
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(src.invalid(
            name.span(),
            format!("`{n}` is not a valid HubSpot property name (a lowercase letter, then a-z, 0-9, `_` or `-`)"),
        ))
    }
}

fn checked_group(src: &Source, g: &Spanned<String>) -> Result<String, MappingError> {
    check_property_name(src, g)
        .map_err(|_| src.invalid(g.span(), format!("`{}` is not a valid property group name", g.get_ref())))?;
    Ok(g.get_ref().clone())
}
