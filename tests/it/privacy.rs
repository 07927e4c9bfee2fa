//! Erasure against a running `serve`: a person with a delivered lead, a dead letter, a queued lead, a queued
//! status update and an imported row is erased through `POST /v1/privacy/erasure` (an operator's token). After
//! it no listing, record or queued message holds their email or phone — checked in the raw bytes of every file
//! of the data dir — another person's records are intact, HubSpot's GDPR delete removed the contact, and the
//! person's next lead is delivered as any other. HubSpot's `contact.privacyDeletion` erases by contact id.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{headers, hubrelay_in, Serve};

const A_EMAIL: &str = "erase.me@example.com";
const A_PHONE: &str = "+1 555 0199 321";
const A_PHONE_DIGITS: &str = "5550199321";
const B_EMAIL: &str = "keep.me@example.com";

fn lead(email: &str, phone: &str, n: u32) -> Value {
    json!({"email": email, "first_name": "Pat", "last_name": format!("Lead{n}"), "phone": phone,
           "vehicle_of_interest": "2026 Model X", "lead_id": format!("{email}-{n}")})
}

/// Every file under `dir` (the sandbox's database, which stands for HubSpot, left out) that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("sandbox") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes())) {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn erase(serve: &Serve, token: &str, body: Value) -> (u16, Value) {
    let resp = serve
        .http
        .post(format!("{}/v1/privacy/erasure", serve.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_no_trace_and_their_next_lead_is_delivered() {
    let serve = Serve::start(&[("RUST_LOG", "error"), ("HUBRELAY_RETRY_SCHEDULE", "1h")]);
    let dir = serve.data_dir.path();
    let operator = std::fs::read_to_string(dir.join("console-token")).unwrap().trim().to_string();

    // A's delivered lead, and B's.
    for (email, phone) in [(A_EMAIL, A_PHONE), (B_EMAIL, "+1 555 0100 100")] {
        let (status, _, body) = serve.post_lead(&lead(email, phone, 1), headers(&[])).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    }
    let a_contact = serve.contact(A_EMAIL).await.unwrap()["id"].as_str().unwrap().to_string();
    // A's lead HubSpot refuses (a property the portal lacks): a dead letter.
    let mut refused = lead(A_EMAIL, A_PHONE, 2);
    refused["properties"] = json!({"no_such_property": "x"});
    let (status, _, body) = serve.post_lead(&refused, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    // HubSpot down: A's next lead and a status update wait on the queue, and so does an imported row.
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let (status, _, body) = serve.post_lead(&lead(A_EMAIL, A_PHONE, 3), headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    let (status, body) =
        serve.post_status(&json!({"email": A_EMAIL, "status": "Working", "changed_at": "2026-12-01T12:00:00Z"})).await;
    assert_eq!(status, 202, "{body}");
    // One that names only A's lead id (linked to A's contact).
    let (status, body) = serve
        .post_status(
            &json!({"lead_id": format!("{A_EMAIL}-1"), "status": "Sold", "changed_at": "2026-12-01T13:00:00Z"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let file = dir.join("backfill.csv");
    std::fs::write(&file, format!("email,first_name,phone\n{A_EMAIL},Imported,{A_PHONE}\n")).unwrap();
    let (ok, out) = hubrelay_in(dir, &["import", file.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{out}");
    std::fs::remove_file(&file).unwrap();
    assert!(!files_holding(dir, A_EMAIL).is_empty(), "A is in the store before the erasure");

    // Not with a sender's token; an unknown field is refused by name.
    let (status, body) = erase(&serve, crate::harness::TOKEN, json!({"email": A_EMAIL})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")), "{body}");
    let (status, body) = erase(&serve, &operator, json!({"email": A_EMAIL, "phone": A_PHONE})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("phone"), "{body}");

    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let (status, body) = erase(&serve, &operator, json!({"email": A_EMAIL, "hubspot_gdpr_delete": true})).await;
    assert_eq!(status, 200, "{body}");
    let receipt = &body["receipt"];
    assert_eq!(receipt["hubspot"]["outcome"], "deleted", "{body}");
    let counts = &receipt["counts"];
    assert!(counts["queued_messages"].as_u64().unwrap() >= 4, "lead, two status updates, imported row: {body}");
    assert_eq!(counts["dead_letters"], 1, "{body}");
    assert!(counts["event_records"].as_u64().unwrap() >= 5, "{body}");
    assert!(!body.to_string().contains("erase.me"), "the receipt names no one: {body}");

    // No trace: listings, the DLQ, the console's search, the raw bytes of every file.
    let (ok, out) = hubrelay_in(dir, &["events", "list", "--json"]);
    assert!(ok && !out.contains("e***@e***.com") && out.contains("k***@e***.com"), "{out}");
    let (ok, out) = hubrelay_in(dir, &["dlq", "list", "--json"]);
    assert!(ok && !out.contains("Lead2"), "{out}");
    for needle in [A_EMAIL, A_PHONE, A_PHONE_DIGITS, "Imported"] {
        assert_eq!(files_holding(dir, needle), Vec::<String>::new(), "{needle} is still in the data dir");
    }
    assert!(serve.contact(A_EMAIL).await.is_none(), "HubSpot deleted the contact");
    assert!(serve.contact(B_EMAIL).await.is_some(), "B is untouched in HubSpot");
    let (ok, out) = hubrelay_in(dir, &["events", "list", "--email", B_EMAIL, "--json"]);
    assert!(ok && out.contains("delivered"), "B's records are intact: {out}");
    // Nothing of A comes back when the worker runs again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(serve.contact(A_EMAIL).await.is_none());

    // A comes back as a new lead: delivered as any other, the same lead id included.
    let (status, _, body) = serve.post_lead(&lead(A_EMAIL, A_PHONE, 1), headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert!(serve.contact(A_EMAIL).await.is_some());

    // HubSpot GDPR-deletes B in the portal, then tells the app: B's records are erased by contact id.
    let b_contact = serve.contact(B_EMAIL).await.unwrap()["id"].as_str().unwrap().to_string();
    let deleted = serve
        .http
        .post(format!("{}/crm/v3/objects/contacts/gdpr-delete", serve.sandbox_url))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .json(&json!({"objectId": b_contact}))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let events = json!([{"eventId": 7, "subscriptionId": 9, "portalId": 62515, "occurredAt": 1_765_000_000_000_i64,
        "attemptNumber": 0, "subscriptionType": "contact.privacyDeletion", "objectId": b_contact.parse::<u64>().unwrap()}]);
    let (status, _, body) =
        serve.post_to("/v1/referrals/hubspot", "application/json", events.to_string().into_bytes(), headers(&[])).await;
    assert_eq!((status, body["actions"][0]["action"].as_str()), (202, Some("erase_contact")), "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out) = hubrelay_in(dir, &["events", "list", "--email", B_EMAIL, "--json"]);
        if ok && !out.contains("delivered") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B was never erased: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out) = hubrelay_in(dir, &["privacy", "receipts"]);
    assert!(ok && out.contains("hubspot_privacy_deletion") && out.contains("\"api\""), "{out}");
    assert!(!out.contains("@example.com") && !out.contains(&a_contact) && !out.contains(&b_contact), "{out}");
}
