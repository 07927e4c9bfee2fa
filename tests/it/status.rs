//! Status updates through `hubrelay serve` onto sandbox contacts: HubSpot formats, order safety, the
//! Aimbase shape, unknown contacts parked, outages retried.

use std::time::Duration;

use hubrelay_core::store::{EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};

use crate::harness::{headers, Serve};

/// The sandbox's counter key for contact updates by id (the route pattern).
const PATCH_CONTACT: &str = "PATCH /crm/objects/{version}/contacts/{id}";

/// An Aimbase lead (the profile needs lead id and date); returns its contact id.
pub async fn aimbase_lead(serve: &Serve, lead_id: &str, email: &str) -> String {
    let lead = json!({"lead_id": lead_id, "email": email, "first_name": "Jane", "lead_date": "2026-11-20 -06:00",
        "product": {"year": "2026", "name": "Model X", "brand": "Acme"}, "dealer": {"name": "Lakeside Motors"}});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    body["contact_id"].as_str().unwrap().to_string()
}

async fn props(serve: &Serve, email: &str) -> Value {
    serve.contact(email).await.expect("contact")["properties"].clone()
}

const STATUS_PROPS: [&str; 5] = [
    "aimbase_lead_status",
    "aimbase_lead_created_date",
    "dealer_assignment_aimbase",
    "aimbase_rollick_score",
    "aimbase_status_changed_at",
];

#[tokio::test]
async fn each_value_lands_in_hubspot_formats_and_older_updates_are_ignored() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let contact_id = aimbase_lead(&serve, "aimbase_rollick-1", "buyer@example.com").await;

    // Found by the lead id lead-captured linked; every value in HubSpot's format.
    let (status, body) = serve
        .post_status(
            &json!({"lead_id": "aimbase_rollick-1", "status": "working", "lead_created_date": "2026-11-20 -06:00",
            "dealer": {"name": "Lakeside Marine"}, "rollick_score": "87.50", "changed_at": "2026-11-21T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["contact_id"], contact_id.as_str());
    assert_eq!(body["applied"], json!(["status", "created_date", "dealer", "score"]));
    let p = props(&serve, "buyer@example.com").await;
    assert_eq!(p["aimbase_lead_status"], "Working");
    // The sender's calendar day (the 20th at -06:00), sent as midnight UTC: HubSpot shows the date.
    assert_eq!(p["aimbase_lead_created_date"], "2026-11-20");
    assert_eq!(p["dealer_assignment_aimbase"], "Lakeside Marine");
    assert_eq!(p["aimbase_rollick_score"], "87.5");
    assert_eq!(p["aimbase_status_changed_at"], "2026-11-21T10:00:00.000Z");

    // A newer status by contact id.
    let (_, body) = serve
        .post_status(&json!({"contact_id": contact_id, "status": "Sold", "changed_at": "2026-11-21T12:00:00Z"}))
        .await;
    assert_eq!(body["status"], "delivered", "{body}");
    // An older one arriving late (by email): stale, nothing written.
    let patches = serve.sandbox_calls(PATCH_CONTACT).await;
    assert!(patches > 0, "the delivered updates were PATCHes");
    let (status, body) = serve
        .post_status(&json!({"email": "buyer@example.com", "status": "Lost", "changed_at": "2026-11-21T11:00:00Z"}))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("stale")), "{body}");
    assert_eq!(body["skipped"], json!(["status"]));
    // The same status at the same time again, in another shape: a duplicate, nothing written.
    let (_, body) = serve
        .post_status(&json!({"lead_id": "aimbase_rollick-1", "status": "SOLD", "changed_at": "2026-11-21T12:00:00Z"}))
        .await;
    assert_eq!(body["status"], "duplicate", "{body}");
    assert_eq!(serve.sandbox_calls(PATCH_CONTACT).await, patches);
    // A reassignment older than the status but newer than the last dealer change still applies.
    let (_, body) = serve
        .post_status(&json!({"contact_id": contact_id, "dealer_name": "Bayview Boats", "status": "Lost",
            "changed_at": "2026-11-21T11:30:00Z"}))
        .await;
    assert_eq!(body["status"], "delivered", "{body}");
    assert_eq!((body["applied"].clone(), body["skipped"].clone()), (json!(["dealer"]), json!(["status"])));
    // A score update.
    let (_, body) =
        serve.post_status(&json!({"contact_id": contact_id, "score": 91, "changed_at": "2026-11-22T08:00:00Z"})).await;
    assert_eq!(body["applied"], json!(["score"]), "{body}");
    let p = props(&serve, "buyer@example.com").await;
    assert_eq!(p["aimbase_lead_status"], "Sold");
    assert_eq!(p["dealer_assignment_aimbase"], "Bayview Boats");
    assert_eq!(p["aimbase_rollick_score"], "91");
    assert_eq!(p["aimbase_status_changed_at"], "2026-11-21T12:00:00.000Z");
}

#[tokio::test]
async fn the_aimbase_shape_and_the_plain_shape_write_the_same() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    aimbase_lead(&serve, "src-1", "plain@example.com").await;
    aimbase_lead(&serve, "src-2", "aimbase@example.com").await;
    let updates = [
        ("Status", "Assigned", json!({"status": "Assigned"})),
        ("Dealer Reassignment", "Harbor Yachts", json!({"dealer_name": "Harbor Yachts"})),
        ("Rollick Score", "42", json!({"rollick_score": 42})),
        ("Lead Created", "2026-11-19 +02:00", json!({"lead_created_date": "2026-11-19 +02:00"})),
    ];
    for (i, (entry_type, detail, plain)) in updates.into_iter().enumerate() {
        let at = format!("2026-11-21T0{i}:00:00-05:00");
        let mut plain = plain;
        plain["lead_id"] = "src-1".into();
        plain["changed_at"] = at.clone().into();
        plain["author"] = "Sam".into();
        let (s1, b1) = serve.post_status(&plain).await;
        let aimbase = json!({"ProspectActivity": {"EntryDate": at, "SourceProspectId": "src-2", "PCHProspectId": "9",
            "EntryType": entry_type, "EntryDetail": detail, "DealershipUser": "Sam"}});
        let (s2, b2) = serve.post_status(&aimbase).await;
        assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
        assert_eq!(b1["applied"], b2["applied"]);
    }
    let (a, b) = (props(&serve, "plain@example.com").await, props(&serve, "aimbase@example.com").await);
    for name in STATUS_PROPS {
        assert!(!a[name].is_null(), "{name} missing");
        assert_eq!(a[name], b[name], "{name}");
    }
}

#[tokio::test]
async fn unknown_contacts_are_parked_with_the_reason() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let store = SqliteStore::open(&serve.db_path()).unwrap();
    for (update, needle) in [
        (json!({"lead_id": "never-delivered", "status": "Viewed"}), "no contact is linked to lead id never-delivered"),
        (json!({"contact_id": "987654", "status": "Viewed"}), "HubSpot has no contact 987654"),
        (json!({"email": "ghost@example.com", "status": "Viewed"}), "no HubSpot contact has the email g***@e***.com"),
    ] {
        let (status, body) = serve.post_status(&update).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "parked");
        assert_eq!(body["reason"]["code"], "contact_not_found");
        assert!(body["reason"]["message"].as_str().unwrap().contains(needle), "{body}");
        let event = store.get_event(body["event_id"].as_str().unwrap()).await.unwrap().expect("event");
        assert_eq!(event.status, EventStatus::DeadLettered);
    }
    assert_eq!(store.dead_letters().unwrap().len(), 3);
}

#[tokio::test]
async fn malformed_status_bodies_get_4xx_codes() {
    let serve = Serve::start(&[]);
    let cases: [(&[u8], &str, u16, &str); 7] = [
        (b"{", "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "empty_body"),
        (br#"{"email":"a@b.com","status":"Working","extra":1}"#, "application/json", 400, "unknown_field"),
        (br#"{"status":"Working"}"#, "application/json", 422, "missing_contact_reference"),
        (br#"{"email":"a@b.com","status":"Shipped"}"#, "application/json", 422, "invalid_value"),
        (br#"{"email":"a@b.com"}"#, "application/json", 422, "empty_update"),
        (b"status=Working", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ];
    for (body, ct, code, error) in cases {
        let (status, _, v) = serve.post_to("/v1/leads/status", ct, body.to_vec(), headers(&[])).await;
        assert_eq!((status, v["error"]["code"].as_str()), (code, Some(error)), "{}", String::from_utf8_lossy(body));
    }
    let (status, _, v) =
        serve.post_to("/v1/leads/status", "application/json", b"{}".to_vec(), headers(&[("x-no-auth", "1")])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("missing_credentials")), "{v}");
}

#[tokio::test]
async fn a_status_update_during_an_outage_is_queued_and_delivered_by_the_worker() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let contact_id = aimbase_lead(&serve, "out-1", "outage@example.com").await;
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let (status, body) = serve.post_status(&json!({"contact_id": contact_id, "status": "Viewed"})).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let store = SqliteStore::open(&serve.db_path()).unwrap();
    let event_id = body["event_id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = store.get_event(event_id).await.unwrap().unwrap();
        if event.status == EventStatus::Delivered {
            assert_eq!(event.attempts.len(), 2);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not delivered: {event:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(props(&serve, "outage@example.com").await["aimbase_lead_status"], "Viewed");
}
