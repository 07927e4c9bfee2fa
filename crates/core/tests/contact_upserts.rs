//! Referral contact upserts (Extole share links, Advocate properties) go out in the worker's batches with the
//! leads: one input per email, merged with a lead for the same contact, and never versioned — a share link is
//! neither superseded by a newer lead nor supersedes one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{ContactUpsert, FunctionName, RetryMessage, RetrySchedule};
use hubrelay_core::mapping::Mapping;
use hubrelay_core::referral::actions::ReferralAction;
use hubrelay_core::store::ContactVersions;
use hubrelay_core::worker::{Disposition, Jitter, RetryWorker};
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxOptions};

const TOKEN: &str = "upserts-test-token";
const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

fn share_link(email: &str, code: &str, at: OffsetDateTime) -> RetryMessage {
    let upsert = ContactUpsert {
        email: email.into(),
        properties: [("share_code".to_string(), code.to_string())].into_iter().collect(),
    };
    let event = serde_json::to_value(ReferralAction::UpsertContact(upsert)).unwrap();
    let mut m = RetryMessage::new(FunctionName::ReferralEvent, &hubrelay_core::domain::new_event_id(), "k", event, at);
    m.not_before = at;
    m
}

fn lead(email: &str, vehicle: &str, at: OffsetDateTime) -> RetryMessage {
    let body = json!({"email": email, "first_name": "Ann", "vehicle_of_interest": vehicle});
    let parsed = hubrelay_core::lead::parse_json(body.to_string().as_bytes()).unwrap();
    let event = serde_json::to_value(&parsed.lead).unwrap();
    let mut m = RetryMessage::new(FunctionName::LeadCaptured, &hubrelay_core::domain::new_event_id(), "k", event, at);
    m.not_before = at;
    m
}

/// One property of a contact, as the sandbox holds it.
async fn property(url: &str, email: &str, name: &str) -> Option<String> {
    let url = format!("{url}/crm/v3/objects/contacts/{email}?idProperty=email&properties={name}");
    let body: serde_json::Value =
        reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    body["properties"][name].as_str().map(String::from)
}

#[tokio::test]
async fn share_links_ride_in_the_lead_batches_and_are_never_superseded() {
    let sb = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = HubSpotClient::new(&sb.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let mapping = Mapping::load("chat-widget").unwrap();
    let wanted = hubrelay_core::properties::required(&mapping, &Default::default());
    hubrelay_core::properties::sync(&client, &wanted).await.unwrap();
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let worker = RetryWorker::new(
        Arc::new(client),
        mapping,
        RetrySchedule::default(),
        Jitter::NONE,
        store.clone(),
        store.clone(),
    );
    let now = OffsetDateTime::now_utc();

    // 250 share links for 250 contacts, one of which also has a lead in the same pass: 3 calls, not 250.
    let mut messages: Vec<RetryMessage> =
        (0..250).map(|i| share_link(&format!("adv{i}@example.com"), &format!("C{i}"), now)).collect();
    messages.push(lead("adv7@example.com", "Model S", now));
    let outcomes = worker.process(messages, now).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o.disposition, Disposition::Delivered { .. })), "{outcomes:?}");
    assert_eq!(sb.sandbox.stats().by_endpoint.get(UPSERT).copied(), Some(3));
    assert_eq!(property(&sb.url(), "adv7@example.com", "share_code").await.as_deref(), Some("C7"));
    assert_eq!(property(&sb.url(), "adv7@example.com", "vehicle_of_interest").await.as_deref(), Some("Model S"));
    assert!(store.last_applied("adv7@example.com").await.unwrap().is_some(), "the lead's version");
    assert_eq!(store.last_applied("adv8@example.com").await.unwrap(), None, "a share link sets no version");

    // A share link older than the contact's newest lead is still written.
    let old = share_link("adv7@example.com", "C7-NEW", now - time::Duration::hours(1));
    let outcomes = worker.process(vec![old], now).await.unwrap();
    assert!(matches!(outcomes[0].disposition, Disposition::Delivered { .. }), "{outcomes:?}");
    assert_eq!(property(&sb.url(), "adv7@example.com", "share_code").await.as_deref(), Some("C7-NEW"));
}
