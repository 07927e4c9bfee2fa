//! Engagement objects: create with contact associations, read back, list from the contact (the legacy v4
//! association read), validation.

use serde_json::{json, Value};

use super::{call, call_raw, sandbox, CONTACTS};

/// The legacy association read's prefix.
const ASSOC_V4: &str = "/crm/v4/objects/contacts";

async fn contact(app: &axum::Router, email: &str) -> String {
    let r = call(app, "POST", CONTACTS, Some(json!({"properties": {"email": email}}))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn assoc(contact: &str, type_id: u64) -> Value {
    json!([{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}])
}

/// (path, contact type id, reverse id, properties) for each object type.
fn cases() -> Vec<(&'static str, u64, u64, Value)> {
    vec![
        ("notes", 202, 201, json!({"hs_timestamp": "1714557600000", "hs_note_body": "Asked about the red one"})),
        (
            "calls",
            194,
            193,
            json!({"hs_timestamp": "2024-05-01T10:00:00Z", "hs_call_title": "Intro", "hs_call_body": "Talked",
                   "hs_call_direction": "OUTBOUND", "hs_call_status": "COMPLETED", "hs_call_duration": 120000}),
        ),
        (
            "emails",
            198,
            197,
            json!({"hs_timestamp": 1714557600000u64, "hs_email_direction": "EMAIL", "hs_email_subject": "Quote",
                   "hs_email_text": "Here it is", "hs_email_status": "SENT"}),
        ),
        (
            "meetings",
            200,
            199,
            json!({"hs_timestamp": "2024-05-01T10:00:00Z", "hs_meeting_title": "Test drive",
                   "hs_meeting_start_time": "2024-05-02T09:00:00Z", "hs_meeting_end_time": "2024-05-02T10:00:00Z",
                   "hs_meeting_outcome": "SCHEDULED", "hs_meeting_body": "Bring licence"}),
        ),
        (
            "tasks",
            204,
            203,
            json!({"hs_timestamp": "2024-05-03T00:00:00Z", "hs_task_subject": "Call back", "hs_task_body": "re quote",
                   "hs_task_status": "NOT_STARTED", "hs_task_priority": "HIGH", "hs_task_type": "CALL"}),
        ),
        (
            "communications",
            81,
            82,
            json!({"hs_timestamp": "2024-05-01T10:00:00Z", "hs_communication_channel_type": "SMS",
                   "hs_communication_body": "On my way", "hs_communication_logged_from": "CRM"}),
        ),
    ]
}

#[tokio::test]
async fn each_kind_is_created_associated_read_back_and_listed_from_the_contact() {
    let (sb, app) = sandbox();
    let c = contact(&app, "eng@example.com").await;
    let other = contact(&app, "other@example.com").await;
    for (path, type_id, reverse, props) in cases() {
        let uri = format!("/crm/v3/objects/{path}");
        let r = call(&app, "POST", &uri, Some(json!({"properties": props, "associations": assoc(&c, type_id)}))).await;
        assert_eq!(r.status, 201, "{path}: {:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(r.body["archived"], false);
        assert!(r.body["createdAt"].as_str().unwrap().ends_with('Z'));
        assert!(r.body["updatedAt"].is_string());
        assert_eq!(r.body["properties"]["hs_object_id"], id.as_str());
        let ts = r.body["properties"]["hs_timestamp"].as_str().unwrap();
        assert!(ts.starts_with("2024-05-0") && ts.ends_with(".000Z"), "{path}: normalised timestamp {ts}");

        let got = call(&app, "GET", &format!("{uri}/{id}"), None).await;
        assert_eq!(got.status, 200, "{path}: {:?}", got.body);
        assert_eq!(got.body["properties"], r.body["properties"]);

        let listed = call(&app, "GET", &format!("{ASSOC_V4}/{c}/associations/{path}"), None).await;
        assert_eq!(listed.status, 200, "{path}: {:?}", listed.body);
        assert_eq!(
            listed.body,
            json!({"results": [{"toObjectId": id.parse::<u64>().unwrap(), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": reverse, "label": null}]}]}),
            "{path}"
        );
        let none = call(&app, "GET", &format!("{ASSOC_V4}/{other}/associations/{path}"), None).await;
        assert_eq!(none.body, json!({"results": []}), "{path}");
    }
    assert_eq!(sb.engagement_count().unwrap(), 6);
    // Reads of another type's id, and of unknown ids, are 404.
    let note = call(&app, "GET", &format!("{ASSOC_V4}/{c}/associations/notes"), None).await;
    let note_id = note.body["results"][0]["toObjectId"].as_u64().unwrap();
    for missing in [format!("/crm/v3/objects/calls/{note_id}"), "/crm/v3/objects/notes/123".into()] {
        let r = call(&app, "GET", &missing, None).await;
        assert_eq!(r.status, 404, "{missing}");
        assert_eq!(r.error_category(), "OBJECT_NOT_FOUND");
    }
    let r = call(&app, "GET", &format!("{ASSOC_V4}/999999/associations/notes"), None).await;
    assert_eq!(r.status, 404);

    let stats = sb.stats();
    assert_eq!(stats.by_endpoint["POST /crm/v3/objects/notes"], 1);
    // Six listings from the contact, six from the other one, the note look-up and the unknown contact.
    assert_eq!(stats.by_endpoint["GET /crm/v4/objects/{from}/{id}/associations/{to}"], 14);

    let reset = call(&app, "POST", "/__sandbox/reset", None).await;
    assert_eq!(reset.status, 200);
    assert_eq!(sb.engagement_count().unwrap(), 0);
}

#[tokio::test]
async fn missing_or_bad_timestamp_is_a_validation_error() {
    let (sb, app) = sandbox();
    let c = contact(&app, "ts@example.com").await;
    for props in [json!({"hs_note_body": "x"}), json!({"hs_timestamp": "yesterday"}), json!({"hs_timestamp": ""})] {
        let r = call(
            &app,
            "POST",
            "/crm/v3/objects/notes",
            Some(json!({"properties": props, "associations": assoc(&c, 202)})),
        )
        .await;
        assert_eq!(r.status, 400, "{props}: {:?}", r.body);
        assert_eq!(r.error_category(), "VALIDATION_ERROR");
        assert!(r.body["message"].as_str().unwrap().contains("hs_timestamp"), "{:?}", r.body);
    }
    // Emails also need a direction.
    let r = call(&app, "POST", "/crm/v3/objects/emails", Some(json!({"properties": {"hs_timestamp": "0"}}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.codes(), ["MISSING_REQUIRED_PROPERTY"]);
    assert!(r.body["message"].as_str().unwrap().contains("hs_email_direction"));
    assert_eq!(sb.engagement_count().unwrap(), 0);
}

#[tokio::test]
async fn bad_options_unknown_and_foreign_properties_and_long_bodies_are_refused() {
    let (sb, app) = sandbox();
    let cases = [
        ("calls", json!({"hs_call_direction": "SIDEWAYS"}), "INVALID_OPTION"),
        ("tasks", json!({"hs_task_priority": "high"}), "INVALID_OPTION"),
        ("tasks", json!({"hs_task_type": "MEETING"}), "INVALID_OPTION"),
        ("emails", json!({"hs_email_direction": "OUTGOING"}), "INVALID_OPTION"),
        ("communications", json!({"hs_communication_channel_type": "FAX"}), "INVALID_OPTION"),
        ("meetings", json!({"hs_meeting_outcome": "MAYBE"}), "INVALID_OPTION"),
        ("notes", json!({"hs_note_title": "x"}), "PROPERTY_DOESNT_EXIST"),
        ("notes", json!({"hs_call_body": "x"}), "PROPERTY_DOESNT_EXIST"),
        ("calls", json!({"hs_call_duration": "two minutes"}), "INVALID_INTEGER"),
        ("meetings", json!({"hs_meeting_start_time": "soon"}), "INVALID_DATETIME"),
        ("notes", json!({"hs_note_body": "x".repeat(65_537)}), "INVALID_STRING_LENGTH"),
    ];
    for (path, extra, code) in cases {
        let mut props = json!({"hs_timestamp": "2024-05-01T10:00:00Z", "hs_email_direction": "EMAIL"});
        if path != "emails" {
            props.as_object_mut().unwrap().remove("hs_email_direction");
        }
        props.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = call(&app, "POST", &format!("/crm/v3/objects/{path}"), Some(json!({"properties": props}))).await;
        assert_eq!(r.status, 400, "{path} {code}: {:?}", r.body);
        assert_eq!(r.error_category(), "VALIDATION_ERROR");
        assert_eq!(r.codes(), [code], "{path}");
    }
    let ok = call(
        &app,
        "POST",
        "/crm/v3/objects/notes",
        Some(json!({"properties": {"hs_timestamp": "0", "hs_note_body": "x".repeat(65_536)}})),
    )
    .await;
    assert_eq!(ok.status, 201, "65,536 characters are fine; no associations are fine");
    assert_eq!(sb.engagement_count().unwrap(), 1);
}

#[tokio::test]
async fn unknown_contacts_and_wrong_association_types_are_400() {
    let (sb, app) = sandbox();
    let c = contact(&app, "assoc@example.com").await;
    let props = json!({"hs_timestamp": "2024-05-01T10:00:00Z"});

    let r = call(
        &app,
        "POST",
        "/crm/v3/objects/notes",
        Some(json!({"properties": props, "associations": assoc("987654", 202)})),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    assert!(r.body["message"].as_str().unwrap().contains("987654"), "names the id: {:?}", r.body);

    for (path, wrong) in [("notes", 194), ("calls", 202), ("emails", 200), ("meetings", 198), ("tasks", 202)] {
        let mut p = props.clone();
        if path == "emails" {
            p["hs_email_direction"] = json!("EMAIL");
        }
        let r = call(
            &app,
            "POST",
            &format!("/crm/v3/objects/{path}"),
            Some(json!({"properties": p, "associations": assoc(&c, wrong)})),
        )
        .await;
        assert_eq!(r.status, 400, "{path} with {wrong}: {:?}", r.body);
        assert_eq!(r.error_category(), "VALIDATION_ERROR");
    }
    let user_defined =
        json!([{"to": {"id": c}, "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 202}]}]);
    let r =
        call(&app, "POST", "/crm/v3/objects/notes", Some(json!({"properties": props, "associations": user_defined})))
            .await;
    assert_eq!(r.status, 400);
    assert_eq!(sb.engagement_count().unwrap(), 0, "nothing stored on a refused association");
}

#[tokio::test]
async fn engagements_share_the_gate_auth_and_faults() {
    let (sb, app) = sandbox();
    let body = json!({"properties": {"hs_timestamp": "0"}}).to_string();
    let r = call_raw(&app, "POST", "/crm/v3/objects/notes", None, Some(&body)).await;
    assert_eq!(r.status, 401);
    let r = call_raw(&app, "POST", "/crm/v3/objects/notes", Some("wrong"), Some(&body)).await;
    assert_eq!(r.status, 401);
    sb.set_faults(crate::hubspot::Faults { failure_rate: 1.0, failure_status: 503, ..Default::default() });
    let r = call(&app, "POST", "/crm/v3/objects/calls", Some(json!({"properties": {"hs_timestamp": "0"}}))).await;
    assert_eq!(r.status, 503);
    assert!(r.header("x-hubspot-ratelimit-remaining").is_some());
    assert_eq!(sb.stats().faults_injected, 1);
    sb.set_faults(Default::default());
    let r = call(&app, "POST", "/crm/objects/2026-03/calls", Some(json!({"properties": {"hs_timestamp": "0"}}))).await;
    assert_eq!(r.status, 201, "date-versioned prefix: {:?}", r.body);
    assert_eq!(sb.engagement_count().unwrap(), 1);
}

#[tokio::test]
async fn engagements_and_their_associations_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::hubspot::SandboxOptions { db_path: Some(dir.path().join("sandbox.db")), ..super::options() };
    let (c, id) = {
        let sb = crate::hubspot::Sandbox::open(opts.clone()).unwrap();
        let app = sb.router();
        let c = contact(&app, "keep@example.com").await;
        let r = call(
            &app,
            "POST",
            "/crm/v3/objects/meetings",
            Some(json!({"properties": {"hs_timestamp": "0", "hs_meeting_title": "Kept"}, "associations": assoc(&c, 200)})),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        (c, r.body["id"].as_str().unwrap().to_string())
    };
    let sb = crate::hubspot::Sandbox::open(opts).unwrap();
    let app = sb.router();
    assert_eq!(sb.engagement_count().unwrap(), 1);
    let got = call(&app, "GET", &format!("/crm/v3/objects/meetings/{id}"), None).await;
    assert_eq!(got.body["properties"]["hs_meeting_title"], "Kept");
    let listed = call(&app, "GET", &format!("{ASSOC_V4}/{c}/associations/meetings"), None).await;
    assert_eq!(listed.body["results"][0]["toObjectId"].to_string(), id);
    let next = call(&app, "POST", "/crm/v3/objects/meetings", Some(json!({"properties": {"hs_timestamp": "0"}}))).await;
    assert!(next.body["id"].as_str().unwrap().parse::<u64>().unwrap() > id.parse::<u64>().unwrap(), "ids not reused");
}
