//! What HubSpot said the portal lacks, remembered briefly so neither the inline path nor the worker spends
//! another call on it.

use crate::delivery::Failure;
use crate::domain::{AttemptOutcome, ContactUpsert};
use crate::hubspot::HubSpotError;

/// Properties HubSpot said the portal lacks, remembered for [`MissingProperties::TTL`], so the next input
/// carrying one is parked without spending a call on a refusal — and a batch refused for one never has to
/// be bisected. Forgotten after the TTL, kept short so a redrive right after the property is created
/// (`hubrelay properties sync`, another process) goes through; one refusal a minute stays cheap.
#[derive(Debug, Default)]
pub struct MissingProperties {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl MissingProperties {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new() -> std::sync::Arc<MissingProperties> {
        std::sync::Arc::default()
    }

    /// Remember the properties a refusal names; true when it named any.
    pub fn learn(&self, refusal: &HubSpotError) -> bool {
        let names = missing_in(refusal);
        if names.is_empty() {
            return false;
        }
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            seen.insert(name, now);
        }
        true
    }

    /// The first property of `upsert` known to be missing, if any.
    pub fn carried_by(&self, upsert: &ContactUpsert) -> Option<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_empty() {
            return None;
        }
        seen.retain(|_, at| at.elapsed() < Self::TTL);
        upsert.properties.keys().find(|k| seen.contains_key(k.as_str())).cloned()
    }

    /// Whether HubSpot said within the TTL that the portal lacks `name`.
    pub fn is_missing(&self, name: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| at.elapsed() < Self::TTL);
        seen.contains_key(name)
    }

    /// HubSpot took `upsert`: whatever it carries exists now (created since the refusal).
    pub fn forget(&self, upsert: &ContactUpsert) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.is_empty() {
            seen.retain(|name, _| !upsert.properties.contains_key(name));
        }
    }

    /// The failure an input carrying `property` parks with, without a call.
    pub fn failure(property: &str) -> Failure {
        Failure::park(
            "property_doesnt_exist",
            format!(
                "Property \"{property}\" does not exist in the portal (HubSpot refused it in the last {} s; \
                 create it, e.g. `hubrelay properties sync`, then redrive)",
                Self::TTL.as_secs()
            ),
        )
    }
}

/// `Property "x" does not exist`, as HubSpot writes it in `message` and `errors[]` (often as JSON inside
/// the message, quotes escaped).
fn missing_in(refusal: &HubSpotError) -> Vec<String> {
    if refusal.outcome() != AttemptOutcome::Rejected {
        return Vec::new();
    }
    let text = refusal.message.replace('\\', "");
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("Property \"") {
        let after = &rest[start + "Property \"".len()..];
        let Some(end) = after.find('"') else { break };
        let name = &after[..end];
        if after[end + 1..].trim_start().starts_with("does not exist") && !name.is_empty() {
            names.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::MissingProperties;

    #[test]
    fn a_refusal_naming_properties_is_remembered_and_parks_the_next_input_carrying_one() {
        use crate::domain::ContactUpsert;
        use crate::hubspot::HubSpotError;
        let refusal = HubSpotError::new(
            Some(400),
            "validation_error",
            r#"Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"favourite_colour\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"favourite_colour\"}]"#,
        );
        let missing = MissingProperties::new();
        assert!(missing.learn(&refusal));
        let upsert = |props: &[&str]| ContactUpsert {
            email: "a@example.com".into(),
            properties: props.iter().map(|p| (p.to_string(), "x".to_string())).collect(),
        };
        assert_eq!(
            missing.carried_by(&upsert(&["firstname", "favourite_colour"])).as_deref(),
            Some("favourite_colour")
        );
        assert_eq!(missing.carried_by(&upsert(&["firstname"])), None);
        // A timeout names nothing; a 5xx quoting the text is not a refusal.
        assert!(!missing.learn(&HubSpotError::new(None, "hubspot_timeout", "timed out")));
        assert!(!missing.learn(&HubSpotError::new(Some(502), "bad_gateway", "Property \"x\" does not exist")));
        assert_eq!(missing.carried_by(&upsert(&["x"])), None);
    }
}
