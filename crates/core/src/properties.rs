//! The custom contact properties hubrelay writes must exist in HubSpot, or every write is refused with
//! `PROPERTY_DOESNT_EXIST`. One list for every flow: the mapping profile's (leads, status updates,
//! activities) and the referral flows' (Extole share links, impact.com Advocate users). `hubrelay properties
//! check|sync`, `hubrelay doctor` and `serve`'s sandbox set-up all read it from here.

use crate::delivery::Failure;
use crate::domain::{AttemptOutcome, ContactUpsert};
use crate::hubspot::{HubSpot, HubSpotError, PropertyDefinition};
use crate::mapping::Mapping;
use crate::referral::ReferralConfig;

/// Every custom property an enabled flow writes, each once (the mapping's definition wins).
pub fn required(mapping: &Mapping, referral: &ReferralConfig) -> Vec<PropertyDefinition> {
    let mut out = mapping.all_property_definitions();
    for p in crate::referral::properties::definitions(referral) {
        if !out.iter().any(|o| o.name == p.name) {
            out.push(p);
        }
    }
    out
}

/// The properties of `wanted` the portal lacks.
pub async fn missing(
    hubspot: &dyn HubSpot,
    wanted: &[PropertyDefinition],
) -> Result<Vec<PropertyDefinition>, HubSpotError> {
    let existing = hubspot.list_properties().await?;
    Ok(wanted.iter().filter(|p| !existing.iter().any(|e| e.name == p.name)).cloned().collect())
}

/// Create what is missing; returns the names created.
pub async fn sync(hubspot: &dyn HubSpot, wanted: &[PropertyDefinition]) -> Result<Vec<String>, HubSpotError> {
    let mut created = Vec::new();
    for p in missing(hubspot, wanted).await? {
        hubspot.create_property(&p).await?;
        created.push(p.name);
    }
    Ok(created)
}

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
    use super::*;

    #[test]
    fn a_switched_off_program_needs_none_of_its_properties() {
        let mapping = Mapping::load("chat-widget").unwrap();
        let off = ReferralConfig { extole_enabled: false, impact_enabled: false, ..ReferralConfig::default() };
        assert_eq!(required(&mapping, &off).len(), mapping.all_property_definitions().len());
        let extole_only = ReferralConfig { impact_enabled: false, ..ReferralConfig::default() };
        let names: Vec<String> = required(&mapping, &extole_only).into_iter().map(|p| p.name).collect();
        assert!(names.contains(&"share_link".to_string()) && !names.contains(&"advocate_user_id".to_string()));
    }

    #[test]
    fn the_list_holds_the_mapping_and_the_referral_properties_once() {
        let mapping = Mapping::load("chat-widget").unwrap();
        let names: Vec<String> = required(&mapping, &ReferralConfig::default()).into_iter().map(|p| p.name).collect();
        for name in ["share_code", "share_link", "extole_app_type", "advocate_code", "advocate_user_id"] {
            assert!(names.contains(&name.to_string()), "{name} missing from {names:?}");
        }
        for p in mapping.all_property_definitions() {
            assert_eq!(names.iter().filter(|n| **n == p.name).count(), 1, "{} listed once", p.name);
        }
    }

    #[test]
    fn a_refusal_naming_properties_is_remembered_and_parks_the_next_input_carrying_one() {
        use super::MissingProperties;
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
