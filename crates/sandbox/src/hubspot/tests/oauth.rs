//! OAuth (2026-03): the install page, the code and refresh grants, expiry, revocation, the token endpoint's own
//! rate limit and errors, and the gate accepting issued access tokens.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{call_raw, Resp, CONTACTS, TOKEN};
use crate::hubspot::{spawn, OAuthApp, OAuthStats, Sandbox, SandboxOptions};

const TOKEN_URL: &str = "/oauth/2026-03/token";
const REVOKE_URL: &str = "/oauth/2026-03/token/revoke";
const REDIRECT: &str = "https://relay.example.com/oauth/callback";
const PORTAL: u64 = 881_234;

fn app() -> OAuthApp {
    OAuthApp::default()
}

/// OAuth on, no static token: only issued access tokens get in.
fn open_with(oauth: OAuthApp) -> (Sandbox, Router) {
    let sb = Sandbox::open(SandboxOptions { portal_id: PORTAL, oauth: Some(oauth), ..SandboxOptions::default() })
        .expect("open sandbox");
    let router = sb.router();
    (sb, router)
}

fn open() -> (Sandbox, Router) {
    open_with(app())
}

/// A request with a raw body of the given content type; the body is kept as text when it is not JSON.
async fn send(router: &Router, method: &str, uri: &str, content_type: Option<&str>, body: &str) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = router.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Resp { status, headers, body }
}

fn encode(params: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

async fn form(router: &Router, uri: &str, params: &[(&str, &str)]) -> Resp {
    send(router, "POST", uri, Some("application/x-www-form-urlencoded"), &encode(params)).await
}

/// The query parameters of a `Location` header.
fn location_params(r: &Resp) -> (String, HashMap<String, String>) {
    let location = r.header("location").expect("a Location header").to_string();
    let (base, query) = location.split_once('?').expect("a query");
    let base = base.to_string();
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    (base, params.into_iter().collect())
}

/// Approves the install (non-interactively) and returns the code from the redirect.
async fn approve(router: &Router, state: &str) -> String {
    let r = form(
        router,
        "/oauth/authorize",
        &[
            ("client_id", "sandbox-client-id"),
            ("redirect_uri", REDIRECT),
            ("scope", "crm.objects.contacts.write oauth"),
            ("state", state),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    let (base, params) = location_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!(params["state"], state);
    params["code"].clone()
}

async fn exchange(router: &Router, code: &str) -> Resp {
    form(
        router,
        TOKEN_URL,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "sandbox-client-id"),
            ("client_secret", "sandbox-client-secret"),
        ],
    )
    .await
}

async fn refresh(router: &Router, refresh_token: &str) -> Resp {
    form(
        router,
        TOKEN_URL,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "sandbox-client-id"),
            ("client_secret", "sandbox-client-secret"),
        ],
    )
    .await
}

/// Install and exchange: `(access_token, refresh_token)`.
async fn install(router: &Router) -> (String, String) {
    let code = approve(router, "s").await;
    let r = exchange(router, &code).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (r.body["access_token"].as_str().unwrap().to_string(), r.body["refresh_token"].as_str().unwrap().to_string())
}

/// Asserts a token-endpoint error: 400, HubSpot's error shape plus the legacy `status`, naming `code`.
fn assert_token_error(r: &Resp, code: &str) {
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["status"], code, "{:?}", r.body);
    assert_eq!(r.body["category"], code, "{:?}", r.body);
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", r.body);
    let cid = r.body["correlationId"].as_str().expect("correlationId");
    assert!(uuid::Uuid::parse_str(cid).is_ok(), "{cid}");
}

async fn api_get(router: &Router, token: &str) -> Resp {
    call_raw(router, "GET", CONTACTS, Some(token), None).await
}

#[tokio::test]
async fn the_code_flow_installs_the_app_and_its_access_token_calls_the_api() {
    let (sb, router) = open();
    // The install page names the portal, the client id and the scopes, and escapes what it echoes.
    let state = r#"st<a>&"x""#;
    let query = encode(&[
        ("client_id", "sandbox-client-id"),
        ("scope", "crm.objects.contacts.write oauth"),
        ("redirect_uri", REDIRECT),
        ("state", state),
    ]);
    let page = send(&router, "GET", &format!("/oauth/authorize?{query}"), None, "").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let html = page.body.as_str().expect("an HTML page");
    assert!(html.contains("sandbox-client-id") && html.contains(&PORTAL.to_string()), "{html}");
    assert!(html.contains("crm.schemas.contacts.write"), "the granted scopes are listed: {html}");
    assert!(html.contains(r#"<form method="post" action="/oauth/authorize">"#), "{html}");
    assert!(html.contains(r#"name="decision" value="approve""#) && html.contains(r#"name="decision" value="deny""#));
    assert!(html.contains(r#"name="state" value="st&lt;a&gt;&amp;&quot;x&quot;""#), "state escaped: {html}");
    assert!(!html.contains("<a>"), "nothing echoed unescaped: {html}");

    // Approve: 302 back with a code and the state unchanged.
    let code = approve(&router, state).await;
    assert!(code.len() >= 20, "{code}");

    // Exchange: HubSpot's AccessTokenResponse for this portal.
    let r = exchange(&router, &code).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let access = r.body["access_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("CN") && (100..=300).contains(&access.len()), "{access}");
    assert!(r.body["refresh_token"].as_str().is_some_and(|t| !t.is_empty() && t != access));
    assert_eq!(r.body["expires_in"], 1800);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["token_use"], "access_token");
    assert_eq!(r.body["hub_id"], PORTAL);
    assert_eq!(r.body["scopes"], json!(app().scopes));
    assert!(r.body["user_id"].is_u64());

    // The access token works on the API, on this portal.
    let created = call_raw(
        &router,
        "POST",
        "/crm/objects/2026-03/contacts",
        Some(&access),
        Some(&json!({"properties": {"email": "oauth@example.com"}}).to_string()),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(sb.contact_count().unwrap(), 1);
    let details = call_raw(&router, "GET", "/account-info/2026-03/details", Some(&access), None).await;
    assert_eq!(details.body["portalId"], PORTAL);
    // With OAuth on and no static token, "any token" no longer gets in.
    let r = api_get(&router, "any-old-token").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_category(), "INVALID_AUTHENTICATION");

    // The code is single-use.
    assert_token_error(&exchange(&router, &code).await, "BAD_AUTH_CODE");
    let stats = sb.oauth_stats();
    assert_eq!(
        stats,
        OAuthStats { authorization_code_grants: 1, refresh_token_grants: 0, refused: 1, rate_limited: 0 }
    );
}

#[tokio::test]
async fn a_refresh_returns_a_new_working_access_token_and_the_same_refresh_token() {
    let (sb, router) = open();
    let (first, refresh_token) = install(&router).await;
    let r = refresh(&router, &refresh_token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = r.body["access_token"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(r.body["refresh_token"], refresh_token.as_str());
    assert_eq!((r.body["hub_id"].as_u64(), r.body["expires_in"].as_u64()), (Some(PORTAL), Some(1800)));
    assert_eq!(api_get(&router, second).await.status, 200);
    assert_eq!(api_get(&router, &first).await.status, 200, "the earlier access token lives until it expires");
    assert_token_error(&refresh(&router, "na1-not-a-refresh-token").await, "BAD_REFRESH_TOKEN");
    let r = refresh(&router, "na1-not-a-refresh-token").await;
    assert_eq!(r.body["message"], "missing or invalid refresh token");
    let stats = sb.oauth_stats();
    assert_eq!((stats.authorization_code_grants, stats.refresh_token_grants, stats.refused), (1, 1, 2));
}

#[tokio::test]
async fn an_expired_access_token_answers_401_expired_authentication() {
    let (sb, router) = open_with(OAuthApp { access_token_lifetime: Duration::from_secs(60), ..app() });
    let code = approve(&router, "s").await;
    let r = exchange(&router, &code).await;
    assert_eq!(r.body["expires_in"], 60, "the configured lifetime");
    let access = r.body["access_token"].as_str().unwrap().to_string();
    let refresh_token = r.body["refresh_token"].as_str().unwrap().to_string();
    sb.advance_oauth_clock(Duration::from_secs(59));
    assert_eq!(api_get(&router, &access).await.status, 200);
    sb.advance_oauth_clock(Duration::from_secs(6));
    let r = api_get(&router, &access).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.error_category(), "EXPIRED_AUTHENTICATION");
    assert_eq!(r.body["message"], "The OAuth token used to make this call expired 5 second(s) ago.");
    assert!(r.header("x-hubspot-ratelimit-max").is_none(), "401s carry no rate-limit headers");
    // The refresh token still gets a fresh one.
    let r = refresh(&router, &refresh_token).await;
    assert_eq!(api_get(&router, r.body["access_token"].as_str().unwrap()).await.status, 200);
}

#[tokio::test]
async fn an_access_token_expires_in_real_time_over_a_socket() {
    let options = SandboxOptions {
        oauth: Some(OAuthApp { access_token_lifetime: Duration::from_secs(1), ..app() }),
        ..SandboxOptions::default()
    };
    let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = handle.url();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let approved = http
        .post(format!("{url}/oauth/authorize"))
        .form(&[
            ("client_id", "sandbox-client-id"),
            ("redirect_uri", "http://127.0.0.1:9/cb?x=1"),
            ("state", "42"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 302);
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://127.0.0.1:9/cb?x=1&code="), "appended with &: {location}");
    let params: HashMap<String, String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(location.split_once('?').unwrap().1)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!((params["x"].as_str(), params["state"].as_str()), ("1", "42"));
    let tokens: Value = http
        .post(format!("{url}{TOKEN_URL}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params["code"].as_str()),
            ("redirect_uri", "http://127.0.0.1:9/cb?x=1"),
            ("client_id", "sandbox-client-id"),
            ("client_secret", "sandbox-client-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["expires_in"], 1);
    let access = tokens["access_token"].as_str().unwrap();
    let get = || http.get(format!("{url}{CONTACTS}")).bearer_auth(access).send();
    assert_eq!(get().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION", "{body}");
    handle.shutdown().await;
}

#[tokio::test]
async fn revoked_refresh_tokens_are_refused_while_issued_access_tokens_live_on() {
    let (sb, router) = open();
    let (access, refresh_token) = install(&router).await;
    // The revoke endpoint, for one refresh token.
    let r = form(
        &router,
        REVOKE_URL,
        &[("token", &refresh_token), ("client_id", "sandbox-client-id"), ("client_secret", "sandbox-client-secret")],
    )
    .await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let r = refresh(&router, &refresh_token).await;
    assert_token_error(&r, "BAD_REFRESH_TOKEN");
    assert_eq!(r.body["message"], "missing or invalid refresh token");
    assert_eq!(api_get(&router, &access).await.status, 200, "issued access tokens keep working");
    // Revoking needs the app's credentials.
    let r = form(
        &router,
        REVOKE_URL,
        &[("token", &refresh_token), ("client_id", "sandbox-client-id"), ("client_secret", "no")],
    )
    .await;
    assert_token_error(&r, "BAD_CLIENT_SECRET");

    // The admin route (a user uninstalled the app): every refresh token, counted.
    let (access2, refresh2) = install(&router).await;
    let (_, refresh3) = install(&router).await;
    let r = send(&router, "POST", "/__sandbox/oauth/revoke", None, "").await;
    assert_eq!((r.status, &r.body), (200, &json!({"revoked": 2})));
    assert_token_error(&refresh(&router, &refresh2).await, "BAD_REFRESH_TOKEN");
    assert_token_error(&refresh(&router, &refresh3).await, "BAD_REFRESH_TOKEN");
    assert_eq!(api_get(&router, &access2).await.status, 200);

    // And the method.
    let (_, refresh4) = install(&router).await;
    sb.revoke_refresh_tokens();
    assert_token_error(&refresh(&router, &refresh4).await, "BAD_REFRESH_TOKEN");
    assert_eq!(sb.oauth_stats().refresh_token_grants, 0);
}

#[tokio::test]
async fn parameters_in_the_query_string_or_outside_a_form_body_are_refused() {
    let (sb, router) = open();
    let code = approve(&router, "s").await;
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "sandbox-client-id"),
        ("client_secret", "sandbox-client-secret"),
    ];
    // Everything in the query (the v1 style), or the secret alone there.
    let r = send(
        &router,
        "POST",
        &format!("{TOKEN_URL}?{}", encode(&params)),
        Some("application/x-www-form-urlencoded"),
        "",
    )
    .await;
    assert_token_error(&r, "BAD_REQUEST");
    assert!(r.body["message"].as_str().unwrap().contains("query string"), "{:?}", r.body);
    let r = send(
        &router,
        "POST",
        &format!("{TOKEN_URL}?client_secret=sandbox-client-secret"),
        Some("application/x-www-form-urlencoded"),
        &encode(&params[..4]),
    )
    .await;
    assert_token_error(&r, "BAD_REQUEST");
    let r =
        send(&router, "POST", &format!("{REVOKE_URL}?token=x"), Some("application/x-www-form-urlencoded"), "").await;
    assert_token_error(&r, "BAD_REQUEST");
    // A JSON body is not a form.
    let as_json: serde_json::Map<String, Value> = params.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
    let r = send(&router, "POST", TOKEN_URL, Some("application/json"), &Value::Object(as_json).to_string()).await;
    assert_eq!(r.status, 415, "{:?}", r.body);
    assert_eq!(r.body["status"], "UNSUPPORTED_MEDIA_TYPE");
    // None of those spent the code.
    assert_eq!(form(&router, TOKEN_URL, &params).await.status, 200);
    assert_eq!(sb.oauth_stats().refused, 4);
}

#[tokio::test]
async fn wrong_credentials_grant_types_codes_and_redirects_are_refused() {
    let (sb, router) = open();
    let code = approve(&router, "s").await;
    let with = |overrides: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.into()),
            ("client_id", "sandbox-client-id".into()),
            ("client_secret", "sandbox-client-secret".into()),
        ];
        for (k, v) in overrides {
            match p.iter_mut().find(|(name, _)| name == k) {
                Some(slot) if v.is_empty() => slot.1.clear(),
                Some(slot) => slot.1 = (*v).to_string(),
                None => p.push((k, (*v).to_string())),
            }
        }
        p.retain(|(_, v)| !v.is_empty());
        p
    };
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("client_secret", "wrong-secret")], "BAD_CLIENT_SECRET"),
        (&[("client_id", "someone-else")], "BAD_CLIENT_ID"),
        (&[("client_secret", "")], "MISSING_FIELD"),
        (&[("grant_type", "password")], "BAD_GRANT_TYPE"),
        (&[("grant_type", "")], "MISSING_FIELD"),
        (&[("code", "")], "MISSING_FIELD"),
        (&[("code", "na1-made-up")], "BAD_AUTH_CODE"),
        (&[("redirect_uri", "https://evil.example.com/cb")], "BAD_REDIRECT_URI"),
    ];
    for (overrides, expected) in cases {
        let params = with(overrides);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = form(&router, TOKEN_URL, &pairs).await;
        assert_token_error(&r, expected);
    }
    assert_eq!(sb.oauth_stats().refused, 8);
    // None of the refusals spent the code; an unused code expires after 10 minutes.
    let fresh = approve(&router, "t").await;
    assert_eq!(exchange(&router, &code).await.status, 200);
    sb.advance_oauth_clock(Duration::from_secs(601));
    assert_token_error(&exchange(&router, &fresh).await, "BAD_AUTH_CODE");
}

#[tokio::test]
async fn the_token_endpoint_has_its_own_rate_limit() {
    let (sb, router) = open_with(OAuthApp { token_requests_per_10s: 3, ..app() });
    let (access, refresh_token) = install(&router).await; // 1 of 3
    assert_eq!(refresh(&router, &refresh_token).await.status, 200); // 2
    assert_token_error(&refresh(&router, "na1-bad").await, "BAD_REFRESH_TOKEN"); // 3: refusals count too
    for _ in 0..2 {
        let r = refresh(&router, &refresh_token).await;
        assert_eq!(r.status, 429, "{:?}", r.body);
        assert_eq!(r.body["status"], "error");
        assert_eq!(r.body["errorType"], "RATE_LIMIT");
        assert_eq!(r.body["policyName"], "TEN_SECONDLY_ROLLING");
        assert_eq!(r.body["message"], "You have reached your ten_secondly_rolling limit.");
        assert!(r.body["correlationId"].is_string() && r.body["groupName"].is_string());
        assert_eq!(r.header("x-hubspot-ratelimit-max"), Some("3"));
    }
    // The API's own limit is untouched.
    assert_eq!(api_get(&router, &access).await.status, 200);
    let stats = sb.oauth_stats();
    assert_eq!(
        stats,
        OAuthStats { authorization_code_grants: 1, refresh_token_grants: 1, refused: 1, rate_limited: 2 }
    );
    assert_eq!(sb.stats().rate_limited, 0);
    // The window rolls.
    sb.advance_oauth_clock(Duration::from_secs(10));
    assert_eq!(refresh(&router, &refresh_token).await.status, 200);
}

#[tokio::test]
async fn the_install_page_refuses_unknown_clients_and_bad_redirects_without_redirecting() {
    let (_, router) = open();
    let page = |q: &[(&str, &str)]| format!("/oauth/authorize?{}", encode(q));
    let cases: [&[(&str, &str)]; 5] = [
        &[("client_id", "nope"), ("redirect_uri", REDIRECT), ("scope", "oauth")],
        &[("redirect_uri", REDIRECT), ("scope", "oauth")],
        &[("client_id", "sandbox-client-id"), ("scope", "oauth")],
        &[("client_id", "sandbox-client-id"), ("redirect_uri", "javascript:alert(1)"), ("scope", "oauth")],
        &[("client_id", "sandbox-client-id"), ("redirect_uri", REDIRECT), ("scope", "crm.objects.deals.write")],
    ];
    for q in cases {
        for r in [
            send(&router, "GET", &page(q), None, "").await,
            form(&router, "/oauth/authorize", &[q, &[("decision", "approve")]].concat()).await,
        ] {
            assert_eq!(r.status, 400, "{q:?}: {:?}", r.body);
            assert!(r.header("location").is_none(), "{q:?}");
            assert!(r.header("content-type").unwrap().starts_with("text/html"));
            assert!(r.body.as_str().unwrap().contains("Authorization failed"));
        }
    }
    // Unknown client ids are echoed escaped.
    let r = send(&router, "GET", &page(&[("client_id", "<b>x</b>"), ("redirect_uri", REDIRECT)]), None, "").await;
    assert!(r.body.as_str().unwrap().contains("&lt;b&gt;x&lt;/b&gt;"));
    // Deny: back to the app with access_denied and the state, no code.
    let r = form(
        &router,
        "/oauth/authorize",
        &[("client_id", "sandbox-client-id"), ("redirect_uri", REDIRECT), ("state", "a b&c"), ("decision", "deny")],
    )
    .await;
    assert_eq!(r.status, 302);
    let (base, params) = location_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!((params["error"].as_str(), params["state"].as_str()), ("access_denied", "a b&c"));
    assert!(!params.contains_key("code"));
    // No decision: not a redirect.
    let r = form(&router, "/oauth/authorize", &[("client_id", "sandbox-client-id"), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn access_tokens_carry_the_apps_scopes_and_the_static_token_keeps_working() {
    let sb =
        Sandbox::open(SandboxOptions { token: Some(TOKEN.into()), oauth: Some(app()), ..SandboxOptions::default() })
            .unwrap();
    let router = sb.router();
    let (access, _) = install(&router).await;
    let deal = json!({"properties": {"dealname": "D", "dealstage": "closedwon"}}).to_string();
    let r = call_raw(&router, "POST", "/crm/v3/objects/deals", Some(&access), Some(&deal)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.error_category(), "MISSING_SCOPES");
    let r = call_raw(&router, "POST", "/crm/v3/objects/deals", Some(TOKEN), Some(&deal)).await;
    assert_eq!(r.status, 201, "the static token keeps every scope: {:?}", r.body);
    assert_eq!(api_get(&router, "not-issued").await.status, 401);
    // Access tokens share one API window (HubSpot limits an app per installed account: a refresh does not buy a
    // fresh window), apart from the static token's. The 403 above was refused before the limiter.
    let (_, refresh_token) = install(&router).await;
    let r = refresh(&router, &refresh_token).await;
    let refreshed = r.body["access_token"].as_str().unwrap();
    let r = api_get(&router, &access).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("189"));
    let r = api_get(&router, refreshed).await;
    assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("188"), "one window for every access token");
    let r = api_get(&router, TOKEN).await;
    assert_eq!(
        r.header("x-hubspot-ratelimit-remaining"),
        Some("188"),
        "the static token's own window: {:?}",
        r.headers
    );
}

#[tokio::test]
async fn stats_show_the_oauth_counters_and_a_reset_zeroes_them_but_keeps_tokens() {
    let (sb, router) = open();
    let (access, refresh_token) = install(&router).await;
    assert_eq!(refresh(&router, &refresh_token).await.status, 200);
    assert_token_error(&refresh(&router, "na1-x").await, "BAD_REFRESH_TOKEN");
    let r = send(&router, "GET", "/__sandbox/stats", None, "").await;
    assert_eq!(
        r.body["oauth"],
        json!({"authorization_code_grants": 1, "refresh_token_grants": 1, "refused": 1, "rate_limited": 0})
    );
    assert_eq!(r.body["requests"], 0, "token requests are not API requests");
    assert_eq!(send(&router, "POST", "/__sandbox/reset", None, "").await.status, 200);
    assert_eq!(sb.oauth_stats(), OAuthStats::default());
    assert_eq!(api_get(&router, &access).await.status, 200);
    assert_eq!(refresh(&router, &refresh_token).await.status, 200);
}

#[tokio::test]
async fn without_oauth_the_routes_are_404_and_auth_is_as_before() {
    let sb = Sandbox::open(SandboxOptions::default()).unwrap();
    let router = sb.router();
    let query = encode(&[("client_id", "sandbox-client-id"), ("redirect_uri", REDIRECT)]);
    assert_eq!(send(&router, "GET", &format!("/oauth/authorize?{query}"), None, "").await.status, 404);
    assert_eq!(form(&router, TOKEN_URL, &[("grant_type", "refresh_token")]).await.status, 404);
    assert_eq!(form(&router, REVOKE_URL, &[("token", "x")]).await.status, 404);
    assert_eq!(send(&router, "POST", "/__sandbox/oauth/revoke", None, "").await.status, 404);
    assert_eq!(api_get(&router, "anything").await.status, 200);
    sb.revoke_refresh_tokens();
    assert_eq!(sb.oauth_stats(), OAuthStats::default());
    let r = send(&router, "GET", "/__sandbox/stats", None, "").await;
    assert_eq!(r.body["oauth"]["authorization_code_grants"], 0);
}
