//! What each event type costs in AWS requests: the real functions (`hubrelay_aws::lambda`) against moto server
//! through a recording proxy, counting every request's `X-Amz-Target`. The counts are the table in
//! docs/performance.md ("AWS requests per event"); the test fails when a change raises one (and when the table
//! and the code disagree). Its own test binary: it sets process environment variables.

use std::collections::BTreeMap;

use hubrelay_aws::lambda::{activity_app, lead_captured_app, referral_event_app, retry_worker_app, status_update_app};
use hubrelay_testkit::recording_proxy::RecordingProxy;
use hubrelay_testkit::runtime::{self, API_TOKEN};
use hubrelay_testkit::worker::sqs_event;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// One row of the table: the event type and its AWS requests by operation.
type Counts = BTreeMap<String, usize>;

async fn post(app: &axum::Router, path: &str, body: &Value) -> (u16, Value) {
    runtime::post_json(app, path, API_TOKEN, body).await
}

/// The requests seen since the last call, by operation (`PutItem`, `SendMessage`, ...), then forgotten. A write
/// to the shared HubSpot budget (a `budget:` item, one per HubSpot call) counts as `UpdateItem (budget)`.
fn take(proxy: &RecordingProxy) -> Counts {
    let mut counts = Counts::new();
    for (target, body) in proxy.amz_requests() {
        let mut operation = target.rsplit('.').next().unwrap_or(&target).to_string();
        let key =
            serde_json::from_str::<Value>(&body).ok().and_then(|b| b["Key"]["id"]["S"].as_str().map(String::from));
        if key.is_some_and(|k| k.starts_with("budget:")) {
            operation.push_str(" (budget)");
        }
        *counts.entry(operation).or_default() += 1;
    }
    proxy.clear();
    counts
}

/// DynamoDB writes among `counts` for the event's own records (the budget's are counted apart).
fn writes(counts: &Counts) -> usize {
    ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"]
        .iter()
        .map(|op| counts.get(*op).copied().unwrap_or(0))
        .sum()
}

/// The table in docs/performance.md between its markers: `| event | requests | DynamoDB writes |` rows, the
/// requests written `2 × PutItem, 1 × UpdateItem`.
fn documented() -> BTreeMap<String, (Counts, usize)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/performance.md")).unwrap();
    let start = doc.find("<!-- aws-request-counts -->").expect("the table's start marker in docs/performance.md");
    let end = doc.find("<!-- /aws-request-counts -->").expect("the table's end marker");
    let mut rows = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let mut counts = Counts::new();
        for part in cells[1].split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, op) = part.split_once(" × ").unwrap_or_else(|| panic!("`{part}`: want `N × Operation`"));
            counts.insert(op.trim_matches('`').to_string(), n.parse().unwrap());
        }
        rows.insert(cells[0].trim_matches('*').to_string(), (counts, cells[2].parse().unwrap()));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_type_costs_the_documented_aws_requests() {
    let stage = runtime::aws_stage().await;
    let moto = stage.env.iter().find(|(k, _)| *k == "AWS_ENDPOINT_URL").unwrap().1.clone();
    let proxy = RecordingProxy::start(&moto).await;
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::set_var("AWS_ENDPOINT_URL", &proxy.url);
    let leads = lead_captured_app().await.expect("lead-captured init");
    let status = status_update_app().await.expect("status-update init");
    let activity = activity_app().await.expect("activity init");
    let referrals = referral_event_app().await.expect("referral-event init");
    let worker = retry_worker_app().await.expect("retry-worker init");
    take(&proxy); // init: SSM and the like, once per cold start

    let mut measured = BTreeMap::<String, Counts>::new();
    let lead = json!({"lead_id": "count-1", "email": "count1@example.com", "first_name": "Ann"});
    assert_eq!(post(&leads, "/v1/leads", &lead).await.0, 200);
    measured.insert("delivered lead".into(), take(&proxy));
    let anonymous = json!({"email": "count2@example.com", "first_name": "Bo"});
    assert_eq!(post(&leads, "/v1/leads", &anonymous).await.0, 200);
    measured.insert("delivered lead without a lead id".into(), take(&proxy));
    assert_eq!(post(&leads, "/v1/leads", &lead).await.0, 200);
    measured.insert("duplicate lead".into(), take(&proxy));

    let update = json!({"lead_id": "count-1", "status": "working"});
    let (code, body) = post(&status, "/v1/leads/status", &update).await;
    assert_eq!(code, 200, "{body}");
    measured.insert("status update".into(), take(&proxy));
    let note = json!({"lead_id": "count-1", "type": "Note", "subject": "s", "body": "b",
        "occurred_at": "2026-11-21T10:00:00Z"});
    let (code, body) = post(&activity, "/v1/leads/activities", &note).await;
    assert_eq!(code, 200, "{body}");
    measured.insert("activity".into(), take(&proxy));
    let signup = json!({"email": "count1@example.com", "advocate_code": "C1"});
    let (code, body) = post(&referrals, "/v1/referrals/hubspot", &signup).await;
    assert_eq!(code, 202, "{body}");
    measured.insert("referral event".into(), take(&proxy));

    stage.hubspot_down(true);
    // The queued leads' messages as they went to SQS (they are delayed there, 5 s: the schedule's next step).
    let mut messages = Vec::new();
    for i in 0..10 {
        let lead = json!({"lead_id": format!("queued-{i}"), "email": format!("queued{i}@example.com")});
        assert_eq!(post(&leads, "/v1/leads", &lead).await.0, 202);
        for (target, body) in proxy.amz_requests() {
            if target.ends_with(".SendMessage") {
                let body: Value = serde_json::from_str(&body).unwrap();
                messages.push((format!("m-{i}"), body["MessageBody"].as_str().unwrap().to_string()));
            }
        }
        let counts = take(&proxy);
        if i == 0 {
            measured.insert("queued lead".into(), counts);
        }
    }
    stage.hubspot_down(false);
    assert_eq!(messages.len(), 10, "each queued lead sent one message");
    proxy.clear();
    // The ten queued leads as one SQS batch, the way Lambda hands it over.
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    // Handed over when due (the queue's delay), as Lambda would.
    let due = OffsetDateTime::now_utc() + time::Duration::seconds(6);
    let response = worker.handle(sqs_event(arn, &messages), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    measured.insert("retry batch of 10 leads".into(), take(&proxy));

    for (event, counts) in &measured {
        eprintln!("{event}: {counts:?} ({} DynamoDB writes)", writes(counts));
    }
    let table = documented();
    for (event, counts) in &measured {
        let (want, want_writes) =
            table.get(event).unwrap_or_else(|| panic!("docs/performance.md has no row `{event}`"));
        assert_eq!(counts, want, "{event}: AWS requests changed; update docs/performance.md if that is intended");
        assert_eq!(writes(counts), *want_writes, "{event}: DynamoDB writes");
    }
    assert_eq!(table.len(), measured.len(), "rows in docs/performance.md that this test does not measure");
    let delivered = &measured["delivered lead"];
    assert!(writes(delivered) <= 2, "a delivered lead costs at most 2 DynamoDB writes: {delivered:?}");
}
