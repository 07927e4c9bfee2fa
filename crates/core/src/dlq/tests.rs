use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::domain::{AttemptOutcome, DeliveryAttempt};

const NOW: OffsetDateTime = datetime!(2026-03-02 12:00 UTC);

fn attempt(n: u32, at: OffsetDateTime, code: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt: n,
        at,
        outcome: AttemptOutcome::Rejected,
        system: None,
        status: Some(400),
        correlation_id: Some(format!("corr-{n}")),
        error_code: Some(code.into()),
        error: Some("refused".into()),
    }
}

fn message(id: &str, received: OffsetDateTime, code: &str) -> RetryMessage {
    RetryMessage {
        version: RetryMessage::VERSION,
        event_id: id.into(),
        function: FunctionName::LeadCaptured,
        idempotency_key: format!("key-{id}"),
        received_at: received,
        event: serde_json::json!({"email": "jane@example.com", "first_name": "Jane"}),
        attempts: vec![
            attempt(1, received, "hubspot_unavailable"),
            attempt(2, received + Duration::from_secs(5), code),
        ],
        not_before: received + Duration::from_secs(5),
        dead_letter_reason: None,
        schedule_offset: 0,
    }
}

fn reason(code: &str) -> DeadLetterReason {
    DeadLetterReason { code: code.into(), message: format!("{code} happened") }
}

fn letter(id: &str, received: OffsetDateTime, code: &str) -> DeadLetter {
    let mut m = message(id, received, code);
    m.dead_letter_reason = Some(reason(code));
    DeadLetter { message: m, dead_lettered_at: Some(received) }
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
    for bad in ["", "2", "h", "2x", "-1h", "1.5h", "99999999999999999999w"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn names_parse() {
    assert_eq!(parse_function("lead-captured"), Ok(FunctionName::LeadCaptured));
    assert!(parse_function("nope").is_err());
    assert_eq!(parse_status("dead-lettered"), Ok(EventStatus::DeadLettered));
    assert_eq!(parse_status("delivered"), Ok(EventStatus::Delivered));
    assert!(parse_status("lost").is_err());
}

#[test]
fn selection_rules() {
    assert!(Selection::default().validate().is_err());
    assert!(Selection { all: true, error_code: Some("x".into()), ..Default::default() }.validate().is_err());
    assert!(Selection::all().validate().is_ok());
    assert!(Selection::ids(["a"]).validate().is_ok());

    let old = letter("a", NOW - Duration::from_secs(3 * 3600), "property_doesnt_exist");
    let new = letter("b", NOW - Duration::from_secs(600), "invalid_option");
    assert!(Selection::all().matches(&old, NOW));
    assert!(!Selection::default().matches(&old, NOW));
    assert!(Selection::ids(["a"]).matches(&old, NOW));
    assert!(!Selection::ids(["a"]).matches(&new, NOW));

    let by_code = Selection { error_code: Some("property_doesnt_exist".into()), ..Default::default() };
    assert!(by_code.matches(&old, NOW) && !by_code.matches(&new, NOW));
    // The last attempt's code counts too (e.g. reason retries_exhausted, last error hubspot_unavailable).
    let mut exhausted = letter("c", NOW, "hubspot_unavailable");
    exhausted.message.dead_letter_reason = Some(reason("retries_exhausted"));
    assert!(Selection { error_code: Some("hubspot_unavailable".into()), ..Default::default() }.matches(&exhausted, NOW));
    assert!(Selection { error_code: Some("retries_exhausted".into()), ..Default::default() }.matches(&exhausted, NOW));
    assert_eq!(exhausted.last_error_code(), Some("hubspot_unavailable"));

    let by_age = Selection { older_than: Some(Duration::from_secs(3600)), ..Default::default() };
    assert!(by_age.matches(&old, NOW) && !by_age.matches(&new, NOW));
    let by_function = Selection { function: Some(FunctionName::LeadCaptured), ..Default::default() };
    assert!(by_function.matches(&new, NOW));
    // Criteria combine with AND.
    let both =
        Selection { error_code: Some("invalid_option".into()), older_than: by_age.older_than, ..Default::default() };
    assert!(!both.matches(&new, NOW) && !both.matches(&old, NOW));
}
