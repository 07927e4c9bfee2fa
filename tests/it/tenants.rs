//! Many portals on one `serve`: tenants added with `hubrelay tenants`, each under `/t/{tenant}/` with its own
//! sandbox portal, mapping, sender credentials and store.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::harness::{headers, hubrelay_in, Serve, TOKEN};

/// `hubrelay <args> --data-dir <dir>`: exit status (0 or 2 here) and what it printed.
fn hubrelay(dir: &Path, args: &[&str]) -> (i32, String) {
    let (ok, text) = hubrelay_in(dir, args);
    (if ok { 0 } else { 2 }, text)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out) = hubrelay(dir, args);
    assert_eq!(code, 0, "hubrelay {args:?}: {out}");
    out
}

fn write(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

fn bearer(token: &str) -> HeaderMap {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

/// A tenant's sandbox portal as serve printed it: its URL and the token serve keeps for it.
fn portal(serve: &Serve, id: &str) -> (String, String) {
    let line = serve.wait_for_line(&format!("tenant {id}: POST"));
    let url = line.split("HubSpot sandbox ").nth(1).and_then(|r| r.split_whitespace().next()).expect("sandbox URL");
    let token = std::fs::read_to_string(serve.data_dir.path().join("tenants").join(id).join("sandbox-token")).unwrap();
    (url.to_string(), token.trim().to_string())
}

fn event_ids(dir: &Path, tenant: Option<&str>) -> Vec<String> {
    let mut args = vec!["events", "list", "--json"];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let list: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    let mut ids: Vec<String> =
        list.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

/// A Rollick lead with every field the aimbase profile requires.
fn aimbase_lead(lead_id: &str, email: &str) -> Value {
    json!({"lead_id": lead_id, "email": email, "first_name": "Rita", "last_name": "Doe",
        "lead_date": "2026-11-20 -06:00", "type": "Quote", "source": "Website", "category": "Retail",
        "product": {"year": "2026", "name": "Model X", "brand": "Acme"}, "dealer": {"name": "Lakeside Motors"}})
}

const CHAT_LEAD: &str =
    r#"{"email":"jane@example.com","first_name":"Jane","vehicle_of_interest":"2026 Model X","priority":"high"}"#;

#[tokio::test]
async fn two_tenants_each_get_their_own_portal_mapping_credentials_and_listings() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let secrets = tempfile::tempdir().unwrap();
    let (a_token, b_token) = ("acme-sender-token-0001", "lakeside-sender-token-0002");
    let a_file = write(secrets.path(), "a", a_token);
    let b_file = write(secrets.path(), "b", b_token);
    ok(&dir, &["tenants", "add", "acme", "--mapping", "chat-widget", "--hub-id", "1001", "--api-token-file", &a_file]);
    ok(&dir, &["tenants", "add", "lakeside", "--mapping", "aimbase", "--hub-id", "1002", "--api-token-file", &b_file]);
    // Listings name tenants, never their secrets; --reveal is the operator's explicit ask.
    let list = ok(&dir, &["tenants", "list"]);
    assert!(list.contains("acme") && list.contains("lakeside") && list.contains("1 API token"), "{list}");
    assert!(!list.contains(a_token) && !list.contains(b_token), "{list}");
    assert!(!ok(&dir, &["tenants", "show", "acme"]).contains(a_token));
    assert!(ok(&dir, &["tenants", "show", "acme", "--reveal"]).contains(a_token));

    let serve = Serve::start_in(data, &[]);
    let (a_portal, a_portal_token) = portal(&serve, "acme");
    let (b_portal, b_portal_token) = portal(&serve, "lakeside");
    assert!(serve.wait_for_line("tenant acme: POST").contains("portal 1001"));
    assert_ne!(a_portal, b_portal);

    // Acme's chat-widget lead lands in acme's portal, mapped by chat-widget, and nowhere else.
    let (status, _, a_body) =
        serve.post_to("/t/acme/v1/leads", "application/json", CHAT_LEAD.into(), bearer(a_token)).await;
    assert_eq!(status, 200, "{a_body}");
    let contact = serve.contact_in(&a_portal, &a_portal_token, "jane@example.com").await.expect("in acme's portal");
    assert_eq!(contact["properties"]["vehicle_of_interest"], "2026 Model X");
    assert!(serve.contact_in(&b_portal, &b_portal_token, "jane@example.com").await.is_none());
    assert!(serve.contact("jane@example.com").await.is_none(), "not in the default tenant's portal");

    // Lakeside maps with aimbase: the same body lacks its required lead_id there.
    let (status, _, body) =
        serve.post_to("/t/lakeside/v1/leads", "application/json", CHAT_LEAD.into(), bearer(b_token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("missing_required_field")), "{body}");
    let aimbase = aimbase_lead("rollick-77", "rollick@example.com");
    let (status, _, b_body) =
        serve.post_to("/t/lakeside/v1/leads", "application/json", aimbase.to_string().into(), bearer(b_token)).await;
    assert_eq!(status, 200, "{b_body}");
    let contact = serve.contact_in(&b_portal, &b_portal_token, "rollick@example.com").await.expect("in lakeside's");
    assert_eq!(contact["properties"]["aimbase_identifier"], "rollick-77");
    assert_eq!(contact["properties"]["aimbase_dealername"], "Lakeside Motors");
    assert!(serve.contact_in(&a_portal, &a_portal_token, "rollick@example.com").await.is_none());

    // A tenant's credentials work on its own routes only; the default tenant's on none of theirs.
    for (path, token) in [
        ("/t/lakeside/v1/leads", a_token),
        ("/t/acme/v1/leads", b_token),
        ("/t/acme/v1/leads", TOKEN),
        ("/t/acme/v1/leads/status", b_token),
        ("/v1/leads", a_token),
    ] {
        let (status, _, body) = serve.post_to(path, "application/json", CHAT_LEAD.into(), bearer(token)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")), "{path}: {body}");
    }

    // Idempotency keys are the tenant's own: the same key on two tenants is two events.
    let key = headers(&[("idempotency-key", "order-1")]);
    let mut a_key = key.clone();
    a_key.extend(bearer(a_token));
    let lead = json!({"email": "kim@example.com"}).to_string();
    let (status, a_headers, _) =
        serve.post_to("/t/acme/v1/leads", "application/json", lead.clone().into(), a_key).await;
    assert_eq!(status, 200);
    let mut b_key = key;
    b_key.extend(bearer(b_token));
    let lead = aimbase_lead("rollick-78", "kim@example.com").to_string();
    let (status, b_headers, _) = serve.post_to("/t/lakeside/v1/leads", "application/json", lead.into(), b_key).await;
    assert_eq!(status, 200);
    assert!(!a_headers.contains_key("idempotent-replayed") && !b_headers.contains_key("idempotent-replayed"));

    // Each listing shows its own tenant's events only.
    let dir = serve.data_dir.path();
    let acme = event_ids(dir, Some("acme"));
    let lakeside = event_ids(dir, Some("lakeside"));
    assert_eq!(acme.len(), 2, "{acme:?}");
    assert_eq!(lakeside.len(), 2, "{lakeside:?}");
    assert!(acme.contains(&a_body["event_id"].as_str().unwrap().to_string()));
    assert!(lakeside.contains(&b_body["event_id"].as_str().unwrap().to_string()));
    assert!(acme.iter().all(|id| !lakeside.contains(id)));
    assert!(event_ids(dir, None).is_empty(), "the default tenant accepted nothing");
    // The dead-letter tools read the tenant's own store too.
    let dlq = ok(dir, &["dlq", "list", "--tenant", "acme"]);
    assert!(dlq.contains(&format!("{}", dir.join("tenants").join("acme").join("hubrelay.db").display())), "{dlq}");
    let (code, out) = hubrelay(dir, &["events", "list", "--tenant", "nobody"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no tenant nobody"), "{out}");

    let (status, _, body) =
        serve.post_to("/t/nobody/v1/leads", "application/json", CHAT_LEAD.into(), bearer(a_token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_tenant")));

    // `GET /metrics` counts each tenant under its own id: two leads delivered each, none for the default tenant,
    // and each tenant's HubSpot calls in its own series.
    let metrics = serve.metrics().await;
    let delivered = |tenant: &str| {
        metrics[&format!(r#"hubrelay_events_total{{tenant="{tenant}",function="lead-captured",outcome="delivered"}}"#)]
    };
    assert_eq!((delivered("acme"), delivered("lakeside"), delivered("default")), (2.0, 2.0, 0.0));
    let calls =
        |tenant: &str| metrics[&format!(r#"hubrelay_hubspot_requests_total{{tenant="{tenant}",answer="success"}}"#)];
    assert!(calls("acme") >= 2.0 && calls("lakeside") >= 2.0 && calls("default") == 0.0, "{metrics:?}");
}

/// Polls until a POST answers `want`, for at most 20 s (serve reads the registry once a second).
async fn eventually(serve: &Serve, path: &str, token: &str, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = json!({"email": format!("p{}@example.com", rand_suffix())}).to_string();
        let (status, _, answer) = serve.post_to(path, "application/json", body.into(), bearer(token)).await;
        if status == want {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path} still answers {status} ({answer}), not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn generated_token(out: &str) -> String {
    out.split_whitespace().find(|w| w.starts_with("hrt_")).expect("a generated token").to_string()
}

#[tokio::test]
async fn tenants_added_rotated_disabled_and_removed_while_serve_runs() {
    let serve = Serve::start(&[]);
    let dir = serve.data_dir.path();
    let first = generated_token(&ok(dir, &["tenants", "add", "oem", "--mapping", "chat-widget"]));
    let answer = eventually(&serve, "/t/oem/v1/leads", &first, 200).await;
    assert_eq!(answer["status"], "delivered");

    // Rotation: the new token and the old both work until the old one is retired.
    let out = ok(dir, &["tenants", "update", "oem", "--new-api-token"]);
    let second = generated_token(&out);
    eventually(&serve, "/t/oem/v1/leads", &second, 200).await;
    eventually(&serve, "/t/oem/v1/leads", &first, 200).await;
    // A third is refused while two are valid.
    let (code, out) = hubrelay(dir, &["tenants", "update", "oem", "--new-api-token"]);
    assert_eq!(code, 2);
    assert!(out.contains("retire the old one first"), "{out}");
    ok(dir, &["tenants", "update", "oem", "--retire-old-api-token"]);
    eventually(&serve, "/t/oem/v1/leads", &first, 401).await;
    eventually(&serve, "/t/oem/v1/leads", &second, 200).await;

    ok(dir, &["tenants", "update", "oem", "--disable"]);
    let refused = eventually(&serve, "/t/oem/v1/leads", &second, 403).await;
    assert_eq!(refused["error"]["code"], "tenant_disabled");
    ok(dir, &["tenants", "update", "oem", "--enable"]);
    eventually(&serve, "/t/oem/v1/leads", &second, 200).await;

    ok(dir, &["tenants", "remove", "oem"]);
    let gone = eventually(&serve, "/t/oem/v1/leads", &second, 404).await;
    assert_eq!(gone["error"]["code"], "unknown_tenant");
    // Its events stay readable after it is removed.
    assert!(!event_ids(dir, Some("oem")).is_empty());
}

/// A tenant's daily budget (`--daily-budget`): calls past it are not sent; its leads wait queued for the
/// portal's midnight, with the reason on the event.
#[tokio::test]
async fn a_tenants_daily_budget_queues_its_leads_past_the_cap() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let secrets = tempfile::tempdir().unwrap();
    let token = "capped-sender-token-0001";
    let file = write(secrets.path(), "capped", token);
    // The sandbox portal's properties take a few calls at start; each lead one more.
    ok(&dir, &["tenants", "add", "capped", "--mapping", "chat-widget", "--api-token-file", &file]);
    let serve = Serve::start_in(data, &[]);
    serve.wait_for_line("tenant capped: POST");
    let (status, _, body) = serve
        .post_to("/t/capped/v1/leads", "application/json", r#"{"email":"first@example.com"}"#.into(), bearer(token))
        .await;
    assert_eq!(status, 200, "{body}");
    ok(&dir, &["tenants", "update", "capped", "--daily-budget", "1"]);
    // Rebuilt with its budget within a second or two; the next lead's call would be the day's second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let queued = loop {
        let (status, _, body) = serve
            .post_to(
                "/t/capped/v1/leads",
                "application/json",
                format!(r#"{{"email":"n{}@example.com"}}"#, rand_suffix()).into(),
                bearer(token),
            )
            .await;
        if status == 202 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(std::time::Instant::now() < deadline, "the daily budget never took effect");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(queued["status"], "queued", "{queued}");
    let event_id = queued["event_id"].as_str().unwrap();
    let shown = ok(&dir, &["events", "show", event_id, "--tenant", "capped", "--json"]);
    let event: Value = serde_json::from_str(&shown).unwrap();
    let attempt = &event["attempts"][0];
    assert_eq!(attempt["error_code"], "daily_budget_spent", "{event}");
    assert!(attempt["status"].is_null(), "not sent: {event}");
    // Waits for the portal's midnight (UTC for a sandbox portal), not the schedule's 5 s.
    let next: time::OffsetDateTime = time::OffsetDateTime::parse(
        event["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let midnight = (now.date() + time::Duration::days(1)).midnight().assume_utc();
    assert!(next >= midnight - time::Duration::seconds(5), "next attempt {next}, midnight {midnight}");
    // The console's check of the portal shows the day's calls against the cap, and cannot spend another.
    let page = serve.console_check_portal("capped").await;
    assert!(page.contains("1 of 1"), "{page}");
    assert!(page.contains("not checked") && page.contains("daily budget"), "{page}");
}
