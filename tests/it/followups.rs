//! A profile's follow-ups against a running `serve`: a deal per lead (pipeline, stage, name, amount, owner,
//! associated with the contact) and a history note per lead on the contact. A replayed lead adds nothing; two
//! leads for one email make one contact, two deals and two notes; writes that land but are answered 504 (the
//! lead's, the deal's, the note's) are retried without a second deal or note; a lead older than the contact's
//! newest writes nothing over it but still gets its deal and note.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{headers, Serve};

const PROFILE: &str = include_str!("../../crates/core/src/mapping/profiles/chat-widget.toml");

fn profile() -> String {
    format!(
        "{}\n[deal]\npipeline = \"default\"\nstage = \"appointmentscheduled\"\n\
         name = \"{{first_name}} {{last_name}} – {{vehicle_of_interest}}\"\namount_from = \"product.msrp\"\nowner = \"77\"\n\
         \n[history]\nnote = true\n",
        PROFILE.replace("name = \"chat-widget\"", "name = \"dealer-deals\"")
    )
}

fn lead(n: u32) -> Value {
    json!({"email": "deal.buyer@example.com", "first_name": "Dana", "last_name": format!("Lead{n}"),
           "vehicle_of_interest": "2026 Model X", "product": {"msrp": format!("${n}5,999")}})
}

/// The contact's deals and notes once they number `deals` and `notes` (waiting up to 30 s for the worker).
async fn settled(serve: &Serve, contact: &str, deals: usize, notes: usize) -> (Vec<Value>, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = serve
            .engagements(
                contact,
                "deals",
                &["dealname", "dealstage", "pipeline", "amount", "hubspot_owner_id", "description"],
            )
            .await;
        let n = serve.engagements(contact, "notes", &["hs_note_body", "hs_timestamp"]).await;
        if (d.len(), n.len()) == (deals, notes) || tokio::time::Instant::now() > deadline {
            return (d.into_iter().map(|x| x.0).collect(), n.into_iter().map(|x| x.0).collect());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lead_gets_one_deal_and_one_note_even_when_answers_are_lost() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("dealer-deals.toml");
    std::fs::write(&path, profile()).unwrap();
    let serve = Serve::start(&[
        ("HUBRELAY_MAPPING", path.to_str().unwrap()),
        ("HUBRELAY_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms"),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("RUST_LOG", "error"),
    ]);

    // The test's own reads of the sandbox must not eat into serve's rate window (they share the token).
    serve.set_faults(json!({"requests_per_10s": 1_000_000})).await;
    let first = headers(&[("idempotency-key", "deal-lead-1")]);
    let (status, _, body) = serve.post_lead(&lead(1), first.clone()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    let contact = body["contact_id"].as_str().unwrap().to_string();
    let (deals, notes) = settled(&serve, &contact, 1, 1).await;
    assert_eq!((deals.len(), notes.len()), (1, 1), "{deals:?} {notes:?}");
    let deal = &deals[0]["properties"];
    assert_eq!(deal["dealname"], "Dana Lead1 – 2026 Model X", "{deal}");
    assert_eq!(
        (deal["pipeline"].as_str(), deal["dealstage"].as_str()),
        (Some("default"), Some("appointmentscheduled"))
    );
    assert_eq!((deal["amount"].as_str(), deal["hubspot_owner_id"].as_str()), (Some("15999"), Some("77")), "{deal}");
    let note = notes[0]["properties"]["hs_note_body"].as_str().unwrap();
    assert!(note.contains("last_name: Lead1") && note.contains("vehicle_of_interest: 2026 Model X"), "{note}");

    // The same request again: replayed, nothing new.
    let (status, replayed, _) = serve.post_lead(&lead(1), first).await;
    assert_eq!((status, replayed.get("idempotent-replayed").is_some()), (200, true));
    // Another lead for the same contact: a second deal and a second note on the one contact.
    let (status, _, body) = serve.post_lead(&lead(2), headers(&[])).await;
    assert_eq!((status, body["contact_id"].as_str()), (200, Some(contact.as_str())), "{body}");
    let (deals, notes) = settled(&serve, &contact, 2, 2).await;
    assert_eq!((deals.len(), notes.len()), (2, 2));

    // Every write lands but is answered 504: the lead is queued, then settled by its write id; its deal and note
    // are created once, found by their tag when retried.
    serve.set_faults(json!({"apply_then_fail_rate": 1.0})).await;
    let (status, _, body) = serve.post_lead(&lead(3), headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    let (deals, notes) = settled(&serve, &contact, 3, 3).await;
    assert_eq!((deals.len(), notes.len()), (3, 3));
    // Retried for a while longer: still three of each.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (deals, notes) = settled(&serve, &contact, 3, 3).await;
    assert_eq!((deals.len(), notes.len()), (3, 3), "no second deal or note for a lost answer");
    serve.set_faults(json!({"apply_then_fail_rate": 0.0})).await;
    let names: Vec<&str> = deals.iter().filter_map(|d| d["properties"]["dealname"].as_str()).collect();
    assert!(names.contains(&"Dana Lead3 – 2026 Model X"), "{names:?}");
    assert_eq!(serve.all_contacts().await.len(), 1, "one contact");

    // Each follow-up is an event of its own, delivered.
    let store = hubrelay_local::sqlite::SqliteStore::open(&serve.db_path()).unwrap();
    let filter = hubrelay_core::store::EventFilter {
        function: Some(hubrelay_core::domain::FunctionName::LeadFollowUp),
        ..Default::default()
    };
    let events = hubrelay_core::store::EventLog::list_events(&store, &filter).await.unwrap();
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events.iter().all(|e| e.status == hubrelay_core::store::EventStatus::Delivered), "{events:?}");

    // A lead older than the contact's newest comes due (a retry that lost the race to a newer lead, an old row
    // imported late): its values are not written over the newer ones, but it arrived, so it gets its deal and note.
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let old = hubrelay_testkit::worker::retry_message(
        &json!({"email": "deal.buyer@example.com", "first_name": "Dana", "last_name": "Lead0",
                "vehicle_of_interest": "2026 Model X"}),
        yesterday,
        1,
        yesterday,
    );
    hubrelay_core::store::RetryQueue::enqueue(&store, &old).await.unwrap();
    let (deals, notes) = settled(&serve, &contact, 4, 4).await;
    assert_eq!((deals.len(), notes.len()), (4, 4), "{deals:?}");
    let names: Vec<&str> = deals.iter().filter_map(|d| d["properties"]["dealname"].as_str()).collect();
    assert!(names.contains(&"Dana Lead0 – 2026 Model X"), "{names:?}");
    assert!(notes.iter().any(|n| n["properties"]["hs_note_body"].as_str().unwrap().contains("last_name: Lead0")));
    let record = hubrelay_core::store::EventLog::get_event(&store, &old.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, hubrelay_core::store::EventStatus::Superseded);
    let now = serve.contact("deal.buyer@example.com").await.unwrap();
    assert_eq!(now["properties"]["lastname"], "Lead3", "the newer lead's values stay: {now}");
}
