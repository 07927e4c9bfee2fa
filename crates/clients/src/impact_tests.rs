//! Tests of impact.com's error classification.
use super::*;
use hubrelay_core::domain::AttemptOutcome;
use serde_json::json;

#[test]
fn keeps_every_error_message() {
    let body = json!({"Status":"ERROR","errors":[
        {"field":"CampaignId","level":"ERROR","message":"Invalid CampaignId"},
        {"field":"CustomerEmail","level":"ERROR","message":"must be hashed"}]});
    let e = error_from_response(400, &body, None);
    assert_eq!(e.code, "impact_invalid_conversion");
    assert_eq!(e.message, "Invalid CampaignId; CustomerEmail: must be hashed");
    assert_eq!(e.outcome(), AttemptOutcome::Rejected);
    let e = error_from_response(401, &json!({"Status":"ERROR","Message":"Authentication failed"}), None);
    assert_eq!((e.code.as_str(), e.message.as_str()), ("impact_unauthorized", "Authentication failed"));
    assert_eq!(error_from_response(429, &Value::Null, None).outcome(), AttemptOutcome::Retryable);
    assert_eq!(error_from_response(503, &Value::Null, None).code, "impact_unavailable");
}
