//! Referral parse and mapping errors as HTTP answers: unreadable bodies 400, bad fields 422, a missing
//! setting 500 (moved here from the core's referral tests when `ApiError` left the core).

use hubrelay_core::referral::{impact_conversion, parse_hubspot, ReferralConfig, ReferralTrigger};
use hubrelay_http::error::ApiError;
use serde_json::json;
use time::macros::datetime;

#[test]
fn unreadable_json_is_400() {
    let e = parse_hubspot(b"{nope", &ReferralConfig::default()).unwrap_err();
    assert_eq!(e.code, "invalid_json");
    assert_eq!(ApiError::from(e).status.as_u16(), 400);
}

#[test]
fn duplicate_keys_are_400_and_nul_422_naming_the_key() {
    let e =
        parse_hubspot(br#"{"email":"a@b.com","advocate_code":"x","advocate_code":"y"}"#, &ReferralConfig::default())
            .unwrap_err();
    let api = ApiError::from(e);
    assert_eq!((api.status.as_u16(), api.code), (400, "duplicate_key"));
    assert_eq!(api.body()["error"]["details"]["field"], "advocate_code");
    let e = parse_hubspot(br#"{"email":"a@b.com\u0000"}"#, &ReferralConfig::default()).unwrap_err();
    let api = ApiError::from(e);
    assert_eq!((api.status.as_u16(), api.code), (422, "nul_character"));
    assert_eq!(api.body()["error"]["details"]["field"], "email");
}

#[test]
fn a_malformed_batch_is_422() {
    let body = json!([{"subscriptionType":"contact.creation","objectId":1},{"subscriptionType":"contact.creation"}]);
    let e = parse_hubspot(body.to_string().as_bytes(), &ReferralConfig::default()).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("[1].objectId")));
    assert_eq!(ApiError::from(e).status.as_u16(), 422);
}

#[test]
fn an_unconfigured_impact_campaign_is_500() {
    let body = json!({"hs_object_id":"9001","dealstage":"closedwon","amount":"12000.50","dealname":"Pro plan",
        "lastmodifieddate":"1772359200000","closedate":"2026-02-28T00:00:00Z","hs_deal_stage_probability":"1.0"});
    let mut triggers = parse_hubspot(body.to_string().as_bytes(), &ReferralConfig::default()).unwrap();
    let ReferralTrigger::DealStage(deal) = triggers.remove(0) else { panic!("expected a deal") };
    let err = impact_conversion(&deal, "jane@example.com", &ReferralConfig::default(), datetime!(2030-01-01 0:00 UTC))
        .unwrap_err();
    assert_eq!(err.code, "not_configured");
    assert_eq!(ApiError::from(err).status.as_u16(), 500);
}
