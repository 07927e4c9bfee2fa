//! Engagements (timeline activities) created on a contact: the object types, their association type ids
//! (`../shared/reference/hubspot.md`, "Engagements") and the request body of a create.

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
    use std::time::Duration;

    use super::*;
    use crate::domain::{AttemptOutcome, ContactUpsert};
    use crate::hubspot::{HubSpot, HubSpotClient};
    use crate::sandbox::{spawn, SandboxOptions};

    const TOKEN: &str = "pat-engagements";

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

    #[tokio::test]
    async fn client_round_trip_against_the_sandbox() {
        let options = SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() };
        let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = HubSpotClient::new(&handle.url(), TOKEN, Duration::from_secs(5)).unwrap();
        let contact = client
            .upsert_contacts(&[ContactUpsert { email: "round@example.com".into(), properties: props(&[]) }])
            .await
            .unwrap()
            .remove(0);

        client.update_contact(&contact.id, &props(&[("firstname", "Round"), ("city", "Turin")])).await.unwrap();
        let http = reqwest::Client::new();
        let got: Value = http
            .get(format!("{}/crm/v3/objects/contacts/{}?properties=firstname,city", handle.url(), contact.id))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["properties"]["firstname"], "Round");
        assert_eq!(got["properties"]["city"], "Turin");

        let bodies: [(EngagementKind, &[(&str, &str)]); 6] = [
            (EngagementKind::Note, &[("hs_note_body", "hi")]),
            (EngagementKind::Call, &[("hs_call_direction", "INBOUND"), ("hs_call_duration", "60000")]),
            (EngagementKind::Email, &[("hs_email_direction", "INCOMING_EMAIL"), ("hs_email_subject", "Re: quote")]),
            (EngagementKind::Meeting, &[("hs_meeting_title", "Test drive")]),
            (EngagementKind::Task, &[("hs_task_type", "TODO"), ("hs_task_priority", "LOW")]),
            (EngagementKind::Communication, &[("hs_communication_channel_type", "WHATS_APP")]),
        ];
        for (kind, extra) in bodies {
            let mut properties = props(extra);
            properties.insert("hs_timestamp".into(), "2024-05-01T10:00:00Z".into());
            let id = client
                .create_engagement(&Engagement { kind, properties, contact_id: contact.id.clone() })
                .await
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(id.parse::<u64>().is_ok(), "{kind:?}: numeric id {id}");
            let listed: Value = http
                .get(format!(
                    "{}/crm/v3/objects/contacts/{}/associations/{}",
                    handle.url(),
                    contact.id,
                    kind.object_path()
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(listed["results"][0]["toObjectId"].to_string(), id, "{kind:?}");
        }
        assert_eq!(handle.sandbox.engagement_count().unwrap(), 6);

        // Refusals come back classified: an unknown contact and a bad option are not retryable.
        let e = client
            .create_engagement(&Engagement {
                kind: EngagementKind::Note,
                properties: props(&[("hs_timestamp", "0")]),
                contact_id: "424242".into(),
            })
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (Some(400), "validation_error"));
        assert!(e.message.contains("424242"), "{e}");
        assert_eq!(e.outcome(), AttemptOutcome::Rejected);
        let e = client
            .create_engagement(&Engagement {
                kind: EngagementKind::Task,
                properties: props(&[("hs_timestamp", "0"), ("hs_task_priority", "URGENT")]),
                contact_id: contact.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, "invalid_option");
        let e = client.update_contact("999999", &props(&[("firstname", "X")])).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (Some(404), "object_not_found"));
        handle.shutdown().await;
    }
}
