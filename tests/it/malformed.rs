//! Bad input gets a 4xx with a JSON error code — never a 500, never a HubSpot call.

use serde_json::Value;

use crate::harness::{headers, Serve, UPSERT};

/// name, content type, body, extra headers, expected status, expected code ("" = any).
type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, String)>, u16, &'a str);

#[tokio::test]
async fn each_kind_of_bad_input_has_its_code() {
    let serve = Serve::start(&[]);
    let json = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded";
    let cases: Vec<Case> = vec![
        ("malformed JSON", json, b"{\"email\": ".to_vec(), vec![], 400, "malformed_json"),
        ("empty body", json, vec![], vec![], 400, "empty_body"),
        ("array body", json, b"[{\"email\":\"a@b.co\"}]".to_vec(), vec![], 400, "invalid_body"),
        ("email of the wrong type", json, br#"{"email": ["a@b.co"]}"#.to_vec(), vec![], 422, "invalid_type"),
        ("product not an object", json, br#"{"email":"a@b.co","product":"car"}"#.to_vec(), vec![], 422, "invalid_type"),
        ("not an email", json, br#"{"email":"not-an-email"}"#.to_vec(), vec![], 422, "invalid_email"),
        ("no email", json, br#"{"first_name":"Jane"}"#.to_vec(), vec![], 422, "missing_required_field"),
        ("a key given twice", json, br#"{"email":"a@b.co","email":"c@d.co"}"#.to_vec(), vec![], 400, "duplicate_key"),
        ("NUL in a name", json, br#"{"email":"a@b.co","first_name":"J\u0000"}"#.to_vec(), vec![], 422, "nul_character"),
        ("zero-width space in the email", json, "{\"email\":\"a\u{200B}@b.co\"}".into(), vec![], 422, "invalid_email"),
        ("form value not UTF-8", FORM, b"email=a%40b.co&first_name=J%FCrgen".to_vec(), vec![], 400, "invalid_encoding"),
        ("bad lead_date", json, br#"{"email":"a@b.co","lead_date":"soon"}"#.to_vec(), vec![], 422, "invalid_value"),
        (
            "priority not an option",
            json,
            br#"{"email":"a@b.co","priority":"urgent"}"#.to_vec(),
            vec![],
            422,
            "invalid_option",
        ),
        ("unsupported content type", "text/plain", b"email=a@b.co".to_vec(), vec![], 415, "unsupported_media_type"),
        (
            "oversized body",
            json,
            format!("{{\"email\":\"a@b.co\",\"notes\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes(),
            vec![],
            413,
            "payload_too_large",
        ),
        (
            "idempotency key too long",
            json,
            br#"{"email":"a@b.co"}"#.to_vec(),
            vec![("idempotency-key", "k".repeat(300))],
            400,
            "invalid_idempotency_key",
        ),
        (
            "free property not a scalar",
            json,
            br#"{"email":"a@b.co","properties":{"x":{"y":1}}}"#.to_vec(),
            vec![],
            422,
            "invalid_type",
        ),
        (
            "malformed webhook signature header",
            json,
            br#"{"email":"a@b.co"}"#.to_vec(),
            vec![
                ("webhook-id", "m".into()),
                ("webhook-timestamp", "soon".into()),
                ("webhook-signature", "v1,xx".into()),
            ],
            401,
            "",
        ),
    ];
    for (name, ct, body, extra, want_status, want_code) in cases {
        let pairs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, resp) = serve.post_raw(ct, body, headers(&pairs)).await;
        assert_eq!(status, want_status, "{name}: {resp}");
        let code = resp["error"]["code"].as_str().unwrap_or_else(|| panic!("{name}: no error code in {resp}"));
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {resp}");
        if !want_code.is_empty() {
            assert_eq!(code, want_code, "{name}: {resp}");
        }
    }
    assert_eq!(serve.sandbox_calls(UPSERT).await, 0, "bad input never reaches HubSpot");

    // Wrong method and unknown routes answer JSON too.
    let r = serve.http.get(format!("{}/v1/leads", serve.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");
    let r = serve.http.post(format!("{}/v1/nope", serve.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
}

#[tokio::test]
async fn unknown_fields_are_echoed_not_dropped() {
    let serve = Serve::start(&[]);
    let body = br#"{"email":"echo@example.com","favourite_colour":"red","product":{"wheels":4,"model":"X"},
        "comment":"call me"}"#
        .to_vec();
    let (status, _, resp) = serve.post_raw("application/json", body, headers(&[])).await;
    assert_eq!(status, 200, "{resp}");
    // The default profile (chat-widget) writes neither `comment` nor `product.model`: reported, not dropped.
    let ignored = serde_json::json!(["comment", "favourite_colour", "product.model", "product.wheels"]);
    assert_eq!(resp["ignored"], ignored);
}
