//! [`UpdateDelivery`] against the in-process sandbox and an in-memory SQLite store: retries never
//! duplicate an engagement, a contact held by another writer is retried, the worker settles queued
//! updates.

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{ContactUpsert, FunctionName};
use hubrelay_core::hubspot::{EngagementKind, HubSpot};
use hubrelay_core::mapping::Mapping;
use hubrelay_core::store::{Lease, UpdateLedger};
use hubrelay_core::updates::*;
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxHandle, SandboxOptions};

const TOKEN: &str = "deliver-test-token";

struct Fixture {
    _sandbox: SandboxHandle,
    client: Arc<HubSpotClient>,
    store: Arc<SqliteStore>,
    delivery: UpdateDelivery,
    contact_id: String,
}

async fn fixture() -> Fixture {
    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = Arc::new(HubSpotClient::new(&sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap());
    let mapping = Mapping::load("aimbase").unwrap();
    hubrelay_core::properties::sync(client.as_ref(), &mapping.all_property_definitions()).await.unwrap();
    let upsert = ContactUpsert { email: "d@example.com".into(), properties: Default::default() };
    let contact_id = client.upsert_contact(&upsert).await.unwrap().id;
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let delivery = UpdateDelivery::new(client.clone(), store.clone(), store.clone(), mapping);
    Fixture { _sandbox: sandbox, client, store, delivery, contact_id }
}

fn note(contact_id: &str) -> Activity {
    parse_activity(
        serde_json::json!({"contact_id": contact_id, "type": "note", "body": "brochure sent",
            "occurred_at": "2026-11-21T10:00:00Z"})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_retry_finds_the_engagement_an_earlier_attempt_created() {
    let f = fixture().await;
    let received = datetime!(2026-11-21 10:00:05 UTC);
    let first = f.delivery.deliver_activity(&note(&f.contact_id), "evt_1", received, false).await.unwrap();
    // The first attempt's answer was lost (a timeout after HubSpot wrote it): the retry must not create
    // the same note again.
    let retry = f.delivery.deliver_activity(&note(&f.contact_id), "evt_1", received, true).await.unwrap();
    assert_eq!(retry.engagement_id, first.engagement_id);
    assert_eq!(f.client.contact_engagements(&f.contact_id, EngagementKind::Note).await.unwrap().len(), 1);
    // A different activity on a retry is still created.
    let mut other = note(&f.contact_id);
    other.body = Some("test drive booked".into());
    let created = f.delivery.deliver_activity(&other, "evt_2", received, true).await.unwrap();
    assert_ne!(created.engagement_id, first.engagement_id);
    assert_eq!(f.client.contact_engagements(&f.contact_id, EngagementKind::Note).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_contact_held_by_another_writer_is_a_retryable_contact_busy() {
    let f = fixture().await;
    let now = time::OffsetDateTime::now_utc();
    assert!(matches!(
        f.store.lease(&f.contact_id, "someone-else", now, Duration::from_secs(30)).await,
        Ok(Lease::Granted(_))
    ));
    let update = StatusUpdate {
        contact: ContactRef { contact_id: Some(f.contact_id.clone()), ..ContactRef::default() },
        status: Some(LeadStatus::Viewed),
        ..StatusUpdate::default()
    };
    let err = f.delivery.deliver_status(&update, "evt_3", now).await.unwrap_err();
    assert_eq!(err.code, "contact_busy");
    assert_eq!(err.outcome(), hubrelay_core::domain::AttemptOutcome::Retryable);
    f.store.release(&f.contact_id, "someone-else").await.unwrap();
    let done = f.delivery.deliver_status(&update, "evt_3", now).await.unwrap();
    assert_eq!((done.outcome, done.applied.clone()), (UpdateOutcome::Delivered, vec!["status"]));
}

#[tokio::test]
async fn queued_events_are_read_back_and_unreadable_ones_are_refused() {
    let f = fixture().await;
    let update = serde_json::json!({"contact_id": f.contact_id, "status": "Sold"});
    let now = time::OffsetDateTime::now_utc();
    let r = f.delivery.deliver_event(FunctionName::StatusUpdate, &update, "evt_4", now, true).await.unwrap();
    assert_eq!(r.outcome, UpdateOutcome::Delivered);
    let err = f.delivery.deliver_event(FunctionName::Activity, &update, "evt_5", now, true).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.outcome()),
        ("unreadable_event", hubrelay_core::domain::AttemptOutcome::Rejected)
    );
}

/// A status update that maps Lost → `lead` on a contact at `opportunity`, with the profile allowing the stage
/// to move back or not; the stage the contact ends with.
async fn stage_after_lost(backwards: bool) -> String {
    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = Arc::new(HubSpotClient::new(&sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap());
    let toml = format!(
        "name = \"stages\"\n[status]\nstatus_property = \"\"\ncreated_date_property = \"\"\ndealer_property = \"\"\n\
         score_property = \"\"\nlifecycle_backwards = {backwards}\n[status.lifecyclestage]\nWorking = \"opportunity\"\n\
         Lost = \"lead\"\n"
    );
    let mapping = Mapping::from_toml(&toml, "stages.toml").unwrap();
    let upsert = ContactUpsert { email: "stage@example.com".into(), properties: Default::default() };
    let contact_id = client.upsert_contact(&upsert).await.unwrap().id;
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let delivery = UpdateDelivery::new(client.clone(), store.clone(), store, mapping);
    let update = |status: &str, at: &str| {
        let body = serde_json::json!({"contact_id": contact_id, "status": status, "changed_at": at});
        parse_status_update(body.to_string().as_bytes()).unwrap()
    };
    let received = datetime!(2026-11-21 12:00 UTC);
    delivery.deliver_status(&update("working", "2026-11-21T10:00:00Z"), "evt_w", received).await.unwrap();
    let lost = delivery.deliver_status(&update("lost", "2026-11-21T11:00:00Z"), "evt_l", received).await.unwrap();
    assert_eq!(lost.outcome, UpdateOutcome::Delivered);
    let contact = client.read_object("contacts", &contact_id, &["lifecyclestage"], &[]).await.unwrap().unwrap();
    contact.properties.get("lifecyclestage").cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_lifecycle_stage_moves_back_only_when_the_profile_says_so() {
    // HubSpot (and the sandbox) keep the later stage on a plain write.
    assert_eq!(stage_after_lost(false).await, "opportunity");
    // Allowed: cleared, then set, in two requests.
    assert_eq!(stage_after_lost(true).await, "lead");
}
