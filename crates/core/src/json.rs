//! The one reader for JSON that senders post (leads, status updates, activities, referral webhooks).
//!
//! Stricter than `serde_json::from_slice`: a key given twice in one object is refused at any depth (serde_json
//! keeps the last value, so `{"email":"a@x.com","email":"b@x.com"}` would silently pick one), and so is a NUL
//! (U+0000) in any key or string value — HubSpot and most databases truncate or refuse it later, where the
//! sender can no longer be told. Errors name the path (`product.year`, `[2].objectId`).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not UTF-8 (the message says where).
    #[error("the body is not valid UTF-8: {0}")]
    InvalidEncoding(String),
    /// Not JSON, as serde_json words it.
    #[error("{0}")]
    Syntax(String),
    /// The path of a key given twice in one object.
    #[error("the key `{0}` is given twice")]
    DuplicateKey(String),
    /// The path of a key or string holding U+0000.
    #[error("`{0}` contains a NUL character (U+0000)")]
    NulCharacter(String),
}

/// Parses `body` as JSON, refusing invalid UTF-8, duplicate keys and NUL characters.
pub fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(JsonError::InvalidEncoding(format!("invalid byte at offset {}", e.valid_up_to())));
    }
    let problem = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Strict { at: Path::Root, problem: &problem }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    // A refusal of ours travels through serde as a plain message; the slot keeps what it was.
    value.map_err(|e| problem.take().unwrap_or_else(|| JsonError::Syntax(e.to_string())))
}

/// Where a value sits, borrowed from the parents' stack frames (no allocation unless an error is named).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => write!(f, "{key}"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct Strict<'a> {
    at: Path<'a>,
    problem: &'a RefCell<Option<JsonError>>,
}

impl Strict<'_> {
    fn refuse<E: de::Error>(&self, problem: JsonError) -> E {
        let message = problem.to_string();
        *self.problem.borrow_mut() = Some(problem);
        E::custom(message)
    }

    fn string<E: de::Error>(&self, s: String) -> Result<Value, E> {
        if s.contains('\0') {
            return Err(self.refuse(JsonError::NulCharacter(self.at.to_string())));
        }
        Ok(Value::String(s))
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.string(v)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(Strict { at: Path::Index(&self.at, out.len()), problem: self.problem })?
        {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Path::Key(&self.at, &key);
            if key.contains('\0') {
                return Err(self.refuse(JsonError::NulCharacter(at.to_string())));
            }
            if out.contains_key(&key) {
                return Err(self.refuse(JsonError::DuplicateKey(at.to_string())));
            }
            let value = map.next_value_seed(Strict { at, problem: self.problem })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: &str) -> JsonError {
        parse_strict(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let body = r#"{"a": [1, -2, 2.5, true, null, "x\u00e9"], "b": {"c": {}}, "d": 18446744073709551615}"#;
        assert_eq!(parse_strict(body.as_bytes()).unwrap(), serde_json::from_str::<Value>(body).unwrap());
        assert_eq!(parse_strict(b" [] ").unwrap(), json!([]));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(err(r#"{"email":"a@x.com","email":"b@x.com"}"#), JsonError::DuplicateKey("email".into()));
        assert_eq!(err(r#"{"product":{"year":1,"year":2}}"#), JsonError::DuplicateKey("product.year".into()));
        assert_eq!(err(r#"[{"a":1},{"b":{"c":[{"d":1,"d":1}]}}]"#), JsonError::DuplicateKey("[1].b.c[0].d".into()));
        // The same key in sibling objects is not a duplicate.
        assert!(parse_strict(br#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn nul_is_refused_in_values_and_keys() {
        assert_eq!(err(r#"{"first_name":"Ja\u0000ne"}"#), JsonError::NulCharacter("first_name".into()));
        assert_eq!(err(r#"{"dealer":{"na\u0000me":"x"}}"#), JsonError::NulCharacter("dealer.na\0me".into()));
        assert_eq!(err(r#"["ok","\u0000"]"#), JsonError::NulCharacter("[1]".into()));
    }

    #[test]
    fn syntax_and_encoding_errors() {
        assert!(matches!(err(r#"{"a":1} x"#), JsonError::Syntax(_)));
        assert!(matches!(err("{"), JsonError::Syntax(_)));
        assert!(matches!(parse_strict(b"{\"a\":\"\xff\"}").unwrap_err(), JsonError::InvalidEncoding(_)));
        // serde_json's depth limit still holds (no stack overflow on hostile nesting).
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(matches!(err(&deep), JsonError::Syntax(_)));
    }
}
