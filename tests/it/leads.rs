//! Leads through `hubrelay serve` into the sandbox: upsert by email, idempotency, queueing and parking.

use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};

use crate::harness::{headers, Serve, UPSERT};

fn chat_lead(email: &str, vehicle: &str) -> Value {
    json!({
        "email": email, "first_name": "Jane", "last_name": "Doe", "phone": "+1 555 0100",
        "vehicle_of_interest": vehicle, "budget_range": "40-50k", "priority": "high",
        "origin_channel": "chat_widget", "status": "new", "notes": "wants a test drive",
        "dealership": {"name": "Lakeside", "slug": "lakeside"},
    })
}

#[tokio::test]
async fn create_then_update_keeps_one_contact() {
    let serve = Serve::start(&[]);
    let (s1, _, first) = serve.post_lead(&chat_lead("jane@example.com", "2026 Model X"), headers(&[])).await;
    assert_eq!(s1, 200, "{first}");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["created"], true);
    let (s2, _, second) = serve.post_lead(&chat_lead("Jane@Example.com", "2026 Model Y"), headers(&[])).await;
    assert_eq!(s2, 200, "{second}");
    assert_eq!(second["created"], false);
    assert_eq!(second["contact_id"], first["contact_id"]);

    let contacts = serve.all_contacts().await;
    assert_eq!(contacts.len(), 1);
    let c = serve.contact("jane@example.com").await.expect("contact");
    let p = &c["properties"];
    assert_eq!(p["vehicle_of_interest"], "2026 Model Y");
    assert_eq!(p["lead_priority"], "high");
    assert_eq!(p["lifecyclestage"], "lead");
    assert_eq!(p["hs_lead_status"], "NEW");
    assert_eq!(p["dealership_slug"], "lakeside");
    assert_eq!(p["firstname"], "Jane");
    // One HubSpot call per lead, no search.
    assert_eq!(serve.sandbox_calls(UPSERT).await, 2);
    assert_eq!(serve.sandbox_calls("POST /crm/objects/{version}/contacts/search").await, 0);
}

#[tokio::test]
async fn fifty_concurrent_leads_over_five_emails_make_five_contacts() {
    let serve = Serve::start(&[]);
    let serve = std::sync::Arc::new(serve);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let serve = serve.clone();
        tasks.push(tokio::spawn(async move {
            let lead = chat_lead(&format!("buyer{}@example.com", i % 5), &format!("vehicle {i}"));
            serve.post_lead(&lead, headers(&[])).await
        }));
    }
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "delivered");
    }
    let contacts = serve.all_contacts().await;
    assert_eq!(contacts.len(), 5, "{contacts:?}");
}

#[tokio::test]
async fn replays_and_conflicts() {
    let serve = Serve::start(&[]);
    let lead = chat_lead("replay@example.com", "2026 Model X");
    let key = headers(&[("idempotency-key", "order-77")]);
    let (s1, h1, b1) = serve.post_lead(&lead, key.clone()).await;
    assert_eq!(s1, 200);
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, b2) = serve.post_lead(&lead, key.clone()).await;
    assert_eq!(s2, 200);
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(b1, b2, "a replay answers exactly what the first request got");
    assert_eq!(serve.sandbox_calls(UPSERT).await, 1, "a replay does not touch HubSpot");

    let (s3, _, b3) = serve.post_lead(&chat_lead("replay@example.com", "other"), key).await;
    assert_eq!(s3, 409);
    assert_eq!(b3["error"]["code"], "idempotency_conflict");

    // Without a header the source lead id is the key.
    let mut with_id = chat_lead("lead-id@example.com", "X");
    with_id["lead_id"] = json!("aimbase_rollick-1");
    serve.post_lead(&with_id, headers(&[])).await;
    let (s4, h4, _) = serve.post_lead(&with_id, headers(&[])).await;
    assert_eq!(s4, 200);
    assert_eq!(h4.get("idempotent-replayed").unwrap(), "true");

    // Concurrent duplicates: one HubSpot write.
    let before = serve.sandbox_calls(UPSERT).await;
    let serve = std::sync::Arc::new(serve);
    let lead = chat_lead("dup@example.com", "X");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let serve = serve.clone();
        let lead = lead.clone();
        tasks.push(tokio::spawn(async move { serve.post_lead(&lead, headers(&[("idempotency-key", "dup-1")])).await }));
    }
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(serve.sandbox_calls(UPSERT).await, before + 1);
}

#[tokio::test]
async fn aimbase_profile_maps_the_rollick_lead() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let lead = json!({"lead_id": "aimbase_rollick-12345", "email": "rollick@example.com", "first_name": "Jane",
        "last_name": "Doe", "phone": "+1 555 0100", "lead_date": "2026-11-20 -06:00", "type": "Quote",
        "source": "Website", "category": "Retail", "product": {"year": "2026", "name": "Model X", "brand": "Acme",
        "make": "Acme", "model": "X", "stock_number": "S123", "msrp": "45999", "display_price": "43999"},
        "comment": "Call after 5", "time_to_purchase": "0-3 months", "consent": {"sms": true, "email": false},
        "dealer": {"name": "Lakeside Motors", "id": "D-17"}, "favourite_colour": "red"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prospect_external_id"], body["contact_id"]);
    assert_eq!(body["hubspot_contact_id"], body["contact_id"]);
    // aimbase writes every Rollick field but these (no property in the Aimbase guide): reported, not dropped.
    assert_eq!(body["ignored"], json!(["dealer.id", "favourite_colour", "product.make", "product.model"]));
    let c = serve.contact("rollick@example.com").await.unwrap();
    let p = &c["properties"];
    assert_eq!(p["aimbase_identifier"], "aimbase_rollick-12345");
    // "2026-11-20 -06:00" is a calendar date: we send midnight UTC of it in ms (anything else is INVALID_DATE)
    // and HubSpot shows it back as the date.
    assert_eq!(p["aimbase_date"], "2026-11-20");
    assert_eq!(p["aimbase_smsconsent"], "true");
    assert_eq!(p["aimbase_emailconsent"], "false");
    assert_eq!(p["aimbase_dealername"], "Lakeside Motors");
    assert_eq!(p["aimbase_msrp"], "45999");

    // Required fields of the profile are the sender's to fix.
    let (status, _, body) = serve.post_lead(&json!({"email": "x@example.com", "lead_id": "a-2"}), headers(&[])).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "missing_required_field");
}

#[tokio::test]
async fn zapier_form_bodies() {
    let serve = Serve::start(&[]);
    let form = "email=zap%40example.com&first_name=Zed&last_name=Ap&vehicle_of_interest=2026+Model+X\
                &priority=Medium&dealership__name=Lakeside&dealership__slug=lakeside&properties__company=Acme+Co";
    let (status, _, body) =
        serve.post_raw("application/x-www-form-urlencoded", form.as_bytes().to_vec(), headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    let c = serve.contact("zap@example.com").await.unwrap();
    assert_eq!(c["properties"]["lead_priority"], "medium");
    assert_eq!(c["properties"]["dealership_name"], "Lakeside");
    assert_eq!(c["properties"]["company"], "Acme Co");
    assert_eq!(c["properties"]["vehicle_of_interest"], "2026 Model X");
}

#[tokio::test]
async fn hubspot_outage_queues_and_config_errors_park() {
    let serve = Serve::start(&[]);
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let (status, _, body) = serve.post_lead(&chat_lead("down@example.com", "X"), headers(&[])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["reason"]["code"], "hubspot_unavailable");
    let event_id = body["event_id"].as_str().unwrap().to_string();

    let store = SqliteStore::open(&serve.db_path()).unwrap();
    let queued = store.queued().unwrap();
    assert_eq!(queued.len(), 1);
    let m = &queued[0];
    assert_eq!(m.event_id, event_id);
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(m.attempts[0].status, Some(503));
    assert_eq!(m.event["email"], "down@example.com");
    assert!(m.not_before > m.received_at, "the next attempt waits for the schedule");

    // A replay of the queued event answers the same 202, not a second queue entry.
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let (status, _, again) = serve.post_lead(&chat_lead("down@example.com", "X"), headers(&[])).await;
    assert_eq!((status, &again["event_id"]), (202, &body["event_id"]));
    assert_eq!(store.queued().unwrap().len(), 1);

    // A property HubSpot does not know is a configuration problem: parked with the reason, 202.
    let mut lead = chat_lead("parked@example.com", "X");
    lead["properties"] = json!({"no_such_property": "x"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "parked");
    assert_eq!(body["reason"]["code"], "property_doesnt_exist");
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_letter_reason.as_ref().unwrap().code, "property_doesnt_exist");
    assert!(serve.contact("parked@example.com").await.is_none());
}

#[tokio::test]
async fn queued_events_survive_a_kill_of_serve() {
    let mut serve = Serve::start(&[]);
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 502})).await;
    let (status, _, body) = serve.post_lead(&chat_lead("durable@example.com", "X"), headers(&[])).await;
    assert_eq!(status, 202, "{body}");
    serve.kill(); // SIGKILL: no graceful shutdown
    let store = SqliteStore::open(&serve.db_path()).unwrap();
    let queued = store.queued().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].event_id, body["event_id"].as_str().unwrap());
}
