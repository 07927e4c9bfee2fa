//! A tenant connected by OAuth install, end to end against the sandbox's OAuth app: install → approve →
//! callback → leads delivered with the granted token; short-lived access tokens refreshed once per expiry
//! however many leads are in flight; a revoked refresh token parks the tenant as `needs_reauth` with its leads
//! queued while other tenants go on; reconnecting delivers each queued lead once.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use hubrelay_testkit::recording_proxy::RecordingProxy;

use crate::harness::{headers, hubrelay_in, start_sandbox, SandboxProcess, Serve};

const CLIENT_ID: &str = "relay-client-id";
const CLIENT_SECRET: &str = "relay-client-secret";
const STATIC: &str = "sandbox-admin-token";
/// Access tokens live this long in the sandbox (HubSpot: 1800 s).
const LIFETIME_SECS: u64 = 3;

fn start_oauth_sandbox() -> SandboxProcess {
    let lifetime = LIFETIME_SECS.to_string();
    start_sandbox(&[
        "--token",
        STATIC,
        "--rate-limit",
        "1000",
        "--oauth-client-id",
        CLIENT_ID,
        "--oauth-client-secret",
        CLIENT_SECRET,
        "--access-token-lifetime",
        &lifetime,
    ])
}

fn hubrelay(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = hubrelay_in(dir, args);
    assert!(ok, "hubrelay {args:?}: {text}");
    text
}

fn bearer(token: &str) -> HeaderMap {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

/// The query parameters of a `Location`.
fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    serde_urlencoded::from_str(query).unwrap()
}

/// `hubrelay tenants connect`'s signed install link.
fn install_link(dir: &Path, serve: &Serve, tenant: &str) -> String {
    let out = hubrelay(dir, &["tenants", "connect", tenant, "--public-url", &serve.url]);
    let link = out.lines().next().unwrap().trim().to_string();
    assert!(link.starts_with(&format!("{}/oauth/install?tenant={tenant}&expires=", serve.url)), "{out}");
    link
}

/// Install link → the sandbox's approve step (non-interactive) → the relay's callback: its status and page.
async fn install_status(http: &reqwest::Client, link: &str, serve: &Serve, sandbox: &str) -> (u16, String) {
    let resp = http.get(link).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let authorize = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(authorize.starts_with(&format!("{sandbox}/oauth/authorize?")), "{authorize}");
    let params = query_of(&authorize);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], format!("{}/oauth/callback", serve.url));
    let mut form = params.clone();
    form.insert("decision".into(), "approve".into());
    let body = serde_urlencoded::to_string(&form).unwrap();
    let resp = http
        .post(format!("{sandbox}/oauth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "approve");
    let callback = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(query_of(&callback)["state"], params["state"]);
    let resp = http.get(&callback).send().await.unwrap();
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap();
    // The state is single-use: the same callback again is refused.
    let again = http.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400);
    (status, page)
}

async fn install(http: &reqwest::Client, link: &str, serve: &Serve, sandbox: &str) -> String {
    let (status, page) = install_status(http, link, serve, sandbox).await;
    assert_eq!(status, 200, "{page}");
    page
}

/// How many times each email went to HubSpot in an upsert HubSpot accepted.
fn accepted_upserts(proxy: &RecordingProxy) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for exchange in proxy.exchanges() {
        if exchange.request.contains("/contacts/batch/upsert") && (200..300).contains(&exchange.status) {
            let body: Value = serde_json::from_str(&exchange.body).unwrap();
            for input in body["inputs"].as_array().unwrap() {
                *counts.entry(input["id"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    }
    counts
}

async fn oauth_stats(http: &reqwest::Client, sandbox: &str) -> Value {
    let stats: Value = http.get(format!("{sandbox}/__sandbox/stats")).send().await.unwrap().json().await.unwrap();
    stats["oauth"].clone()
}

async fn has_contact(serve: &Serve, sandbox: &str, email: &str) -> bool {
    serve.contact_in(sandbox, STATIC, email).await.is_some()
}

/// Waits at most `within` until every email is a contact of the sandbox portal.
async fn until_delivered(serve: &Serve, sandbox: &str, emails: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for email in emails {
        while !has_contact(serve, sandbox, email).await {
            assert!(Instant::now() < deadline, "{email} did not reach the portal within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn post_lead(serve: &Serve, token: &str, email: &str) -> (u16, Value) {
    let body = json!({"email": email, "first_name": "Oa"}).to_string();
    let (status, _, answer) = serve.post_to("/t/dealer/v1/leads", "application/json", body.into(), bearer(token)).await;
    (status, answer)
}

fn tenant_state(dir: &Path, id: &str) -> String {
    let shown: Value = serde_json::from_str(&hubrelay(dir, &["tenants", "show", id, "--json"])).unwrap();
    shown["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_oauth_tenant_installs_refreshes_once_per_expiry_and_reconnects_after_a_revoke() {
    let sandbox = start_oauth_sandbox();
    let sb = sandbox.1.clone();
    // The tenant calls HubSpot through a recording proxy: what reached the portal, and how often.
    let proxy = RecordingProxy::start(&sb).await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let secrets = tempfile::tempdir().unwrap();
    let token = "dealer-sender-token";
    let file = secrets.path().join("t");
    std::fs::write(&file, token).unwrap();
    let file = file.display().to_string();
    let out = hubrelay(
        &dir,
        &["tenants", "add", "dealer", "--oauth", "--hubspot-base-url", &proxy.url, "--api-token-file", &file],
    );
    assert!(out.contains("hubrelay tenants connect dealer"), "{out}");
    let other = secrets.path().join("o");
    std::fs::write(&other, "other-sender-token").unwrap();
    hubrelay(&dir, &["tenants", "add", "other", "--api-token-file", &other.display().to_string()]);
    // Pinned to portal 999: an install approved in another portal must not connect it.
    let pin = ["tenants", "add", "pinned", "--oauth", "--hub-id", "999", "--hubspot-base-url", &sb, "--new-api-token"];
    hubrelay(&dir, &pin);
    assert_eq!(tenant_state(&dir, "dealer"), "not connected");

    let authorize = format!("{sb}/oauth/authorize");
    let serve = Serve::start_in(
        data,
        &[
            ("HUBSPOT_CLIENT_ID", CLIENT_ID),
            ("HUBSPOT_CLIENT_SECRET", CLIENT_SECRET),
            ("HUBSPOT_OAUTH_AUTHORIZE_URL", &authorize),
            // Retries 60 s apart: a queued lead delivered within 20 s of a reconnect was made due by it.
            ("HUBRELAY_RETRY_SCHEDULE", "60s,60s,60s,60s,60s"),
            ("HUBRELAY_RETRY_JITTER", "0"),
        ],
    );
    assert!(serve.wait_for_line("tenant dealer: POST").contains("not connected yet"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let link = install_link(&dir, &serve, "dealer");
    // Only a link `tenants connect` signed starts an install: not a bare or an altered one.
    for forged in [format!("{}/oauth/install?tenant=dealer", serve.url), link.replace("tenant=dealer", "tenant=other")]
    {
        let resp = http.get(&forged).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{forged}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_install_link");
    }
    // An install approved in another portal than the tenant's pinned one connects nothing.
    let pinned = install_link(&dir, &serve, "pinned");
    let (status, page) = install_status(&http, &pinned, &serve, &sb).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("is HubSpot portal 999"), "{page}");
    assert_eq!(tenant_state(&dir, "pinned"), "not connected");

    // Before the install a lead is accepted and waits on the tenant's queue.
    let (status, answer) = post_lead(&serve, token, "early@example.com").await;
    assert_eq!(status, 202, "{answer}");

    let page = install(&http, &link, &serve, &sb).await;
    assert!(page.contains("Tenant dealer is connected to HubSpot portal"), "{page}");
    assert_eq!(tenant_state(&dir, "dealer"), "enabled");
    // The queued lead goes out once serve picked the install up, well before its retry 60 s on.
    until_delivered(&serve, &sb, &["early@example.com".to_string()], Duration::from_secs(20)).await;
    // `doctor --tenant` reaches the connected portal with its refresh token and the deployment's app.
    let mut doctor = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"));
    doctor.args(["doctor", "--tenant", "dealer", "--data-dir"]).arg(&dir);
    doctor.env("HUBSPOT_CLIENT_ID", CLIENT_ID).env("HUBSPOT_CLIENT_SECRET", CLIENT_SECRET).env_remove("HUBSPOT_TOKEN");
    // Off the runtime: the recording proxy in front of the portal runs on it.
    let doctor = tokio::task::spawn_blocking(move || doctor.output().unwrap()).await.unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout).to_string() + &String::from_utf8_lossy(&doctor.stderr);
    assert!(said.contains("token accepted: portal"), "{said}");
    let (ran, said) = hubrelay_in(&dir, &["doctor", "--tenant", "dealer"]);
    assert!(!ran && said.contains("HUBSPOT_CLIENT_ID"), "without the app: {said}");

    // 200 leads in flight across several expiries of 3 s tokens: one refresh per expiry, none lost or failed.
    let before = oauth_stats(&http, &sb).await["refresh_token_grants"].as_u64().unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut emails = Vec::new();
    for wave in 0..20 {
        for i in 0..10 {
            let email = format!("wave{wave}-{i}@example.com");
            emails.push(email.clone());
            let (url, token) = (serve.url.clone(), token.to_string());
            tasks.push(tokio::spawn(async move {
                let body = json!({"email": email}).to_string();
                let resp = reqwest::Client::new()
                    .post(format!("{url}/t/dealer/v1/leads"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            }));
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 202, "a lead answered {status}");
    }
    // (A lead the inline path queued, on a loaded machine, goes at its retry 60 s on.)
    until_delivered(&serve, &sb, &emails, Duration::from_secs(75)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let refreshes = oauth_stats(&http, &sb).await["refresh_token_grants"].as_u64().unwrap() - before;
    // Tokens are refreshed a tenth of their life early: one per 2.7 s at most, plus the one due at the start.
    let expiries = (elapsed / (LIFETIME_SECS as f64 * 0.9)).ceil() as u64 + 1;
    assert!(refreshes >= 1 && refreshes <= expiries, "{refreshes} refreshes in {elapsed:.1} s ({expiries} expiries)");

    // The portal's admin uninstalls the app: refreshes are refused, the tenant needs reauth, its leads wait.
    let revoked: Value = http.post(format!("{sb}/__sandbox/oauth/revoke")).send().await.unwrap().json().await.unwrap();
    assert!(revoked["revoked"].as_u64().unwrap() >= 1);
    tokio::time::sleep(Duration::from_secs(LIFETIME_SECS)).await;
    let mut waiting = Vec::new();
    for i in 0..5 {
        let email = format!("after-revoke-{i}@example.com");
        let (status, answer) = post_lead(&serve, token, &email).await;
        assert_eq!(status, 202, "{answer}");
        waiting.push(email);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tenant_state(&dir, "dealer") != "needs reauth" {
        assert!(Instant::now() < deadline, "the tenant was never marked needs_reauth");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for email in &waiting {
        assert!(!has_contact(&serve, &sb, email).await);
    }
    // Another tenant is untouched.
    let body = json!({"email": "calm@example.com"}).to_string();
    let (status, _, answer) =
        serve.post_to("/t/other/v1/leads", "application/json", body.into(), bearer("other-sender-token")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("delivered")), "{answer}");

    // Reconnect: each waiting lead is delivered once, well before its retry 60 s on.
    install(&http, &link, &serve, &sb).await;
    until_delivered(&serve, &sb, &waiting, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let listed = hubrelay(&dir, &["events", "list", "--tenant", "dealer", "--limit", "0", "--json"]);
        let events: Vec<Value> = serde_json::from_str::<Value>(&listed).unwrap().as_array().unwrap().clone();
        if events.iter().all(|e| e["status"] == "delivered") {
            break events;
        }
        assert!(Instant::now() < deadline, "not all delivered: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(events.len(), 1 + emails.len() + waiting.len());
    for event in &events {
        let delivered = event["attempts"].as_array().unwrap().iter().filter(|a| a["outcome"] == "delivered").count();
        assert_eq!(delivered, 1, "{event}");
    }
    // Each lead reached the portal in exactly one accepted upsert.
    let upserts = accepted_upserts(&proxy);
    assert_eq!(upserts.len(), events.len(), "{upserts:?}");
    assert!(upserts.values().all(|n| *n == 1), "{upserts:?}");
    let stats = oauth_stats(&http, &sb).await;
    assert_eq!(stats["authorization_code_grants"], 3, "{stats}");
}

/// The default portal (no tenants) reached by OAuth: `HUBSPOT_REFRESH_TOKEN` with the app's id and secret in place
/// of `HUBSPOT_TOKEN`; serve refreshes its access token and delivers.
#[tokio::test]
async fn the_default_portal_may_be_reached_with_a_refresh_token() {
    let sb = start_oauth_sandbox();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = "https://relay.example.com/oauth/callback";
    let form = [
        ("client_id", CLIENT_ID),
        ("scope", "oauth crm.objects.contacts.write crm.objects.contacts.read crm.schemas.contacts.write"),
        ("redirect_uri", redirect),
        ("state", "default"),
        ("decision", "approve"),
    ];
    let resp = http
        .post(format!("{}/oauth/authorize", sb.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let code = query_of(resp.headers()["location"].to_str().unwrap())["code"].clone();
    let app = hubrelay_clients::oauth::OAuthApp {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        base_url: sb.1.clone(),
    };
    let refresh_token = hubrelay_clients::oauth::exchange_code(&app, &code, redirect).await.unwrap().refresh_token;

    let serve = Serve::start(&[
        ("HUBSPOT_REFRESH_TOKEN", &refresh_token),
        ("HUBSPOT_CLIENT_ID", CLIENT_ID),
        ("HUBSPOT_CLIENT_SECRET", CLIENT_SECRET),
        ("HUBSPOT_BASE_URL", &sb.1),
        ("HUBRELAY_PUBLIC_URL", "https://relay.example.com"),
    ]);
    let banner = serve.wait_for_line("HubSpot API ");
    assert!(banner.contains(&format!("OAuth app {CLIENT_ID}")) && !banner.contains(&refresh_token), "{banner}");
    // Custom properties first (an install's job for a tenant), with the static admin token.
    let admin = hubrelay_clients::HubSpotClient::new(&sb.1, STATIC, Duration::from_secs(5)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    hubrelay_core::properties::sync(&admin, &mapping.all_property_definitions()).await.unwrap();
    let before = oauth_stats(&http, &sb.1).await["refresh_token_grants"].as_u64().unwrap();
    for i in 0..3 {
        let email = format!("default-oauth-{i}@example.com");
        let (status, _, answer) = serve.post_lead(&json!({"email": email}), headers(&[])).await;
        assert_eq!(status, 200, "{answer}");
        assert!(serve.contact_in(&sb.1, STATIC, &email).await.is_some());
    }
    // Across an expiry: a new token, one refresh.
    tokio::time::sleep(Duration::from_secs(LIFETIME_SECS)).await;
    let (status, _, answer) = serve.post_lead(&json!({"email": "default-oauth-late@example.com"}), headers(&[])).await;
    assert_eq!(status, 200, "{answer}");
    let refreshes = oauth_stats(&http, &sb.1).await["refresh_token_grants"].as_u64().unwrap() - before;
    assert!((1..=3).contains(&refreshes), "{refreshes} refreshes");
}
