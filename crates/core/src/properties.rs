//! `hubrelay properties check|sync`: the custom contact properties a mapping profile writes must exist in
//! HubSpot, or every lead is refused with PROPERTY_DOESNT_EXIST.

use crate::hubspot::{HubSpot, HubSpotError, PropertyDefinition};
use crate::mapping::Mapping;

/// The properties `mapping` needs that the portal lacks.
pub async fn missing(hubspot: &dyn HubSpot, mapping: &Mapping) -> Result<Vec<PropertyDefinition>, HubSpotError> {
    let existing = hubspot.list_properties().await?;
    Ok(mapping.all_property_definitions().into_iter().filter(|p| !existing.iter().any(|e| e.name == p.name)).collect())
}

/// Create what is missing; returns the names created.
pub async fn sync(hubspot: &dyn HubSpot, mapping: &Mapping) -> Result<Vec<String>, HubSpotError> {
    let mut created = Vec::new();
    for p in missing(hubspot, mapping).await? {
        hubspot.create_property(&p).await?;
        created.push(p.name);
    }
    Ok(created)
}
