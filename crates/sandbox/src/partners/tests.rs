//! Client ↔ sandbox round trips over real sockets.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::ServerHandle;
use hubrelay_clients::ExtoleClient;
use hubrelay_clients::ImpactClient;
use hubrelay_core::domain::AttemptOutcome;
use hubrelay_core::partners::{sha256_hex_email, Extole, ExtoleEvent, Impact, ImpactConversion, PartnerError};

const TOKEN: &str = "extole-token-1";
const SID: &str = "IRabc123";
const AUTH: &str = "impact-token-1";

async fn extole() -> (ExtoleSandbox, ServerHandle, ExtoleClient) {
    let sb = ExtoleSandbox::new(ExtoleSandboxOptions { token: Some(TOKEN.into()) });
    let handle = sb.serve_local().await.unwrap();
    let client = ExtoleClient::new(&handle.url(), TOKEN, Duration::from_secs(5)).unwrap();
    (sb, handle, client)
}

async fn impact() -> (ImpactSandbox, ServerHandle, ImpactClient) {
    let sb = ImpactSandbox::new(ImpactSandboxOptions {
        account_sid: Some(SID.into()),
        auth_token: Some(AUTH.into()),
        campaign_id: Some("1234".into()),
    });
    let handle = sb.serve_local().await.unwrap();
    let client = ImpactClient::new(&handle.url(), SID, AUTH, Duration::from_secs(5)).unwrap();
    (sb, handle, client)
}

fn converted(id: &str) -> ExtoleEvent {
    ExtoleEvent::new("converted").with("email", "jane@example.com").with("partner_conversion_id", id)
}

fn conversion(campaign: &str) -> ImpactConversion {
    ImpactConversion::new(campaign, "2026-03-01T10:00:00Z", "deal_closedwon_9001", "deal_closedwon", "9001")
        .unwrap()
        .with_customer_email_hash(&sha256_hex_email("jane@example.com"))
        .unwrap()
        .with_subtotal("12000.50", "USD")
        .unwrap()
}

fn rejected(e: &PartnerError, status: u16) {
    assert_eq!((e.status, e.outcome()), (Some(status), AttemptOutcome::Rejected), "{e:?}");
}

#[tokio::test]
async fn extole_accepts_and_records_an_event() {
    let (sb, _h, client) = extole().await;
    let accepted = client.send_event(&converted("deal_closedwon_9001")).await.unwrap();
    let got = sb.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id.as_deref(), Some(accepted.id.as_str()));
    assert_eq!(got[0].body["data"]["partner_conversion_id"], "deal_closedwon_9001");
    assert!(got[0].counted());
}

#[tokio::test]
async fn extole_refuses_bad_tokens_and_bad_events_with_its_text() {
    let (sb, h, _client) = extole().await;
    let wrong = ExtoleClient::new(&h.url(), "nope", Duration::from_secs(5)).unwrap();
    let e = wrong.send_event(&converted("x")).await.unwrap_err();
    rejected(&e, 401);
    assert_eq!(e.code, "extole_unauthorized");
    let client = ExtoleClient::new(&h.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let e = client.send_event(&ExtoleEvent::new(" ")).await.unwrap_err();
    rejected(&e, 400);
    assert_eq!(e.code, "missing_event_name");
    assert!(e.message.starts_with("event_name is required"), "{}", e.message);
    let e = client.send_event(&converted(&"x".repeat(39))).await.unwrap_err();
    assert_eq!(e.code, "invalid_partner_conversion_id");
    let statuses: Vec<u16> = sb.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 400, 400]);
    assert!(sb.received().iter().all(|r| !r.counted()));
}

#[tokio::test]
async fn extole_keeps_the_first_conversion_id() {
    let (sb, _h, client) = extole().await;
    let first = client.send_event(&converted("deal_closedwon_9001")).await.unwrap();
    let again = client.send_event(&converted("deal_closedwon_9001")).await.unwrap();
    assert_ne!(first.id, again.id);
    let got = sb.received();
    assert_eq!(got[1].duplicate_of.as_deref(), Some(first.id.as_str()));
    assert_eq!(got.iter().filter(|r| r.counted()).count(), 1);
    client.send_event(&converted("deal_closedwon_9002")).await.unwrap();
    assert_eq!(sb.received().iter().filter(|r| r.counted()).count(), 2);
}

#[tokio::test]
async fn extole_forced_failures_are_retryable() {
    let (sb, _h, client) = extole().await;
    sb.set_faults(PartnerFaults { fail_next: 1, status: 500, retry_after_secs: None });
    let e = client.send_event(&converted("a")).await.unwrap_err();
    assert_eq!((e.status, e.code.as_str(), e.outcome()), (Some(500), "extole_unavailable", AttemptOutcome::Retryable));
    sb.set_faults(PartnerFaults { fail_next: 1, status: 429, retry_after_secs: Some(30) });
    let e = client.send_event(&converted("a")).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.retry_after_secs, e.outcome()),
        ("rate_limited", Some(30), AttemptOutcome::Retryable)
    );
    // Faults used up: the retry goes through.
    client.send_event(&converted("a")).await.unwrap();
    assert_eq!(sb.received().iter().map(|r| r.status).collect::<Vec<_>>(), [500, 429, 200]);
}

#[tokio::test]
async fn extole_unreachable_is_retryable() {
    let (_sb, h, _client) = extole().await;
    let url = h.url();
    h.shutdown().await;
    let client = ExtoleClient::new(&url, TOKEN, Duration::from_secs(2)).unwrap();
    let e = client.send_event(&converted("a")).await.unwrap_err();
    assert_eq!((e.status, e.code.as_str(), e.outcome()), (None, "extole_unreachable", AttemptOutcome::Retryable));
}

#[tokio::test]
async fn impact_queues_a_hashed_conversion() {
    let (sb, _h, client) = impact().await;
    let accepted = client.send_conversion(&conversion("1234")).await.unwrap();
    assert!(accepted.queued_uri.starts_with(&format!("/Advertisers/{SID}/APISubmissions/")), "{accepted:?}");
    let got = sb.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["CustomerEmail"], sha256_hex_email("jane@example.com"));
    assert_eq!(
        (got[0].body["OrderId"].as_str(), got[0].body["CurrencyCode"].as_str()),
        (Some("deal_closedwon_9001"), Some("USD"))
    );
    assert!(got[0].counted());
}

#[tokio::test]
async fn impact_refuses_bad_credentials_and_keeps_error_text() {
    let (sb, h, client) = impact().await;
    let wrong = ImpactClient::new(&h.url(), SID, "nope", Duration::from_secs(5)).unwrap();
    let e = wrong.send_conversion(&conversion("1234")).await.unwrap_err();
    rejected(&e, 401);
    assert_eq!(e.code, "impact_unauthorized");
    let e = client.send_conversion(&conversion("999")).await.unwrap_err();
    rejected(&e, 400);
    assert_eq!(e.code, "impact_invalid_conversion");
    assert!(e.message.contains("Campaign 999 does not exist"), "{}", e.message);
    assert_eq!(sb.received().iter().map(|r| r.status).collect::<Vec<_>>(), [401, 400]);
}

#[tokio::test]
async fn impact_lists_every_missing_field_and_refuses_plaintext_email() {
    let (_sb, h, _client) = impact().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/Advertisers/{SID}/Conversions", h.url()))
        .basic_auth(SID, Some(AUTH))
        .form(&[("EventDate", "2026-03-01T10:00:00Z"), ("CustomerEmail", "jane@example.com"), ("OrderSubTotal", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Status"], "ERROR");
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["CampaignId", "OrderId", "EventTypeCode", "CustomerId", "CustomerEmail", "CurrencyCode"]);
}

#[tokio::test]
async fn impact_dedupes_order_id_per_event_type() {
    let (sb, _h, client) = impact().await;
    client.send_conversion(&conversion("1234")).await.unwrap();
    client.send_conversion(&conversion("1234")).await.unwrap();
    let other_type =
        ImpactConversion::new("1234", "2026-03-01T10:00:00Z", "deal_closedwon_9001", "deal_contractsent", "9001")
            .unwrap();
    client.send_conversion(&other_type).await.unwrap();
    let got = sb.received();
    assert_eq!(got[1].duplicate_of, got[0].id);
    assert!(got[2].duplicate_of.is_none());
    assert_eq!(got.iter().filter(|r| r.counted()).count(), 2);
}

#[tokio::test]
async fn impact_forced_failures_are_retryable() {
    let (sb, _h, client) = impact().await;
    sb.set_faults(PartnerFaults { fail_next: 2, status: 429, retry_after_secs: None });
    for _ in 0..2 {
        let e = client.send_conversion(&conversion("1234")).await.unwrap_err();
        assert_eq!((e.status, e.outcome()), (Some(429), AttemptOutcome::Retryable));
    }
    sb.set_faults(PartnerFaults { fail_next: 1, status: 503, retry_after_secs: None });
    let e = client.send_conversion(&conversion("1234")).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.outcome()), ("impact_unavailable", AttemptOutcome::Retryable));
    client.send_conversion(&conversion("1234")).await.unwrap();
}

#[tokio::test]
async fn admin_routes_set_faults_list_and_reset() {
    let (sb, h, client) = extole().await;
    let http = reqwest::Client::new();
    let set: Value = http
        .post(format!("{}/__sandbox/faults", h.url()))
        .json(&json!({"fail_next": 1, "status": 502}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["fail_next"], 1);
    assert_eq!(client.send_event(&converted("a")).await.unwrap_err().status, Some(502));
    client.send_event(&converted("a")).await.unwrap();
    let list: Value = http.get(format!("{}/__sandbox/received", h.url())).send().await.unwrap().json().await.unwrap();
    let statuses: Vec<u64> = list.as_array().unwrap().iter().filter_map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, [502, 200]);
    assert!(list[1]["at"].is_string() && list[1]["id"].is_string());
    let reset = http.post(format!("{}/__sandbox/reset", h.url())).send().await.unwrap();
    assert!(reset.status().is_success());
    assert!(sb.received().is_empty());
    // The dedupe memory went with it: the same id counts again.
    client.send_event(&converted("a")).await.unwrap();
    assert!(sb.received()[0].counted());
}
