//! The custom contact properties hubrelay writes must exist in HubSpot, or every write is refused with
//! `PROPERTY_DOESNT_EXIST`. One list for every flow: the mapping profile's (leads, status updates,
//! activities), the referral flows' (Extole share links, impact.com Advocate users) and the retry worker's write
//! marker (`hubrelay_write_id`). `hubrelay properties check|sync`, `hubrelay doctor` and `serve`'s sandbox set-up
//! all read it from here.

use crate::hubspot::{HubSpot, HubSpotError, PropertyDefinition};
use crate::mapping::Mapping;
use crate::referral::ReferralConfig;

/// Every custom property an enabled flow writes, each once (the mapping's definition wins).
pub fn required(mapping: &Mapping, referral: &ReferralConfig) -> Vec<PropertyDefinition> {
    let mut out = mapping.all_property_definitions();
    let own = std::iter::once(crate::worker::intents::marker_definition());
    for p in crate::referral::properties::definitions(referral).into_iter().chain(own) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switched_off_program_needs_none_of_its_properties() {
        let mapping = Mapping::load("chat-widget").unwrap();
        let off = ReferralConfig { extole_enabled: false, impact_enabled: false, ..ReferralConfig::default() };
        // The mapping's, and the retry worker's write marker.
        assert_eq!(required(&mapping, &off).len(), mapping.all_property_definitions().len() + 1);
        let extole_only = ReferralConfig { impact_enabled: false, ..ReferralConfig::default() };
        let names: Vec<String> = required(&mapping, &extole_only).into_iter().map(|p| p.name).collect();
        assert!(names.contains(&"share_link".to_string()) && !names.contains(&"advocate_user_id".to_string()));
    }

    #[test]
    fn the_list_holds_the_mapping_and_the_referral_properties_once() {
        let mapping = Mapping::load("chat-widget").unwrap();
        let names: Vec<String> = required(&mapping, &ReferralConfig::default()).into_iter().map(|p| p.name).collect();
        for name in
            ["share_code", "share_link", "extole_app_type", "advocate_code", "advocate_user_id", "hubrelay_write_id"]
        {
            assert!(names.contains(&name.to_string()), "{name} missing from {names:?}");
        }
        for p in mapping.all_property_definitions() {
            assert_eq!(names.iter().filter(|n| **n == p.name).count(), 1, "{} listed once", p.name);
        }
    }
}
