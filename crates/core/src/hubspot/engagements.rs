//! Engagements (timeline activities) created on a contact: the object types, their association type ids
//! (HubSpot's engagements API) and the request body of a create.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A HubSpot engagement object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngagementKind {
    Note,
    Call,
    Email,
    Meeting,
    Task,
    Communication,
}

impl EngagementKind {
    pub const ALL: [EngagementKind; 6] = [
        EngagementKind::Note,
        EngagementKind::Call,
        EngagementKind::Email,
        EngagementKind::Meeting,
        EngagementKind::Task,
        EngagementKind::Communication,
    ];

    /// The CRM object path segment: `notes`, `calls`, `emails`, `meetings`, `tasks`, `communications`.
    pub fn object_path(self) -> &'static str {
        match self {
            EngagementKind::Note => "notes",
            EngagementKind::Call => "calls",
            EngagementKind::Email => "emails",
            EngagementKind::Meeting => "meetings",
            EngagementKind::Task => "tasks",
            EngagementKind::Communication => "communications",
        }
    }

    /// The HUBSPOT_DEFINED association type id from this object to a contact
    /// (note 202, call 194, email 198, meeting 200, task 204, communication 81).
    pub fn contact_association_type_id(self) -> u32 {
        match self {
            EngagementKind::Note => 202,
            EngagementKind::Call => 194,
            EngagementKind::Email => 198,
            EngagementKind::Meeting => 200,
            EngagementKind::Task => 204,
            EngagementKind::Communication => 81,
        }
    }
}

/// One engagement to create, associated with one contact. `properties` are sent as they are (HubSpot's
/// names and values: `hs_timestamp` is required, as Unix ms or ISO-8601).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engagement {
    pub kind: EngagementKind,
    pub properties: BTreeMap<String, String>,
    pub contact_id: String,
}

impl Engagement {
    /// `{"properties":{...},"associations":[{"to":{"id":…},"types":[{"associationCategory":"HUBSPOT_DEFINED",…}]}]}`
    pub fn create_body(&self) -> Value {
        json!({
            "properties": self.properties,
            "associations": [{
                "to": {"id": self.contact_id},
                "types": [{
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": self.kind.contact_association_type_id(),
                }],
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn body_carries_the_association_type_of_the_kind() {
        let e = Engagement {
            kind: EngagementKind::Call,
            properties: props(&[("hs_timestamp", "0")]),
            contact_id: "1001".into(),
        };
        assert_eq!(
            e.create_body(),
            json!({"properties": {"hs_timestamp": "0"}, "associations": [{"to": {"id": "1001"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]})
        );
        let ids: Vec<u32> = EngagementKind::ALL.iter().map(|k| k.contact_association_type_id()).collect();
        assert_eq!(ids, [202, 194, 198, 200, 204, 81]);
    }
}
