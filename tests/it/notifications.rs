//! Notices against a real `serve` (docs/notifications.md): a receiver on loopback gets one signed Standard Webhooks
//! `POST` when a lead is parked, one when a lead runs out of retries, and one when that lead, redriven, is
//! delivered. Each signature verifies with the secret; no notice carries an email.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use hubrelay_core::auth::{AuthConfig, AuthMethod, Authenticator, RequestParts};
use serde_json::{json, Value};

use crate::harness::{headers, Serve};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver on 127.0.0.1 that answers 204 to everything and keeps what it got.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hooks/hubrelay",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/hubrelay", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// The notices received so far, each verified against the secret (Standard Webhooks), as (type, event id, body).
fn verified(received: &Received) -> Vec<(String, String, Value)> {
    let auth = Authenticator::new(AuthConfig {
        api_tokens: Vec::new(),
        webhook_secrets: vec![SECRET.into()],
        hubspot_client_secrets: Vec::new(),
        public_url: None,
        replay_window: Duration::from_secs(300),
    })
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let request = RequestParts { method: "POST", path_and_query: "/hooks/hubrelay", headers, body };
            let method = auth.verify(&request, now).expect("a notice signed with the secret");
            let AuthMethod::StandardWebhooks { webhook_id } = method else {
                panic!("not a Standard Webhooks signature")
            };
            let body: Value = serde_json::from_slice(body).unwrap();
            assert!(webhook_id.starts_with("ntf_"), "{webhook_id}");
            (body["type"].as_str().unwrap().to_string(), body["data"]["event_id"].as_str().unwrap().to_string(), body)
        })
        .collect()
}

async fn wait_for(received: &Received, count: usize) -> Vec<(String, String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let notices = verified(received);
        if notices.len() >= count || Instant::now() > deadline {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lead(email: &str) -> Value {
    json!({"email": email, "first_name": "Noa", "vehicle_of_interest": "X", "priority": "high"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_dead_lettered_and_recovered_events_are_notified_signed_and_without_emails() {
    let (url, received) = receiver().await;
    let serve = Serve::start(&[
        ("HUBRELAY_NOTIFY_URL", &url),
        ("HUBRELAY_NOTIFY_SECRET", SECRET),
        ("HUBRELAY_RETRY_SCHEDULE", "100ms,100ms"),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("RUST_LOG", "error"),
    ]);

    // A property the portal lacks: parked at once.
    let mut parked = lead("notice-parked@example.com");
    parked["properties"] = json!({"no_such_property": "x"});
    let (status, _, body) = serve.post_lead(&parked, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    let parked_id = body["event_id"].as_str().unwrap().to_string();

    // HubSpot down: queued, retried twice, dead-lettered.
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let (status, _, body) = serve.post_lead(&lead("notice-down@example.com"), headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    let down_id = body["event_id"].as_str().unwrap().to_string();
    let notices = wait_for(&received, 2).await;
    assert_eq!(notices.len(), 2, "{notices:?}");

    // HubSpot back; the on-call engineer redrives what ran out of retries: delivered, and said so.
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["dlq", "redrive", "--error-code", "retries_exhausted", "--data-dir"])
        .arg(serve.data_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let notices = wait_for(&received, 3).await;
    let kinds: Vec<(&str, &str)> = notices.iter().map(|(kind, id, _)| (kind.as_str(), id.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("event.parked", parked_id.as_str()),
            ("event.dead_lettered", down_id.as_str()),
            ("event.recovered", down_id.as_str())
        ]
    );
    let (_, _, parked_notice) = &notices[0];
    assert_eq!(parked_notice["data"]["reason"]["code"], "property_doesnt_exist");
    assert_eq!(parked_notice["data"]["tenant"], "default");
    assert_eq!(parked_notice["data"]["function"], "lead-captured");
    let (_, _, dead) = &notices[1];
    assert_eq!(dead["data"]["reason"]["code"], "retries_exhausted");
    assert_eq!(dead["data"]["attempts"], 3);
    let (_, _, recovered) = &notices[2];
    assert_eq!(recovered["data"]["status"], "delivered");
    assert_eq!(recovered["data"]["attempts"], 4);
    for (_, _, body) in &notices {
        let text = body.to_string();
        assert!(!text.contains("notice-parked@") && !text.contains("notice-down@"), "an email in a notice: {text}");
        assert!(body["data"]["email_masked"].as_str().unwrap().contains("***"), "{body}");
    }
}
