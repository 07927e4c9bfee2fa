//! HubSpot's app webhooks for many portals at one URL: a signed batch is split by `portalId`, each portal's
//! events go to its tenant, and that tenant's own referral partner (never the deployment's) gets the actions.
//! A portal is one tenant's; a portal no tenant has is reported, not queued; a disabled tenant's part is
//! refused so HubSpot sends the batch again, and the parts accepted before are not queued twice.

use std::path::Path;
use std::time::{Duration, Instant};

use hubrelay_core::auth::hubspot_v3_signature;
use hubrelay_sandbox::partners::{ExtoleSandbox, ExtoleSandboxOptions};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::harness::{headers, hubrelay_in, Serve};

const CLIENT_ID: &str = "relay-client-id";
const CLIENT_SECRET: &str = "relay-client-secret";
const PUBLIC_URL: &str = "https://relay.example.com";
const PATH: &str = "/v1/hubspot/app-webhooks";

fn ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out) = hubrelay_in(dir, args);
    assert!(ok, "hubrelay {args:?}: {out}");
    out
}

fn write(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

/// A tenant's sandbox portal as serve printed it: its URL and the token serve keeps for it.
fn portal(serve: &Serve, id: &str) -> (String, String) {
    let line = serve.wait_for_line(&format!("tenant {id}: POST"));
    let url = line.split("HubSpot sandbox ").nth(1).and_then(|r| r.split_whitespace().next()).expect("sandbox URL");
    let token = std::fs::read_to_string(serve.data_dir.path().join("tenants").join(id).join("sandbox-token")).unwrap();
    (url.to_string(), token.trim().to_string())
}

/// A contact made in a portal directly (as a portal user would); its id.
async fn contact_in(serve: &Serve, portal: &(String, String), email: &str) -> u64 {
    let body = json!({"properties": {"email": email, "firstname": "Ada", "lastname": "Lovelace"}});
    let url = format!("{}/crm/v3/objects/contacts", portal.0);
    let resp = serve.http.post(url).bearer_auth(&portal.1).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "create contact: {}", resp.status());
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap()
}

/// The portal user gives the contact an advocate code; HubSpot's app webhook for it.
async fn coded(serve: &Serve, portal: &(String, String), portal_id: u64, contact: u64, code: &str) -> Value {
    let url = format!("{}/crm/v3/objects/contacts/{contact}", portal.0);
    let patch = json!({"properties": {"advocate_code": code}});
    let resp = serve.http.patch(url).bearer_auth(&portal.1).json(&patch).send().await.unwrap();
    assert!(resp.status().is_success(), "patch contact: {}", resp.status());
    json!({"eventId": contact, "subscriptionId": 9, "portalId": portal_id, "appId": 54321,
        "occurredAt": 1_764_000_000_000_i64, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": contact, "propertyName": "advocate_code", "propertyValue": code, "changeSource": "CRM"})
}

/// POST a batch signed as HubSpot signs it (v3, the app's client secret).
async fn send(serve: &Serve, batch: &Value, secret: &str) -> (u16, Value) {
    let bytes = batch.to_string().into_bytes();
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let sig = hubspot_v3_signature(secret, "POST", &format!("{PUBLIC_URL}{PATH}"), &bytes, now_ms);
    let h = headers(&[("x-hubspot-signature-v3", &sig), ("x-hubspot-request-timestamp", &now_ms.to_string())]);
    let (status, _, body) = serve.post_to(PATH, "application/json", bytes, h).await;
    (status, body)
}

/// The sign-ups an Extole account received, as (email, advocate code).
async fn signups(serve: &Serve, url: &str) -> Vec<(String, String)> {
    let got: Value = serve.http.get(format!("{url}/__sandbox/received")).send().await.unwrap().json().await.unwrap();
    got.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["body"]["event_name"] == "signed_up" && r["status"] == 200)
        .map(|r| {
            let data = &r["body"]["data"];
            (data["email"].as_str().unwrap().to_string(), data["advocate_code"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn wait_for_signups(serve: &Serve, url: &str, want: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = signups(serve, url).await;
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn portal_answer(body: &Value, portal: u64) -> Value {
    let list = body["portals"].as_array().or_else(|| body["error"]["details"]["portals"].as_array());
    list.unwrap().iter().find(|p| p["portal_id"] == portal).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_webhooks_reach_each_portals_tenant_and_its_own_referral_partner() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let secrets = tempfile::tempdir().unwrap();
    // Each brand's own Extole account.
    let extole = |token: &str| ExtoleSandbox::new(ExtoleSandboxOptions { token: Some(token.into()) });
    let (extole_a, extole_b) = (extole("extole-acme-token"), extole("extole-lakeside-token"));
    let (extole_a, extole_b) = (extole_a.serve_local().await.unwrap(), extole_b.serve_local().await.unwrap());
    let (ea, eb) =
        (write(secrets.path(), "ea", "extole-acme-token"), write(secrets.path(), "eb", "extole-lakeside-token"));
    let (a_url, b_url) = (extole_a.url(), extole_b.url());
    let hook = write(secrets.path(), "hook", "acme-extole-hook");
    let lakeside_hook = write(secrets.path(), "lakeside-hook", "lakeside-extole-hook");
    let acme = ["tenants", "add", "acme", "--hub-id", "1001", "--new-api-token", "--extole-token-file", &ea];
    let acme_extole = ["--extole-base-url", &a_url, "--extole-webhook-secret-file", &hook];
    ok(&dir, &[&acme[..], &acme_extole[..]].concat());
    ok(
        &dir,
        &[
            "tenants",
            "add",
            "lakeside",
            "--hub-id",
            "1002",
            "--new-api-token",
            "--extole-token-file",
            &eb,
            "--extole-base-url",
            &b_url,
            "--extole-webhook-secret-file",
            &lakeside_hook,
        ],
    );

    // A portal is one tenant's: its app webhooks could not be routed otherwise.
    let (added, out) = hubrelay_in(&dir, &["tenants", "add", "copycat", "--hub-id", "1001", "--new-api-token"]);
    assert!(!added && out.contains("portal 1001 is tenant `acme`'s"), "{out}");
    let (moved, out) = hubrelay_in(&dir, &["tenants", "update", "lakeside", "--hub-id", "1001"]);
    assert!(!moved && out.contains("portal 1001"), "{out}");
    // The partner account is listed, its token masked unless revealed.
    let list = ok(&dir, &["tenants", "list"]);
    assert!(list.contains("PARTNERS") && list.contains("extole"), "{list}");
    let show = ok(&dir, &["tenants", "show", "acme"]);
    assert!(show.contains(&a_url) && !show.contains("extole-acme-token"), "{show}");
    assert!(ok(&dir, &["tenants", "show", "acme", "--reveal"]).contains("extole-acme-token"));

    let serve = Serve::start_in(
        data,
        &[
            ("HUBSPOT_CLIENT_ID", CLIENT_ID),
            ("HUBSPOT_CLIENT_SECRET", CLIENT_SECRET),
            ("HUBRELAY_PUBLIC_URL", PUBLIC_URL),
            ("HUBRELAY_RETRY_SCHEDULE", "1s,1s,1s"),
        ],
    );
    let (a_portal, b_portal) = (portal(&serve, "acme"), portal(&serve, "lakeside"));
    let a_contact = contact_in(&serve, &a_portal, "ada@acme.example").await;
    let b_contact = contact_in(&serve, &b_portal, "bea@lakeside.example").await;

    // One batch, three portals: acme's, lakeside's, and one no tenant has.
    let batch = json!([
        coded(&serve, &a_portal, 1001, a_contact, "ADV-A").await,
        coded(&serve, &b_portal, 1002, b_contact, "ADV-B").await,
        {"eventId": 3, "subscriptionId": 9, "portalId": 4040, "occurredAt": 1_764_000_000_000_i64,
         "subscriptionType": "contact.propertyChange", "objectId": 5, "propertyName": "advocate_code",
         "propertyValue": "ADV-X", "attemptNumber": 0},
    ]);
    let (status, first) = send(&serve, &batch, CLIENT_SECRET).await;
    assert_eq!((status, first["status"].as_str()), (202, Some("accepted")), "{first}");
    let a = portal_answer(&first, 1001);
    assert_eq!((a["tenant"].as_str(), a["status"].as_u64()), (Some("acme"), Some(202)), "{first}");
    assert_eq!(a["answer"]["actions"][0]["action"], "extole_signup");
    assert_eq!(portal_answer(&first, 1002)["tenant"], "lakeside");
    let unknown = portal_answer(&first, 4040);
    assert_eq!((unknown["status"].as_u64(), unknown["answer"]["status"].as_str()), (Some(200), Some("ignored")));

    // HubSpot's retry of the batch (attemptNumber counts up): each portal's part is the same event.
    let mut retry = batch.clone();
    retry.as_array_mut().unwrap().iter_mut().for_each(|e| e["attemptNumber"] = json!(1));
    let (status, again) = send(&serve, &retry, CLIENT_SECRET).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(portal_answer(&again, 1001)["answer"], a["answer"], "the same event, not queued again");

    // Only HubSpot's signature with the app's secret opens this URL; a tenant's sender token does not.
    let (status, body) = send(&serve, &batch, "another-secret").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");
    let bearer = headers(&[("authorization", "Bearer anything")]);
    let (status, _, body) = serve.post_to(PATH, "application/json", batch.to_string().into(), bearer).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = send(&serve, &json!([{"eventId": 1}]), CLIENT_SECRET).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_payload")), "{body}");

    // A tenant's Extole webhooks are checked with its own secret: another one opens nothing.
    let link = json!({"properties": {"email": "sharer@acme.example", "share_code": "s1",
        "share_link": "https://refer.example.com/s1"}})
    .to_string();
    let relay = &serve;
    let extole_post = |tenant: &str, key: &str| {
        let sig = hubrelay_core::auth::extole_signature(key, link.as_bytes());
        let path = format!("/t/{tenant}/v1/referrals/extole");
        let h = headers(&[("x-extole-signature", &sig)]);
        let body = link.clone().into_bytes();
        async move { relay.post_to(&path, "application/json", body, h).await }
    };
    let (status, _, body) = extole_post("acme", "acme-extole-hook").await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = extole_post("acme", "another-brands-hook").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");
    let (status, _, body) = extole_post("lakeside", "acme-extole-hook").await;
    assert_eq!(status, 401, "acme's secret opens no other tenant's route: {body}");
    let (status, _, body) = extole_post("lakeside", "lakeside-extole-hook").await;
    assert_eq!(status, 202, "lakeside's own does: {body}");

    // Each brand's sign-up went to its own Extole account, once; the deployment's got none.
    let got_a = wait_for_signups(&serve, &a_url, 1).await;
    let got_b = wait_for_signups(&serve, &b_url, 1).await;
    assert_eq!(got_a, vec![("ada@acme.example".to_string(), "ADV-A".to_string())]);
    assert_eq!(got_b, vec![("bea@lakeside.example".to_string(), "ADV-B".to_string())]);
    assert!(signups(&serve, &serve.extole_url).await.is_empty(), "no tenant's event reaches the deployment's account");

    // A disabled tenant's part is refused (HubSpot sends the batch again); the other part is accepted once.
    ok(serve.data_dir.path(), &["tenants", "update", "lakeside", "--disable"]);
    serve.wait_for_line("tenant lakeside disabled");
    let a2 = contact_in(&serve, &a_portal, "ann@acme.example").await;
    let b2 = contact_in(&serve, &b_portal, "bob@lakeside.example").await;
    let batch =
        json!([coded(&serve, &a_portal, 1001, a2, "ADV-A2").await, coded(&serve, &b_portal, 1002, b2, "ADV-B2").await]);
    let (status, refused) = send(&serve, &batch, CLIENT_SECRET).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("tenant_disabled")), "{refused}");
    assert_eq!(portal_answer(&refused, 1001)["status"], 202, "{refused}");
    ok(serve.data_dir.path(), &["tenants", "update", "lakeside", "--enable"]);
    serve.wait_for_line("tenant lakeside: POST");
    let deadline = Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        let (status, body) = send(&serve, &batch, CLIENT_SECRET).await;
        if status == 202 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(portal_answer(&accepted, 1001)["answer"], portal_answer(&refused, 1001)["answer"], "{accepted}");
    assert_eq!(portal_answer(&accepted, 1002)["status"], 202, "{accepted}");
    assert_eq!(wait_for_signups(&serve, &a_url, 2).await.len(), 2);
    let got_b = wait_for_signups(&serve, &b_url, 2).await;
    assert_eq!(got_b.last(), Some(&("bob@lakeside.example".to_string(), "ADV-B2".to_string())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(signups(&serve, &a_url).await.len(), 2, "acme's second sign-up sent once");
}
