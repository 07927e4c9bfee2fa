//! A stack reaching its portal by OAuth (`HUBSPOT_REFRESH_TOKEN`): the access token is shared by every Lambda
//! through the idempotency table, refreshed under a lease — one refresh per expiry for the whole stack, however
//! many instances are warm and leads in flight. The real functions (`hubrelay_aws::lambda`) on moto, against
//! the HubSpot sandbox's OAuth app; the sandbox's token endpoint counts the refreshes.
//! Its own test binary: it sets process environment variables.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use hubrelay_aws::dynamodb_oauth::DynamoSharedToken;
use hubrelay_aws::lambda::{lead_captured_app, retry_worker_app};
use hubrelay_core::shared_token::{SharedToken, SharedTokenStore};
use hubrelay_sandbox::hubspot::{OAuthApp as SandboxApp, SandboxOptions};
use hubrelay_testkit::moto;
use hubrelay_testkit::runtime::{self, API_TOKEN};
use hubrelay_testkit::worker::sqs_event;
use serde_json::json;
use time::OffsetDateTime;
use tower::ServiceExt;

const CLIENT_ID: &str = "lambda-app";
const CLIENT_SECRET: &str = "lambda-app-secret";
/// Access tokens live 3 s here (HubSpot's: 30 min), so 200 leads over ~7 s cross several expiries.
const LIFETIME_SECS: u64 = 3;
/// Lambda instances of `lead-captured` warm at once, each with its own memory.
const INSTANCES: usize = 4;

/// The portal's refresh token, as an install gets it: approve on the sandbox's authorize page, exchange the code.
async fn install(sandbox: &str) -> String {
    hubrelay_testkit::oauth::refresh_token(sandbox, CLIENT_ID, CLIENT_SECRET).await
}

async fn post_lead(app: &axum::Router, email: &str) -> u16 {
    let req = Request::post("/v1/leads")
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"email": email}).to_string()))
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambdas_share_one_access_token_and_refresh_it_once_per_expiry() {
    let app = SandboxApp {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        access_token_lifetime: Duration::from_secs(LIFETIME_SECS),
        ..SandboxApp::default()
    };
    let options = SandboxOptions { oauth: Some(app), rate_limit_per_10s: 10_000, ..SandboxOptions::default() };
    let stage = runtime::aws_stage_with(options).await;
    let sandbox = stage.sandbox.url();
    let refresh_token = install(&sandbox).await;
    let ssm = moto::ssm(moto::shared());
    let refresh_param = moto::secure_parameter(&ssm, &refresh_token).await;
    let secret_param = moto::secure_parameter(&ssm, CLIENT_SECRET).await;
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::remove_var("HUBSPOT_TOKEN_SSM_PARAMETER");
    std::env::set_var("HUBSPOT_REFRESH_TOKEN_SSM_PARAMETER", &refresh_param);
    std::env::set_var("HUBSPOT_CLIENT_SECRET_SSM_PARAMETER", &secret_param);
    std::env::set_var("HUBSPOT_CLIENT_ID", CLIENT_ID);
    // The app secret also checks HubSpot's webhook signatures, which sign the public URL.
    std::env::set_var("HUBRELAY_PUBLIC_URL", "https://relay.example.com");
    std::env::set_var("HUBSPOT_RATE_LIMIT_PER_10S", "10000");

    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(lead_captured_app().await.expect("lead-captured init"));
    }
    let worker = retry_worker_app().await.expect("retry-worker init");
    let contacts_before = stage.sandbox.sandbox.contact_count().unwrap();
    let grants_before = stage.sandbox.sandbox.oauth_stats().refresh_token_grants;

    // 200 leads, 10 at a time every 350 ms, spread over the instances.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for wave in 0..20 {
        for i in 0..10 {
            let app = instances[(wave * 10 + i) % INSTANCES].clone();
            let email = format!("oauth-wave{wave}-{i}@example.com");
            tasks.push(tokio::spawn(async move { post_lead(&app, &email).await }));
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    let mut queued = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => {}
            202 => queued += 1,
            other => panic!("a lead answered {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A lead queued on a loaded machine (none, mostly) goes through the retry worker, as SQS would hand it over.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stage.sandbox.sandbox.contact_count().unwrap() < contacts_before + 200 {
        assert!(Instant::now() < deadline, "leads lost: {queued} were queued");
        let messages = stage.receive_queued().await;
        if !messages.is_empty() {
            let due = OffsetDateTime::now_utc() + time::Duration::seconds(10);
            let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
            let response = worker.handle(sqs_event(arn, &messages), due).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }
    let refreshes = stage.sandbox.sandbox.oauth_stats().refresh_token_grants - grants_before;
    eprintln!("{refreshes} refreshes in {elapsed:.1} s across {INSTANCES} instances; {queued} of 200 leads queued");
    // Refreshed a tenth of their life early: one per 2.7 s at most, plus the first. Without the lease each
    // instance would refresh on its own (INSTANCES times as many).
    let expiries = (elapsed / (LIFETIME_SECS as f64 * 0.9)).ceil() as u64 + 1;
    assert!(
        refreshes >= 2 && refreshes <= expiries,
        "{refreshes} refreshes in {elapsed:.1} s ({expiries} expiries, {INSTANCES} instances, {queued} queued)"
    );
    assert_eq!(stage.sandbox.sandbox.oauth_stats().rate_limited, 0);

    // The shared token sits sealed in the table: no attribute holds it in the clear.
    let shared = DynamoSharedToken::new(stage.dynamo.clone(), &stage.table, CLIENT_ID, CLIENT_SECRET, &refresh_token);
    let item = stage
        .dynamo
        .get_item()
        .table_name(&stage.table)
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S(shared.key().to_string()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the shared token's item");
    let token = shared.current().await.unwrap().expect("a stored token").access_token;
    for (name, value) in &item {
        let text = match value {
            aws_sdk_dynamodb::types::AttributeValue::S(s) => s.as_bytes().to_vec(),
            aws_sdk_dynamodb::types::AttributeValue::B(b) => b.as_ref().to_vec(),
            _ => continue,
        };
        assert!(!text.windows(token.len()).any(|w| w == token.as_bytes()), "`{name}` holds the access token");
    }
    // Another app secret (or refresh token) cannot read it.
    let other = DynamoSharedToken::new(stage.dynamo.clone(), &stage.table, CLIENT_ID, "rotated", &refresh_token);
    let other_item = aws_sdk_dynamodb::types::AttributeValue::S(other.key().to_string());
    assert_eq!(other_item, aws_sdk_dynamodb::types::AttributeValue::S(shared.key().to_string()));
    assert_eq!(other.current().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_holds_the_refresh_lease_until_it_stores_releases_or_runs_out() {
    let server = moto::shared();
    let dynamo = moto::dynamodb(server);
    let table = moto::idempotency_table(&dynamo).await;
    let store = DynamoSharedToken::new(dynamo.clone(), &table, "app", "secret", "refresh-lease");
    let now = OffsetDateTime::now_utc();
    let until = now + time::Duration::seconds(12);
    assert_eq!(store.current().await.unwrap(), None);
    assert!(store.lease("a", now, until).await.unwrap());
    assert!(!store.lease("b", now, until).await.unwrap(), "b while a holds it");
    assert!(store.lease("a", now, until).await.unwrap(), "a again (its own lease)");
    // Only the holder stores.
    let token = SharedToken {
        access_token: "at-1".into(),
        refresh_at: now + time::Duration::seconds(30),
        expires_at: now + time::Duration::seconds(33),
    };
    assert!(store.store(&token, "b").await.is_err());
    store.store(&token, "a").await.unwrap();
    let read = store.current().await.unwrap().unwrap();
    assert_eq!(read.access_token, "at-1");
    assert_eq!(read.refresh_at.unix_timestamp(), token.refresh_at.unix_timestamp());
    assert_eq!(read.expires_at.unix_timestamp(), token.expires_at.unix_timestamp());
    // Storing ended the lease; a failed refresh's release does too.
    assert!(store.lease("b", now, until).await.unwrap());
    store.release("a").await.unwrap(); // not a's: nothing happens
    assert!(!store.lease("c", now, until).await.unwrap());
    store.release("b").await.unwrap();
    assert!(store.lease("c", now, until).await.unwrap());
    // A holder that died: its lease runs out, and another takes it.
    let later = until + time::Duration::seconds(1);
    assert!(!store.lease("d", now, until).await.unwrap());
    assert!(store.lease("d", later, later + time::Duration::seconds(12)).await.unwrap());
    // The token survived the leases.
    assert_eq!(store.current().await.unwrap().unwrap().access_token, "at-1");
}
