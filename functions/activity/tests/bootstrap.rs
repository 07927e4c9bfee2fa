//! The real `activity` bootstrap under a Lambda Runtime API emulator, invoked with API Gateway HTTP API events
//! against moto server and the HubSpot sandbox: a phone call becomes one call engagement on the contact, the
//! same activity again makes no second one, and bad input gets a JSON 4xx.

use hubrelay_testkit::runtime;

use std::path::Path;
use std::time::Duration;

use hubrelay_core::hubspot::{EngagementKind, HubSpot};

use hubrelay_clients::HubSpotClient;
use serde_json::json;

const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_records_each_activity_once_as_an_engagement() {
    let stage = runtime::aws_stage().await;
    let hs = HubSpotClient::new(&stage.sandbox.url(), runtime::SANDBOX_TOKEN, Duration::from_secs(5)).unwrap();
    let upsert =
        hubrelay_core::domain::ContactUpsert { email: "activity@example.com".into(), properties: Default::default() };
    let contact_id = hs.upsert_contact(&upsert).await.unwrap().id;
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_activity")), "activity", &stage.env).await;

    let call = json!({"email": "activity@example.com", "type": "Phone Call", "body": "Left a voicemail",
        "direction": "outbound", "duration_seconds": 42, "activity_id": "A-boot-1"})
    .to_string();
    for _ in 0..2 {
        let (status, body) = runtime::invoke_http(&f, "/v1/leads/activities", &[AUTH], &call).await;
        assert_eq!((status, body["engagement_type"].as_str()), (200, Some("calls")), "{body}");
    }
    let calls = hs.contact_engagements(&contact_id, EngagementKind::Call).await.unwrap();
    assert_eq!(calls.len(), 1, "one engagement for the same activity twice");

    let (status, body) = runtime::invoke_http(&f, "/v1/leads/activities", &[AUTH], "[1, 2]").await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, body) =
        runtime::invoke_http(&f, "/v1/leads/activities", &[("authorization", "Bearer x")], &call).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")), "{body}");
}
