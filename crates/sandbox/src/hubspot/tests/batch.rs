//! Batch upsert (all-or-nothing, by email), property validation on write, batch read, concurrency.

use serde_json::{json, Value};

use super::{call, sandbox, upsert_body, CONTACTS, UPSERT};

#[tokio::test]
async fn upsert_creates_then_updates_one_contact() {
    let (sb, app) = sandbox();
    let r = call(
        &app,
        "POST",
        UPSERT,
        Some(upsert_body(&[("Lee@Example.com", json!({"firstname": "Lee", "city": "Paris"}))])),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "COMPLETE");
    assert!(r.body["startedAt"].is_string() && r.body["completedAt"].is_string());
    let first = &r.body["results"][0];
    assert_eq!(first["new"], true);
    assert_eq!(first["properties"]["email"], "lee@example.com", "stored email is the id, lowercased");
    let id = first["id"].as_str().unwrap().to_string();

    let r =
        call(&app, "POST", UPSERT, Some(upsert_body(&[("lee@example.com", json!({"lastname": "Park", "city": ""}))])))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = &r.body["results"][0];
    assert_eq!(second["new"], false);
    assert_eq!(second["id"], id.as_str());
    assert_eq!(sb.contact_count().unwrap(), 1);

    let got = call(&app, "GET", &format!("{CONTACTS}/{id}?properties=firstname,lastname,city"), None).await;
    assert_eq!(got.body["properties"]["firstname"], "Lee", "not sent = kept");
    assert_eq!(got.body["properties"]["lastname"], "Park");
    assert_eq!(got.body["properties"]["city"], Value::Null, "\"\" clears");
}

#[tokio::test]
async fn results_follow_input_order_and_flag_new() {
    let (_sb, app) = sandbox();
    call(&app, "POST", UPSERT, Some(upsert_body(&[("old@example.com", json!({}))]))).await;
    let r = call(
        &app,
        "POST",
        UPSERT,
        Some(upsert_body(&[("new@example.com", json!({})), ("old@example.com", json!({}))])),
    )
    .await;
    assert_eq!(r.status, 200);
    let emails: Vec<(&str, bool)> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["properties"]["email"].as_str().unwrap(), x["new"].as_bool().unwrap()))
        .collect();
    assert_eq!(emails, [("new@example.com", true), ("old@example.com", false)]);
}

#[tokio::test]
async fn duplicate_email_in_one_batch_fails_the_batch() {
    let (sb, app) = sandbox();
    let r =
        call(&app, "POST", UPSERT, Some(upsert_body(&[("x@example.com", json!({})), ("X@EXAMPLE.com", json!({}))])))
            .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    assert!(r.body["message"].as_str().unwrap().contains("Duplicate IDs"));
    assert_eq!(sb.contact_count().unwrap(), 0);
}

#[tokio::test]
async fn one_bad_input_stores_nothing() {
    let (sb, app) = sandbox();
    let body = upsert_body(&[
        ("ok@example.com", json!({"firstname": "Ok"})),
        ("bad@example.com", json!({"favourite_colour": "blue"})),
    ]);
    let r = call(&app, "POST", UPSERT, Some(body)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    assert_eq!(r.codes(), ["PROPERTY_DOESNT_EXIST"]);
    assert_eq!(r.body["errors"][0]["context"]["propertyName"], json!(["favourite_colour"]));
    assert!(r.body["message"].as_str().unwrap().starts_with("Property values were not valid: ["));
    assert_eq!(sb.contact_count().unwrap(), 0, "all-or-nothing");
}

#[tokio::test]
async fn enumeration_takes_option_values_not_labels() {
    let (sb, app) = sandbox();
    let r =
        call(&app, "POST", UPSERT, Some(upsert_body(&[("e@example.com", json!({"lifecyclestage": "Lead"}))]))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.codes(), ["INVALID_OPTION"]);
    let msg = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("Lead was not one of the allowed options: ["), "{msg}");
    assert_eq!(sb.contact_count().unwrap(), 0);

    let r = call(
        &app,
        "POST",
        UPSERT,
        Some(upsert_body(&[("e@example.com", json!({"lifecyclestage": "lead", "hs_lead_status": "NEW"}))])),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn dates_must_be_midnight_utc_ms_or_ymd() {
    let (_sb, app) = sandbox();
    let created = call(&app, "POST", "/crm/v3/properties/contacts", Some(json!({
        "name": "lead_date", "label": "Lead date", "type": "date", "fieldType": "date", "groupName": "contactinformation"
    })))
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    for bad in ["1430438400001", "1430438400", "01/05/2015", "2015-05-01T10:00:00Z"] {
        let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("d@example.com", json!({"lead_date": bad}))]))).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.codes(), ["INVALID_DATE"], "{bad}");
    }
    for (ok, stored) in [("1430438400000", "2015-05-01"), ("2015-05-02", "2015-05-02")] {
        let r = call(&app, "POST", UPSERT, Some(upsert_body(&[("d@example.com", json!({"lead_date": ok}))]))).await;
        assert_eq!(r.status, 200, "{ok}: {:?}", r.body);
        assert_eq!(r.body["results"][0]["properties"]["lead_date"], stored);
    }
}

#[tokio::test]
async fn all_bad_properties_are_reported_and_ids_must_be_emails() {
    let (_sb, app) = sandbox();
    let r = call(
        &app,
        "POST",
        UPSERT,
        Some(upsert_body(&[
            ("a@example.com", json!({"nope": "x", "hs_lead_status": "maybe"})),
            ("not an email", json!({})),
        ])),
    )
    .await;
    assert_eq!(r.status, 400);
    let mut codes = r.codes();
    codes.sort();
    assert_eq!(codes, ["INVALID_EMAIL", "INVALID_OPTION", "PROPERTY_DOESNT_EXIST"]);
}

#[tokio::test]
async fn more_than_100_inputs_is_400() {
    let (sb, app) = sandbox();
    let inputs: Vec<(String, Value)> = (0..101).map(|i| (format!("u{i}@example.com"), json!({}))).collect();
    let refs: Vec<(&str, Value)> = inputs.iter().map(|(e, p)| (e.as_str(), p.clone())).collect();
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&refs))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    let r = call(&app, "POST", UPSERT, Some(upsert_body(&refs[..100]))).await;
    assert_eq!(r.status, 200);
    assert_eq!(sb.contact_count().unwrap(), 100);
}

#[tokio::test]
async fn batch_read_is_200_or_207_with_missing_ids() {
    let (_sb, app) = sandbox();
    call(&app, "POST", UPSERT, Some(upsert_body(&[("r@example.com", json!({"firstname": "R"}))]))).await;
    let read = "/crm/v3/objects/contacts/batch/read";
    let r = call(
        &app,
        "POST",
        read,
        Some(json!({"idProperty": "email", "inputs": [{"id": "R@example.com"}], "properties": ["firstname"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["properties"]["firstname"], "R");
    let id = r.body["results"][0]["id"].as_str().unwrap().to_string();

    let r = call(&app, "POST", read, Some(json!({"inputs": [{"id": id}, {"id": "77"}]}))).await;
    assert_eq!(r.status, 207, "{:?}", r.body);
    assert_eq!(r.body["numErrors"], 1);
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(r.body["errors"][0]["context"]["ids"], json!(["77"]));
}

#[tokio::test]
async fn fifty_concurrent_upserts_over_five_emails_make_five_contacts() {
    let (sb, app) = sandbox();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let email = format!("c{}@example.com", i % 5);
            call(&app, "POST", UPSERT, Some(upsert_body(&[(&email, json!({"firstname": format!("n{i}")}))]))).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["results"][0]["new"] == true {
            created += 1;
        }
    }
    assert_eq!(created, 5, "exactly one creation per email");
    assert_eq!(sb.contact_count().unwrap(), 5);
}
