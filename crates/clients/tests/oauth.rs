//! `OAuthTokens` against the sandbox's OAuth app: one refresh per expiry however many calls are in flight, a
//! 401 answered by one refresh and a resend, a revoked refresh token turning every call into `needs_reauth`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hubrelay_clients::oauth::{exchange_code, OAuthApp, OAuthTokens};
use hubrelay_clients::HubSpotClient;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxHandle, SandboxOptions};

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

async fn oauth_sandbox(lifetime: Duration) -> SandboxHandle {
    let oauth = sandbox::OAuthApp {
        client_id: "cid".into(),
        client_secret: "secret".into(),
        access_token_lifetime: lifetime,
        ..sandbox::OAuthApp::default()
    };
    let options = SandboxOptions { oauth: Some(oauth), rate_limit_per_10s: 10_000, ..SandboxOptions::default() };
    sandbox::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn app(handle: &SandboxHandle) -> OAuthApp {
    OAuthApp { client_id: "cid".into(), client_secret: "secret".into(), base_url: handle.url() }
}

/// The install's approve step, non-interactive, then the code exchanged: the refresh token.
async fn install(handle: &SandboxHandle) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = serde_urlencoded::to_string([
        ("client_id", "cid"),
        ("redirect_uri", REDIRECT),
        ("scope", "oauth crm.objects.contacts.read"),
        ("state", "s1"),
        ("decision", "approve"),
    ])
    .unwrap();
    let resp = http
        .post(format!("{}/oauth/authorize", handle.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let query: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    let grant = exchange_code(&app(handle), &query["code"], REDIRECT).await.unwrap();
    assert_eq!(grant.hub_id, Some(SandboxOptions::default().portal_id));
    assert!(grant.expires_in > 0);
    grant.refresh_token
}

fn client(handle: &SandboxHandle, tokens: Arc<OAuthTokens>) -> Arc<HubSpotClient> {
    Arc::new(HubSpotClient::new(&handle.url(), "", Duration::from_secs(10)).unwrap().with_oauth(tokens))
}

/// `n` calls at once; every one must succeed.
async fn calls_at_once(client: &Arc<HubSpotClient>, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_properties().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("call with the OAuth token");
    }
}

#[tokio::test]
async fn calls_in_flight_share_one_refresh_per_expiry() {
    let handle = oauth_sandbox(Duration::from_secs(2)).await;
    let refresh = install(&handle).await;
    let tokens = Arc::new(OAuthTokens::new(app(&handle), refresh));
    let client = client(&handle, tokens.clone());
    calls_at_once(&client, 100).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1);
    calls_at_once(&client, 100).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1, "the token is still fresh");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    calls_at_once(&client, 100).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 2, "one refresh for the second expiry");
    assert_eq!(tokens.refreshes(), 2);
}

#[tokio::test]
async fn a_401_drops_the_token_refreshes_once_and_sends_again() {
    let handle = oauth_sandbox(Duration::from_secs(1800)).await;
    let refresh = install(&handle).await;
    // A token HubSpot does not (or no longer) accept, believed fresh for 30 minutes.
    let tokens = Arc::new(OAuthTokens::new(app(&handle), refresh).with_access_token("CNstale".into(), 1800));
    let client = client(&handle, tokens.clone());
    client.list_properties().await.expect("resent with a fresh token");
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1);
    client.list_properties().await.unwrap();
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1);
}

#[tokio::test]
async fn a_revoked_refresh_token_makes_every_call_needs_reauth_and_tells_once() {
    let handle = oauth_sandbox(Duration::from_secs(1800)).await;
    let refresh = install(&handle).await;
    handle.sandbox.revoke_refresh_tokens();
    let told = Arc::new(AtomicUsize::new(0));
    let counter = told.clone();
    let tokens = Arc::new(OAuthTokens::new(app(&handle), refresh).on_revoked(Arc::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    let client = client(&handle, tokens.clone());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_properties().await })
        })
        .collect();
    for task in tasks {
        let e = task.await.unwrap().expect_err("no token");
        // Not sent, so retryable: the event stays queued.
        assert_eq!((e.code.as_str(), e.status), ("needs_reauth", None));
        assert_eq!(e.outcome(), hubrelay_core::domain::AttemptOutcome::Retryable);
    }
    assert!(tokens.needs_reauth());
    assert_eq!(told.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.refreshes(), 1, "refused once, not asked again");
    let stats = handle.sandbox.oauth_stats();
    assert_eq!((stats.refresh_token_grants, stats.refused), (0, 1));
}
