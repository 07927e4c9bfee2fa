//! A strict reader over a JSON object: every key must be taken by some field (aliases allowed), so an
//! unknown field is an error instead of a silently dropped value.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::UpdateError;
use crate::dates::parse_lead_date;

pub(super) struct Fields {
    map: Map<String, Value>,
    /// Prefix for error paths (`ProspectActivity.`).
    prefix: String,
}

impl Fields {
    pub fn new(map: Map<String, Value>, prefix: &str) -> Self {
        Fields { map, prefix: prefix.to_string() }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Removes the first of `names` present (null counts as absent); two aliases at once are an error.
    pub fn take(&mut self, names: &[&str]) -> Result<Option<(String, Value)>, UpdateError> {
        let mut found: Option<(String, Value)> = None;
        for name in names {
            if let Some(v) = self.map.remove(*name) {
                if let Some((first, _)) = &found {
                    return Err(UpdateError::InvalidValue {
                        field: self.path(name),
                        message: format!("given together with `{first}`; send one"),
                    });
                }
                found = Some((self.path(name), v));
            }
        }
        Ok(found.filter(|(_, v)| !v.is_null()))
    }

    /// A string (numbers are accepted and written in decimal: ids often travel as numbers), trimmed;
    /// empty is absent.
    pub fn text(&mut self, names: &[&str]) -> Result<Option<String>, UpdateError> {
        let Some((field, value)) = self.take(names)? else { return Ok(None) };
        let s = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(UpdateError::InvalidType { field, expected: "a string" }),
        };
        Ok(Some(s).filter(|s| !s.is_empty()))
    }

    /// A number (or a numeric string), as HubSpot's decimal string.
    pub fn number(&mut self, names: &[&str]) -> Result<Option<String>, UpdateError> {
        let Some((field, value)) = self.take(names)? else { return Ok(None) };
        let parsed = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(x) if x.is_finite() => Ok(Some(decimal(x))),
            _ => Err(UpdateError::InvalidType { field, expected: "a number" }),
        }
    }

    /// A date-time in any format [`parse_lead_date`] takes; its instant.
    pub fn instant(&mut self, names: &[&str]) -> Result<Option<OffsetDateTime>, UpdateError> {
        let Some((field, value)) = self.take(names)? else { return Ok(None) };
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return Err(UpdateError::InvalidType { field, expected: "a date-time string" }),
        };
        parse_lead_date(&text)
            .map(|d| Some(super::to_millis(d.instant)))
            .map_err(|e| UpdateError::InvalidValue { field, message: e.to_string() })
    }

    /// A nested object, read strictly with its own prefix.
    pub fn object(&mut self, names: &[&str]) -> Result<Option<Fields>, UpdateError> {
        let Some((field, value)) = self.take(names)? else { return Ok(None) };
        match value {
            Value::Object(map) => Ok(Some(Fields::new(map, &format!("{field}.")))),
            _ => Err(UpdateError::InvalidType { field, expected: "an object" }),
        }
    }

    /// Every key must have been taken.
    pub fn finish(self) -> Result<(), UpdateError> {
        match self.map.keys().next() {
            Some(key) => Err(UpdateError::UnknownField(self.path(key))),
            None => Ok(()),
        }
    }
}

/// `87` for 87.0, `87.5` otherwise: HubSpot number properties take either.
pub(super) fn decimal(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}
