//! The HubSpot client's engagement calls against the HubSpot sandbox.

use std::collections::BTreeMap;
use std::time::Duration;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{AttemptOutcome, ContactUpsert};
use hubrelay_core::hubspot::{ApiVersion, Engagement, EngagementKind, HubSpot};
use hubrelay_sandbox::hubspot::{spawn, SandboxOptions};
use serde_json::Value;

const TOKEN: &str = "pat-engagements";

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

#[tokio::test]
async fn client_round_trip_against_the_sandbox() {
    let options = SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() };
    let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = HubSpotClient::new(&handle.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let legacy = client.clone().with_api_version(ApiVersion::Legacy);
    let contact = client
        .upsert_contact(&ContactUpsert { email: "round@example.com".into(), properties: props(&[]) })
        .await
        .unwrap();

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
        // Read back on the dated association API and on the legacy (v4) one.
        assert_eq!(client.contact_engagements(&contact.id, kind).await.unwrap(), vec![id.clone()], "{kind:?}");
        assert_eq!(legacy.contact_engagements(&contact.id, kind).await.unwrap(), vec![id], "{kind:?} (v3 mode)");
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
