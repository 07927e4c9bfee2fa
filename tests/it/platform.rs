//! HubSpot as it is in December 2026, through `hubrelay serve`: every call on the dated paths (seen on the
//! wire by a recording proxy), portal validation rules parking a lead with the rule's message, and a fixed
//! portal delivering it on redrive.

use std::time::Duration;

use hubrelay_sandbox::hubspot::{spawn, SandboxHandle, SandboxOptions, ValidationRule};
use hubrelay_testkit::recording_proxy::RecordingProxy;
use serde_json::{json, Value};

use crate::harness::{headers, Serve};

const PORTAL_TOKEN: &str = "service-key-platform";

/// `hubrelay <args>` against `url`; (exit code, stdout, stderr).
fn hubrelay(args: &[&str], url: &str, version: &str) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(args)
        .args(["--hubspot-url", url, "--token", PORTAL_TOKEN, "--api-version", version])
        .env_remove("HUBRELAY_MAPPING")
        .env_remove("HUBRELAY_CONFIG")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn portal() -> SandboxHandle {
    let options = SandboxOptions { token: Some(PORTAL_TOKEN.into()), ..SandboxOptions::default() };
    spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// Engagement ids of one type on a contact, read from the sandbox directly (not through the proxy).
async fn engagements(portal: &SandboxHandle, contact_id: &str, object: &str) -> Vec<Value> {
    let url = format!("{}/crm/v4/objects/contacts/{contact_id}/associations/{object}", portal.url());
    let v: Value =
        reqwest::Client::new().get(url).bearer_auth(PORTAL_TOKEN).send().await.unwrap().json().await.unwrap();
    v["results"].as_array().cloned().unwrap_or_default()
}

/// Drives every flow `serve` has (lead, status update by email, activity retried after an outage, which
/// reads the contact's engagements first) plus `properties sync` and `doctor`, all through a recording proxy;
/// returns what went over the wire.
async fn wire_paths(version: &str) -> Vec<String> {
    let portal = portal().await;
    let proxy = RecordingProxy::start(&portal.url()).await;
    let (code, out, err) = tokio::task::block_in_place(|| hubrelay(&["properties", "sync"], &proxy.url, version));
    assert_eq!(code, 0, "{out}{err}");
    let serve = Serve::start(&[
        ("HUBSPOT_TOKEN", PORTAL_TOKEN),
        ("HUBSPOT_BASE_URL", &proxy.url),
        ("HUBSPOT_API_VERSION", version),
        ("HUBRELAY_RETRY_SCHEDULE", "200ms,200ms,500ms,1s,1s"),
    ]);
    let (status, _, lead) = serve
        .post_lead(&json!({"email": "dated@example.com", "first_name": "Dana", "phone": "+1 555 0100"}), headers(&[]))
        .await;
    assert_eq!(status, 200, "{lead}");
    let contact_id = lead["contact_id"].as_str().unwrap().to_string();
    let (status, body) = serve.post_status(&json!({"email": "dated@example.com", "status": "Working"})).await;
    assert_eq!(status, 200, "{body}");
    // An outage makes the activity a retry, and a retried activity first looks for its engagement.
    portal.sandbox.set_faults(hubrelay_sandbox::hubspot::Faults { failure_rate: 1.0, ..Default::default() });
    let (status, _, body) =
        serve.post_activity(&json!({"contact_id": contact_id, "type": "appointment", "subject": "Sea trial"})).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    portal.sandbox.set_faults(Default::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while engagements(&portal, &contact_id, "meetings").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker never created the meeting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = tokio::task::block_in_place(|| hubrelay(&["doctor"], &proxy.url, version));
    assert_eq!(code, 0, "{out}{err}");
    proxy.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hubspot_call_is_on_a_dated_path_unless_v3_is_asked_for() {
    let seen = wire_paths("2026-09").await;
    let dated =
        ["/crm/objects/2026-09/", "/crm/properties/2026-09/", "/crm/associations/2026-09/", "/account-info/2026-09/"];
    for line in &seen {
        let path = line.split_once(' ').map_or("", |(_, p)| p);
        assert!(dated.iter().any(|d| path.starts_with(d)), "not a dated path: {line}\nall: {seen:#?}");
    }
    let has = |needle: &str| seen.iter().any(|l| l.starts_with(needle));
    for call in [
        "POST /crm/properties/2026-09/contacts",
        "POST /crm/objects/2026-09/contacts/batch/upsert",
        "GET /crm/objects/2026-09/contacts/dated%40example.com?idProperty=email",
        "PATCH /crm/objects/2026-09/contacts/",
        "POST /crm/associations/2026-09/contacts/meetings/batch/read",
        "POST /crm/objects/2026-09/meetings",
        "GET /account-info/2026-09/details",
    ] {
        assert!(has(call), "no `{call}` among {seen:#?}");
    }

    let legacy = wire_paths("v3").await;
    for line in &legacy {
        let path = line.split_once(' ').map_or("", |(_, p)| p);
        assert!(
            ["/crm/v3/", "/crm/v4/", "/account-info/v3/"].iter().any(|p| path.starts_with(p)),
            "v3 mode left the legacy paths: {line}"
        );
    }
    assert!(legacy
        .iter()
        .any(|l| l.starts_with("GET /crm/v4/objects/contacts/") && l.contains("/associations/meetings")));
}

#[tokio::test]
async fn a_validation_rule_parks_a_lead_with_its_message_and_redrive_delivers_once_fixed() {
    let serve = Serve::start(&[("HUBRELAY_RETRY_SCHEDULE", "200ms,200ms,1s")]);
    let http = reqwest::Client::new();
    let rules_url = format!("{}/__sandbox/validation-rules", serve.sandbox_url);
    let rule = json!({"rules": [{"property": "phone", "message": "Every boat lead needs a phone number"}]});
    let resp = http.post(&rules_url).json(&rule).send().await.unwrap();
    assert!(resp.status().is_success());
    let rules: Value = http.get(&rules_url).send().await.unwrap().json().await.unwrap();
    let parsed: Vec<ValidationRule> = serde_json::from_value(rules["rules"].clone()).unwrap();
    assert_eq!(parsed.len(), 1);

    let (status, _, body) = serve.post_lead(&json!({"email": "nophone@example.com"}), headers(&[])).await;
    assert_eq!(body["status"], "parked", "{status} {body}");
    assert_eq!(body["reason"]["code"], "portal_validation_rule", "{body}");
    assert!(body["reason"]["message"].as_str().unwrap().contains("Every boat lead needs a phone number"), "{body}");
    assert!(serve.contact("nophone@example.com").await.is_none());
    // A lead the rule is happy with goes through.
    let (status, _, ok) =
        serve.post_lead(&json!({"email": "phone@example.com", "phone": "+1 555 0101"}), headers(&[])).await;
    assert_eq!((status, ok["status"].as_str()), (200, Some("delivered")), "{ok}");

    // The portal admin relaxes the rule; on-call redrives what it parked.
    http.delete(&rules_url).send().await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["dlq", "redrive", "--error-code", "portal_validation_rule", "--data-dir"])
        .arg(serve.data_dir.path())
        .env_remove("HUBRELAY_IDEMPOTENCY_TABLE")
        .env_remove("HUBRELAY_DLQ_URL")
        .env_remove("HUBRELAY_RETRY_QUEUE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved 1"), "{}", String::from_utf8_lossy(&out.stdout));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while serve.contact("nophone@example.com").await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the redriven lead was never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_missing_scopes_and_properties_and_passes_once_fixed() {
    let portal = portal().await;
    // A Service Key created with only the contact scopes.
    portal.sandbox.set_scopes(Some(vec!["crm.objects.contacts.read".into(), "crm.objects.contacts.write".into()]));
    let (code, out, err) = tokio::task::block_in_place(|| hubrelay(&["doctor"], &portal.url(), "2026-09"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("portal 62515"), "{out}");
    for scope in ["crm.schemas.contacts.read", "crm.schemas.contacts.write", "crm.objects.deals.read"] {
        assert!(out.contains(&format!("FAIL  {scope}")), "{scope} not reported:\n{out}");
    }
    assert!(out.contains("ok    crm.objects.contacts.write"), "{out}");
    assert!(out.contains("to fix:") && out.contains("grant the token these scopes"), "{out}");

    // Scopes granted, properties still missing.
    portal.sandbox.set_scopes(None);
    let (code, out, _) = tokio::task::block_in_place(|| hubrelay(&["doctor"], &portal.url(), "2026-09"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("custom properties missing") && out.contains("share_link"), "{out}");
    assert!(out.contains("hubrelay properties sync"), "{out}");

    let (code, out, err) = tokio::task::block_in_place(|| hubrelay(&["properties", "sync"], &portal.url(), "2026-09"));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = tokio::task::block_in_place(|| hubrelay(&["doctor"], &portal.url(), "2026-09"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ready: hubrelay can deliver to this portal"), "{out}");

    // A refused token is named as such.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["doctor", "--hubspot-url", &portal.url(), "--token", "not-the-key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("token refused (401)"));
}

#[tokio::test]
async fn a_merge_between_delivery_and_status_update_moves_the_update_and_the_link_to_the_survivor() {
    use hubrelay_core::store::LeadLinks;
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let first = crate::status::aimbase_lead(&serve, "aimbase_rollick-7", "first@example.com").await;
    let other = crate::status::aimbase_lead(&serve, "aimbase_rollick-8", "other@example.com").await;
    // A portal user merges the first contact into the other; HubSpot gives the survivor a new id.
    let merged: Value = serve
        .http
        .post(format!("{}/__sandbox/merge", serve.sandbox_url))
        .json(&json!({"primary": other, "merged": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let survivor = merged["newObjectId"].as_str().expect("survivor id").to_string();
    assert!(survivor != first && survivor != other, "{merged}");

    // The status update only knows the lead id, linked to the merged-away contact.
    let (status, body) = serve
        .post_status(
            &json!({"lead_id": "aimbase_rollick-7", "status": "working", "changed_at": "2026-11-21T10:00:00Z"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert_eq!(body["contact_id"], survivor.as_str(), "{body}");
    let got: Value = serve
        .http
        .get(format!(
            "{}/crm/v3/objects/contacts/{survivor}?properties=aimbase_lead_status,hs_merged_object_ids",
            serve.sandbox_url
        ))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["properties"]["aimbase_lead_status"], "Working", "{got}");
    // The link now names the survivor.
    let store = hubrelay_local::sqlite::SqliteStore::open(&serve.db_path()).unwrap();
    assert_eq!(store.contact_for("aimbase_rollick-7").await.unwrap().as_deref(), Some(survivor.as_str()));

    // A later update naming the stale contact id goes straight to the survivor: one PATCH, no 404 first.
    const PATCH: &str = "PATCH /crm/objects/{version}/contacts/{id}";
    let before = serve.sandbox_calls(PATCH).await;
    let (status, body) =
        serve.post_status(&json!({"contact_id": first, "status": "sold", "changed_at": "2026-11-21T11:00:00Z"})).await;
    assert_eq!((status, body["contact_id"].as_str()), (200, Some(survivor.as_str())), "{body}");
    assert_eq!(serve.sandbox_calls(PATCH).await, before + 1);
    // An activity naming the merged-away id lands on the survivor's timeline; one for a contact that never
    // existed is parked `contact_not_found` (so `dlq redrive --error-code contact_not_found` finds it).
    let (status, _, body) = serve
        .post_activity(&json!({"contact_id": first, "type": "note", "body": "Called back", "activity_id": "A-merge"}))
        .await;
    assert_eq!((status, body["contact_id"].as_str()), (200, Some(survivor.as_str())), "{body}");
    assert_eq!(serve.engagements(&survivor, "notes", &[]).await.len(), 1);
    let (status, _, body) = serve
        .post_activity(&json!({"contact_id": "999999", "type": "note", "body": "Lost", "activity_id": "A-gone"}))
        .await;
    assert_eq!(
        (status, body["status"].as_str(), body["reason"]["code"].as_str()),
        (202, Some("parked"), Some("contact_not_found")),
        "{body}"
    );
    // The order guard holds on the survivor: an older status is stale.
    let (_, body) = serve
        .post_status(&json!({"lead_id": "aimbase_rollick-7", "status": "lost", "changed_at": "2026-11-21T09:00:00Z"}))
        .await;
    assert_eq!(body["status"], "stale", "{body}");
}

#[tokio::test]
async fn hubspot_merge_webhooks_repoint_links_before_the_next_update() {
    use hubrelay_core::store::LeadLinks;
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let first = crate::status::aimbase_lead(&serve, "aimbase_rollick-21", "one@example.com").await;
    let other = crate::status::aimbase_lead(&serve, "aimbase_rollick-22", "two@example.com").await;
    let merged: Value = serve
        .http
        .post(format!("{}/__sandbox/merge", serve.sandbox_url))
        .json(&json!({"primary": other, "merged": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let survivor = merged["newObjectId"].as_str().unwrap().to_string();
    // HubSpot's app webhooks for the merge: contact.merge, and a contact.deletion per merged-away record.
    let id = |s: &str| s.parse::<u64>().unwrap();
    let events = json!([
        {"eventId": 1, "subscriptionId": 3, "portalId": 62515, "occurredAt": 1_764_000_000_000_i64, "attemptNumber": 0,
         "subscriptionType": "contact.merge", "objectId": id(&other), "primaryObjectId": id(&other),
         "mergedObjectIds": [id(&first)], "newObjectId": id(&survivor), "numberOfPropertiesMoved": 4},
        {"eventId": 2, "subscriptionId": 4, "portalId": 62515, "occurredAt": 1_764_000_000_000_i64, "attemptNumber": 0,
         "subscriptionType": "contact.deletion", "objectId": id(&first), "changeFlag": "MERGED"}
    ]);
    let (status, _, body) =
        serve.post_to("/v1/referrals/hubspot", "application/json", events.to_string().into_bytes(), headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("accepted")), "{body}");
    assert_eq!(body["actions"][0]["action"], "record_merge", "{body}");
    let store = hubrelay_local::sqlite::SqliteStore::open(&serve.db_path()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Both merged-away ids, the old primary's too (the survivor got a new id); HubSpot confirmed them first.
    while store.merged_into(&first).await.unwrap().is_none() || store.merged_into(&other).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the merge was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.merged_into(&first).await.unwrap().as_deref(), Some(survivor.as_str()));
    assert_eq!(store.merged_into(&other).await.unwrap().as_deref(), Some(survivor.as_str()));

    // The next update by lead id goes straight to the survivor (one PATCH, no 404 and look-up first) and
    // re-points the link.
    const PATCH: &str = "PATCH /crm/objects/{version}/contacts/{id}";
    let (before, gets_before) =
        (serve.sandbox_calls(PATCH).await, serve.sandbox_calls("GET /crm/objects/{version}/contacts/{id}").await);
    let (status, body) = serve
        .post_status(
            &json!({"lead_id": "aimbase_rollick-21", "status": "working", "changed_at": "2026-11-21T10:00:00Z"}),
        )
        .await;
    assert_eq!((status, body["contact_id"].as_str()), (200, Some(survivor.as_str())), "{body}");
    assert_eq!(serve.sandbox_calls(PATCH).await, before + 1);
    assert_eq!(serve.sandbox_calls("GET /crm/objects/{version}/contacts/{id}").await, gets_before);
    assert_eq!(store.contact_for("aimbase_rollick-21").await.unwrap().as_deref(), Some(survivor.as_str()));
}

#[tokio::test]
async fn a_merge_webhook_hubspot_does_not_confirm_re_points_nothing() {
    use hubrelay_core::store::{EventLog, EventStatus, LeadLinks};
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let victim = crate::status::aimbase_lead(&serve, "aimbase_rollick-31", "victim@example.com").await;
    let other = crate::status::aimbase_lead(&serve, "aimbase_rollick-32", "attacker@example.com").await;
    // No merge happened in HubSpot: a sender with an API token claims one.
    let forged = json!([{"eventId": 9, "subscriptionId": 3, "portalId": 62515, "occurredAt": 1_764_000_000_000_i64,
        "subscriptionType": "contact.merge", "objectId": other.parse::<u64>().unwrap(),
        "primaryObjectId": other.parse::<u64>().unwrap(), "mergedObjectIds": [victim.parse::<u64>().unwrap()]}]);
    let (status, _, body) =
        serve.post_to("/v1/referrals/hubspot", "application/json", forged.to_string().into_bytes(), headers(&[])).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body["event_ids"][0].as_str().unwrap().to_string();
    let store = hubrelay_local::sqlite::SqliteStore::open(&serve.db_path()).unwrap();
    // Generous: the whole suite shares a slow machine's two cores.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let record = store.get_event(&event_id).await.unwrap();
        if record.as_ref().is_some_and(|r| r.status == EventStatus::DeadLettered) {
            assert_eq!(record.unwrap().reason.unwrap().code, "merge_not_confirmed");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the forged merge was never settled: {record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.merged_into(&victim).await.unwrap(), None);
    let (_, body) = serve.post_status(&json!({"lead_id": "aimbase_rollick-31", "status": "working"})).await;
    assert_eq!(body["contact_id"], victim.as_str(), "{body}");
}
