use serde_json::json;
use time::macros::datetime;

use super::*;

fn parse(v: serde_json::Value) -> Result<Vec<ReferralTrigger>, ReferralError> {
    parse_hubspot(v.to_string().as_bytes(), &ReferralConfig::default())
}

fn one(v: serde_json::Value) -> ReferralTrigger {
    let mut all = parse(v).unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn signup(t: ReferralTrigger) -> ContactSignup {
    match t {
        ReferralTrigger::ContactSignup(s) => s,
        other => panic!("expected a sign-up, got {other:?}"),
    }
}

fn deal(t: ReferralTrigger) -> DealStage {
    match t {
        ReferralTrigger::DealStage(d) => d,
        other => panic!("expected a deal, got {other:?}"),
    }
}

#[test]
fn custom_workflow_body_is_a_complete_signup() {
    let s = signup(one(json!({"email":" Jane@Example.com","advocate_code":"ADV1","firstname":"Jane",
        "last_name":"Doe","company":"Sears","hs_object_id":"101","event_date":"2026-03-01T10:00:00Z"})));
    assert_eq!(s.email.as_deref(), Some("jane@example.com"));
    assert_eq!((s.advocate_code.as_deref(), s.contact_id.as_deref()), (Some("ADV1"), Some("101")));
    assert_eq!((s.first_name.as_deref(), s.last_name.as_deref()), (Some("Jane"), Some("Doe")));
    assert_eq!(s.occurred_at, Some(datetime!(2026-03-01 10:00 UTC)));
    assert!(!s.needs_lookup());
}

#[test]
fn all_properties_contact_reads_values_and_vid() {
    let body = json!({"vid": 101, "portal-id": 62515, "properties": {
        "email": {"value": "jane@example.com", "versions": [{"value": "jane@example.com", "source-type": "FORM"}]},
        "advocate_code": {"value": "ADV1"}, "firstname": {"value": "Jane"}, "lastmodifieddate": {"value": "1772359200000"}}});
    let s = signup(one(body));
    assert_eq!((s.contact_id.as_deref(), s.advocate_code.as_deref()), (Some("101"), Some("ADV1")));
    assert_eq!(s.occurred_at, Some(datetime!(2026-03-01 10:00 UTC)));
}

#[test]
fn extoles_recipe_body_is_read_too() {
    let body = json!({"event_name":"signed_up","data":{"email":"jane@example.com","advocate_code":"ADV1",
        "first_name":"Jane","partner_conversion_id":"x","extole_app_type":"hubspot"}});
    assert_eq!(signup(one(body)).first_name.as_deref(), Some("Jane"));
}

#[test]
fn contacts_without_code_are_ignored_and_bad_ones_refused() {
    assert!(matches!(one(json!({"email":"jane@example.com"})), ReferralTrigger::Ignored { .. }));
    assert!(matches!(one(json!({"email":"jane@example.com","advocate_code":"  "})), ReferralTrigger::Ignored { .. }));
    let e = parse(json!({"email":"not-an-email","advocate_code":"A"})).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("email")));
    assert!(!e.message.contains("not-an-email"), "emails are masked: {}", e.message);
    let e = parse(json!({"advocate_code":"A"})).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("email")));
    assert_eq!(parse(json!({"properties": "x"})).unwrap_err().code, "invalid_field");
    let e = parse_hubspot(b"{nope", &ReferralConfig::default()).unwrap_err();
    assert_eq!(e.code, "invalid_json");
    assert_eq!(parse(json!("text")).unwrap_err().code, "invalid_payload");
}

#[test]
fn all_properties_deal_is_complete_with_its_contact() {
    let body = json!({"portalId": 62515, "dealId": 9001, "isDeleted": false,
        "associations": {"associatedVids": [101], "associatedCompanyIds": []},
        "properties": {"dealstage": {"value": "closedwon", "timestamp": 1772359200000i64, "source": "CRM_UI"},
            "amount": {"value": "12000"}, "dealname": {"value": "Pro plan"}, "email": {"value": "Jane@Example.com"}}});
    let d = deal(one(body));
    assert_eq!((d.deal_id.as_str(), d.stage.as_str()), ("9001", "closedwon"));
    assert_eq!((d.contact_id.as_deref(), d.contact_email.as_deref()), (Some("101"), Some("jane@example.com")));
    assert_eq!(d.properties.get("amount").map(String::as_str), Some("12000"));
    assert!(!d.needs_lookup());
    // v3 shape without the contact's email: the contact must be read.
    let d = deal(one(json!({"id":"9001","properties":{"dealstage":"closedwon","hs_object_id":"9001"}})));
    assert!(d.needs_lookup());
}

#[test]
fn deals_in_other_stages_are_ignored_and_ids_checked() {
    let t = one(json!({"hs_object_id":"9001","dealstage":"appointmentscheduled"}));
    assert!(matches!(t, ReferralTrigger::Ignored { reason } if reason.contains("appointmentscheduled")));
    let e = parse(json!({"hs_object_id":"abc","dealstage":"closedwon"})).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("hs_object_id")));
    let e = parse(json!({"dealstage":"closedwon"})).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("hs_object_id")));
}

#[test]
fn app_webhook_batch_gives_one_trigger_per_event() {
    let base = json!({"eventId":1,"subscriptionId":2,"portalId":62515,"appId":54321,"occurredAt":1772359200000i64,
        "attemptNumber":0,"changeSource":"CRM"});
    let ev = |extra: serde_json::Value| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    let batch = json!([
        ev(json!({"subscriptionType":"contact.creation","objectId":101})),
        ev(
            json!({"subscriptionType":"contact.propertyChange","objectId":102,"propertyName":"advocate_code","propertyValue":"ADV2"})
        ),
        ev(
            json!({"subscriptionType":"contact.propertyChange","objectId":103,"propertyName":"phone","propertyValue":"1"})
        ),
        ev(
            json!({"eventType":"deal.propertyChange","objectId":"9001","propertyName":"dealstage","propertyValue":"closedwon"})
        ),
        ev(
            json!({"subscriptionType":"deal.propertyChange","objectId":9002,"propertyName":"dealstage","propertyValue":"closedlost"})
        ),
        ev(
            json!({"subscriptionType":"object.propertyChange","objectTypeId":"0-3","objectId":9003,"propertyName":"dealstage","propertyValue":"closedwon"})
        ),
        ev(json!({"subscriptionType":"company.creation","objectId":5})),
    ]);
    let t = parse(batch).unwrap();
    assert_eq!(t.len(), 7);
    let created = signup(t[0].clone());
    assert!(created.needs_lookup() && created.contact_id.as_deref() == Some("101"));
    assert_eq!(created.occurred_at, Some(datetime!(2026-03-01 10:00 UTC)));
    assert_eq!(signup(t[1].clone()).advocate_code.as_deref(), Some("ADV2"));
    assert!(matches!(&t[2], ReferralTrigger::Ignored { .. }));
    let d = deal(t[3].clone());
    assert!(d.partial && d.needs_lookup() && d.deal_id == "9001" && d.stage == "closedwon");
    assert!(matches!(&t[4], ReferralTrigger::Ignored { .. }));
    assert_eq!(deal(t[5].clone()).deal_id, "9003");
    assert!(matches!(&t[6], ReferralTrigger::Ignored { reason } if reason.contains("company.creation")));
}

#[test]
fn malformed_batches_name_the_event() {
    let e =
        parse(json!([{"subscriptionType":"contact.creation","objectId":1},{"subscriptionType":"contact.creation"}]))
            .unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("[1].objectId")));
    let e = parse(json!([{"objectId":1}])).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("[0].subscriptionType"));
    let e = parse(json!([{"subscriptionType":"contact.creation","objectId":1,"occurredAt":"soon"}])).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("[0].occurredAt"));
    assert_eq!(parse(json!([])).unwrap_err().code, "invalid_payload");
    assert_eq!(parse(json!([1])).unwrap_err().code, "invalid_payload");
}

#[test]
fn signup_maps_to_extoles_keys() {
    let s =
        signup(one(json!({"email":"jane@example.com","advocate_code":"ADV1","firstname":"Jane","company":"Sears"})));
    let e = extole_signup(&s, &ReferralConfig::default(), datetime!(2026-03-01 10:00 +01:00)).unwrap();
    assert_eq!(e.event_name, "signed_up");
    let keys: Vec<&str> = e.data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["advocate_code", "company", "email", "event_date", "extole_app_type", "first_name", "partner_conversion_id"]
    );
    assert_eq!(e.data["event_date"], "2026-03-01T09:00:00Z");
    assert_eq!(e.data["extole_app_type"], "hubspot");
    assert_eq!(e.data["partner_conversion_id"], crate::partners::signup_conversion_id("jane@example.com"));
    let no_email = ContactSignup { advocate_code: Some("A".into()), ..ContactSignup::default() };
    assert_eq!(
        extole_signup(&no_email, &ReferralConfig::default(), datetime!(2026-03-01 0:00 UTC)).unwrap_err().code,
        "missing_field"
    );
}

fn won_deal() -> DealStage {
    deal(one(json!({"hs_object_id":"9001","dealstage":"closedwon","amount":"12000.50","dealname":"Pro plan",
        "lastmodifieddate":"1772359200000","closedate":"2026-02-28T00:00:00Z","hs_deal_stage_probability":"1.0"})))
}

#[test]
fn deal_maps_to_extole_converted() {
    let e =
        extole_converted(&won_deal(), "Jane@Example.com", &ReferralConfig::default(), datetime!(2030-01-01 0:00 UTC))
            .unwrap();
    assert_eq!(e.event_name, "converted");
    assert_eq!(e.data["partner_conversion_id"], "deal_closedwon_9001");
    assert_eq!((e.data["product"].as_str(), e.data["amount"].as_str()), ("Pro plan", "12000.50"));
    assert_eq!((e.data["email"].as_str(), e.data["event_date"].as_str()), ("jane@example.com", "2026-03-01T10:00:00Z"));
}

#[test]
fn deal_maps_to_the_seed_impact_conversion() {
    let config = ReferralConfig { impact_campaign_id: Some("1234".into()), ..ReferralConfig::default() };
    let c = impact_conversion(&won_deal(), "jane@example.com", &config, datetime!(2030-01-01 0:00 UTC)).unwrap();
    let form: std::collections::BTreeMap<String, String> = c.form().into_iter().collect();
    assert_eq!(form["CampaignId"], "1234");
    assert_eq!(form["EventDate"], "2026-03-01T10:00:00Z");
    assert_eq!(form["OrderId"], "deal_closedwon_9001");
    assert_eq!(form["EventTypeCode"], "deal_closedwon");
    assert_eq!(form["CustomerId"], "9001");
    assert_eq!(form["CustomerEmail"], crate::partners::sha256_hex_email("jane@example.com"));
    assert_eq!((form["OrderSubTotal"].as_str(), form["CurrencyCode"].as_str()), ("12000.50", "USD"));
    assert_eq!((form["Date3"].as_str(), form["Text2"].as_str()), ("2026-02-28T00:00:00Z", "1.0"));
    assert!(!form.values().any(|v| v.contains('@')), "no plaintext email: {form:?}");
    // Same deal twice → the same conversion.
    assert_eq!(c, impact_conversion(&won_deal(), "jane@example.com", &config, datetime!(2031-01-01 0:00 UTC)).unwrap());
}

#[test]
fn impact_mapping_errors_are_explicit() {
    let err =
        impact_conversion(&won_deal(), "jane@example.com", &ReferralConfig::default(), datetime!(2030-01-01 0:00 UTC))
            .unwrap_err();
    assert_eq!(err.code, "not_configured");
    let config = ReferralConfig { impact_campaign_id: Some("1234".into()), ..ReferralConfig::default() };
    let mut d = won_deal();
    d.properties.insert("amount".into(), "lots".into());
    let err = impact_conversion(&d, "jane@example.com", &config, datetime!(2030-01-01 0:00 UTC)).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("amount"));
    d.properties.insert("amount".into(), "10".into());
    d.properties.insert("closedate".into(), "someday".into());
    let err = impact_conversion(&d, "jane@example.com", &config, datetime!(2030-01-01 0:00 UTC)).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("closedate"));
}

#[test]
fn extole_share_links_in_both_shapes() {
    let controller = json!({"properties":{"email":"Jane@Example.com","share_code":"test123",
        "share_link":"https://refer.example.com/jane","company":"sears","extole_app_type":"hubspot"}});
    let ExtoleInbound::ShareLink(link) = parse_extole(controller.to_string().as_bytes()).unwrap() else { panic!() };
    let upsert = link.to_upsert();
    assert_eq!(upsert.email, "jane@example.com");
    let keys: Vec<&str> = upsert.properties.keys().map(String::as_str).collect();
    assert_eq!(keys, ["company", "extole_app_type", "share_code", "share_link"]);
    let generic = json!({"event":"Share Link Created","email":"jane@example.com","partner_user_id":"u-9",
        "timestamp":"2026-03-01T10:00:00Z","share_link":"https://refer.example.com/jane"});
    let ExtoleInbound::ShareLink(link) = parse_extole(generic.to_string().as_bytes()).unwrap() else { panic!() };
    assert_eq!((link.partner_user_id.as_deref(), link.share_code), (Some("u-9"), None));
    let other = json!({"event":"Reward Earned","email":"jane@example.com"});
    assert!(matches!(parse_extole(other.to_string().as_bytes()).unwrap(), ExtoleInbound::Ignored { .. }));
    let e = parse_extole(br#"{"properties":{"email":"jane@example.com"}}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("share_link")));
    assert_eq!(parse_extole(br#"{"properties":{"share_code":"x"}}"#).unwrap_err().field.as_deref(), Some("email"));
    assert_eq!(parse_extole(br#"{"hello":1}"#).unwrap_err().code, "invalid_payload");
}

#[test]
fn advocate_user_created_gives_contact_properties() {
    let body = json!({"id":"wh_1","type":"user.created","tenantAlias":"test_abc","live":false,"created":1772359200000i64,
        "data":{"id":"u1","accountId":"a1","email":"Jane@Example.com","firstName":"Jane","referralCode":"JANEDOE",
            "shareLinks":{"cleanShareLink":"https://ssqt.co/jane","EMBED":{"EMAIL":"https://ssqt.co/e"}},
            "referredBy":{"code":"BOBSMITH","isConverted":false},
            "messageLinks":{"referral-program":{"SMS":"https://ssqt.co/s","EMAIL":"https://ssqt.co/e"}}}});
    let AdvocateEvent::Update(u) = parse_advocate(body.to_string().as_bytes()).unwrap() else { panic!() };
    assert_eq!((u.webhook_id.as_str(), u.email.as_deref()), ("wh_1", Some("jane@example.com")));
    let p = |k: &str| u.properties.get(k).map(String::as_str);
    assert_eq!(p(ADVOCATE_REFERRAL_CODE), Some("JANEDOE"));
    assert_eq!(p(ADVOCATE_SHARE_LINK), Some("https://ssqt.co/jane"));
    assert_eq!(p(ADVOCATE_REFERRED_BY_CODE), Some("BOBSMITH"));
    assert_eq!((p(ADVOCATE_USER_ID), p(ADVOCATE_ACCOUNT_ID)), (Some("u1"), Some("a1")));
    assert_eq!(p(ADVOCATE_MESSAGE_LINKS), Some("EMAIL: https://ssqt.co/e\nSMS: https://ssqt.co/s"));
    assert_eq!(u.to_upsert().unwrap().properties.len(), 6);
}

#[test]
fn advocate_referrals_unknown_types_and_bad_envelopes() {
    let body = json!({"id":"wh_2","type":"referral.converted","tenantAlias":"t","live":true,"created":1,
        "data":{"id":"r1","referrer":{"id":"u1","accountId":"a1"},"referred":{"id":"u2","accountId":"a2"},
            "referralCodeUsed":"JANEDOE"}});
    let AdvocateEvent::Update(u) = parse_advocate(body.to_string().as_bytes()).unwrap() else { panic!() };
    assert_eq!((u.email, u.user_id.as_deref(), u.referrer_user_id.as_deref()), (None, Some("u2"), Some("u1")));
    assert_eq!(u.properties.get(ADVOCATE_REFERRED_BY_CODE).map(String::as_str), Some("JANEDOE"));
    assert_eq!(u.properties.get(ADVOCATE_REFERRAL_STATUS).map(String::as_str), Some("converted"));
    // The REST shape: users as ids.
    let flat = json!({"id":"wh_4","type":"referral.started","data":{"id":"r2","referredUser":"u7","referredAccount":"a7",
        "referrerUser":"u1","referrerAccount":"a1"}});
    let AdvocateEvent::Update(u) = parse_advocate(flat.to_string().as_bytes()).unwrap() else { panic!() };
    assert_eq!((u.user_id.as_deref(), u.account_id.as_deref()), (Some("u7"), Some("a7")));
    assert_eq!((u.referrer_user_id.as_deref(), u.to_upsert()), (Some("u1"), None));
    assert_eq!(u.properties.get(ADVOCATE_REFERRAL_STATUS).map(String::as_str), Some("started"));
    let nobody = json!({"id":"wh_5","type":"referral.started","data":{"id":"r3","referrerUser":"u1"}});
    let e = parse_advocate(nobody.to_string().as_bytes()).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("data.referredUser")));
    let unknown = json!({"id":"wh_3","type":"reward.created","tenantAlias":"t","live":true,"created":1,"data":{}});
    let AdvocateEvent::Ignored { event_type, .. } = parse_advocate(unknown.to_string().as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(event_type, "reward.created");
    assert_eq!(parse_advocate(br#"{"type":"user.created"}"#).unwrap_err().field.as_deref(), Some("id"));
    let no_user = json!({"id":"w","type":"user.created","data":{"referralCode":"X"}});
    assert_eq!(parse_advocate(no_user.to_string().as_bytes()).unwrap_err().code, "missing_field");
    let bad_live = json!({"id":"w","type":"user.created","live":"yes","data":{}});
    assert_eq!(parse_advocate(bad_live.to_string().as_bytes()).unwrap_err().field.as_deref(), Some("live"));
}

#[test]
fn iso_datetime_accepts_hubspot_forms() {
    assert_eq!(iso_datetime("1772359200000").as_deref(), Some("2026-03-01T10:00:00Z"));
    assert_eq!(iso_datetime("2026-03-01T11:00:00+01:00").as_deref(), Some("2026-03-01T10:00:00Z"));
    assert_eq!(iso_datetime("2026-03-01").as_deref(), Some("2026-03-01T00:00:00Z"));
    assert_eq!(iso_datetime("1772359200"), None);
}

#[test]
fn webhook_bodies_are_strict_json() {
    let config = ReferralConfig::default();
    let e = parse_hubspot(br#"{"email":"a@b.com","email":"c@d.com"}"#, &config).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("duplicate_key", Some("email")));
    let e = parse_hubspot(br#"[{"objectId":1,"objectId":2}]"#, &config).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("duplicate_key", Some("[0].objectId")));
    let e = parse_extole(br#"{"properties":{"email":"a@b.com","share_code":"x","share_code":"y"}}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("duplicate_key", Some("properties.share_code")));
    let e = parse_advocate(br#"{"type":"user.created","data":{"firstName":"J\u0000"}}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("nul_character", Some("data.firstName")));
    assert_eq!(parse_extole(b"{\"a\":\"\xff\"}").unwrap_err().code, "invalid_encoding");
}

#[test]
fn webhook_emails_are_normalised_like_leads() {
    let body = json!({"properties": {"email": "Jane@BÜCHER.de", "share_code": "x"}});
    let ExtoleInbound::ShareLink(link) = parse_extole(body.to_string().as_bytes()).unwrap() else { panic!() };
    assert_eq!(link.email, "jane@xn--bcher-kva.de");
    let body = json!({"properties": {"email": "ja\u{00AD}ne@example.com", "share_code": "x"}});
    let e = parse_extole(body.to_string().as_bytes()).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("email")));
}
