//! Dead letters: selections, ages, names; the redrive on the local SQLite store (skip delivered, restart
//! the schedule, report missing ids), get and purge.

use std::time::Duration;

use hubrelay_core::dlq::*;
use hubrelay_core::domain::{AttemptOutcome, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage};
use hubrelay_core::store::{EventLog, EventRecord, EventStatus, RetryQueue};
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::{local_db_path, LocalDeadLetters};
use time::macros::datetime;
use time::OffsetDateTime;

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
        version: RetryMessage::UNSCOPED_VERSION,
        tenant: None,
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
        redrives: 0,
        write_intent: None,
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

fn record(m: &RetryMessage, status: EventStatus) -> EventRecord {
    EventRecord {
        event_id: m.event_id.clone(),
        function: m.function,
        status,
        received_at: m.received_at,
        updated_at: m.received_at,
        next_attempt_at: None,
        attempts: m.attempts.clone(),
        contact_id: (status == EventStatus::Delivered).then(|| "1001".to_string()),
        email_masked: Some("j***@e***.com".into()),
        email_hash: None,
        reason: (status == EventStatus::DeadLettered).then(|| reason("x")),
    }
}

async fn local_with(letters: &[(&str, &str, EventStatus)]) -> LocalDeadLetters {
    let store = SqliteStore::open_in_memory().unwrap();
    for (i, (id, code, status)) in letters.iter().enumerate() {
        let m = message(id, NOW - Duration::from_secs(3600 * (i as u64 + 1)), code);
        store.dead_letter(&m, &reason(code)).await.unwrap();
        store.put_event(&record(&m, *status)).await.unwrap();
    }
    LocalDeadLetters::new(store)
}

#[tokio::test]
async fn local_redrive_moves_the_selected_restarting_the_schedule() {
    let dlq = local_with(&[
        ("evt_a", "property_doesnt_exist", EventStatus::DeadLettered),
        ("evt_b", "invalid_option", EventStatus::DeadLettered),
        ("evt_c", "property_doesnt_exist", EventStatus::DeadLettered),
    ])
    .await;
    let selection = Selection { error_code: Some("property_doesnt_exist".into()), ..Default::default() };
    let mut calls = Vec::new();
    let dry = Redriver::new(&dlq).run(&selection, true, NOW, &mut |d, t| calls.push((d, t))).await.unwrap();
    assert_eq!(dry.moved, ["evt_a", "evt_c"]);
    assert_eq!(dry.not_matched, 1);
    assert_eq!(calls, [(0, 2), (1, 2), (2, 2)]);
    assert_eq!(dlq.list().await.unwrap().len(), 3, "a dry run changes nothing");
    assert!(dlq.store().queued().unwrap().is_empty());

    let report = Redriver::new(&dlq).run(&selection, false, NOW, &mut |_, _| {}).await.unwrap();
    assert_eq!(report.moved, ["evt_a", "evt_c"]);
    assert!(report.failed.is_empty() && report.already_delivered.is_empty());
    let left: Vec<String> = dlq.list().await.unwrap().iter().map(|l| l.event_id().to_string()).collect();
    assert_eq!(left, ["evt_b"]);
    let queued = dlq.store().queued().unwrap();
    assert_eq!(queued.len(), 2);
    for m in &queued {
        assert_eq!(m.not_before, NOW);
        assert_eq!(m.schedule_offset, 2);
        assert_eq!(m.attempts.len(), 2, "history kept");
        assert_eq!(m.attempts_in_schedule(), 0);
        assert!(m.dead_letter_reason.is_none());
    }
    let rec = dlq.store().get_event("evt_a").await.unwrap().unwrap();
    assert_eq!(rec.status, EventStatus::Retrying);
    assert_eq!(rec.next_attempt_at, Some(NOW));
    assert!(rec.reason.is_none());
}

#[tokio::test]
async fn local_redrive_skips_delivered_and_reports_missing_ids() {
    let dlq = local_with(&[
        ("evt_a", "x", EventStatus::Delivered),
        ("evt_b", "x", EventStatus::DeadLettered),
        ("evt_c", "x", EventStatus::DeadLettered),
    ])
    .await;
    let report = Redriver::new(&dlq)
        .run(&Selection::ids(["evt_a", "evt_b", "evt_zz"]), false, NOW, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.moved, ["evt_b"]);
    assert_eq!(report.already_delivered, ["evt_a"]);
    assert_eq!(report.not_found, ["evt_zz"]);
    assert_eq!(report.not_matched, 1);
    let queued = dlq.store().queued().unwrap();
    assert_eq!(queued.iter().map(|m| m.event_id.as_str()).collect::<Vec<_>>(), ["evt_b"]);
    assert_eq!(dlq.list().await.unwrap().len(), 1);
    assert_eq!(dlq.store().get_event("evt_a").await.unwrap().unwrap().status, EventStatus::Delivered);
}

#[tokio::test]
async fn local_get_and_purge() {
    let dlq = local_with(&[("evt_a", "x", EventStatus::DeadLettered), ("evt_b", "y", EventStatus::DeadLettered)]).await;
    let a = dlq.get("evt_a").await.unwrap().unwrap();
    assert_eq!(a.attempts(), 2);
    assert_eq!(a.reason().unwrap().code, "x");
    assert!(a.dead_lettered_at.is_some());
    assert!(dlq.get("evt_zz").await.unwrap().is_none());
    assert_eq!(dlq.purge("evt_a").await.unwrap(), 1);
    assert_eq!(dlq.purge("evt_a").await.unwrap(), 0);
    assert_eq!(dlq.list().await.unwrap().len(), 1);
    assert!(dlq.store().queued().unwrap().is_empty());
}

#[test]
fn open_refuses_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalDeadLetters::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no hubrelay store"), "{err}");
    assert!(!local_db_path(dir.path()).exists(), "nothing created");
}
