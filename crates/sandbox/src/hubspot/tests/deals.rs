//! Deals: created with a contact association, read with `properties` and `associations=contacts` (also through
//! `HubSpotClient::read_object`), updated; validation errors and 404s in HubSpot's shapes.

use std::time::Duration;

use serde_json::json;

use super::{call, sandbox, upsert_body, TOKEN, UPSERT};
use hubrelay_clients::HubSpotClient;
use hubrelay_core::hubspot::HubSpot;

#[tokio::test]
async fn a_deal_is_created_with_its_contact_read_back_and_updated() {
    let (_sb, app) = sandbox();
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("buyer@example.com", json!({}))]))).await;
    let contact = r.body["results"][0]["id"].as_str().unwrap().to_string();
    let assoc =
        json!([{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]);
    let body = json!({"properties": {"dealname": "Boat", "dealstage": "closedwon", "amount": "99.5",
        "closedate": "1764000000000"}, "associations": assoc});
    let r = call(&app, "POST", "/crm/v3/objects/deals", Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(id.parse::<u64>().unwrap() > 9_000_000);
    let got = call(
        &app,
        "GET",
        &format!("/crm/v3/objects/deals/{id}?properties=amount,closedate,pipeline&associations=contacts"),
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    let p = &got.body["properties"];
    assert_eq!((p["amount"].as_str(), p["hs_object_id"].as_str()), (Some("99.5"), Some(id.as_str())));
    assert_eq!(p["closedate"], "2025-11-24T16:00:00.000Z");
    assert!(p["pipeline"].is_null() && p.get("dealname").is_none(), "only what was asked: {p}");
    assert_eq!(got.body["associations"]["contacts"]["results"][0]["id"], contact.as_str());
    let r = call(
        &app,
        "PATCH",
        &format!("/crm/v3/objects/deals/{id}"),
        Some(json!({"properties": {"dealstage": "closedlost"}})),
    )
    .await;
    assert_eq!((r.status, r.body["properties"]["dealstage"].as_str()), (200, Some("closedlost")));
}

#[tokio::test]
async fn bad_deals_are_refused_like_hubspot_does() {
    let (_sb, app) = sandbox();
    let r = call(&app, "POST", "/crm/v3/objects/deals", Some(json!({"properties": {"amount": "lots"}}))).await;
    assert_eq!(r.status, 400);
    let mut codes = r.codes();
    codes.sort();
    assert_eq!(codes, ["INVALID_DECIMAL", "REQUIRED_PROPERTY", "REQUIRED_PROPERTY"]);
    let assoc = json!([{"to": {"id": "424242"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]);
    let body = json!({"properties": {"dealname": "x", "dealstage": "closedwon"}, "associations": assoc});
    assert_eq!(call(&app, "POST", "/crm/v3/objects/deals", Some(body)).await.status, 400);
    let wrong =
        json!([{"to": {"id": "1"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]);
    let body = json!({"properties": {"dealname": "x", "dealstage": "closedwon"}, "associations": wrong});
    assert_eq!(call(&app, "POST", "/crm/v3/objects/deals", Some(body)).await.status, 400);
    assert_eq!(call(&app, "GET", "/crm/v3/objects/deals/123", None).await.status, 404);
}

#[tokio::test]
async fn the_client_reads_deals_and_contacts_and_misses_are_none() {
    let handle = crate::hubspot::spawn(super::options(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = HubSpotClient::new(&handle.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let upsert = hubrelay_core::domain::ContactUpsert { email: "c@example.com".into(), properties: Default::default() };
    let contact = client.upsert_contact(&upsert).await.unwrap().id;
    let http = reqwest::Client::new();
    let body = json!({"properties": {"dealname": "D", "dealstage": "closedwon"}, "associations": [{"to": {"id": contact},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]});
    let deal: serde_json::Value = http
        .post(format!("{}/crm/v3/objects/deals", handle.url()))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = deal["id"].as_str().unwrap();
    let read = client.read_object("deals", id, &["dealstage", "amount"], &["contacts"]).await.unwrap().unwrap();
    assert_eq!(read.id, id);
    assert_eq!(read.properties.get("dealstage").map(String::as_str), Some("closedwon"));
    assert!(!read.properties.contains_key("amount"), "unset properties are absent");
    assert_eq!(read.associations["contacts"], vec![contact.clone()]);
    let c = client.read_object("contacts", &contact, &["email"], &[]).await.unwrap().unwrap();
    assert_eq!(c.properties["email"], "c@example.com");
    assert!(client.read_object("deals", "1", &["dealstage"], &[]).await.unwrap().is_none());
}
