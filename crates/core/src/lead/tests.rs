//! Tests of the lead model and both parsers.

use super::*;

pub(crate) const SAMPLE: &str = r#"{"lead_id": "aimbase_rollick-12345", "email": "jane@example.com",
    "first_name": "Jane", "last_name": "Doe", "phone": "+1 555 0100", "lead_date": "2026-11-20 -06:00",
    "type": "Quote", "source": "Website", "category": "Retail",
    "product": {"year": "2026", "name": "Model X", "brand": "Acme", "make": "Acme", "model": "X",
                "stock_number": "S123", "msrp": "45999", "display_price": "43999"},
    "comment": "Call after 5", "time_to_purchase": "0-3 months", "consent": {"sms": true, "email": false},
    "dealer": {"name": "Lakeside Motors", "id": "D-17"}, "dealership": {"name": "Lakeside", "slug": "lakeside"},
    "vehicle_of_interest": "2026 Model X", "budget_range": "40-50k", "priority": "high",
    "origin_channel": "chat_widget", "status": "new", "notes": "...", "hubspot_contact_id": null,
    "properties": {"any_hubspot_property": "value"}}"#;

fn json(body: &str) -> Result<ParsedLead, LeadError> {
    parse_json(body.as_bytes())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn sample_lead_parses_completely() {
    let parsed = json(SAMPLE).unwrap();
    assert!(parsed.ignored.is_empty());
    let l = parsed.lead;
    assert_eq!(l.lead_id, s("aimbase_rollick-12345"));
    assert_eq!(l.lead_type, s("Quote"));
    assert_eq!(l.product.stock_number, s("S123"));
    assert_eq!(l.product.display_price, s("43999"));
    assert_eq!(l.consent, Consent { sms: Some(true), email: Some(false) });
    assert_eq!(l.dealer.id, s("D-17"));
    assert_eq!(l.dealership.slug, s("lakeside"));
    assert_eq!(l.hubspot_contact_id, None);
    assert_eq!(l.properties.get("any_hubspot_property"), s("value").as_ref());
    assert_eq!(l.field("type"), Some(FieldValue::Text("Quote".into())));
    assert_eq!(l.field("consent.email"), Some(FieldValue::Bool(false)));
    assert_eq!(l.field("hubspot_contact_id"), None);
    assert_eq!(l.field("product.colour"), None);
}

#[test]
fn camel_case_aliases_numbers_and_trimming() {
    let l = json(
        r#"{"leadId": 12345, "email": "  Jane@Example.COM ", "firstName": " Jane ", "lastName": "",
            "product": {"year": 2026, "msrp": 45999.5, "stockNumber": "S1", "displayPrice": "1"},
            "timeToPurchase": "soon", "vehicleOfInterest": "X", "budgetRange": "B", "originChannel": "c",
            "hubspotContactId": 901, "leadDate": "2026-11-20", "leadType": "Quote"}"#,
    )
    .unwrap()
    .lead;
    assert_eq!(l.lead_id, s("12345"));
    assert_eq!(l.email, s("jane@example.com"));
    assert_eq!(l.first_name, s("Jane"));
    assert_eq!(l.last_name, None);
    assert_eq!(l.product.year, s("2026"));
    assert_eq!(l.product.msrp, s("45999.5"));
    assert_eq!(l.product.stock_number, s("S1"));
    assert_eq!(l.product.display_price, s("1"));
    assert_eq!(l.time_to_purchase, s("soon"));
    assert_eq!(l.origin_channel, s("c"));
    assert_eq!(l.hubspot_contact_id, s("901"));
    assert_eq!(l.lead_type, s("Quote"));
}

#[test]
fn full_name_fills_absent_names() {
    let l = json(r#"{"full_name": "  Jane   van Doe "}"#).unwrap().lead;
    assert_eq!((l.first_name, l.last_name), (s("Jane"), s("van Doe")));
    let l = json(r#"{"name": "Cher"}"#).unwrap().lead;
    assert_eq!((l.first_name, l.last_name), (s("Cher"), None));
    let l = json(r#"{"fullName": "Jane Doe", "first_name": "Janet"}"#).unwrap().lead;
    assert_eq!((l.first_name, l.last_name), (s("Janet"), s("Doe")));
    let l = json(r#"{"name": "Jane Doe", "first_name": "J", "last_name": "D"}"#).unwrap().lead;
    assert_eq!((l.first_name, l.last_name), (s("J"), s("D")));
}

#[test]
fn unknown_fields_are_reported_sorted() {
    let p = json(
        r#"{"favourite_colour": "red", "product": {"wheels": 4, "year": "2026"}, "consent": {"fax": true},
            "dealer": {"city": "x"}, "dealership": {"zip": 1}, "aaa": {"nested": [1]}}"#,
    )
    .unwrap();
    assert_eq!(
        p.ignored,
        ["aaa", "consent.fax", "dealer.city", "dealership.zip", "favourite_colour", "product.wheels"]
    );
    assert_eq!(p.lead.product.year, s("2026"));
}

#[test]
fn email_must_look_like_one() {
    for bad in ["jane", "@example.com", "jane@example", "ja ne@example.com", "a@b@c.com", "a@.com", "a@b..com"] {
        let e = json(&format!(r#"{{"email": "{bad}"}}"#)).unwrap_err();
        assert_eq!(
            e,
            LeadError::InvalidEmail { field: "email".into(), message: "not a valid email address".into() },
            "{bad}"
        );
        assert_eq!(e.code(), "invalid_email");
    }
    assert_eq!(json(r#"{"email": "   "}"#).unwrap().lead.email, None);
    assert_eq!(json(r#"{"email": null}"#).unwrap().lead.email, None);
}

#[test]
fn type_errors() {
    let cases = [
        (r#"{"first_name": {"a": 1}}"#, "first_name"),
        (r#"{"firstName": ["Jane"]}"#, "first_name"),
        (r#"{"phone": true}"#, "phone"),
        (r#"{"product": "Model X"}"#, "product"),
        (r#"{"product": {"year": [2026]}}"#, "product.year"),
        (r#"{"consent": true}"#, "consent"),
        (r#"{"consent": {"sms": "maybe"}}"#, "consent.sms"),
        (r#"{"consent": {"sms": 2}}"#, "consent.sms"),
        (r#"{"dealer": []}"#, "dealer"),
        (r#"{"dealership": 1}"#, "dealership"),
        (r#"{"properties": {"a": {"b": 1}}}"#, "properties.a"),
        (r#"{"properties": {"a": [1]}}"#, "properties.a"),
        (r#"{"properties": "x"}"#, "properties"),
    ];
    for (body, field) in cases {
        match json(body).unwrap_err() {
            LeadError::InvalidType { field: f, .. } | LeadError::InvalidValue { field: f, .. } => {
                assert_eq!(f, field, "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    assert_eq!(json(r#"{"phone": true}"#).unwrap_err().code(), "invalid_type");
    assert_eq!(json(r#"{"first_name": "A", "firstName": "B"}"#).unwrap_err().code(), "invalid_value");
}

#[test]
fn consent_and_properties_values() {
    let l = json(r#"{"consent": {"sms": "YES", "email": "off"}, "properties": {"a": 1, "b": true, "c": " x ", "d": null, "e": ""}}"#)
        .unwrap()
        .lead;
    assert_eq!(l.consent, Consent { sms: Some(true), email: Some(false) });
    let props: Vec<_> = l.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(props, [("a", "1"), ("b", "true"), ("c", "x")]);
    let l = json(r#"{"consent": {"sms": 1, "email": 0}}"#).unwrap().lead;
    assert_eq!(l.consent, Consent { sms: Some(true), email: Some(false) });
}

#[test]
fn body_errors() {
    assert_eq!(json("").unwrap_err(), LeadError::EmptyBody);
    assert_eq!(json(" \n").unwrap_err().code(), "empty_body");
    assert_eq!(json("{").unwrap_err().code(), "malformed_json");
    assert_eq!(json("null").unwrap_err(), LeadError::NotAnObject);
    assert_eq!(json("[]").unwrap_err().code(), "invalid_body");
    assert_eq!(json(r#""lead""#).unwrap_err().code(), "invalid_body");
    assert_eq!(parse_form(b"").unwrap_err().code(), "empty_body");
}

#[test]
fn odd_inputs_never_panic() {
    let deep_array = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_object = r#"{"a":"#.repeat(10_000) + "1" + &"}".repeat(10_000);
    let deep_in_field = format!(r#"{{"product": {{"year": {deep_array}}}}}"#);
    let bodies: Vec<Vec<u8>> = vec![
        deep_array.clone().into_bytes(),
        deep_object.into_bytes(),
        deep_in_field.into_bytes(),
        br#"{"lead_id": 123456789012345678901234567890, "product": {"msrp": 1e308, "year": -0.0}}"#.to_vec(),
        br#"{"msrp": 1e400}"#.to_vec(),
        "{\"first_name\": \"Zo\u{eb} \u{1F600} \u{202E}\", \"name\": \"\u{00A0}\u{3000}\", \"\u{1F600}\": 1}"
            .as_bytes()
            .to_vec(),
        b"{\"email\": \"\xff\xfe\"}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"null".to_vec(),
        b"[{\"email\": \"a@b.co\"}]".to_vec(),
        b"{\"properties\": {\"\": \"x\"}}".to_vec(),
        b"\0".to_vec(),
    ];
    for body in &bodies {
        let _ = parse_json(body);
        let _ = parse_form(body);
    }
    let e = json(r#"{"lead_id": 123456789012345678901234567890}"#).unwrap_err();
    assert_eq!(e.code(), "invalid_value");
    let p = json(r#"{"lead_id": 18446744073709551615, "product": {"msrp": 0.1, "year": -0.0}}"#).unwrap();
    assert_eq!(p.lead.lead_id, s("18446744073709551615"));
    assert_eq!(p.lead.product.msrp, s("0.1"));
    let p = json("{\"first_name\": \"Zo\u{eb}\", \"email\": \"J\u{d6}@EXAMPLE.com\"}").unwrap();
    assert_eq!(p.lead.email, s("j\u{f6}@example.com"));
    for odd in ["=", "a", "&&&", "%", "%zz=1", "__=1", "a[b=1", "product[]=1", "product=1&product__year=2"] {
        let _ = parse_form(odd.as_bytes());
    }
}

#[test]
fn zapier_form_payloads() {
    let body = "lead_id=aimbase_rollick-12345&email=Jane%40Example.com&full_name=Jane+van+Doe\
        &product__year=2026&product.name=Model+X&product%5Bbrand%5D=Acme&productstock=1\
        &consent__sms=Yes&consent__email=OFF&dealer__name=Lakeside+Motors&properties__my__prop=v\
        &properties__budget=%2445%2C999&favourite__colour=red&status=&comment=%20";
    let p = parse_form(body.as_bytes()).unwrap();
    let l = &p.lead;
    assert_eq!(l.email, s("jane@example.com"));
    assert_eq!((l.first_name.clone(), l.last_name.clone()), (s("Jane"), s("van Doe")));
    assert_eq!(l.product.year, s("2026"));
    assert_eq!(l.product.name, s("Model X"));
    assert_eq!(l.product.brand, s("Acme"));
    assert_eq!(l.consent, Consent { sms: Some(true), email: Some(false) });
    assert_eq!(l.dealer.name, s("Lakeside Motors"));
    assert_eq!(l.properties.get("my__prop"), s("v").as_ref());
    assert_eq!(l.properties.get("budget"), s("$45,999").as_ref());
    assert_eq!((l.status.clone(), l.comment.clone()), (None, None));
    assert_eq!(p.ignored, ["favourite", "productstock"]);
}

#[test]
fn form_errors() {
    let code = |b: &str| parse_form(b.as_bytes()).unwrap_err().code();
    assert_eq!(code("product__year=1&product.year=2"), "malformed_form");
    assert_eq!(code("email=a%40b.co&email=c%40d.co"), "malformed_form");
    assert_eq!(code("product=X&product__year=2"), "malformed_form");
    assert_eq!(code("product[year=2"), "malformed_form");
    assert_eq!(code("__x=1"), "malformed_form");
    assert_eq!(code("consent__sms=maybe"), "invalid_value");
    assert_eq!(code("email=nope"), "invalid_email");
    assert_eq!(code("product=X"), "invalid_type");
}

#[test]
fn canonical_json_is_sorted_compact_and_round_trips() {
    let l = json(SAMPLE).unwrap().lead;
    let c = l.canonical_json();
    assert!(c.starts_with(r#"{"budget_range":"40-50k","category":"Retail","comment":"Call after 5","consent":{"email":false,"sms":true}"#), "{c}");
    assert!(!c.contains("hubspot_contact_id"));
    assert!(c.contains(r#""type":"Quote""#));
    let back: Lead = serde_json::from_str(&c).unwrap();
    assert_eq!(back, l);
    assert_eq!(back.canonical_json(), c);
    assert_eq!(Lead::default().canonical_json(), "{}");
}

#[test]
fn known_fields_all_resolve() {
    assert!(Lead::is_known_field("product.year"));
    assert!(!Lead::is_known_field("product"));
    assert!(!Lead::is_known_field("lead_type"));
    let l = json(SAMPLE).unwrap().lead;
    for f in Lead::known_fields() {
        if *f != "hubspot_contact_id" {
            assert!(l.field(f).is_some(), "{f}");
        }
    }
}

#[test]
fn invisible_characters_in_an_email_are_refused() {
    for c in ["\u{200B}", "\u{200D}", "\u{00AD}", "\u{FEFF}"] {
        let e = json(&format!(r#"{{"email": "ja{c}ne@example.com"}}"#)).unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_email", Some("email")), "{c:?}");
        let form = format!("email=ja{c}ne%40example.com");
        assert_eq!(parse_form(form.as_bytes()).unwrap_err().code(), "invalid_email", "{c:?}");
    }
}

#[test]
fn one_address_in_any_spelling_is_one_lead() {
    // Same email, same canonical JSON: the idempotency hash and the contact are the same too.
    let canonical = |email: &str| json(&format!(r#"{{"email": "{email}", "first_name": "J"}}"#)).unwrap().lead;
    let nfc = canonical("j\u{f6}rg@b\u{fc}cher.de");
    for other in ["jo\u{308}rg@bu\u{308}cher.de", "J\u{d6}RG@xn--bcher-kva.de", " jörg@BÜCHER.DE "] {
        let lead = canonical(other);
        assert_eq!(lead.email, s("j\u{f6}rg@xn--bcher-kva.de"), "{other:?}");
        assert_eq!(lead.canonical_json(), nfc.canonical_json(), "{other:?}");
    }
    let form = parse_form("email=jo%CC%88rg%40b%C3%BCcher.de&first_name=J".as_bytes()).unwrap().lead;
    assert_eq!(form.canonical_json(), nfc.canonical_json());
}

#[test]
fn duplicate_keys_are_refused() {
    let e = json(r#"{"email":"a@x.com","email":"b@x.com"}"#).unwrap_err();
    assert_eq!(e, LeadError::DuplicateKey("email".into()));
    assert_eq!((e.code(), e.is_syntax()), ("duplicate_key", true));
    let e = json(r#"{"email":"a@x.com","product":{"year":"2026","year":"2027"}}"#).unwrap_err();
    assert_eq!(e, LeadError::DuplicateKey("product.year".into()));
    let e = json(r#"{"email":"a@x.com","properties":{"p":"1","p":"1"}}"#).unwrap_err();
    assert_eq!(e.field(), Some("properties.p"));
}

#[test]
fn nul_is_refused_in_any_string() {
    let e = json(r#"{"email":"a@x.com","first_name":"Ja\u0000ne"}"#).unwrap_err();
    assert_eq!(e, LeadError::NulCharacter { field: "first_name".into() });
    assert_eq!((e.code(), e.is_syntax()), ("nul_character", false));
    let e = json(r#"{"email":"a@x.com","dealer":{"name":"\u0000"}}"#).unwrap_err();
    assert_eq!(e.field(), Some("dealer.name"));
    let e = parse_form(b"email=a%40x.com&last_name=D%00e").unwrap_err();
    assert_eq!(e, LeadError::NulCharacter { field: "last_name".into() });
}

#[test]
fn form_bodies_must_be_utf8_once_decoded() {
    for body in [&b"email=a%40x.com&first_name=J%FCrgen"[..], b"email=a%40x.com&first_name=J\xfcrgen", b"na%C3me=x"] {
        let e = parse_form(body).unwrap_err();
        assert_eq!((e.code(), e.is_syntax()), ("invalid_encoding", true), "{body:?}");
    }
    // Well-formed escapes, `+` and a stray `%` decode as before.
    let l = parse_form(b"email=a%40x.com&first_name=J%C3%BCrgen+M&last_name=100%").unwrap().lead;
    assert_eq!((l.first_name, l.last_name), (s("Jürgen M"), s("100%")));
}

#[test]
fn lead_date_is_checked_whatever_the_profile() {
    let e = json(r#"{"email":"a@x.com","lead_date":"20/11/2026"}"#).unwrap_err();
    assert_eq!((e.code(), e.field()), ("invalid_value", Some("lead_date")));
    let e = parse_form(b"email=a%40x.com&leadDate=tomorrow").unwrap_err();
    assert_eq!(e.field(), Some("lead_date"));
    assert!(json(r#"{"email":"a@x.com","leadDate":"2026-11-20 -06:00"}"#).is_ok());
}

#[test]
fn given_fields_keep_the_senders_names() {
    let p = json(
        r#"{"email":"a@x.com","leadDate":"2026-11-20","product":{"stockNumber":"S1","model":""},
            "consent":{"sms":"yes"},"dealer":{"id":7},"full_name":"Jane Doe","comment":null}"#,
    )
    .unwrap();
    let given: Vec<(&str, &str)> = p.given.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        given,
        [
            ("consent.sms", "consent.sms"),
            ("dealer.id", "dealer.id"),
            ("email", "email"),
            ("lead_date", "leadDate"),
            ("product.stock_number", "product.stockNumber"),
            ("first_name", "full_name"),
            ("last_name", "full_name"),
        ]
    );
    // A full name that fills nothing is dropped, so it is reported.
    let p = json(r#"{"name":"Jane Doe","first_name":"J","last_name":"D"}"#).unwrap();
    assert_eq!(p.ignored, ["name"]);
}
