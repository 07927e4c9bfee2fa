//! Auth, rate limits, faults, admin routes, persistence, and a real socket.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{call, call_raw, options, sandbox, upsert_body, CONTACTS, TOKEN, UPSERT};
use crate::hubspot::{spawn, Faults, Sandbox, SandboxOptions};

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let (sb, app) = sandbox();
    for token in [None, Some("wrong"), Some("")] {
        let r = call_raw(&app, "GET", CONTACTS, token, None).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert_eq!(r.error_category(), "INVALID_AUTHENTICATION");
        assert!(r.body["message"].as_str().unwrap().starts_with("Authentication credentials not found"));
    }
    let r = call_raw(&app, "GET", CONTACTS, Some(TOKEN), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(sb.stats().requests, 4, "401s are counted as requests");

    // Without a configured token any non-empty bearer token is accepted.
    let open = Sandbox::open(SandboxOptions::default()).unwrap().router();
    assert_eq!(call_raw(&open, "GET", CONTACTS, Some("anything"), None).await.status, 200);
    assert_eq!(call_raw(&open, "GET", CONTACTS, None, None).await.status, 401);
}

#[tokio::test]
async fn rate_limit_429_after_n_requests_with_headers() {
    let sb = Sandbox::open(SandboxOptions { rate_limit_per_10s: 3, ..options() }).unwrap();
    let app = sb.router();
    for i in 0..3u32 {
        let r = call(&app, "GET", CONTACTS, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hubspot-ratelimit-max"), Some("3"));
        assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some((2 - i).to_string().as_str()));
        assert_eq!(r.header("x-hubspot-ratelimit-interval-milliseconds"), Some("10000"));
        assert_eq!(r.header("x-hubspot-ratelimit-daily"), Some("625000"));
        assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some((625_000 - 1 - i).to_string().as_str()));
        assert!(r.header("x-hubspot-correlation-id").is_some());
    }
    for _ in 0..2 {
        let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("z@example.com", json!({}))]))).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.body["status"], "error");
        assert_eq!(r.body["message"], "You have reached your ten_secondly_rolling limit.");
        assert_eq!(r.body["errorType"], "RATE_LIMIT");
        assert_eq!(r.body["policyName"], "TEN_SECONDLY_ROLLING");
        assert!(r.body["groupName"].is_string() && r.body["correlationId"].is_string());
        assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("0"));
        assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some("624997"), "429s do not count");
    }
    assert_eq!(sb.contact_count().unwrap(), 0, "a refused request does nothing");
    let stats = sb.stats();
    assert_eq!((stats.requests, stats.rate_limited), (5, 2));
    assert_eq!(stats.by_endpoint["GET /crm/v3/objects/contacts"], 3);
    assert_eq!(stats.by_endpoint["POST /crm/v3/objects/contacts/batch/upsert"], 2);

    // Faults can lower the limit at run time; a reset clears the windows.
    sb.reset().unwrap();
    sb.set_faults(Faults { requests_per_10s: Some(1), ..Faults::default() });
    assert_eq!(call(&app, "GET", CONTACTS, None).await.header("x-hubspot-ratelimit-max"), Some("1"));
    assert_eq!(call(&app, "GET", CONTACTS, None).await.status, 429);
}

#[tokio::test]
async fn daily_limit_is_policy_daily() {
    let sb = Sandbox::open(SandboxOptions { daily_limit: 1, ..options() }).unwrap();
    let app = sb.router();
    assert_eq!(call(&app, "GET", CONTACTS, None).await.status, 200);
    let r = call(&app, "GET", CONTACTS, None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["policyName"], "DAILY");
    assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
}

#[tokio::test]
async fn faults_at_100_percent_then_back_to_0() {
    let (sb, app) = sandbox();
    let r = call_raw(&app, "POST", "/__sandbox/faults", None, Some(r#"{"failure_rate": 1.0}"#)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["failure_rate"], 1.0);
    for _ in 0..3 {
        let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("f@example.com", json!({}))]))).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.error_category(), "SERVICE_UNAVAILABLE");
        assert_eq!(r.body["message"], "Service Unavailable");
        assert!(r.header("x-hubspot-ratelimit-remaining").is_some());
    }
    assert_eq!(sb.contact_count().unwrap(), 0);
    assert_eq!(sb.stats().faults_injected, 3);

    sb.set_faults(Faults { failure_rate: 1.0, failure_status: 429, ..Faults::default() });
    let r = call(&app, "GET", CONTACTS, None).await;
    assert_eq!((r.status, r.body["policyName"].as_str()), (429, Some("TEN_SECONDLY_ROLLING")));
    sb.set_faults(Faults { failure_rate: 1.0, failure_status: 423, ..Faults::default() });
    assert_eq!(call(&app, "GET", CONTACTS, None).await.error_category(), "LOCKED");

    // Ending the outage keeps its status for the next one; DELETE clears everything.
    let r = call_raw(&app, "POST", "/__sandbox/faults", None, Some(r#"{"failure_rate": 0}"#)).await;
    assert_eq!(r.status, 200);
    assert_eq!(sb.faults(), Faults { failure_status: 423, ..Faults::default() });
    let r = call_raw(&app, "DELETE", "/__sandbox/faults", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(sb.faults(), Faults::default());
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("f@example.com", json!({}))]))).await;
    assert_eq!(r.status, 200);
    let got = call_raw(&app, "GET", "/__sandbox/faults", None, None).await;
    assert_eq!(got.body, serde_json::to_value(Faults::default()).unwrap());
}

#[tokio::test]
async fn admin_routes_validate_and_reset() {
    let (sb, app) = sandbox();
    for bad in [
        r#"{"failure_rate": 1.5}"#,
        r#"{"failure_rate": -0.1}"#,
        r#"{"bogus": 1}"#,
        r#"{"failure_status": 200}"#,
        r#"{"latency_ms": "slow"}"#,
        "nope",
    ] {
        let r = call_raw(&app, "POST", "/__sandbox/faults", None, Some(bad)).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    assert_eq!(sb.faults(), Faults::default());

    call(&app, "POST", UPSERT, Some(upsert_body(&[("q@example.com", json!({}))]))).await;
    call(
        &app,
        "POST",
        "/crm/v3/properties/contacts",
        Some(json!({"name": "tmp", "label": "T", "type": "string", "fieldType": "text", "groupName": "g"})),
    )
    .await;
    let stats = call_raw(&app, "GET", "/__sandbox/stats", None, None).await;
    assert_eq!(stats.body["requests"], 2, "admin routes are not counted");
    assert_eq!(stats.body["by_endpoint"]["POST /crm/v3/properties/contacts"], 1);

    assert_eq!(call_raw(&app, "POST", "/__sandbox/reset", None, None).await.status, 200);
    assert_eq!(sb.contact_count().unwrap(), 0);
    assert_eq!(sb.stats(), Default::default());
    assert_eq!(call(&app, "GET", "/crm/v3/properties/contacts/tmp", None).await.status, 404);
    assert_eq!(call(&app, "GET", "/crm/v3/properties/contacts/email", None).await.status, 200, "built-ins stay");
}

#[tokio::test]
async fn latency_is_added() {
    let (sb, app) = sandbox();
    sb.set_faults(Faults { latency_ms: 150, ..Faults::default() });
    let t = Instant::now();
    assert_eq!(call(&app, "GET", CONTACTS, None).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn data_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SandboxOptions { db_path: Some(dir.path().join("sandbox.db")), ..options() };
    let id = {
        let sb = Sandbox::open(opts.clone()).unwrap();
        let app = sb.router();
        let p = call(&app, "POST", "/crm/v3/properties/contacts", Some(json!({"name": "plan", "label": "Plan", "type": "enumeration", "fieldType": "radio", "groupName": "g", "options": [{"label": "Pro", "value": "pro"}]}))).await;
        assert_eq!(p.status, 201);
        let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("keep@example.com", json!({"plan": "pro"}))]))).await;
        assert_eq!(r.status, 200);
        r.body["results"][0]["id"].as_str().unwrap().to_string()
    };
    let sb = Sandbox::open(opts).unwrap();
    let app = sb.router();
    assert_eq!(sb.contact_count().unwrap(), 1);
    let r = call(&app, "GET", &format!("{CONTACTS}/keep@example.com?idProperty=email&properties=plan"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["properties"]["plan"], "pro");
    let again = call(&app, "POST", UPSERT, Some(upsert_body(&[("keep@example.com", json!({"plan": "pro"}))]))).await;
    assert_eq!(again.body["results"][0]["new"], false);
    let other = call(&app, "POST", UPSERT, Some(upsert_body(&[("next@example.com", json!({}))]))).await;
    assert!(other.body["results"][0]["id"].as_str().unwrap().parse::<u64>().unwrap() > id.parse::<u64>().unwrap());
}

#[tokio::test]
async fn serves_over_real_http_with_both_path_styles() {
    let handle = spawn(options(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(handle.url().starts_with("http://127.0.0.1:"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/crm/objects/2026-03/contacts/batch/upsert", handle.url()))
        .bearer_auth(TOKEN)
        .json(&upsert_body(&[("h@example.com", json!({"firstname": "H"}))]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["results"][0]["id"].as_str().unwrap().to_string();
    let r = http.get(format!("{}/crm/v3/objects/contacts/{id}", handle.url())).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let unauth = http.get(format!("{}/crm/v3/properties/contacts", handle.url())).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    assert_eq!(handle.sandbox.contact_count().unwrap(), 1);
    assert_eq!(handle.sandbox.stats().by_endpoint["POST /crm/objects/{version}/contacts/batch/upsert"], 1);
    handle.shutdown().await;
}
