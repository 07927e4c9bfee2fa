//! Single-contact endpoints: create, read, patch, list.

use serde_json::json;

use super::{call, call_raw, sandbox, CONTACTS, TOKEN};

#[tokio::test]
async fn create_then_duplicate_email_is_409_with_existing_id() {
    let (sb, app) = sandbox();
    let r = call(
        &app,
        "POST",
        CONTACTS,
        Some(json!({"properties": {"email": "Ann@Example.com", "firstname": "Ann"}, "associations": []})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(id, "1001", "ids are numeric strings from 1001");
    assert_eq!(r.body["properties"]["email"], "ann@example.com");
    assert_eq!(r.body["properties"]["firstname"], "Ann");
    assert_eq!(r.body["properties"]["hs_object_id"], id.as_str());
    assert_eq!(r.body["archived"], false);
    assert!(r.body["createdAt"].as_str().unwrap().ends_with('Z'));

    let dup = call(&app, "POST", CONTACTS, Some(json!({"properties": {"email": "ANN@example.COM"}}))).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.error_category(), "CONFLICT");
    assert_eq!(dup.body["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(sb.contact_count().unwrap(), 1);
}

#[tokio::test]
async fn get_by_id_and_by_email_with_property_selection() {
    let (_sb, app) = sandbox();
    let r = call(
        &app,
        "POST",
        CONTACTS,
        Some(json!({"properties": {"email": "bo@example.com", "firstname": "Bo", "city": "Oslo"}})),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_string();

    let by_id = call(&app, "GET", &format!("{CONTACTS}/{id}"), None).await;
    assert_eq!(by_id.status, 200);
    let props = by_id.body["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"]);
    assert_eq!(props["lastname"], serde_json::Value::Null, "unset default properties are null");

    let by_email =
        call(&app, "GET", &format!("{CONTACTS}/BO@example.com?idProperty=email&properties=city,firstname"), None).await;
    assert_eq!(by_email.status, 200, "{:?}", by_email.body);
    assert_eq!(by_email.body["id"], id.as_str());
    assert_eq!(by_email.body["properties"]["city"], "Oslo");
    assert!(by_email.body["properties"].get("email").is_none(), "only asked-for and system properties");

    for missing in [
        format!("{CONTACTS}/999999"),
        format!("{CONTACTS}/nobody@example.com?idProperty=email"),
        format!("{CONTACTS}/abc"),
    ] {
        let r = call(&app, "GET", &missing, None).await;
        assert_eq!(r.status, 404, "{missing}");
        assert_eq!(r.error_category(), "OBJECT_NOT_FOUND");
    }
}

#[tokio::test]
async fn patch_merges_clears_and_refuses_a_taken_email() {
    let (_sb, app) = sandbox();
    let a = call(
        &app,
        "POST",
        CONTACTS,
        Some(json!({"properties": {"email": "a@example.com", "firstname": "A", "city": "Rome"}})),
    )
    .await;
    call(&app, "POST", CONTACTS, Some(json!({"properties": {"email": "b@example.com"}}))).await;
    let id = a.body["id"].as_str().unwrap();

    let r =
        call(&app, "PATCH", &format!("{CONTACTS}/{id}"), Some(json!({"properties": {"lastname": "Z", "city": ""}})))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let got = call(&app, "GET", &format!("{CONTACTS}/{id}?properties=firstname,lastname,city"), None).await;
    assert_eq!(got.body["properties"]["firstname"], "A", "not sent = kept");
    assert_eq!(got.body["properties"]["lastname"], "Z");
    assert_eq!(got.body["properties"]["city"], serde_json::Value::Null, "\"\" clears");

    let r = call(
        &app,
        "PATCH",
        &format!("{CONTACTS}/a@example.com?idProperty=email"),
        Some(json!({"properties": {"jobtitle": "CTO"}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["properties"]["jobtitle"], "CTO");

    let taken =
        call(&app, "PATCH", &format!("{CONTACTS}/{id}"), Some(json!({"properties": {"email": "B@example.com"}}))).await;
    assert_eq!(taken.status, 409);
    assert!(taken.body["message"].as_str().unwrap().starts_with("Contact already exists. Existing ID: "));

    let missing =
        call(&app, "PATCH", &format!("{CONTACTS}/424242"), Some(json!({"properties": {"firstname": "X"}}))).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_category(), "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn list_pages_with_after_cursor() {
    let (_sb, app) = sandbox();
    for i in 0..5 {
        call(&app, "POST", CONTACTS, Some(json!({"properties": {"email": format!("p{i}@example.com")}}))).await;
    }
    let mut seen = Vec::new();
    let mut uri = format!("{CONTACTS}?limit=2");
    loop {
        let r = call(&app, "GET", &uri, None).await;
        assert_eq!(r.status, 200);
        for c in r.body["results"].as_array().unwrap() {
            seen.push(c["properties"]["email"].as_str().unwrap().to_string());
        }
        match r.body["paging"]["next"]["after"].as_str() {
            Some(after) => uri = format!("{CONTACTS}?limit=2&after={after}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..5).map(|i| format!("p{i}@example.com")).collect();
    assert_eq!(seen, want);
    assert_eq!(call(&app, "GET", &format!("{CONTACTS}?limit=101"), None).await.status, 400);
    assert_eq!(call(&app, "GET", &format!("{CONTACTS}?after=xyz"), None).await.status, 400);
}

#[tokio::test]
async fn bad_bodies_are_hubspot_400s_never_500s() {
    let (sb, app) = sandbox();
    let cases = [
        "{not json",
        "",
        "[1,2]",
        r#"{"properties": "firstname"}"#,
        r#"{"properties": {"firstname": {"a": 1}}}"#,
        r#"{"properties": {"firstname": ["a"]}}"#,
    ];
    for body in cases {
        let r = call_raw(&app, "POST", CONTACTS, Some(TOKEN), Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.error_category(), "VALIDATION_ERROR");
        assert!(r.body["message"].as_str().unwrap().starts_with("Invalid input JSON"), "{:?}", r.body);
    }
    assert_eq!(sb.contact_count().unwrap(), 0);

    let r = call(&app, "GET", &format!("{CONTACTS}/%FF%FE?idProperty=email"), None).await;
    assert_eq!(r.status, 400, "undecodable path: {:?}", r.body);
    assert_eq!(r.error_category(), "VALIDATION_ERROR");
    let r = call(&app, "GET", &format!("{CONTACTS}/x?idProperty=firstname"), None).await;
    assert_eq!(r.status, 400, "not a unique property");
}

#[tokio::test]
async fn encoded_plus_in_an_email_path() {
    let (_sb, app) = sandbox();
    let r = call(&app, "POST", CONTACTS, Some(json!({"properties": {"email": "a+tag@example.com"}}))).await;
    assert_eq!(r.status, 201);
    let got = call(&app, "GET", &format!("{CONTACTS}/a%2Btag%40example.com?idProperty=email"), None).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["id"], r.body["id"]);
}

#[tokio::test]
async fn non_string_values_are_stringified_and_read_only_is_refused() {
    let (_sb, app) = sandbox();
    let r = call(
        &app,
        "POST",
        CONTACTS,
        Some(json!({"properties": {"email": "n@example.com", "zip": 12345, "company": true}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["properties"]["zip"], "12345");
    assert_eq!(r.body["properties"]["company"], "true");

    let r = call(
        &app,
        "POST",
        CONTACTS,
        Some(json!({"properties": {"email": "ro@example.com", "createdate": "1430438400000"}})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.codes(), ["READ_ONLY_VALUE"]);

    let r = call(&app, "POST", CONTACTS, Some(json!({"properties": {"email": "not-an-email"}}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.codes(), ["INVALID_EMAIL"]);
}

#[tokio::test]
async fn an_archived_contact_is_read_only_with_archived_true_and_frees_its_email() {
    let (sb, app) = super::sandbox();
    let r = call(
        &app,
        "POST",
        super::UPSERT,
        Some(super::upsert_body(&[("gone@example.com", json!({"firstname": "Gil"}))])),
    )
    .await;
    let id = r.body["results"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(call(&app, "DELETE", &format!("{CONTACTS}/{id}"), None).await.status, 204);
    assert_eq!(call(&app, "GET", &format!("{CONTACTS}/{id}"), None).await.status, 404);
    let archived = call(&app, "GET", &format!("{CONTACTS}/{id}?archived=true&properties=firstname"), None).await;
    assert_eq!(archived.status, 200, "{:?}", archived.body);
    assert_eq!(
        (archived.body["archived"].as_bool(), archived.body["properties"]["firstname"].as_str()),
        (Some(true), Some("Gil"))
    );
    assert!(archived.body["archivedAt"].is_string());
    assert_eq!(call(&app, "DELETE", &format!("{CONTACTS}/{id}"), None).await.status, 404, "archived already");
    // Its email is free: an upsert makes a new contact.
    let r = call(&app, "POST", super::UPSERT, Some(super::upsert_body(&[("gone@example.com", json!({}))]))).await;
    assert_ne!(r.body["results"][0]["id"].as_str().unwrap(), id);
    assert_eq!(sb.contact_count().unwrap(), 1);
}
