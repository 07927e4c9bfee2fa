//! Search: filters, paging, the index's lag behind writes, its own per-second limit.

use serde_json::json;

use super::{call, sandbox, upsert_body, CONTACTS, UPSERT};
use crate::hubspot::Faults;

const SEARCH: &str = "/crm/v3/objects/contacts/search";

/// A search, paced under the five-a-second limit.
async fn search(app: &axum::Router, body: serde_json::Value) -> super::Resp {
    tokio::time::sleep(std::time::Duration::from_millis(210)).await;
    call(app, "POST", SEARCH, Some(body)).await
}

fn by(property: &str, value: &str) -> serde_json::Value {
    json!({"filterGroups": [{"filters": [{"propertyName": property, "operator": "EQ", "value": value}]}],
           "properties": ["email", property]})
}

#[tokio::test]
async fn a_write_is_found_only_once_the_index_has_caught_up() {
    let (sb, app) = sandbox();
    sb.set_faults(Faults { search_lag_ms: 1_500, ..Faults::default() });
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("ann@example.com", json!({"firstname": "Ann"}))]))).await;
    assert_eq!(r.status, 200);
    let id = r.body["results"][0]["id"].as_str().unwrap().to_string();

    let early = search(&app, by("email", "ann@example.com")).await;
    assert_eq!((early.status, early.body["total"].as_u64()), (200, Some(0)), "{:?}", early.body);
    assert!(early.header("x-hubspot-ratelimit-max").is_none(), "search answers carry no rate-limit headers");

    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let found = search(&app, by("email", "ANN@example.com")).await;
    assert_eq!(found.body["total"], 1, "{:?}", found.body);
    assert_eq!(found.body["results"][0]["id"], id.as_str());

    // A change is found by the old value until the index catches up, then by the new one only.
    let r = call(&app, "PATCH", &format!("{CONTACTS}/{id}"), Some(json!({"properties": {"firstname": "Anna"}}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(search(&app, by("firstname", "Ann")).await.body["total"], 1);
    assert_eq!(search(&app, by("firstname", "Anna")).await.body["total"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    assert_eq!(search(&app, by("firstname", "Ann")).await.body["total"], 0);
    let r = search(&app, by("firstname", "anna")).await;
    assert_eq!(
        (r.body["total"].as_u64(), r.body["results"][0]["properties"]["firstname"].as_str()),
        (Some(1), Some("Anna"))
    );
}

#[tokio::test]
async fn filter_groups_operators_sorting_and_paging() {
    let (sb, app) = sandbox();
    sb.set_faults(Faults { search_lag_ms: 0, ..Faults::default() });
    for (i, city) in ["Paris", "Lyon", "Paris", "Nice", "Paris"].iter().enumerate() {
        let email = format!("p{i}@example.com");
        let props = json!({"city": city, "firstname": format!("P{i}")});
        assert_eq!(call(&app, "POST", UPSERT, Some(upsert_body(&[(email.as_str(), props)]))).await.status, 200);
    }
    let q = |body: serde_json::Value| {
        let app = app.clone();
        async move { search(&app, body).await }
    };
    let paris =
        q(json!({"filterGroups": [{"filters": [{"propertyName": "city", "operator": "EQ", "value": "paris"}]}],
                        "sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}], "limit": 2}))
        .await;
    assert_eq!(paris.body["total"], 3);
    let names: Vec<&str> = paris.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["firstname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["P4", "P2"]);
    assert_eq!(paris.body["paging"]["next"]["after"], "2");
    let rest = q(json!({"filterGroups": [{"filters": [{"propertyName": "city", "operator": "EQ", "value": "Paris"}]}],
                       "sorts": ["-firstname"], "limit": 2, "after": "2"}))
    .await;
    assert_eq!(
        (rest.body["results"][0]["properties"]["firstname"].as_str(), rest.body.get("paging")),
        (Some("P0"), None)
    );

    // Groups are ORed, filters within a group ANDed.
    let either = q(json!({"filterGroups": [
        {"filters": [{"propertyName": "city", "operator": "IN", "values": ["Lyon", "Nice"]}]},
        {"filters": [{"propertyName": "city", "operator": "EQ", "value": "Paris"}, {"propertyName": "firstname", "operator": "EQ", "value": "P0"}]}]})).await;
    assert_eq!(either.body["total"], 3);
    let none =
        q(json!({"filterGroups": [{"filters": [{"propertyName": "hs_lead_status", "operator": "HAS_PROPERTY"}]}]}))
            .await;
    assert_eq!(none.body["total"], 0);
    let token = q(json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "p3*"}]}]})).await;
    assert_eq!(token.body["total"], 1);
    let text = q(json!({"query": "p1@"})).await;
    assert_eq!(text.body["total"], 1);

    let bad =
        q(json!({"filterGroups": [{"filters": [{"propertyName": "city", "operator": "LIKE", "value": "x"}]}]})).await;
    assert_eq!((bad.status, bad.error_category()), (400, "VALIDATION_ERROR"));
    assert_eq!(q(json!({"limit": 201})).await.status, 400);
    assert_eq!(
        q(json!({"filterGroups": [{"filters": [{"propertyName": "city", "operator": "EQ"}]}]})).await.status,
        400
    );
}

#[tokio::test]
async fn deleted_contacts_leave_the_index_and_searches_have_their_own_limit() {
    let (sb, app) = sandbox();
    sb.set_faults(Faults { search_lag_ms: 0, ..Faults::default() });
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("gone@example.com", json!({}))]))).await;
    let id = r.body["results"][0]["id"].as_str().unwrap().to_string();
    let r = call(&app, "POST", &format!("{CONTACTS}/gdpr-delete"), Some(json!({"objectId": id}))).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(search(&app, by("email", "gone@example.com")).await.body["total"], 0);

    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(call(&app, "POST", SEARCH, Some(json!({}))).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let limited = call(&app, "POST", SEARCH, Some(json!({}))).await;
    assert_eq!(limited.body["policyName"], "SECONDLY");
    // Other endpoints still answer: the search limit is its own.
    assert_eq!(call(&app, "GET", CONTACTS, None).await.status, 200);
}
