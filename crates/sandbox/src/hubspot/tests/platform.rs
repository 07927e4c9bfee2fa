//! The December 2026 platform: dated paths (and unknown versions), association reads with paging, 207 batch
//! upserts by trace id, portal validation rules from 2026-09, scopes, account details, path-style counts.

use serde_json::{json, Value};

use super::{call, call_raw, options};
use crate::hubspot::{Sandbox, SandboxOptions};

const DATED: &str = "/crm/objects/2026-09";

fn open(options: SandboxOptions) -> (Sandbox, axum::Router) {
    let sb = Sandbox::open(options).unwrap();
    let app = sb.router();
    (sb, app)
}

async fn contact(app: &axum::Router, email: &str) -> String {
    let r = call(app, "POST", &format!("{DATED}/contacts"), Some(json!({"properties": {"email": email}}))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn note(app: &axum::Router, contact: &str) -> String {
    let body = json!({"properties": {"hs_timestamp": "0", "hs_note_body": "n"}, "associations": [{"to": {"id": contact},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]});
    let r = call(app, "POST", &format!("{DATED}/notes"), Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn dated_paths_are_served_unknown_versions_are_not_and_stats_tell_the_styles_apart() {
    let (sb, app) = open(options());
    contact(&app, "dated@example.com").await;
    let legacy = call(&app, "GET", "/crm/v3/objects/contacts/dated@example.com?idProperty=email", None).await;
    assert_eq!(legacy.status, 200);
    let r = call(&app, "GET", "/crm/objects/2027-03/contacts", None).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("2026-09"), "{:?}", r.body);
    let stats = sb.stats();
    assert_eq!(stats.by_path_style["dated"], 1);
    assert_eq!(stats.by_path_style["legacy"], 1);
    assert_eq!(stats.by_version["2026-09"], 1);
    assert_eq!(stats.by_version["v3"], 1);
}

#[tokio::test]
async fn association_reads_page_by_after_on_the_dated_and_the_v4_api() {
    let (_, app) = open(SandboxOptions { association_page_size: 2, ..options() });
    let c = contact(&app, "paged@example.com").await;
    let mut notes = Vec::new();
    for _ in 0..5 {
        notes.push(note(&app, &c).await);
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut input = json!({"id": c});
        if let Some(a) = &after {
            input["after"] = json!(a);
        }
        let r =
            call(&app, "POST", "/crm/associations/2026-09/contacts/notes/batch/read", Some(json!({"inputs": [input]})))
                .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let result = &r.body["results"][0];
        assert_eq!(result["from"]["id"], c.as_str());
        for t in result["to"].as_array().unwrap() {
            assert_eq!(t["associationTypes"][0]["typeId"], 201);
            seen.push(t["toObjectId"].as_str().unwrap().to_string());
        }
        match result.pointer("/paging/next/after").and_then(Value::as_str) {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, notes);
    // v4: the same pages with ?limit&after.
    let first = call(&app, "GET", &format!("/crm/v4/objects/contacts/{c}/associations/notes?limit=2"), None).await;
    assert_eq!(first.body["results"].as_array().unwrap().len(), 2);
    let after = first.body["paging"]["next"]["after"].as_str().unwrap();
    let next =
        call(&app, "GET", &format!("/crm/v4/objects/contacts/{c}/associations/notes?limit=2&after={after}"), None)
            .await;
    assert_eq!(next.body["results"][0]["toObjectId"].to_string(), notes[2]);
    // A record without notes, and one that does not exist: 207 with errors, no result.
    let bare = contact(&app, "bare@example.com").await;
    let r = call(
        &app,
        "POST",
        "/crm/associations/2026-09/contacts/notes/batch/read",
        Some(json!({"inputs": [{"id": bare}, {"id": "999999"}]})),
    )
    .await;
    assert_eq!(r.status, 207, "{:?}", r.body);
    assert_eq!(r.body["numErrors"], 2);
    assert!(r.body["results"].as_array().unwrap().is_empty());
    // Engagement reads honour associations=contacts.
    let got = call(&app, "GET", &format!("{DATED}/notes/{}?associations=contacts", notes[0]), None).await;
    assert_eq!(got.body["associations"]["contacts"]["results"][0]["id"], c.as_str(), "{:?}", got.body);
}

#[tokio::test]
async fn a_batch_with_trace_ids_answers_207_for_the_refused_input_and_stores_the_rest() {
    let (sb, app) = open(options());
    let inputs = json!({"inputs": [
        {"id": "a@example.com", "idProperty": "email", "objectWriteTraceId": "0", "properties": {"firstname": "A"}},
        {"id": "b@example.com", "idProperty": "email", "objectWriteTraceId": "1", "properties": {"nope": "x"}},
        {"id": "c@example.com", "idProperty": "email", "objectWriteTraceId": "2", "properties": {}}]});
    let r = call(&app, "POST", &format!("{DATED}/contacts/batch/upsert"), Some(inputs.clone())).await;
    assert_eq!(r.status, 207, "{:?}", r.body);
    let traces: Vec<&str> =
        r.body["results"].as_array().unwrap().iter().map(|x| x["objectWriteTraceId"].as_str().unwrap()).collect();
    assert_eq!(traces, ["0", "2"]);
    let error = &r.body["errors"][0];
    assert_eq!(error["context"]["objectWriteTraceId"], json!(["1"]));
    assert_eq!(error["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert!(r.body["links"].is_object());
    assert_eq!(sb.contact_count().unwrap(), 2);
    // Without trace ids the batch is all or nothing, as before.
    let mut whole = inputs;
    for i in whole["inputs"].as_array_mut().unwrap() {
        i.as_object_mut().unwrap().remove("objectWriteTraceId");
    }
    let r = call(&app, "POST", &format!("{DATED}/contacts/batch/upsert"), Some(whole)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[tokio::test]
async fn validation_rules_apply_from_2026_09_and_name_their_message() {
    let (_, app) = open(options());
    let rules = json!({"rules": [{"property": "phone", "message": "Sold boats need a phone",
        "when": {"property": "hs_lead_status", "equals": "CONNECTED"}}]});
    assert_eq!(call(&app, "POST", "/__sandbox/validation-rules", Some(rules)).await.status, 200);
    let body = json!({"properties": {"email": "rule@example.com", "hs_lead_status": "CONNECTED"}});
    let r = call(&app, "POST", &format!("{DATED}/contacts"), Some(body.clone())).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    assert!(r.body["message"].as_str().unwrap().contains("Sold boats need a phone"));
    assert_eq!(r.codes(), ["VALIDATION_RULE_REQUIRED_PROPERTY"]);
    // 2026-03 and v3 writes predate the enforcement.
    let r = call(&app, "POST", "/crm/objects/2026-03/contacts", Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap();
    // An update that keeps the condition without the phone is refused; adding it passes.
    let r =
        call(&app, "PATCH", &format!("{DATED}/contacts/{id}"), Some(json!({"properties": {"firstname": "R"}}))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r =
        call(&app, "PATCH", &format!("{DATED}/contacts/{id}"), Some(json!({"properties": {"phone": "+1 555 0100"}})))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(call(&app, "DELETE", "/__sandbox/validation-rules", None).await.body, json!({"rules": []}));
}

#[tokio::test]
async fn a_token_without_a_scope_gets_missing_scopes_and_account_details_need_none() {
    let (sb, app) =
        open(SandboxOptions { portal_id: 4242, time_zone: "US/Eastern".into(), utc_offset_minutes: -300, ..options() });
    sb.set_scopes(Some(vec!["crm.objects.contacts.read".into()]));
    let r =
        call(&app, "POST", &format!("{DATED}/contacts"), Some(json!({"properties": {"email": "s@example.com"}}))).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.error_category(), "MISSING_SCOPES");
    assert_eq!(r.body["errors"][0]["context"]["requiredGranularScopes"], json!(["crm.objects.contacts.write"]));
    assert_eq!(call(&app, "GET", &format!("{DATED}/contacts"), None).await.status, 200);
    let details = call(&app, "GET", "/account-info/2026-09/details", None).await;
    assert_eq!(details.status, 200);
    assert_eq!(
        (details.body["portalId"].as_u64(), details.body["timeZone"].as_str()),
        (Some(4242), Some("US/Eastern"))
    );
    assert_eq!(details.body["utcOffset"], "-05:00");
    // Still authenticated first: no token, 401.
    assert_eq!(call_raw(&app, "GET", "/account-info/2026-09/details", None, None).await.status, 401);
    // Admin: back to every scope.
    let r = call(&app, "POST", "/__sandbox/scopes", Some(json!({"scopes": null}))).await;
    assert_eq!(r.body["scopes"], Value::Null);
}
