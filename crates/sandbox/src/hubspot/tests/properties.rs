//! Property definitions: built-ins, create, list, get, conflicts and bad definitions.

use serde_json::{json, Value};

use super::{call, sandbox, upsert_body, UPSERT};
use hubrelay_core::hubspot::PropertyDefinition;

const PROPS: &str = "/crm/v3/properties/contacts";

fn names(list: &Value) -> Vec<String> {
    list["results"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn builtins_are_listed_and_parse_as_property_definitions() {
    let (_sb, app) = sandbox();
    let r = call(&app, "GET", PROPS, None).await;
    assert_eq!(r.status, 200);
    let names = names(&r.body);
    for want in [
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "company",
        "website",
        "address",
        "city",
        "state",
        "zip",
        "country",
        "jobtitle",
        "message",
        "lifecyclestage",
        "hs_lead_status",
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    let defs: Vec<PropertyDefinition> = serde_json::from_value(r.body["results"].clone()).unwrap();
    let stage = defs.iter().find(|d| d.name == "lifecyclestage").unwrap();
    assert_eq!(stage.kind, "enumeration");
    let values: Vec<&str> = stage.options.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(
        values,
        [
            "subscriber",
            "lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "opportunity",
            "customer",
            "evangelist",
            "other"
        ]
    );
    let message = defs.iter().find(|d| d.name == "message").unwrap();
    assert_eq!(message.field_type, "textarea");

    let one = call(&app, "GET", &format!("{PROPS}/hs_object_id"), None).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["modificationMetadata"]["readOnlyValue"], true);
    let missing = call(&app, "GET", &format!("{PROPS}/nope"), None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_category(), "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn create_list_then_conflict() {
    let (_sb, app) = sandbox();
    let def = json!({
        "name": "lead_source_detail", "label": "Lead source detail", "type": "enumeration", "fieldType": "select",
        "groupName": "contactinformation",
        "options": [{"label": "Web form", "value": "web_form"}, {"label": "Referral", "value": "referral", "hidden": false}]
    });
    let r = call(&app, "POST", PROPS, Some(def.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created: PropertyDefinition = serde_json::from_value(r.body.clone()).unwrap();
    assert_eq!(created.name, "lead_source_detail");
    assert_eq!(created.options.len(), 2);

    let list = call(&app, "GET", PROPS, None).await;
    assert!(names(&list.body).contains(&"lead_source_detail".to_string()));
    assert_eq!(call(&app, "GET", &format!("{PROPS}/lead_source_detail"), None).await.status, 200);

    let again = call(&app, "POST", PROPS, Some(def)).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_category(), "OBJECT_ALREADY_EXISTS");
    let builtin = call(
        &app,
        "POST",
        PROPS,
        Some(json!({"name": "email", "label": "E", "type": "string", "fieldType": "text", "groupName": "g"})),
    )
    .await;
    assert_eq!(builtin.status, 409);

    // The new property takes part in validation.
    let ok =
        call(&app, "POST", UPSERT, Some(upsert_body(&[("s@example.com", json!({"lead_source_detail": "referral"}))])))
            .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let bad =
        call(&app, "POST", UPSERT, Some(upsert_body(&[("s@example.com", json!({"lead_source_detail": "Referral"}))])))
            .await;
    assert_eq!(bad.codes(), ["INVALID_OPTION"]);
}

#[tokio::test]
async fn bad_definitions_are_400() {
    let (_sb, app) = sandbox();
    let base = json!({"name": "score", "label": "Score", "type": "number", "fieldType": "number", "groupName": "g"});
    let cases: Vec<(&str, Value)> = vec![
        ("missing label", json!({"name": "score", "type": "number", "fieldType": "number", "groupName": "g"})),
        ("bad type", json!({"name": "score", "label": "S", "type": "text", "fieldType": "text", "groupName": "g"})),
        (
            "enumeration without options",
            json!({"name": "pick", "label": "P", "type": "enumeration", "fieldType": "select", "groupName": "g"}),
        ),
        (
            "fieldType not for type",
            json!({"name": "score", "label": "S", "type": "number", "fieldType": "select", "groupName": "g"}),
        ),
        (
            "bad name",
            json!({"name": "Score Value", "label": "S", "type": "number", "fieldType": "number", "groupName": "g"}),
        ),
        (
            "options not objects",
            json!({"name": "pick", "label": "P", "type": "enumeration", "fieldType": "select", "groupName": "g", "options": ["a"]}),
        ),
    ];
    for (what, body) in cases {
        let r = call(&app, "POST", PROPS, Some(body)).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert_eq!(r.error_category(), "VALIDATION_ERROR", "{what}");
    }
    let r = call(&app, "POST", PROPS, Some(base)).await;
    assert_eq!(r.status, 201);
    let n = call(&app, "POST", UPSERT, Some(upsert_body(&[("n@example.com", json!({"score": "high"}))]))).await;
    assert_eq!(n.codes(), ["INVALID_INTEGER"]);
    let n = call(&app, "POST", UPSERT, Some(upsert_body(&[("n@example.com", json!({"score": 42.5}))]))).await;
    assert_eq!(n.status, 200);
    assert_eq!(n.body["results"][0]["properties"]["score"], "42.5");
}
