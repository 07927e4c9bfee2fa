//! The inline path's micro-batching against the sandbox: leads arriving together share one call, each
//! answered with its own contact; a lone lead goes at once; two leads for one contact land in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hubrelay_clients::HubSpotClient;
use hubrelay_core::batching::UpsertBatcher;
use hubrelay_core::domain::ContactUpsert;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::mapping::Mapping;
use hubrelay_core::missing_properties::MissingProperties;
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxOptions};

const TOKEN: &str = "batcher-test";
const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

fn upsert(email: &str, vehicle: &str) -> ContactUpsert {
    ContactUpsert {
        email: email.into(),
        properties: [
            ("email".to_string(), email.to_string()),
            ("vehicle_of_interest".to_string(), vehicle.to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

async fn setup() -> (sandbox::SandboxHandle, Arc<dyn HubSpot>) {
    let handle = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = HubSpotClient::new(&handle.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let mapping = Mapping::load("chat-widget").unwrap();
    hubrelay_core::properties::sync(&client, &mapping.all_property_definitions()).await.unwrap();
    (handle, Arc::new(client))
}

fn upsert_calls(handle: &sandbox::SandboxHandle) -> u64 {
    handle.sandbox.stats().by_endpoint.get(UPSERT).copied().unwrap_or(0)
}

#[tokio::test]
async fn leads_arriving_together_share_a_call_and_each_gets_its_own_contact() {
    let (handle, hubspot) = setup().await;
    let batcher = UpsertBatcher::spawn(hubspot, Duration::from_millis(200), MissingProperties::new());
    let started = Instant::now();
    let lone = batcher.upsert(upsert("lone@example.com", "X")).await.unwrap();
    assert!(lone.created);
    assert!(started.elapsed() < Duration::from_millis(150), "a lone lead is not held back: {:?}", started.elapsed());
    assert_eq!(upsert_calls(&handle), 1);

    let mut tasks = Vec::new();
    for i in 0..150 {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move { batcher.upsert(upsert(&format!("crowd{i}@example.com"), "Y")).await }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let contact = t.await.unwrap().unwrap();
        assert!(contact.created);
        ids.insert(contact.id);
    }
    assert_eq!(ids.len(), 150, "each lead answered with its own contact");
    let calls = upsert_calls(&handle) - 1;
    assert!((2..=3).contains(&calls), "150 leads at once in batches of at most 100: {calls} calls");
}

#[tokio::test]
async fn two_leads_for_one_contact_go_in_order_in_separate_calls() {
    let (handle, hubspot) = setup().await;
    let batcher = UpsertBatcher::spawn(hubspot.clone(), Duration::from_millis(50), MissingProperties::new());
    let (a, b) = tokio::join!(
        batcher.upsert(upsert("same@example.com", "older")),
        batcher.upsert(upsert("same@example.com", "newer"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(upsert_calls(&handle), 2, "HubSpot refuses one email twice in a batch: two calls");
    let contact = hubspot.read_object("contacts", &a.id, &["vehicle_of_interest"], &[]).await.unwrap().unwrap();
    assert_eq!(contact.properties["vehicle_of_interest"], "newer");
}

#[tokio::test]
async fn an_outage_answers_every_lead_of_the_batch_with_the_error() {
    let (handle, hubspot) = setup().await;
    handle.sandbox.set_faults(hubrelay_sandbox::hubspot::Faults {
        failure_rate: 1.0,
        failure_status: 503,
        ..Default::default()
    });
    let batcher = UpsertBatcher::spawn(hubspot, Duration::from_millis(100), MissingProperties::new());
    let answers = futures_join(&batcher, 20).await;
    assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.status == Some(503))), "{answers:?}");
}

async fn futures_join(
    batcher: &Arc<UpsertBatcher>,
    n: usize,
) -> Vec<Result<hubrelay_core::domain::UpsertedContact, hubrelay_core::hubspot::HubSpotError>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move { batcher.upsert(upsert(&format!("down{i}@example.com"), "Z")).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
