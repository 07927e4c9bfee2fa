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
    // Six seconds: both bursts fit in the token's fresh 5.4 s even on a loaded machine (two did not fit in 1.8 s).
    let handle = oauth_sandbox(Duration::from_secs(6)).await;
    let refresh = install(&handle).await;
    let tokens = Arc::new(OAuthTokens::new(app(&handle), refresh));
    let client = client(&handle, tokens.clone());
    calls_at_once(&client, 100).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1);
    calls_at_once(&client, 100).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1, "the token is still fresh");
    tokio::time::sleep(Duration::from_millis(6_100)).await;
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

/// A [`SharedTokenStore`] in memory, as the table is for the Lambdas.
#[derive(Default)]
struct MemoryStore {
    token: std::sync::Mutex<Option<hubrelay_core::shared_token::SharedToken>>,
    lease: std::sync::Mutex<Option<(String, time::OffsetDateTime)>>,
}

#[async_trait::async_trait]
impl hubrelay_core::shared_token::SharedTokenStore for MemoryStore {
    async fn current(
        &self,
    ) -> Result<Option<hubrelay_core::shared_token::SharedToken>, hubrelay_core::store::StoreError> {
        Ok(self.token.lock().unwrap().clone())
    }
    async fn lease(
        &self,
        owner: &str,
        now: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> Result<bool, hubrelay_core::store::StoreError> {
        let mut lease = self.lease.lock().unwrap();
        match lease.as_ref() {
            Some((holder, end)) if holder != owner && *end >= now => Ok(false),
            _ => {
                *lease = Some((owner.to_string(), until));
                Ok(true)
            }
        }
    }
    async fn store(
        &self,
        token: &hubrelay_core::shared_token::SharedToken,
        owner: &str,
    ) -> Result<(), hubrelay_core::store::StoreError> {
        let mut lease = self.lease.lock().unwrap();
        assert_eq!(lease.as_ref().map(|l| l.0.as_str()), Some(owner), "stored without the lease");
        *lease = None;
        *self.token.lock().unwrap() = Some(token.clone());
        Ok(())
    }
    async fn release(&self, owner: &str) -> Result<(), hubrelay_core::store::StoreError> {
        let mut lease = self.lease.lock().unwrap();
        if lease.as_ref().is_some_and(|l| l.0 == owner) {
            *lease = None;
        }
        Ok(())
    }
}

#[tokio::test]
async fn processes_sharing_a_store_refresh_once_and_serve_the_old_token_while_another_refreshes() {
    let handle = oauth_sandbox(Duration::from_secs(30)).await;
    let refresh_token = install(&handle).await;
    let store = Arc::new(MemoryStore::default());
    let processes: Vec<Arc<HubSpotClient>> = (0..3)
        .map(|_| {
            let tokens = OAuthTokens::new(app(&handle), refresh_token.clone()).shared_through(store.clone());
            client(&handle, Arc::new(tokens))
        })
        .collect();
    for p in &processes {
        calls_at_once(p, 5).await;
    }
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1, "one refresh for three processes");

    // The token is due (not expired) and another process holds the lease: a fresh process uses the stored token
    // rather than waiting.
    let now = time::OffsetDateTime::now_utc();
    {
        let mut token = store.token.lock().unwrap();
        token.as_mut().unwrap().refresh_at = now - time::Duration::seconds(1);
    }
    *store.lease.lock().unwrap() = Some(("someone-else".into(), now + time::Duration::seconds(12)));
    let fresh =
        client(&handle, Arc::new(OAuthTokens::new(app(&handle), refresh_token.clone()).shared_through(store.clone())));
    let started = std::time::Instant::now();
    calls_at_once(&fresh, 3).await;
    assert!(started.elapsed() < Duration::from_secs(2), "waited for the other process: {:?}", started.elapsed());
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 1);

    // The holder is gone (its lease ran out): the next process refreshes, once.
    *store.lease.lock().unwrap() = None;
    let next =
        client(&handle, Arc::new(OAuthTokens::new(app(&handle), refresh_token.clone()).shared_through(store.clone())));
    calls_at_once(&next, 3).await;
    assert_eq!(handle.sandbox.oauth_stats().refresh_token_grants, 2);
    assert!(store.lease.lock().unwrap().is_none(), "the lease ends with the store");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_asked_once_per_lease_not_once_per_call() {
    let handle = oauth_sandbox(Duration::from_secs(30)).await;
    let refresh_token = install(&handle).await;
    let store = Arc::new(MemoryStore::default());
    // The app's secret is wrong: every token request fails (400, the app's own credentials).
    let wrong = OAuthApp { client_secret: "wrong".into(), ..app(&handle) };
    let tokens = Arc::new(OAuthTokens::new(wrong, refresh_token).shared_through(store.clone()));
    let refused_before = handle.sandbox.oauth_stats().refused;
    for _ in 0..2 {
        let e = tokens.access_token().await.unwrap_err();
        assert!(["oauth_app_refused", "oauth_refresh_pending"].contains(&e.code.as_str()), "{e:?}");
    }
    assert_eq!(handle.sandbox.oauth_stats().refused - refused_before, 1, "one token request while it fails");
    assert!(store.lease.lock().unwrap().is_some(), "the failed refresh keeps the others off until its lease ends");
}

/// A request function keeps time to queue its event: with a deadline, a request whose token hangs (the token
/// endpoint answers nothing) gives up in time, retryable.
#[tokio::test]
async fn with_a_deadline_a_request_whose_token_hangs_gives_up_in_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // accepted, never answered
        }
    });
    let app = OAuthApp { client_id: "cid".into(), client_secret: "secret".into(), base_url: url.clone() };
    let tokens = Arc::new(OAuthTokens::new(app, "refresh".into()));
    let client = HubSpotClient::new(&url, "", Duration::from_secs(10))
        .unwrap()
        .with_oauth(tokens)
        .with_oauth_deadline(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let e = client.list_properties().await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (None, "hubspot_timeout"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(e.outcome(), hubrelay_core::domain::AttemptOutcome::Retryable);
}
