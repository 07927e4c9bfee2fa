//! Erasure on AWS, against moto and the HubSpot sandbox: a person's queued and dead-lettered messages are sealed
//! with their key, which the erasure destroys, so no copy can be read and the worker and the DLQ tools drop them;
//! their records in the table go; the table's raw contents hold nothing of them; another person is untouched; and
//! their next lead is delivered, sealed under a new key.

use std::sync::Arc;

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::dlq::DeadLetters;
use hubrelay_core::domain::FunctionName;
use hubrelay_core::domain::{DeadLetterReason, RetryMessage};
use hubrelay_core::message_seal::key_name;
use hubrelay_core::privacy::{Eraser, ErasureSource, PersonalData, Subject};
use hubrelay_core::store::{
    email_hash, sender_key, ContactVersions, Delivered, EventLog, EventRecord, EventStatus, IdempotencyStore,
    RetryQueue, StoredResponse,
};
use hubrelay_testkit::worker::{message_id, retry_message, worker_env, Options};
use serde_json::json;
use time::OffsetDateTime;

const ANN: &str = "ann.erased@example.com";
const ANN_PHONE: &str = "+44 20 7946 0123";
const BOB: &str = "bob.kept@example.com";

fn lead(email: &str, phone: &str) -> serde_json::Value {
    json!({"email": email, "first_name": "Ann", "phone": phone, "vehicle_of_interest": "Boat"})
}

/// Every item of the table, as text (attribute names, strings, numbers and bytes' lengths).
async fn raw_table(client: &aws_sdk_dynamodb::Client, table: &str) -> String {
    let out = client.scan().table_name(table).send().await.unwrap();
    format!("{:?}", out.items.unwrap_or_default())
}

fn event_record(m: &RetryMessage, status: EventStatus, email: &str) -> EventRecord {
    EventRecord {
        event_id: m.event_id.clone(),
        function: m.function,
        status,
        received_at: m.received_at,
        updated_at: m.received_at,
        next_attempt_at: None,
        attempts: m.attempts.clone(),
        contact_id: None,
        email_masked: Some(hubrelay_core::pii::mask_email(email)),
        email_hash: Some(email_hash(email)),
        reason: None,
    }
}

async fn record(store: &DynamoIdempotencyStore, m: &RetryMessage, email: &str) {
    store.put_event(&event_record(m, EventStatus::Retrying, email)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_persons_messages_cannot_be_read_and_their_next_lead_is_delivered() {
    let env = worker_env(Options::default()).await;
    let store = DynamoIdempotencyStore::new(env.dynamo.clone(), env.table.clone());
    let queue = env.worker.queue().clone();
    let now = OffsetDateTime::now_utc();

    // Ann: one lead waiting on the retry queue, one parked in the DLQ; Bob: one waiting. All recorded.
    let ann_queued = retry_message(&lead(ANN, ANN_PHONE), now, 1, now);
    let ann_parked = retry_message(&lead(ANN, ANN_PHONE), now, 8, now);
    let bob_queued = retry_message(&lead(BOB, "+1 555 0100"), now, 1, now);
    queue.enqueue(&ann_queued).await.unwrap();
    queue.enqueue(&bob_queued).await.unwrap();
    let reason = DeadLetterReason { code: "retries_exhausted".into(), message: "gave up".into() };
    queue.dead_letter(&ann_parked, &reason).await.unwrap();
    for (m, email) in [(&ann_queued, ANN), (&ann_parked, ANN), (&bob_queued, BOB)] {
        record(&store, m, email).await;
    }
    store.record_applied(ANN, now).await.unwrap();
    assert_eq!(env.depth(&env.dlq_url).await, (1, 0), "Ann's letter is parked");

    // On the queues every event is sealed: neither email nor phone is there to read, even before any erasure.
    let queued = env.receive(&env.queue_url).await;
    assert_eq!(queued.len(), 2);
    for (body, _) in &queued {
        assert!(!body.contains("ann.erased") && !body.contains("7946") && !body.contains("bob.kept"), "{body}");
        assert!(body.contains("\"sealed\""), "{body}");
    }

    // The key Ann's queued lead was sealed with (a worker pass that opened it holds the id).
    let sealed_ann = queued
        .iter()
        .map(|(body, _)| serde_json::from_str::<RetryMessage>(body).unwrap())
        .find(|m| m.event_id == ann_queued.event_id)
        .unwrap();
    let (_, ann_key, _) = hubrelay_core::message_seal::sealed_parts(&sealed_ann).unwrap();
    let sealer = queue.sealer().unwrap();
    assert!(sealer.reseal(&ann_queued, &ann_key).await.unwrap().is_some(), "before the erasure");

    let eraser = Eraser::new(Arc::new(store.clone()), None);
    let receipt = eraser.erase(&Subject::email(ANN), ErasureSource::Api, Some("ops"), false).await.unwrap();
    assert_eq!(receipt.counts.message_keys, 1, "{:?}", receipt.counts);
    assert_eq!((receipt.counts.event_records, receipt.counts.contact_versions), (2, 1), "{:?}", receipt.counts);

    // A pass that opened her message before the erasure cannot put it back on a queue.
    assert!(sealer.reseal(&ann_queued, &ann_key).await.unwrap().is_none(), "after the erasure");

    // The worker meets both queued messages: Ann's is dropped unread, Bob's delivered.
    let records: Vec<(String, String)> = queued.iter().map(|(body, _)| (message_id(), body.clone())).collect();
    let response = env.worker.handle(env.event(&records), now).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 1, "Bob's lead only");
    assert_eq!(env.event_status(&bob_queued.event_id).await.as_deref(), Some("delivered"));
    assert_eq!(env.depth(&env.queue_url).await, (0, 0), "nothing of Ann's goes back on the queue");

    // The DLQ tools delete Ann's letter when they meet it: it can never be read or redriven.
    let letters =
        hubrelay_aws::SqsDeadLetters::new(env.sqs.clone(), &env.dlq_url).with_sealer(queue.sealer().unwrap().clone());
    assert!(letters.list().await.unwrap().is_empty());
    assert_eq!(env.depth(&env.dlq_url).await, (0, 0));

    // Nothing left in the table names her: no hash, no masked email, no key; Bob's key stays.
    let raw = raw_table(&env.dynamo, &env.table).await;
    assert!(!raw.contains(&email_hash(ANN)) && !raw.contains("ann.erased") && !raw.contains("a***"), "{raw}");
    let key_of = |email: &str| format!("subject_key:{}", key_name(&format!("email:{}", email_hash(email))));
    assert!(raw.contains(&key_of(BOB)) && raw.contains(&key_of(ANN)), "Bob's key, and the mark of Ann's: {raw}");
    // A pass that was in flight cannot write her record back.
    record(&store, &ann_queued, ANN).await;
    assert!(store.get_event(&ann_queued.event_id).await.unwrap().is_none());
    assert!(store.is_erased(&ann_queued.event_id).await.unwrap());
    // The receipt names no one.
    let receipts = store.receipts(10).await.unwrap();
    assert_eq!(receipts.len(), 1);
    let text = serde_json::to_string(&receipts[0]).unwrap();
    assert!(!text.contains("ann.erased") && !text.contains(&email_hash(ANN)), "{text}");

    // Her next lead: sealed under a new key, delivered.
    let again = retry_message(&lead(ANN, ANN_PHONE), now, 1, now);
    queue.enqueue(&again).await.unwrap();
    let queued = env.receive(&env.queue_url).await;
    let records: Vec<(String, String)> = queued.iter().map(|(body, _)| (message_id(), body.clone())).collect();
    let response = env.worker.handle(env.event(&records), now).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 2, "Ann's new lead is delivered");
    assert_eq!(env.event_status(&again.event_id).await.as_deref(), Some("delivered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_erasure_by_contact_id_finds_the_email_through_the_records() {
    let env = worker_env(Options::default()).await;
    let acme: hubrelay_core::domain::TenantId = "acme".parse().unwrap();
    let table = DynamoIdempotencyStore::new(env.dynamo.clone(), env.table.clone());
    let store = table.for_tenant(&acme);
    let queue = env.worker.queue().for_tenant(&acme);
    let now = OffsetDateTime::now_utc();
    // Delivered inline: its key item carries the answer, the event record, the contact version and the lead link.
    let key = sender_key(FunctionName::LeadCaptured, "lead", "L-77");
    store.begin(&key, "h", now).await.unwrap();
    let inline = retry_message(&lead(ANN, ANN_PHONE), now, 1, now);
    let mut r = event_record(&inline, EventStatus::Delivered, ANN);
    r.contact_id = Some("98765432123".into());
    let delivered = Delivered {
        event: r,
        applied: Some((ANN.to_string(), now)),
        link: Some(("L-77".into(), "98765432123".into())),
        follow_ups: Vec::new(),
    };
    let answer = StoredResponse { status: 200, body: r#"{"status":"delivered"}"#.into() };
    store.complete_delivered(&key, &answer, &delivered, now).await.unwrap();
    // Then a lead waiting on the queue, and a status update naming only the lead id.
    let waiting = retry_message(&lead(ANN, ANN_PHONE), now, 1, now);
    queue.enqueue(&waiting).await.unwrap();
    record(&store, &waiting, ANN).await;
    let mut status = retry_message(&lead(BOB, "+1 555 0100"), now, 1, now);
    status.function = FunctionName::StatusUpdate;
    status.event = json!({"lead_id": "L-77", "status": "Sold"});
    queue.enqueue(&status).await.unwrap();

    // HubSpot's contact.privacyDeletion names the contact only.
    let counts = store
        .erase(
            &Subject::contact("98765432123"),
            &hubrelay_core::privacy::ErasureReceipt {
                receipt_id: "era_test".into(),
                at: now,
                source: ErasureSource::HubSpotPrivacyDeletion,
                operator: None,
                counts: Default::default(),
                hubspot: hubrelay_core::privacy::HubSpotErasure::NotRequested,
            },
        )
        .await
        .unwrap();
    assert_eq!(counts.idempotency_records, 1, "{counts:?}");
    assert_eq!(counts.message_keys, 2, "the email's key and the lead's: {counts:?}");
    let raw = raw_table(&env.dynamo, &env.table).await;
    assert!(!raw.contains(&email_hash(ANN)) && !raw.contains("a***"), "{raw}");
    assert!(!raw.contains("98765432123") && !raw.contains("L-77"), "no record of the contact or the lead: {raw}");

    // Neither waiting message can be opened: both keys carry the erasure's mark.
    let queued = env.receive(&env.queue_url).await;
    assert_eq!(queued.len(), 2);
    let sealer = env.worker.queue().sealer().unwrap();
    for (body, _) in &queued {
        let m: RetryMessage = serde_json::from_str(body).unwrap();
        assert!(matches!(sealer.open(&m).await.unwrap(), hubrelay_aws::sqs_seal::Opened::Erased), "{body}");
    }
    // A new lead of hers is sealed under a new key and opens.
    let again = retry_message(&lead(ANN, ANN_PHONE), now, 1, now);
    queue.enqueue(&again).await.unwrap();
    let (body, _) = env.receive(&env.queue_url).await.pop().unwrap();
    let m: RetryMessage = serde_json::from_str(&body).unwrap();
    assert!(matches!(sealer.open(&m).await.unwrap(), hubrelay_aws::sqs_seal::Opened::Opened(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_keeps_the_message_instead_of_calling_it_erased() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    let m = retry_message(&lead(BOB, "+1 555 0100"), now, 1, now);
    env.worker.queue().enqueue(&m).await.unwrap();
    let queued = env.receive(&env.queue_url).await;
    // Another table (a wrong --table, or a key that expired unused): an error, and the record comes back.
    let elsewhere = hubrelay_testkit::moto::idempotency_table(&env.dynamo).await;
    let other = hubrelay_aws::sqs_seal::MessageSealer::new(DynamoIdempotencyStore::new(env.dynamo.clone(), elsewhere));
    let sealed: RetryMessage = serde_json::from_str(&queued[0].0).unwrap();
    assert!(other.open(&sealed).await.is_err());
    let letters = hubrelay_aws::SqsDeadLetters::new(env.sqs.clone(), &env.dlq_url).with_sealer(other);
    env.worker.queue().dead_letter(&m, &DeadLetterReason { code: "x".into(), message: "y".into() }).await.unwrap();
    assert!(letters.list().await.unwrap().is_empty(), "unreadable here, not listed as a letter");
    assert_eq!(env.depth(&env.dlq_url).await.0, 1, "and not deleted");
}

fn delivered_record(email: &str, received_at: OffsetDateTime, status: EventStatus) -> EventRecord {
    EventRecord {
        event_id: uuid::Uuid::new_v4().to_string(),
        function: FunctionName::LeadCaptured,
        status,
        received_at,
        updated_at: received_at,
        next_attempt_at: None,
        attempts: Vec::new(),
        contact_id: Some("101".into()),
        email_masked: Some(hubrelay_core::pii::mask_email(email)),
        email_hash: Some(email_hash(email)),
        reason: None,
    }
}

/// Where the retention sweep's cursor item says the next invocation goes on from (`None`: no pass under way).
async fn cursor_next(env: &hubrelay_testkit::worker::WorkerEnv) -> Option<String> {
    let id = aws_sdk_dynamodb::types::AttributeValue::S(hubrelay_aws::dynamodb_retention::CURSOR_ID.into());
    let out = env.dynamo.get_item().table_name(&env.table).key("id", id).send().await.unwrap();
    out.item?.get("next")?.as_s().ok().cloned()
}

/// `HUBRELAY_PERSONAL_DATA_RETENTION` on AWS: the hourly scheduled invocation clears old records of every tenant,
/// a page at a time across invocations (a cursor item between them), and leaves recent and retrying ones.
#[tokio::test(flavor = "multi_thread")]
async fn the_retention_sweep_clears_old_records_of_every_tenant_across_invocations() {
    use hubrelay_aws::dynamodb_retention::{RetentionSweep, CURSOR_ID};
    use std::time::{Duration, Instant};
    let env = worker_env(Options::default()).await;
    let table = DynamoIdempotencyStore::new(env.dynamo.clone(), env.table.clone());
    let acme = table.for_tenant(&"acme".parse().unwrap());
    let now = OffsetDateTime::now_utc();
    let days = |n: i64| now - time::Duration::days(n);
    const CARL: &str = "carl.retrying@example.com";
    const DORA: &str = "dora.tenant@example.com";
    // Old: Ann's (default tenant), Dora's (acme), Carl's still retrying; recent: Bob's.
    let ann = delivered_record(ANN, days(10), EventStatus::Delivered);
    table.put_event(&ann).await.unwrap();
    acme.put_event(&delivered_record(DORA, days(9), EventStatus::Delivered)).await.unwrap();
    table.put_event(&delivered_record(CARL, days(10), EventStatus::Retrying)).await.unwrap();
    table.put_event(&delivered_record(BOB, days(2), EventStatus::Delivered)).await.unwrap();
    let raw = raw_table(&env.dynamo, &env.table).await;
    for email in [ANN, DORA, CARL, BOB] {
        assert!(raw.contains(&email_hash(email)), "{email} recorded");
    }

    let week = Duration::from_secs(7 * 86400);
    let sweep = RetentionSweep::new(table.clone(), week).with_page_size(1);
    // Past its deadline from the start, each invocation reads one item and leaves a cursor for the next.
    let (mut runs, mut scrubbed) = (0, 0);
    loop {
        let report = sweep.run(now, Instant::now()).await.unwrap();
        assert!(report.scanned <= 1 && !report.idle, "{report:?}");
        runs += 1;
        scrubbed += report.scrubbed;
        if report.finished {
            break;
        }
        assert!(cursor_next(&env).await.is_some(), "a cursor between invocations");
        assert!(runs < 50, "the sweep ends");
    }
    assert!(runs >= 4, "one item per invocation: {runs}");
    assert!(cursor_next(&env).await.is_none(), "a finished pass leaves nothing to go on from");
    assert_eq!(scrubbed, 2, "Ann's and Dora's records");
    let raw = raw_table(&env.dynamo, &env.table).await;
    for email in [ANN, DORA] {
        assert!(!raw.contains(&email_hash(email)), "{email}'s hash cleared");
        assert!(!raw.contains(&hubrelay_core::pii::mask_email(email)), "{email}'s masked email cleared");
    }
    for email in [CARL, BOB] {
        assert!(raw.contains(&email_hash(email)), "{email} kept (retrying, or recent)");
    }

    // The records are still listed, without the person. The finished pass is remembered: the next one starts an
    // hour on, and finds nothing more to clear.
    let listed = table.list_events(&Default::default()).await.unwrap();
    let listed_ann = listed.iter().find(|r| r.event_id == ann.event_id).expect("Ann's record listed");
    assert!(listed_ann.email_hash.is_none() && listed_ann.email_masked.is_none() && listed_ann.contact_id.is_some());
    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(sweep.run(now, deadline).await.unwrap().idle, "a pass finished just now");
    let next_hour = now + time::Duration::minutes(61);
    let again = sweep.run(next_hour, deadline).await.unwrap();
    assert!(!again.idle && again.finished && again.scrubbed == 0, "{again:?}");

    // At the default 15 days, `event:` items go by their TTL, but a lead delivered inline keeps its record on its
    // key item as long as its lead link: a daily pass clears it once it is 15 days old.
    let key = sender_key(FunctionName::LeadCaptured, "lead", "L-500");
    table.begin(&key, "h", days(20)).await.unwrap();
    let delivered = Delivered {
        event: delivered_record("eve.inline@example.com", days(20), EventStatus::Delivered),
        applied: Some(("eve.inline@example.com".to_string(), days(20))),
        link: Some(("L-500".into(), "555".into())),
        follow_ups: Vec::new(),
    };
    let answer = StoredResponse { status: 200, body: r#"{"status":"delivered"}"#.into() };
    table.complete_delivered(&key, &answer, &delivered, days(20)).await.unwrap();
    let default = RetentionSweep::new(table.clone(), Duration::from_secs(15 * 86400));
    let eve = email_hash("eve.inline@example.com");
    assert!(raw_table(&env.dynamo, &env.table).await.contains(&eve));
    // (The hourly pass finished a moment ago; the daily one is due a day after that.)
    let day_on = next_hour + time::Duration::hours(25);
    assert!(default.run(next_hour, deadline).await.unwrap().idle);
    let first = default.run(day_on, deadline).await.unwrap();
    assert_eq!((first.scrubbed, first.finished), (1, true), "{first:?}");
    // (The key item's contact version stays: it orders the contact's later leads, as on `serve`.)
    let item =
        env.dynamo.get_item().table_name(&env.table).key("id", aws_sdk_dynamodb::types::AttributeValue::S(key.clone()));
    let item = item.send().await.unwrap().item.unwrap();
    let record = item["event_record"].as_s().unwrap();
    let masked = hubrelay_core::pii::mask_email("eve.inline@example.com");
    assert!(!record.contains(&eve) && !record.contains(&masked), "the inline record cleared: {record}");
    let raw = raw_table(&env.dynamo, &env.table).await;
    assert!(raw.contains(&email_hash(BOB)), "Bob's is 2 days old");
    assert!(default.run(day_on + time::Duration::hours(2), deadline).await.unwrap().idle, "daily");
    assert!(!default.run(day_on + time::Duration::hours(25), deadline).await.unwrap().idle, "a day on");

    // An erasure drops the cursor (it may name an item of the person's): the next pass starts from the beginning.
    let mid = RetentionSweep::new(table.clone(), week).with_page_size(1);
    mid.run(next_hour + time::Duration::days(3), Instant::now()).await.unwrap();
    assert!(cursor_next(&env).await.is_some(), "a pass stopped mid-table");
    let receipt = hubrelay_core::privacy::ErasureReceipt {
        receipt_id: "era_cursor".into(),
        at: now,
        source: ErasureSource::Api,
        operator: Some("ops".into()),
        counts: Default::default(),
        hubspot: hubrelay_core::privacy::HubSpotErasure::NotRequested,
    };
    table.erase(&Subject { email: Some(BOB.into()), contact_id: None }, &receipt).await.unwrap();
    assert!(!raw_table(&env.dynamo, &env.table).await.contains(CURSOR_ID), "the cursor is gone");

    // Through the function's entry point: EventBridge's scheduled event runs the sweep; an SQS batch is handled as
    // ever; anything else is refused.
    table.put_event(&delivered_record(ANN, days(8), EventStatus::Delivered)).await.unwrap();
    let worker = env.worker.with_retention_sweep(Some(RetentionSweep::new(table.clone(), week)));
    let scheduled = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-12-07T15:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hubrelay-RetentionSweep"], "detail": {}
    });
    let answer = worker.handle_invocation(scheduled, now, deadline).await.unwrap();
    let sweep_answer = &answer["retentionSweep"];
    assert_eq!(
        answer,
        json!({"retentionSweep": {"idle": false, "scanned": sweep_answer["scanned"], "scrubbed": 1, "finished": true}})
    );
    assert!(!raw_table(&env.dynamo, &env.table).await.contains(&email_hash(ANN)));
    let batch = worker.handle_invocation(json!({"Records": []}), now, deadline).await.unwrap();
    assert_eq!(batch, json!({"batchItemFailures": []}));
    assert!(worker.handle_invocation(json!({"hello": 1}), now, deadline).await.is_err());
}
