//! The real `status-update` bootstrap under a Lambda Runtime API emulator, invoked with API Gateway HTTP API
//! events (stage `prod` in rawPath, as deployed) against moto server and the HubSpot sandbox: a status change
//! found by email is written to the contact with its version in the DynamoDB ledger, an older change is stale,
//! and bad input gets a JSON 4xx.

use hubrelay_testkit::runtime;

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use hubrelay_clients::HubSpotClient;
use hubrelay_core::hubspot::HubSpot;
use serde_json::json;

const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_applies_status_changes_in_order_against_dynamodb_and_hubspot() {
    let stage = runtime::aws_stage().await;
    let hs = HubSpotClient::new(&stage.sandbox.url(), runtime::SANDBOX_TOKEN, Duration::from_secs(5)).unwrap();
    let upsert =
        hubrelay_core::domain::ContactUpsert { email: "status@example.com".into(), properties: Default::default() };
    let contact_id = hs.upsert_contact(&upsert).await.unwrap().id;
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_status-update")), "status-update", &stage.env).await;
    let post = |body: serde_json::Value| {
        let f = &f;
        async move { runtime::invoke_http(f, "/v1/leads/status", &[AUTH], &body.to_string()).await }
    };

    let (status, body) = post(json!({"email": "status@example.com", "status": "Working",
        "changed_at": "2026-11-21T10:00:00Z"}))
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    let contact = hs.read_object("contacts", &contact_id, &["aimbase_lead_status"], &[]).await.unwrap().unwrap();
    assert_eq!(contact.properties["aimbase_lead_status"], "Working");
    let ledger =
        stage.dynamo.get_item().table_name(&stage.table).key("id", AttributeValue::S(format!("ledger:{contact_id}")));
    let ledger = ledger.send().await.unwrap().item.expect("the contact's ledger item in DynamoDB");
    assert!(ledger["v_status"].as_s().unwrap().starts_with("1795255200000|"), "{ledger:?}");

    // An older change arriving late writes nothing.
    let (status, body) =
        post(json!({"contact_id": contact_id, "status": "Pending", "changed_at": "2026-11-20T10:00:00Z"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("stale")), "{body}");
    let contact = hs.read_object("contacts", &contact_id, &["aimbase_lead_status"], &[]).await.unwrap().unwrap();
    assert_eq!(contact.properties["aimbase_lead_status"], "Working");

    // Strict bodies and an unknown contact: JSON answers, and nothing lost (parked for a redrive).
    let (status, body) = post(json!({"email": "status@example.com", "stauts": "Sold"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_field")), "{body}");
    let (status, body) = post(json!({"email": "nobody@example.com", "status": "Sold"})).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    assert_eq!(body["reason"]["code"], "contact_not_found", "{body}");
}
