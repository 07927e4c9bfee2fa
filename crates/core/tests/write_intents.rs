//! A write whose answer never came is not written twice: the worker records a write id on the messages before
//! the call, sends it in the marker property, and reads the marker back before sending such a message again.
//! Against the real sandbox (its write journal counts each write and its marker) and a SQLite store on disk.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{FunctionName, RetryMessage, RetrySchedule};
use hubrelay_core::mapping::Mapping;
use hubrelay_core::store::{EventLog, EventStatus, RetryQueue};
use hubrelay_core::worker::{intents, Jitter, RetryWorker, WriteIntents, WRITE_MARKER_PROPERTY};
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::{LocalWorker, TickReport};
use hubrelay_sandbox::hubspot::{self as sandbox, Faults, SandboxHandle, SandboxOptions};

const TOKEN: &str = "intents-test-token";

struct Fixture {
    sandbox: SandboxHandle,
    store: SqliteStore,
    local: LocalWorker,
    _dir: tempfile::TempDir,
}

/// A worker with write intents over a store on disk; `with_marker`: whether the portal has the marker property.
async fn fixture(with_marker: bool) -> Fixture {
    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = HubSpotClient::new(&sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let mapping = Mapping::load("chat-widget").unwrap();
    let mut wanted = mapping.all_property_definitions();
    if with_marker {
        wanted.push(intents::marker_definition());
    }
    hubrelay_core::properties::sync(&client, &wanted).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
    let shared = Arc::new(store.clone());
    let worker = RetryWorker::new(
        Arc::new(client),
        mapping,
        RetrySchedule::default(),
        Jitter::NONE,
        shared.clone(),
        shared.clone(),
    )
    .with_write_intents(shared);
    let local = LocalWorker::new(store.clone(), worker);
    Fixture { sandbox, store, local, _dir: dir }
}

impl Fixture {
    async fn journal(&self) -> Value {
        let url = format!("{}/__sandbox/writes", self.sandbox.url());
        reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
    }

    fn calls(&self, endpoint: &str) -> u64 {
        self.sandbox.sandbox.stats().by_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    async fn marker(&self, email: &str) -> Option<String> {
        let url = format!(
            "{}/crm/v3/objects/contacts/{email}?idProperty=email&properties={WRITE_MARKER_PROPERTY}",
            self.sandbox.url()
        );
        let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
        let body: Value = resp.json().await.unwrap();
        body["properties"][WRITE_MARKER_PROPERTY].as_str().map(String::from)
    }

    async fn status(&self, event_id: &str) -> EventStatus {
        self.store.get_event(event_id).await.unwrap().expect("event record").status
    }
}

const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";
const READ: &str = "POST /crm/objects/{version}/contacts/batch/read";

fn message(email: &str, vehicle: &str, received_at: OffsetDateTime) -> RetryMessage {
    let lead = json!({"email": email, "first_name": "Jane", "vehicle_of_interest": vehicle});
    let parsed = hubrelay_core::lead::parse_json(lead.to_string().as_bytes()).unwrap();
    let mut m = RetryMessage::new(
        FunctionName::LeadCaptured,
        &hubrelay_core::domain::new_event_id(),
        &format!("lead-captured:test:{}", uuid::Uuid::new_v4()),
        serde_json::to_value(&parsed.lead).unwrap(),
        received_at,
    );
    m.not_before = received_at;
    m
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

#[tokio::test]
async fn a_write_stored_but_answered_504_is_settled_by_its_marker_not_sent_again() {
    let f = fixture(true).await;
    let now = OffsetDateTime::now_utc();
    let m = message("uncertain@example.com", "Model X", now);
    f.store.enqueue(&m).await.unwrap();

    f.sandbox.sandbox.set_faults(Faults { apply_then_fail_rate: 1.0, ..Faults::default() });
    let report = f.local.tick(now).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, retried: 1, ..TickReport::default() });
    let queued = f.store.queued().unwrap();
    let kept = queued[0].write_intent.clone().expect("a 504 may have landed: the write id is kept");
    assert_eq!(f.marker("uncertain@example.com").await.as_deref(), Some(kept.as_str()), "it did land");

    f.sandbox.sandbox.set_faults(Faults::default());
    let report = f.local.tick(queued[0].not_before).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, delivered: 1, ..TickReport::default() });
    assert_eq!((f.calls(UPSERT), f.calls(READ)), (1, 1), "one write, one read of the marker");
    let journal = f.journal().await;
    assert_eq!((journal["writes"].as_u64(), journal["repeated_markers"].as_u64()), (Some(1), Some(0)), "{journal}");
    assert_eq!(f.status(&m.event_id).await, EventStatus::Delivered);
    let record = f.store.get_event(&m.event_id).await.unwrap().unwrap();
    assert!(record.contact_id.is_some(), "the contact id comes from the read");

    // A write of other events carries another id: a later write never settles on the earlier marker.
    let next = message("uncertain@example.com", "Model Y", queued[0].not_before);
    f.store.enqueue(&next).await.unwrap();
    assert_eq!(f.local.tick(queued[0].not_before).await.unwrap().delivered, 1);
    let marker = f.marker("uncertain@example.com").await.unwrap();
    assert!(marker.starts_with("wr_") && marker != kept, "{marker} after {kept}");
}

#[tokio::test]
async fn an_intent_recorded_before_a_crash_is_reconciled_and_a_write_that_never_landed_is_sent() {
    let f = fixture(true).await;
    let now = OffsetDateTime::now_utc();
    let landed = message("landed@example.com", "A", now - secs(60));
    let lost = message("lost@example.com", "B", now - secs(60));
    let other = message("other-writer@example.com", "C", now - secs(60));
    for m in [&landed, &lost, &other] {
        f.store.enqueue(m).await.unwrap();
    }
    // What a worker killed during its call leaves: the intents stored, one write landed, one never sent, and one
    // contact whose marker is a different write's.
    f.store
        .record_intents(&[
            (landed.event_id.clone(), landed.event_id.clone()),
            (lost.event_id.clone(), lost.event_id.clone()),
            (other.event_id.clone(), other.event_id.clone()),
        ])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let seed = json!({"inputs": [
        {"id": "landed@example.com", "idProperty": "email",
         "properties": {"vehicle_of_interest": "A", WRITE_MARKER_PROPERTY: landed.event_id}},
        {"id": "other-writer@example.com", "idProperty": "email",
         "properties": {"vehicle_of_interest": "old", WRITE_MARKER_PROPERTY: "evt_someone_else"}},
    ]});
    let url = format!("{}/crm/v3/objects/contacts/batch/upsert", f.sandbox.url());
    assert!(http.post(url).bearer_auth(TOKEN).json(&seed).send().await.unwrap().status().is_success());

    let report = f.local.tick(now).await.unwrap();
    assert_eq!(report, TickReport { fetched: 3, delivered: 3, ..TickReport::default() });
    assert_eq!(f.calls(READ), 1, "one read for every uncertain contact");
    assert_eq!(f.calls(UPSERT), 1, "one batch of the two writes that did not land");
    let journal = f.journal().await;
    assert_eq!((journal["writes"].as_u64(), journal["repeated_markers"].as_u64()), (Some(4), Some(0)), "{journal}");
    assert_eq!(f.marker("landed@example.com").await.as_deref(), Some(landed.event_id.as_str()), "not written again");
    for email in ["lost@example.com", "other-writer@example.com"] {
        assert!(f.marker(email).await.unwrap().starts_with("wr_"), "{email} written with a fresh write id");
    }
}

#[tokio::test]
async fn a_failed_read_of_the_marker_retries_without_writing() {
    let f = fixture(true).await;
    let now = OffsetDateTime::now_utc();
    let m = message("unreadable@example.com", "A", now);
    f.store.enqueue(&m).await.unwrap();
    f.store.record_intents(&[(m.event_id.clone(), m.event_id.clone())]).await.unwrap();
    f.sandbox.sandbox.set_faults(Faults { failure_rate: 1.0, ..Faults::default() });
    let report = f.local.tick(now).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, retried: 1, ..TickReport::default() });
    assert_eq!((f.calls(READ), f.calls(UPSERT)), (1, 0));
    let queued = f.store.queued().unwrap();
    assert_eq!(queued[0].write_intent.as_deref(), Some(m.event_id.as_str()), "still uncertain");
    assert_eq!(queued[0].attempts.len(), 1);
}

#[tokio::test]
async fn a_refused_write_drops_its_intent_and_a_portal_without_the_marker_still_gets_its_leads() {
    let f = fixture(false).await;
    let now = OffsetDateTime::now_utc();
    let m = message("no-marker@example.com", "A", now);
    f.store.enqueue(&m).await.unwrap();
    // HubSpot refuses the batch for the missing marker property: sent again without it, within the same pass.
    let report = f.local.tick(now).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, delivered: 1, ..TickReport::default() });
    assert_eq!(f.calls(UPSERT), 2);
    let journal = f.journal().await;
    assert_eq!((journal["writes"].as_u64(), journal["marked"].as_u64()), (Some(1), Some(0)), "{journal}");

    // A 429 is a write that did not happen: no intent is kept, so no read is spent on it.
    let g = fixture(true).await;
    let m = message("limited@example.com", "A", now);
    g.store.enqueue(&m).await.unwrap();
    g.sandbox.sandbox.set_faults(Faults { failure_rate: 1.0, failure_status: 429, ..Faults::default() });
    assert_eq!(g.local.tick(now).await.unwrap().retried, 1);
    assert_eq!(g.store.queued().unwrap()[0].write_intent, None);
}
