//! The real `lead-captured` bootstrap under a Lambda Runtime API emulator, invoked with API Gateway HTTP API
//! events, against moto server (DynamoDB, SQS, SSM) and the HubSpot sandbox: init reads the token from SSM,
//! a lead becomes a contact with its idempotency record in DynamoDB, a lead HubSpot refuses for now lands on
//! the SQS retry queue, bad input gets a JSON 4xx.

use hubrelay_testkit::runtime;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");

async fn invoke(f: &runtime::Function, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    runtime::invoke_http(f, "/v1/leads", headers, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_serves_api_gateway_events_against_dynamodb_sqs_and_hubspot() {
    let stage = runtime::aws_stage().await;
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_lead-captured")), "lead-captured", &stage.env).await;

    let lead = json!({"email": "bootstrap@example.com", "first_name": "Boot"}).to_string();
    let (status, body) = invoke(&f, &[AUTH, ("idempotency-key", "boot-1")], &lead).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert!(f.emulator.ready_at().is_some());
    assert_eq!(stage.sandbox.sandbox.contact_count().unwrap(), 1);
    assert_eq!(
        stage.idempotency_status("lead-captured:key:boot-1").await.as_deref(),
        Some("COMPLETED"),
        "idempotency record in DynamoDB"
    );

    // HubSpot down: 202 queued, and the message is on moto's SQS retry queue (after its 5 s delay).
    stage.hubspot_down(true);
    let (status, body) = invoke(&f, &[AUTH], &json!({"email": "later@example.com"}).to_string()).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let out = stage.sqs.receive_message().queue_url(&stage.queue_url).wait_time_seconds(2).send().await.unwrap();
    let message: Value = serde_json::from_str(out.messages()[0].body().unwrap()).unwrap();
    assert_eq!(message["event_id"], body["event_id"]);

    // Bad input and bad credentials: JSON errors, and the process keeps serving.
    let (status, body) = invoke(&f, &[AUTH], "{not json").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed_json")));
    let (status, body) = invoke(&f, &[("authorization", "Bearer wrong")], &lead).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")));

    // Its metrics, as EMF lines on stdout after each invocation, valid by AWS's specification: one lead
    // delivered, one queued, and the HubSpot calls of the function (a 503 among them) with their latencies.
    let documents = f.emf_documents();
    hubrelay_testkit::emf::assert_valid(&documents);
    let total = |function, metric| hubrelay_testkit::emf::total(&documents, function, metric);
    assert_eq!(total("lead-captured", "Delivered"), 1.0, "{documents:?}");
    assert_eq!(total("lead-captured", "Queued"), 1.0, "{documents:?}");
    assert_eq!(total("lead-captured", "Parked"), 0.0, "{documents:?}");
    let calls = total("lead-captured", "HubSpotRequests");
    assert!(calls >= 2.0, "{documents:?}");
    assert_eq!(total("lead-captured", "HubSpotLatency"), calls, "one latency value per call");
    assert!(documents.iter().all(
        |d| d["Tenant"] == "default" && d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "hubrelay/bootstrap-test"
    ));
}
