//! The Lambda wiring (`hubrelay_aws::lambda::lead_captured_app`, what `functions/lead-captured` runs) against moto
//! server (DynamoDB, SQS, SSM) and the HubSpot sandbox: init reads its secrets from SSM, writes idempotency
//! records to DynamoDB, queues to SQS and parks in the DLQ. Its own test binary: it sets process env vars.

use hubrelay_testkit::runtime;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::hubspot::EngagementKind;
use hubrelay_sandbox::hubspot as sandbox;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn post(app: &axum::Router, body: &Value, key: Option<&str>) -> (u16, bool, Value) {
    post_to(app, "/v1/leads", body, key).await
}

async fn post_to(app: &axum::Router, path: &str, body: &Value, key: Option<&str>) -> (u16, bool, Value) {
    let mut req = http::Request::post(path)
        .header("authorization", format!("Bearer {}", runtime::API_TOKEN))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, replayed, serde_json::from_slice(&bytes).unwrap())
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<RetryMessage> {
    let out =
        sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
    out.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lead_captured_on_aws_adapters() {
    // moto (table, queues, the HubSpot token in SSM) and the sandbox, as the bootstrap tests use them.
    let stage = runtime::aws_stage().await;
    let (dynamo, sqs, sandbox) = (stage.dynamo.clone(), stage.sqs.clone(), &stage.sandbox);
    let (table, queue_url, dlq_url) = (stage.table.clone(), stage.queue_url.clone(), stage.dlq_url.clone());
    let hs = HubSpotClient::new(&sandbox.url(), runtime::SANDBOX_TOKEN, std::time::Duration::from_secs(5)).unwrap();
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::remove_var("HUBSPOT_TOKEN");
    let app = hubrelay_aws::lambda::lead_captured_app().await.expect("init");

    // Delivered, and the idempotency record is COMPLETED in DynamoDB.
    let lead = json!({"email": "aws@example.com", "first_name": "Ada", "vehicle_of_interest": "X", "priority": "low"});
    let (status, _, body) = post(&app, &lead, Some("aws-1")).await;
    assert_eq!(status, 200, "{body}");
    let item = dynamo
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S("lead-captured:key:aws-1".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("idempotency record");
    assert_eq!(item["status"], AttributeValue::S("COMPLETED".into()));
    let (status, replayed, again) = post(&app, &lead, Some("aws-1")).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, body);
    assert_eq!(sandbox.sandbox.contact_count().unwrap(), 1);

    // HubSpot down → 202 queued, the message (with its first attempt) on the SQS retry queue.
    sandbox.sandbox.set_faults(sandbox::Faults { failure_rate: 1.0, failure_status: 503, ..Default::default() });
    let (status, _, body) = post(&app, &json!({"email": "later@example.com"}), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await; // the first retry waits 5 s (DelaySeconds)
    let queued = receive(&sqs, &queue_url).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].event_id, body["event_id"].as_str().unwrap());
    assert_eq!(queued[0].attempts[0].status, Some(503));
    assert_eq!(queued[0].idempotency_key.split(':').next(), Some("lead-captured"));

    // A property HubSpot lacks → parked on the DLQ with the reason.
    sandbox.sandbox.set_faults(sandbox::Faults::default());
    let (status, _, body) = post(&app, &json!({"email": "p@example.com", "properties": {"nope": "1"}}), None).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    let parked = receive(&sqs, &dlq_url).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].dead_letter_reason.as_ref().unwrap().code, "property_doesnt_exist");

    // status-update and activity (what their functions run), on the same table: lead-captured linked the
    // lead id to its contact in DynamoDB (on the lead's idempotency item, with its answer), the status update
    // finds the contact through it, and the applied version is kept per contact.
    let (_, _, lead) = post(&app, &json!({"email": "linked@example.com", "lead_id": "L-aws-1"}), None).await;
    let contact_id = lead["contact_id"].as_str().expect("delivered").to_string();
    let key = AttributeValue::S("lead-captured:lead:L-aws-1".into());
    let link = dynamo.get_item().table_name(&table).key("id", key).send().await;
    assert_eq!(link.unwrap().item.expect("lead link")["contact_id"], AttributeValue::S(contact_id.clone()));
    let status_app = hubrelay_aws::lambda::status_update_app().await.expect("status-update init");
    let update = json!({"lead_id": "L-aws-1", "status": "Working", "changed_at": "2026-11-21T10:00:00Z"});
    let (status, _, body) = post_to(&status_app, "/v1/leads/status", &update, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    let ledger = dynamo.get_item().table_name(&table).key("id", AttributeValue::S(format!("ledger:{contact_id}")));
    let ledger = ledger.send().await.unwrap().item.expect("ledger item");
    assert!(ledger["v_status"].as_s().unwrap().starts_with("1795255200000|"), "{ledger:?}");
    assert!(!ledger.contains_key("lease_owner"), "the lease is released");
    let older = json!({"contact_id": contact_id, "status": "Pending", "changed_at": "2026-11-20T10:00:00Z"});
    let (_, _, body) = post_to(&status_app, "/v1/leads/status", &older, None).await;
    assert_eq!(body["status"], "stale", "{body}");

    let activity_app = hubrelay_aws::lambda::activity_app().await.expect("activity init");
    let note = json!({"lead_id": "L-aws-1", "type": "Note", "body": "called back", "activity_id": "A-1"});
    for _ in 0..2 {
        let (status, _, body) = post_to(&activity_app, "/v1/leads/activities", &note, None).await;
        assert_eq!((status, body["engagement_type"].as_str()), (200, Some("notes")), "{body}");
    }
    let notes =
        hubrelay_core::hubspot::HubSpot::contact_engagements(&hs, &contact_id, EngagementKind::Note).await.unwrap();
    assert_eq!(notes.len(), 1);

    // lead-captured also serves the OpenAPI description (template.yaml routes GET /openapi.json to it); a wrong
    // method is a JSON 405.
    let get = http::Request::get("/openapi.json").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(get).await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"].get("/health").is_none() && doc["paths"].get("/v1/leads").is_some(), "AWS's routes only");
    let (status, _, body) = post_to(&app, "/openapi.json", &json!({}), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{body}");
}
