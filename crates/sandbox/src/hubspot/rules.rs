//! A portal's validation rules, as an admin configures them in HubSpot: from API version 2026-09 they apply to
//! API writes (HubSpot's changelog, "CRM API Write Validation Enforcement"), answering 400 `VALIDATION_ERROR`
//! with the rule's message. Legacy (`/crm/v3`) writes are not checked, as on HubSpot before 2026-09.
//!
//! Set with `POST /__sandbox/validation-rules` `{"rules":[{"property":"phone","message":"…",
//! "when":{"property":"hs_lead_status","equals":"NEW"},"on":"write"}]}` (replaces the list), read with `GET`,
//! cleared with `DELETE`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// One conditionally required property ("`property` is required when `when.property` is `when.equals`"),
/// or a required create-form field (`on: "create"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRule {
    /// The property the rule requires.
    pub property: String,
    /// What HubSpot answers (the admin's text); a default names the property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Only when this other property has this value (after the write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// `write` (every create and update, the default) or `create` (the create-record form's required fields).
    #[serde(default)]
    pub on: RuleScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub property: String,
    pub equals: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    #[default]
    Write,
    Create,
}

/// The rules a write breaks, checked against the record as it would be after the write.
pub(crate) fn check(
    rules: &[ValidationRule],
    after: &BTreeMap<String, String>,
    creating: bool,
) -> Result<(), ApiError> {
    let set = |name: &str| after.get(name).is_some_and(|v| !v.trim().is_empty());
    let broken: Vec<&ValidationRule> = rules
        .iter()
        .filter(|r| creating || r.on == RuleScope::Write)
        .filter(|r| r.when.as_ref().is_none_or(|c| after.get(&c.property).is_some_and(|v| *v == c.equals)))
        .filter(|r| !set(&r.property))
        .collect();
    if broken.is_empty() {
        return Ok(());
    }
    let message_of = |r: &ValidationRule| {
        r.message.clone().unwrap_or_else(|| match &r.when {
            Some(c) => format!("{} is required when {} is {}", r.property, c.property, c.equals),
            None => format!("{} is required", r.property),
        })
    };
    // HubSpot's shape for rule refusals: the list inside `message`, and `errors` naming each property.
    let legacy: Vec<serde_json::Value> = broken
        .iter()
        .map(|r| {
            serde_json::json!({"isValid": false, "message": message_of(r), "error": "VALIDATION_RULE_REQUIRED_PROPERTY",
                               "name": r.property})
        })
        .collect();
    let errors: Vec<serde_json::Value> = broken
        .iter()
        .map(|r| {
            serde_json::json!({"message": message_of(r), "code": "VALIDATION_RULE_REQUIRED_PROPERTY",
                               "context": {"propertyName": [r.property]}})
        })
        .collect();
    let message = format!("Property values were not valid: {}", serde_json::Value::Array(legacy));
    Err(ApiError::validation(message).with("errors", serde_json::Value::Array(errors)))
}

/// Parses the admin body: `{"rules":[…]}`.
pub(crate) fn parse(body: &serde_json::Value) -> Result<Vec<ValidationRule>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        rules: Vec<ValidationRule>,
    }
    let parsed: Body = serde_json::from_value(body.clone()).map_err(|e| {
        ApiError::validation(format!(
            "expected {{\"rules\":[{{\"property\",\"message\"?,\"when\"?:{{\"property\",\"equals\"}},\"on\"?:\"write\"|\"create\"}}]}}: {e}"
        ))
    })?;
    if let Some(r) = parsed.rules.iter().find(|r| r.property.trim().is_empty()) {
        return Err(ApiError::validation(format!("a rule needs a property name: {r:?}")));
    }
    Ok(parsed.rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> ValidationRule {
        serde_json::from_value(json).unwrap()
    }

    fn record(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_conditional_rule_applies_only_when_its_condition_holds() {
        let rules = [rule(serde_json::json!({"property":"phone","message":"Leads need a phone",
            "when":{"property":"hs_lead_status","equals":"NEW"}}))];
        assert!(check(&rules, &record(&[("hs_lead_status", "OPEN")]), true).is_ok());
        assert!(check(&rules, &record(&[("hs_lead_status", "NEW"), ("phone", "+1 555")]), false).is_ok());
        let e = check(&rules, &record(&[("hs_lead_status", "NEW"), ("phone", " ")]), false).unwrap_err();
        assert_eq!(e.status, 400);
        let message = e.body["message"].as_str().unwrap();
        assert!(message.contains("Leads need a phone") && message.contains("VALIDATION_RULE_REQUIRED_PROPERTY"));
    }

    #[test]
    fn create_form_rules_skip_updates() {
        let rules = [rule(serde_json::json!({"property":"company","on":"create"}))];
        assert!(check(&rules, &record(&[]), false).is_ok());
        let e = check(&rules, &record(&[]), true).unwrap_err();
        assert_eq!(e.body["errors"][0]["message"], "company is required");
    }

    #[test]
    fn bad_admin_bodies_are_refused_with_the_expected_shape() {
        assert!(parse(&serde_json::json!({"rules":[{"property":""}]})).is_err());
        let e = parse(&serde_json::json!({"rules":[{"property":"x","unknown":1}]})).unwrap_err();
        assert!(e.body["message"].as_str().unwrap().contains("expected"));
    }
}
