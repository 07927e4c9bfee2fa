//! Outbound contact sync against a real `serve`: HubSpot's contact app webhooks (posted to
//! `/v1/referrals/hubspot`) reach a receiver on loopback as signed Standard Webhooks `POST`s carrying the changed
//! properties — a created contact with its properties read from HubSpot — once each, however often HubSpot
//! sends them; a change hubrelay itself wrote (its own `sourceId`) is not sent back; an endpoint that answers 503
//! gets the change again on the retry schedule.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hubrelay_core::auth::{AuthConfig, AuthMethod, Authenticator, RequestParts};
use serde_json::{json, Value};

use crate::harness::{headers, Serve};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OWN_APP: &str = "4242";

type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver on 127.0.0.1 that refuses the first `fail_first` requests with 503, then verifies each signature and
/// keeps (webhook-id, body).
async fn receiver(fail_first: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(
        Authenticator::new(AuthConfig {
            api_tokens: Vec::new(),
            webhook_secrets: vec![SECRET.into()],
            hubspot_client_secrets: Vec::new(),
            public_url: None,
            replay_window: Duration::from_secs(300),
        })
        .unwrap(),
    );
    let app = axum::Router::new().route(
        "/contacts",
        post(move |headers: HeaderMap, body: Bytes| {
            let (kept, seen, auth) = (kept.clone(), seen.clone(), auth.clone());
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let request =
                    RequestParts { method: "POST", path_and_query: "/contacts", headers: &headers, body: &body };
                let Ok(AuthMethod::StandardWebhooks { webhook_id }) =
                    auth.verify(&request, time::OffsetDateTime::now_utc())
                else {
                    return StatusCode::UNAUTHORIZED;
                };
                kept.lock().unwrap().push((webhook_id, serde_json::from_slice(&body).unwrap()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/contacts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn wait_for(received: &Received, count: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = received.lock().unwrap().clone();
        if got.len() >= count || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn app_webhooks(serve: &Serve, events: &Value) -> Value {
    let body = events.to_string().into_bytes();
    let (status, _, answer) = serve.post_to("/v1/referrals/hubspot", "application/json", body, headers(&[])).await;
    assert!(status == 202 || status == 200, "{status} {answer}");
    answer
}

fn change(object: &str, property: &str, value: &str, at: i64, source: (&str, &str)) -> Value {
    json!({"eventId": at, "subscriptionId": 11, "portalId": 62515, "occurredAt": at, "attemptNumber": 0,
           "subscriptionType": "contact.propertyChange", "objectId": object.parse::<u64>().unwrap(),
           "propertyName": property, "propertyValue": value, "changeSource": source.0, "sourceId": source.1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_changes_go_out_signed_once_and_hubrelays_own_writes_do_not() {
    let (url, received) = receiver(1).await;
    let serve = Serve::start(&[
        ("HUBRELAY_OUTBOUND_URL", url.as_str()),
        ("HUBRELAY_OUTBOUND_SECRET", SECRET),
        ("HUBRELAY_OUTBOUND_OWN_SOURCE_IDS", OWN_APP),
        ("HUBRELAY_RETRY_SCHEDULE", "300ms,300ms,300ms"),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("RUST_LOG", "error"),
    ]);
    // A contact hubrelay wrote from a lead.
    let lead = json!({"email": "sync.me@example.com", "first_name": "Sam", "last_name": "Sync"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    let contact = body["contact_id"].as_str().unwrap().to_string();

    // HubSpot reports hubrelay's own write (its app's sourceId) and an edit in HubSpot's UI, in one batch.
    let events = json!([
        change(&contact, "firstname", "Sam", 1_765_000_000_000, ("INTEGRATION", OWN_APP)),
        change(&contact, "lastname", "Synced", 1_765_000_000_500, ("CRM_UI", "userId:99")),
    ]);
    let first = app_webhooks(&serve, &events).await;
    assert_eq!(first["actions"].as_array().map(Vec::len), Some(1), "{first}");
    // The endpoint's first answer is a 503: the change comes again on the schedule, signed, and once.
    let got = wait_for(&received, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (id, body) = &got[0];
    assert!(id.starts_with("chg_"), "{id}");
    assert_eq!(body["type"], "contact.changed");
    assert_eq!((body["contact_id"].as_str(), body["tenant"].as_str()), (Some(contact.as_str()), Some("default")));
    assert_eq!(body["properties"], json!({"lastname": "Synced"}), "only the UI's change: {body}");
    assert_eq!(body["change_source"], "CRM_UI");

    // HubSpot sends the same batch again (its retries are at least once): the same answer, nothing new goes out;
    // the same change inside another batch is a duplicate of the queued one.
    let again = app_webhooks(&serve, &events).await;
    assert_eq!(again["event_ids"], first["event_ids"], "{again}");
    let mut other = events.clone();
    other.as_array_mut().unwrap().push(json!({"eventId": 77, "subscriptionId": 13, "portalId": 62515,
        "occurredAt": 1, "subscriptionType": "deal.creation", "objectId": 5}));
    let answer = app_webhooks(&serve, &other).await;
    assert!(answer.to_string().contains("duplicates"), "{answer}");
    // A contact created in HubSpot: its properties read from HubSpot go out.
    let creation = json!([{"eventId": 9, "subscriptionId": 12, "portalId": 62515, "occurredAt": 1_765_000_001_000_i64,
        "attemptNumber": 0, "subscriptionType": "contact.creation", "objectId": contact.parse::<u64>().unwrap(),
        "changeSource": "CRM_UI"}]);
    app_webhooks(&serve, &creation).await;
    let got = wait_for(&received, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_later = received.lock().unwrap().len();
    assert_eq!((got.len(), got_later), (2, 2), "each change once: {got:?}");
    let created = &got[1].1;
    assert_eq!(created["type"], "contact.created");
    assert_eq!(created["properties"]["email"], "sync.me@example.com", "{created}");
    assert_eq!(created["properties"]["firstname"], "Sam", "{created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_own_endpoint_gets_its_changes_there_and_the_others_go_to_the_deployments() {
    let (deployment_url, deployment) = receiver(0).await;
    let (acme_url, acme) = receiver(0).await;
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let (token, secret) = (file("token", "acme-sender-token-0001"), file("secret", SECRET));
    for (id, own) in [("acme", true), ("lakeside", false)] {
        let mut args = vec!["tenants", "add", id, "--mapping", "chat-widget", "--api-token-file", token.as_str()];
        if own {
            args.extend(["--outbound-url", acme_url.as_str(), "--outbound-secret-file", secret.as_str()]);
        }
        let (ok, out) = crate::harness::hubrelay_in(data.path(), &args);
        assert!(ok, "{out}");
    }
    let (ok, shown) = crate::harness::hubrelay_in(data.path(), &["tenants", "show", "acme"]);
    assert!(ok && shown.contains(&acme_url) && !shown.contains(SECRET), "{shown}");
    let serve = Serve::start_in(
        data,
        &[
            ("HUBRELAY_OUTBOUND_URL", deployment_url.as_str()),
            ("HUBRELAY_OUTBOUND_SECRET", SECRET),
            ("RUST_LOG", "error"),
        ],
    );
    serve.wait_for_line("tenant lakeside: POST");
    let bearer = headers(&[("authorization", "Bearer acme-sender-token-0001")]);
    for (tenant, at) in [("acme", 1_765_000_000_000_i64), ("lakeside", 1_765_000_000_100)] {
        let body = json!([change("501", "lastname", tenant, at, ("CRM_UI", "userId:7"))]).to_string().into_bytes();
        let path = format!("/t/{tenant}/v1/referrals/hubspot");
        let (status, _, answer) = serve.post_to(&path, "application/json", body, bearer.clone()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let to_acme = wait_for(&acme, 1).await;
    let to_deployment = wait_for(&deployment, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((acme.lock().unwrap().len(), deployment.lock().unwrap().len()), (1, 1));
    assert_eq!(to_acme[0].1["tenant"], "acme", "{to_acme:?}");
    assert_eq!(to_deployment[0].1["tenant"], "lakeside", "{to_deployment:?}");
}
