//! The real `retry-worker` bootstrap under a Lambda Runtime API emulator, invoked with SQS events (built from
//! the committed fixture) against moto server and the HubSpot sandbox: a queued lead is delivered and the
//! batch reports no failures; a message whose schedule is spent moves to moto's dead-letter queue.

use hubrelay_testkit::runtime;

use std::path::Path;
use std::time::Duration;

use hubrelay_core::domain::{AttemptOutcome, DeliveryAttempt, FunctionName, RetryMessage};
use serde_json::{json, Value};

const FIXTURE: &str = hubrelay_testkit::runtime::SQS_EVENT_FIXTURE;

fn message(email: &str, failed_attempts: u32) -> RetryMessage {
    let now = time::OffsetDateTime::now_utc();
    let attempts = (1..=failed_attempts)
        .map(|attempt| DeliveryAttempt {
            attempt,
            at: now,
            outcome: AttemptOutcome::Retryable,
            system: None,
            status: Some(503),
            correlation_id: None,
            error_code: Some("hubspot_unavailable".into()),
            error: Some("Service Unavailable".into()),
        })
        .collect();
    RetryMessage {
        version: RetryMessage::UNSCOPED_VERSION,
        event_id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
        function: FunctionName::LeadCaptured,
        idempotency_key: format!("lead-captured:body:{email}"),
        received_at: now,
        event: json!({"email": email, "first_name": "Queued"}),
        attempts,
        not_before: now,
        dead_letter_reason: None,
        schedule_offset: 0,
        redrives: 0,
        tenant: None,
        write_intent: None,
    }
}

/// The fixture's first record, once per message, with the message as its body.
fn sqs_event(messages: &[&RetryMessage]) -> Value {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let template = fixture["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut r = template.clone();
            r["messageId"] = uuid::Uuid::new_v4().to_string().into();
            r["body"] = serde_json::to_string(m).unwrap().into();
            r["messageAttributes"]["event_id"]["stringValue"] = m.event_id.clone().into();
            r
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_delivers_queued_leads_and_dead_letters_spent_ones() {
    let stage = runtime::aws_stage().await;
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_retry-worker")), "retry-worker", &stage.env).await;

    let queued = message("queued@example.com", 1);
    let spent = message("spent@example.com", 10);
    // Dead-lettered after two failures, then redriven by an operator: its first attempt since.
    let mut redriven = message("redriven@example.com", 2);
    redriven.redrive(time::OffsetDateTime::now_utc());
    stage.hubspot_down(false);
    let id = f.emulator.push(sqs_event(&[&queued, &redriven]));
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(stage.sandbox.sandbox.contact_count().unwrap(), 2);

    // HubSpot still down for the last step of the schedule: the message goes to the DLQ with its history.
    stage.hubspot_down(true);
    let id = f.emulator.push(sqs_event(&[&spent]));
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response");
    assert_eq!(answer, json!({"batchItemFailures": []}), "dead-lettered by our code, not retried by SQS");
    let out = stage.sqs.receive_message().queue_url(&stage.dlq_url).wait_time_seconds(2).send().await.unwrap();
    let parked: RetryMessage = serde_json::from_str(out.messages()[0].body().unwrap()).unwrap();
    assert_eq!(parked.event_id, spent.event_id);
    assert_eq!(parked.attempts.len(), 11);
    assert_eq!(parked.dead_letter_reason.unwrap().code, "retries_exhausted");

    // Its metrics, as EMF lines on stdout after each batch, valid by AWS's specification: by the events'
    // function (two leads delivered, one of them redriven, one dead-lettered), and its own HubSpot calls.
    let documents = f.emf_documents();
    hubrelay_testkit::emf::assert_valid(&documents);
    let total = |function, metric| hubrelay_testkit::emf::total(&documents, function, metric);
    assert_eq!(total("lead-captured", "Delivered"), 2.0, "{documents:?}");
    assert_eq!(total("lead-captured", "Redriven"), 1.0, "{documents:?}");
    assert_eq!(total("lead-captured", "DeadLettered"), 1.0, "{documents:?}");
    assert_eq!(total("lead-captured", "Parked"), 0.0, "{documents:?}");
    assert!(total("retry-worker", "HubSpotRequests") >= 2.0, "{documents:?}");
    assert_eq!(total("retry-worker", "HubSpotLatency"), total("retry-worker", "HubSpotRequests"));
}

/// EventBridge's hourly schedule (`RetentionSweep` in template.yaml) with `HUBRELAY_PERSONAL_DATA_RETENTION=7d`: the
/// bootstrap clears a 10-day-old record of its masked email and hash, and keeps a 2-day-old one.
#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_runs_the_retention_sweep_when_the_schedule_invokes_it() {
    use hubrelay_core::store::{email_hash, EventLog, EventRecord, EventStatus};
    let stage = runtime::aws_stage().await;
    let table = hubrelay_aws::dynamodb::DynamoIdempotencyStore::new(stage.dynamo.clone(), stage.table.clone());
    let now = time::OffsetDateTime::now_utc();
    let record = |email: &str, days: i64| EventRecord {
        event_id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
        function: FunctionName::LeadCaptured,
        status: EventStatus::Delivered,
        received_at: now - time::Duration::days(days),
        updated_at: now - time::Duration::days(days),
        next_attempt_at: None,
        attempts: Vec::new(),
        contact_id: Some("201".into()),
        email_masked: Some(hubrelay_core::pii::mask_email(email)),
        email_hash: Some(email_hash(email)),
        reason: None,
    };
    table.put_event(&record("old.lead@example.com", 10)).await.unwrap();
    table.put_event(&record("recent.lead@example.com", 2)).await.unwrap();

    let mut env = stage.env.clone();
    env.push(("HUBRELAY_PERSONAL_DATA_RETENTION", "7d".into()));
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_retry-worker")), "retry-worker", &env).await;
    // AWS's example of a scheduled event (EventBridge "Scheduled Event").
    let id = f.emulator.push(json!({
        "version": "0", "id": "89d1a02d-5ec7-412e-82f5-13505f849b41", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-12-07T16:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hubrelay-RetentionSweep"], "detail": {}
    }));
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response");
    assert_eq!(answer["retentionSweep"]["scrubbed"], json!(1), "{answer}");
    assert_eq!(answer["retentionSweep"]["finished"], json!(true), "{answer}");
    assert_eq!(answer["retentionSweep"]["idle"], json!(false), "{answer}");
    let items = stage.dynamo.scan().table_name(&stage.table).send().await.unwrap();
    let raw = format!("{:?}", items.items());
    assert!(!raw.contains(&email_hash("old.lead@example.com")), "the old record cleared");
    assert!(raw.contains(&email_hash("recent.lead@example.com")), "the recent one kept");
}
