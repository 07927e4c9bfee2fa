//! The AWS adapters against a real moto server (the DynamoDB, SQS and SSM wire protocols, no in-memory fakes).
//! Needs `scripts/install-test-tools` (or `HUBRELAY_MOTO_SERVER`); without a server these tests fail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::sdk::{secret_from_lookup, AwsConfigError};
use hubrelay_aws::sqs::{delay_seconds, SqsRetryQueue};
use hubrelay_core::domain::{AttemptOutcome, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage};
use hubrelay_core::store::{
    sender_key, Begin, ContactVersions, Delivered, EventFilter, EventLog, EventRecord, EventStatus, IdempotencyStore,
    LeadLinks, RetryQueue, StoreError, StoredResponse, IDEMPOTENCY_TTL, IN_PROGRESS_TTL, UPDATE_STATE_TTL,
};
use hubrelay_testkit::moto;
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------------------------------
// DynamoDB

async fn store() -> (DynamoIdempotencyStore, aws_sdk_dynamodb::Client, String) {
    let client = moto::dynamodb(moto::shared());
    let table = moto::idempotency_table(&client).await;
    (DynamoIdempotencyStore::new(client.clone(), table.clone()), client, table)
}

async fn raw_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Option<HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().unwrap_or_else(|_| panic!("{name} is not N")).parse().unwrap()
}

fn response() -> StoredResponse {
    StoredResponse { status: 202, body: r#"{"event_id":"evt_1","status":"accepted"}"#.into() }
}

const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00.250 UTC);
const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn dynamo_begin_then_complete_replays_the_stored_response() {
    let (store, client, table) = store().await;

    assert_eq!(store.begin("k1", "hash-a", T0).await.unwrap(), Begin::Started);

    let item = raw_item(&client, &table, "k1").await.expect("record written");
    assert_eq!(item["status"].as_s().unwrap(), "IN_PROGRESS");
    assert_eq!(item["validation"].as_s().unwrap(), "hash-a");
    assert_eq!(num(&item, "idempotency_expiration"), (T0 + IDEMPOTENCY_TTL).unix_timestamp(), "epoch seconds");
    // The TTL covers the window from the claim and the time to answer.
    assert_eq!(num(&item, "expiration"), (T0 + IDEMPOTENCY_TTL + IN_PROGRESS_TTL).unix_timestamp());
    assert_eq!(
        num(&item, "in_progress_expiration"),
        ((T0 + IN_PROGRESS_TTL).unix_timestamp_nanos() / 1_000_000) as i64,
        "in-progress expiry in epoch milliseconds"
    );

    let t1 = T0 + 2 * SECOND;
    store.complete("k1", &response(), t1).await.unwrap();
    let item = raw_item(&client, &table, "k1").await.unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "COMPLETED");
    assert_eq!(num(&item, "response_status"), 202);
    assert_eq!(num(&item, "idempotency_expiration"), (t1 + IDEMPOTENCY_TTL).unix_timestamp());
    assert_eq!(num(&item, "expiration"), (T0 + IDEMPOTENCY_TTL + IN_PROGRESS_TTL).unix_timestamp());
    assert_eq!(item["validation"].as_s().unwrap(), "hash-a");

    // A duplicate: long after the in-progress window, well inside the 4-day lifetime.
    let later = t1 + Duration::from_secs(3 * 24 * 3600);
    assert_eq!(store.begin("k1", "hash-a", later).await.unwrap(), Begin::Completed(response()));
}

#[tokio::test]
async fn dynamo_same_key_with_another_payload_conflicts() {
    let (store, _, _) = store().await;
    assert_eq!(store.begin("k", "hash-a", T0).await.unwrap(), Begin::Started);
    assert_eq!(store.begin("k", "hash-b", T0 + SECOND).await.unwrap(), Begin::Conflict, "while in progress");
    store.complete("k", &response(), T0 + SECOND).await.unwrap();
    assert_eq!(store.begin("k", "hash-b", T0 + 5 * SECOND).await.unwrap(), Begin::Conflict, "once completed");
    assert_eq!(store.begin("k", "hash-a", T0 + 5 * SECOND).await.unwrap(), Begin::Completed(response()));
}

#[tokio::test]
async fn dynamo_in_progress_blocks_the_same_payload() {
    let (store, _, _) = store().await;
    assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Started);
    assert_eq!(store.begin("k", "h", T0 + SECOND).await.unwrap(), Begin::InProgress);
    assert_eq!(store.begin("k", "h", T0 + IN_PROGRESS_TTL - SECOND).await.unwrap(), Begin::InProgress);
}

#[tokio::test]
async fn dynamo_orphaned_in_progress_record_is_taken_over() {
    let (store, client, table) = store().await;
    assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Started);
    // The first invocation died; past the in-progress window a re-delivery takes the key over.
    let t1 = T0 + IN_PROGRESS_TTL + SECOND;
    assert_eq!(store.begin("k", "h", t1).await.unwrap(), Begin::Started);
    let item = raw_item(&client, &table, "k").await.unwrap();
    assert_eq!(
        num(&item, "in_progress_expiration"),
        ((t1 + IN_PROGRESS_TTL).unix_timestamp_nanos() / 1_000_000) as i64
    );
    // ... and now owns a fresh window.
    assert_eq!(store.begin("k", "h", t1 + SECOND).await.unwrap(), Begin::InProgress);
}

#[tokio::test]
async fn dynamo_expired_record_is_taken_over_even_if_not_yet_deleted() {
    let (store, _, _) = store().await;
    assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Started);
    store.complete("k", &response(), T0).await.unwrap();
    // The record lingers (moto, like DynamoDB for up to ~48 h, has not deleted it): compare with now.
    assert_eq!(store.begin("k", "h", T0 + IDEMPOTENCY_TTL - SECOND).await.unwrap(), Begin::Completed(response()));
    assert_eq!(store.begin("k", "other", T0 + IDEMPOTENCY_TTL + SECOND).await.unwrap(), Begin::Started);
}

#[tokio::test]
async fn dynamo_release_frees_the_key_but_never_a_completed_one() {
    let (store, client, table) = store().await;
    assert_eq!(store.begin("k", "h", T0).await.unwrap(), Begin::Started);
    store.release("k").await.unwrap();
    assert!(raw_item(&client, &table, "k").await.is_none());
    assert_eq!(store.begin("k", "h", T0 + SECOND).await.unwrap(), Begin::Started);

    store.complete("k", &response(), T0 + SECOND).await.unwrap();
    store.release("k").await.unwrap(); // failed condition: ignored
    assert_eq!(store.begin("k", "h", T0 + 2 * SECOND).await.unwrap(), Begin::Completed(response()));

    store.release("never-seen").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_concurrent_begins_have_exactly_one_winner() {
    let (store, _, _) = store().await;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.begin("contended", "h", T0).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let started = outcomes.iter().filter(|b| **b == Begin::Started).count();
    let in_progress = outcomes.iter().filter(|b| **b == Begin::InProgress).count();
    assert_eq!((started, in_progress), (1, 19), "{outcomes:?}");
}

fn delivered_record(event_id: &str, at: OffsetDateTime) -> EventRecord {
    EventRecord {
        event_id: event_id.into(),
        function: FunctionName::LeadCaptured,
        status: EventStatus::Delivered,
        received_at: at,
        updated_at: at,
        next_attempt_at: None,
        attempts: vec![DeliveryAttempt::delivered(1, at)],
        contact_id: Some("501".into()),
        email_masked: Some("a***@e***.com".into()),
        email_hash: Some(hubrelay_core::store::email_hash("ann@example.com")),
        reason: None,
    }
}

#[tokio::test]
async fn dynamo_a_delivered_lead_is_one_completing_write_that_events_versions_and_links_all_find() {
    let (store, client, table) = store().await;
    let key = sender_key(FunctionName::LeadCaptured, "lead", "L-9");
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.begin(&key, "h", now).await.unwrap(), Begin::Started);
    let delivered = Delivered {
        event: delivered_record("evt_inline", now),
        applied: Some(("Ann@Example.com".into(), now)),
        link: Some(("L-9".into(), "501".into())),
        follow_ups: Vec::new(),
    };
    store.complete_delivered(&key, &response(), &delivered, now).await.unwrap();
    // Nothing but the key's item was written.
    let items = client.scan().table_name(&table).send().await.unwrap().items.unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    let item = raw_item(&client, &table, &key).await.unwrap();
    assert_eq!(num(&item, "idempotency_expiration"), (now + IDEMPOTENCY_TTL).unix_timestamp());
    assert_eq!(num(&item, "expiration"), (now + UPDATE_STATE_TTL).unix_timestamp(), "kept as long as the link");

    assert_eq!(store.begin(&key, "h", now).await.unwrap(), Begin::Completed(response()));
    assert_eq!(store.get_event("evt_inline").await.unwrap(), Some(delivered.event.clone()));
    let listed = store.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(listed, vec![delivered.event.clone()]);
    let retrying = EventFilter { status: Some(EventStatus::Retrying), limit: 10, ..Default::default() };
    assert!(store.list_events(&retrying).await.unwrap().is_empty());
    // Found by its email's hash (any case), not by another's.
    let by_email = |email: &str| EventFilter {
        email_hash: Some(hubrelay_core::store::email_hash(email)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_events(&by_email(" Ann@Example.com")).await.unwrap(), vec![delivered.event.clone()]);
    assert!(store.list_events(&by_email("bob@example.com")).await.unwrap().is_empty());
    let ms = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
    let applied = store.last_applied("ann@example.com").await.unwrap().unwrap();
    assert_eq!(ms(applied), ms(now));
    assert_eq!(store.contact_for("L-9").await.unwrap().as_deref(), Some("501"));
    // A version the retry worker records later (its own item) wins when newer.
    store.record_applied("ann@example.com", now + SECOND).await.unwrap();
    assert_eq!(ms(store.last_applied("ann@example.com").await.unwrap().unwrap()), ms(now + SECOND));

    // Claimed again after its window, then released: the link and the record stay, the key is free.
    let later = now + IDEMPOTENCY_TTL + SECOND;
    assert_eq!(store.begin(&key, "other", later).await.unwrap(), Begin::Started);
    assert_eq!(store.contact_for("L-9").await.unwrap().as_deref(), Some("501"));
    let item = raw_item(&client, &table, &key).await.unwrap();
    assert_eq!(num(&item, "expiration"), (now + UPDATE_STATE_TTL).unix_timestamp(), "the claim never lowers the TTL");
    store.release(&key).await.unwrap();
    assert_eq!(store.contact_for("L-9").await.unwrap().as_deref(), Some("501"));
    assert!(store.get_event("evt_inline").await.unwrap().is_some());
    assert_eq!(store.begin(&key, "other", later).await.unwrap(), Begin::Started);
    // A newer link (the worker's, or a merge's) wins over the one on the key item.
    store.link("L-9", "777", later).await.unwrap();
    assert_eq!(store.contact_for("L-9").await.unwrap().as_deref(), Some("777"));
    // An expired legacy-shaped claim raises the TTL to the new window.
    let legacy = client.put_item().table_name(&table).item("id", AttributeValue::S("old".into()));
    let legacy =
        legacy.item("status", AttributeValue::S("COMPLETED".into())).item("expiration", AttributeValue::N("1".into()));
    legacy.send().await.unwrap();
    assert_eq!(store.begin("old", "h", now).await.unwrap(), Begin::Started);
    let item = raw_item(&client, &table, "old").await.unwrap();
    assert_eq!(num(&item, "expiration"), (now + IDEMPOTENCY_TTL + IN_PROGRESS_TTL).unix_timestamp());
}

#[tokio::test]
async fn dynamo_errors_are_reported_as_unavailable() {
    let client = moto::dynamodb(moto::shared());
    let store = DynamoIdempotencyStore::new(client, moto::unique("no-such-table"));
    match store.begin("k", "h", T0).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("UpdateItem") && message.contains("ResourceNotFound"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(store.complete("k", &response(), T0).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.release("k").await, Err(StoreError::Unavailable(_))));
}

// ---------------------------------------------------------------------------------------------------------------
// SQS

/// A fresh retry queue with its DLQ, wired like template.yaml (redrive after 5 receives).
async fn queues(client: &aws_sdk_sqs::Client) -> (String, String) {
    let dlq_url = client
        .create_queue()
        .queue_name(moto::unique("hubrelay-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .expect("create DLQ")
        .queue_url
        .unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue_url = client
        .create_queue()
        .queue_name(moto::unique("hubrelay-retry"))
        .attributes(QueueAttributeName::VisibilityTimeout, "360")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string(),
        )
        .send()
        .await
        .expect("create queue")
        .queue_url
        .unwrap();
    (queue_url, dlq_url)
}

async fn retry_queue() -> (SqsRetryQueue, aws_sdk_sqs::Client, String, String) {
    let client = moto::sqs(moto::shared());
    let (queue_url, dlq_url) = queues(&client).await;
    (SqsRetryQueue::new(client.clone(), queue_url.clone(), dlq_url.clone()), client, queue_url, dlq_url)
}

async fn receive(client: &aws_sdk_sqs::Client, queue_url: &str, wait_seconds: i32) -> Vec<Message> {
    client
        .receive_message()
        .queue_url(queue_url)
        .message_attribute_names("All")
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

fn attribute<'a>(message: &'a Message, name: &str) -> (&'a str, &'a str) {
    let value = &message.message_attributes.as_ref().expect("message attributes")[name];
    (value.data_type(), value.string_value().expect("string value"))
}

fn retry_message(not_before: OffsetDateTime) -> RetryMessage {
    let attempt = |n: u32, at: OffsetDateTime| DeliveryAttempt {
        attempt: n,
        at,
        outcome: AttemptOutcome::Retryable,
        system: None,
        status: Some(503),
        correlation_id: Some(format!("corr-{n}")),
        error_code: Some("hubspot_unavailable".into()),
        error: Some("HubSpot answered 503".into()),
    };
    RetryMessage {
        version: RetryMessage::UNSCOPED_VERSION,
        tenant: None,
        event_id: hubrelay_core::domain::new_event_id(),
        function: FunctionName::LeadCaptured,
        idempotency_key: "chat-widget:lead-42".into(),
        received_at: datetime!(2026-03-01 12:00:00.123456 UTC),
        // Unicode, control characters and the two characters SQS refuses raw (U+FFFE, U+FFFF) must round-trip.
        event: json!({"email": "zoë@example.com", "name": "Zoë \u{1F600}", "note": "tab\there\u{FFFF}\u{FFFE}"}),
        attempts: vec![attempt(1, datetime!(2026-03-01 12:00:01 UTC)), attempt(2, datetime!(2026-03-01 12:00:07 UTC))],
        not_before,
        dead_letter_reason: None,
        schedule_offset: 0,
        redrives: 0,
        write_intent: None,
    }
}

#[test]
fn delay_seconds_is_clamped_to_what_sqs_accepts() {
    let now = datetime!(2026-03-01 12:00:00 UTC);
    assert_eq!(delay_seconds(now - Duration::from_secs(30), now), 0, "past");
    assert_eq!(delay_seconds(now, now), 0, "now");
    assert_eq!(delay_seconds(now + Duration::from_secs(5), now), 5);
    assert_eq!(delay_seconds(now + Duration::from_millis(4_200), now), 5, "rounded up, never early");
    assert_eq!(delay_seconds(now + Duration::from_secs(900), now), 900);
    assert_eq!(delay_seconds(now + Duration::from_secs(901), now), 900, "SQS cap");
    assert_eq!(delay_seconds(now + Duration::from_secs(24 * 3600), now), 900, "chained beyond 15 min");
}

#[tokio::test]
async fn sqs_enqueue_round_trips_the_message_and_its_attributes() {
    let (queue, client, queue_url, dlq_url) = retry_queue().await;
    let message = retry_message(OffsetDateTime::now_utc() - Duration::from_secs(1));
    queue.enqueue(&message).await.unwrap();

    let received = receive(&client, &queue_url, 2).await;
    assert_eq!(received.len(), 1);
    let got: RetryMessage = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(got, message);
    assert_eq!(attribute(&received[0], "event_id"), ("String", message.event_id.as_str()));
    assert_eq!(attribute(&received[0], "function"), ("String", "lead-captured"));
    assert_eq!(attribute(&received[0], "attempt"), ("Number", "2"));
    assert!(!received[0].message_attributes.as_ref().unwrap().contains_key("error_code"));
    assert!(receive(&client, &dlq_url, 0).await.is_empty());
}

#[tokio::test]
async fn sqs_delay_hides_the_message_until_not_before() {
    let (queue, client, queue_url, _) = retry_queue().await;
    let start = Instant::now();
    let message = retry_message(OffsetDateTime::now_utc() + Duration::from_secs(2));
    queue.enqueue(&message).await.unwrap();

    assert!(receive(&client, &queue_url, 0).await.is_empty(), "visible before its delay");
    let mut received = Vec::new();
    while received.is_empty() && start.elapsed() < Duration::from_secs(8) {
        received = receive(&client, &queue_url, 1).await;
    }
    let elapsed = start.elapsed();
    assert_eq!(received.len(), 1, "never became visible");
    assert!(elapsed >= Duration::from_millis(1_500), "visible after {elapsed:?}");
    let got: RetryMessage = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(got.event_id, message.event_id);
}

#[tokio::test]
async fn sqs_dead_letter_carries_the_reason() {
    let (queue, client, queue_url, dlq_url) = retry_queue().await;
    // Even a message scheduled for later goes to the DLQ at once.
    let message = retry_message(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    let reason = DeadLetterReason { code: "property_doesnt_exist".into(), message: "no property lead_source".into() };
    queue.dead_letter(&message, &reason).await.unwrap();

    let received = receive(&client, &dlq_url, 2).await;
    assert_eq!(received.len(), 1);
    let got: RetryMessage = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(got.dead_letter_reason.as_ref(), Some(&reason));
    assert_eq!(RetryMessage { dead_letter_reason: None, ..got }, message, "history kept");
    assert_eq!(attribute(&received[0], "error_code"), ("String", "property_doesnt_exist"));
    assert_eq!(attribute(&received[0], "event_id"), ("String", message.event_id.as_str()));
    assert_eq!(attribute(&received[0], "function"), ("String", "lead-captured"));
    assert_eq!(attribute(&received[0], "attempt"), ("Number", "2"));
    assert!(receive(&client, &queue_url, 0).await.is_empty());
}

#[tokio::test]
async fn sqs_oversized_message_is_refused_before_calling_sqs() {
    let client = moto::sqs(moto::shared());
    // Queue URLs that do not exist: an error from SQS would read differently.
    let queue = SqsRetryQueue::new(client, "http://127.0.0.1:1/000000000000/missing", "http://127.0.0.1:1/dlq");
    let mut message = retry_message(OffsetDateTime::now_utc());
    message.event = json!({"notes": "x".repeat(256 * 1024)});
    for result in [
        queue.enqueue(&message).await,
        queue.dead_letter(&message, &DeadLetterReason { code: "c".into(), message: "m".into() }).await,
    ] {
        match result {
            Err(StoreError::Unavailable(text)) => {
                assert!(text.starts_with("message too large"), "{text}")
            }
            other => panic!("expected a too-large error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqs_errors_are_reported_as_unavailable() {
    let client = moto::sqs(moto::shared());
    let (queue_url, _) = queues(&client).await;
    let missing = format!("{queue_url}-missing");
    let queue = SqsRetryQueue::new(client, missing.clone(), missing);
    match queue.enqueue(&retry_message(OffsetDateTime::now_utc())).await {
        Err(StoreError::Unavailable(text)) => assert!(text.contains("SendMessage"), "{text}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SSM secrets

#[tokio::test]
async fn secrets_come_from_the_variable_or_the_named_ssm_parameter() {
    let ssm = moto::ssm(moto::shared());
    let parameter = format!("/hubrelay/{}", moto::unique("hubspot-token"));
    ssm.put_parameter()
        .name(&parameter)
        .value("pat-na1-secret")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");

    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name: &str| map.get(name).cloned()
    };

    // The variable itself wins.
    let direct = env(&[("HUBSPOT_TOKEN", "direct"), ("HUBSPOT_TOKEN_SSM_PARAMETER", parameter.as_str())]);
    assert_eq!(secret_from_lookup(&ssm, "HUBSPOT_TOKEN", direct).await.unwrap().as_deref(), Some("direct"));

    // Else the named parameter, decrypted.
    let named = env(&[("HUBSPOT_TOKEN_SSM_PARAMETER", parameter.as_str())]);
    assert_eq!(secret_from_lookup(&ssm, "HUBSPOT_TOKEN", named).await.unwrap().as_deref(), Some("pat-na1-secret"));

    // Neither: not configured.
    assert_eq!(secret_from_lookup(&ssm, "HUBSPOT_TOKEN", env(&[])).await.unwrap(), None);

    // A parameter that does not exist is an error naming it.
    let missing = format!("{parameter}-missing");
    let broken = env(&[("HUBSPOT_TOKEN_SSM_PARAMETER", missing.as_str())]);
    match secret_from_lookup(&ssm, "HUBSPOT_TOKEN", broken).await {
        Err(AwsConfigError::Ssm { parameter: p, message }) => {
            assert_eq!(p, missing);
            assert!(message.contains("ParameterNotFound"), "{message}");
        }
        other => panic!("expected an SSM error, got {other:?}"),
    }
}

#[tokio::test]
async fn secrets_come_from_secrets_manager_through_the_ssm_reference_path() {
    let server = moto::shared();
    let ssm = moto::ssm(server);
    let secret = format!("hubrelay/prod/{}", moto::unique("hubspot-token"));
    secretsmanager(server)
        .create_secret()
        .name(&secret)
        .secret_string("pat-na1-from-secrets-manager")
        .send()
        .await
        .expect("create secret");
    let parameter = format!("/hubrelay/{}", moto::unique("api-tokens"));
    ssm.put_parameter()
        .name(&parameter)
        .value("old,new")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    let reference = format!("/aws/reference/secretsmanager/{secret}");
    let env: HashMap<&str, &str> = HashMap::from([
        ("HUBSPOT_TOKEN_SSM_PARAMETER", reference.as_str()),
        ("HUBRELAY_API_TOKENS_SSM_PARAMETER", parameter.as_str()),
        ("HUBRELAY_MAPPING", "chat-widget"),
    ]);
    let lookup = |name: &str| env.get(name).map(|v| v.to_string());

    // Both stores in one call, as the Lambdas read them at init; an unconfigured secret is simply absent.
    let names = ["HUBSPOT_TOKEN", "HUBRELAY_API_TOKENS", "HUBRELAY_WEBHOOK_SECRETS"];
    let secrets = hubrelay_aws::sdk::secrets_from_lookup(&ssm, &names, lookup).await.unwrap();
    assert_eq!(
        secrets,
        HashMap::from([
            ("HUBSPOT_TOKEN".to_string(), "pat-na1-from-secrets-manager".to_string()),
            ("HUBRELAY_API_TOKENS".to_string(), "old,new".to_string()),
        ])
    );

    // A secret that does not exist fails the whole read, naming the reference.
    let missing = format!("{reference}-missing");
    let broken = |name: &str| (name == "HUBSPOT_TOKEN_SSM_PARAMETER").then(|| missing.clone()).or_else(|| lookup(name));
    match hubrelay_aws::sdk::secrets_from_lookup(&ssm, &names, broken).await {
        Err(AwsConfigError::Ssm { parameter: p, .. }) => assert_eq!(p, missing),
        other => panic!("expected an SSM error, got {other:?}"),
    }
}

fn secretsmanager(server: &moto::MotoServer) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(moto::REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(server.endpoint())
        .http_client(hubrelay_aws::sdk::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

// ---------------------------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn moto_harness_stops_its_server_on_drop() {
    let server = moto::MotoServer::start().unwrap_or_else(|e| panic!("{e}"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err(), "moto still listening on {addr}");
}

// ---------------------------------------------------------------------------------------------------------------
// The shared HubSpot budget (DynamoCallBudget): several instances, one counter per slot.

mod shared_budget {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use hubrelay_aws::dynamodb_budget::DynamoCallBudget;
    use hubrelay_core::budget::{budget_key, CallBudget, Lane};
    use hubrelay_testkit::moto;

    use super::{num, raw_item};

    /// `n` budgets on one table and key — as `n` Lambda instances would have — on one settable clock.
    async fn instances(
        n: usize,
        limit: u32,
    ) -> (Vec<DynamoCallBudget>, Arc<AtomicU64>, aws_sdk_dynamodb::Client, String) {
        let client = moto::dynamodb(moto::shared());
        let table = moto::idempotency_table(&client).await;
        let now = Arc::new(AtomicU64::new(1_800_000_000_000)); // a slot boundary
        let key = budget_key(&moto::unique("pat-na1-token"));
        let budgets = (0..n)
            .map(|_| {
                let clock = now.clone();
                DynamoCallBudget::new(client.clone(), table.clone(), key.clone(), limit)
                    .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
            })
            .collect();
        (budgets, now, client, table)
    }

    async fn granted(budget: &DynamoCallBudget, lane: Lane, tries: usize) -> usize {
        let mut n = 0;
        for _ in 0..tries {
            n += usize::from(budget.take(lane).await.is_ok());
        }
        n
    }

    #[tokio::test]
    async fn instances_share_one_cap_per_slot_and_the_inline_lane_gets_part_of_it() {
        let (b, now, client, table) = instances(3, 100).await;
        assert_eq!((b[0].plan().cap, b[0].plan().inline_cap), (9, 4));
        // Inline takes its 4 across instances; the fifth inline call is refused until the slot ends...
        assert_eq!(granted(&b[0], Lane::Inline, 3).await + granted(&b[1], Lane::Inline, 3).await, 4);
        let refused = b[2].take(Lane::Inline).await.unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(1), "{refused:?}");
        // ...while the worker still has the rest of the slot: 9 in all, whoever asks.
        assert_eq!(granted(&b[2], Lane::Worker, 3).await + granted(&b[1], Lane::Worker, 10).await, 5);
        assert!(b[0].take(Lane::Worker).await.is_err());
        let slot = b[0].plan().slot_of(now.load(Ordering::SeqCst));
        let item = raw_item(&client, &table, &b[0].slot_id(slot)).await.expect("the slot's counter");
        assert_eq!(num(&item, "n"), 9);
        assert!(num(&item, "expiration") > (now.load(Ordering::SeqCst) / 1000) as i64, "the item carries its TTL");
        // 400 ms later the slot is still full (refused without asking DynamoDB: instance 1 knows)...
        now.fetch_add(400, Ordering::SeqCst);
        assert_eq!(b[1].take(Lane::Worker).await.unwrap_err().retry_in, Duration::from_millis(600));
        // ...and the next slot is fresh for everyone.
        now.fetch_add(600, Ordering::SeqCst);
        assert_eq!(granted(&b[1], Lane::Inline, 6).await, 4);
        assert_eq!(granted(&b[0], Lane::Worker, 9).await, 5);
    }

    #[tokio::test]
    async fn a_spent_window_stops_every_instance_for_ten_seconds() {
        let (b, now, _, _) = instances(2, 100).await;
        assert!(b[0].take(Lane::Worker).await.is_ok());
        // Instance 0 met a 429: instance 1, which has not asked yet, is refused for the whole window.
        b[0].spent(Duration::from_secs(10)).await;
        for step in 0..=10 {
            assert!(b[1].take(Lane::Worker).await.is_err(), "{step} s after the 429");
            assert!(b[1].take(Lane::Inline).await.is_err(), "{step} s after the 429");
            now.fetch_add(1000, Ordering::SeqCst);
        }
        assert!(b[1].take(Lane::Worker).await.is_ok(), "11 s later the budget is back");
        assert!(b[0].take(Lane::Inline).await.is_ok());
    }

    #[tokio::test]
    async fn the_counter_names_a_hash_of_the_token_never_the_token() {
        let (b, _, _, _) = instances(1, 100).await;
        let id = b[0].slot_id(7);
        assert!(id.starts_with("budget:") && id.ends_with(":7") && !id.contains("pat-na1"), "{id}");
    }

    #[tokio::test]
    async fn an_unreadable_budget_queues_inline_calls_and_lets_the_worker_call() {
        let client = moto::dynamodb(moto::shared());
        let b = DynamoCallBudget::new(client, moto::unique("no-such-table"), "budget:x", 100);
        let refused = b.take(Lane::Inline).await.unwrap_err();
        assert!(refused.reason.contains("could not be read"), "{refused:?}");
        assert!(b.take(Lane::Worker).await.is_ok());
    }
}

/// A tenant's daily budget on DynamoDB: every function takes from one count per portal day.
#[tokio::test]
async fn a_daily_budget_admits_its_limit_per_day_across_instances() {
    let server = moto::shared();
    let client = moto::dynamodb(server);
    let table = moto::idempotency_table(&client).await;
    use hubrelay_core::budget::DailyCalls;
    let key = hubrelay_core::budget::budget_key("pat-daily");
    let one = hubrelay_aws::dynamodb_budget::DynamoDailyCalls::new(client.clone(), &table, &key, 3);
    let other = hubrelay_aws::dynamodb_budget::DynamoDailyCalls::new(client.clone(), &table, &key, 3);
    let day = 20_428;
    let taken = [
        one.take(day).await.unwrap(),
        other.take(day).await.unwrap(),
        one.take(day).await.unwrap(),
        other.take(day).await.unwrap(),
    ];
    assert_eq!(taken, [true, true, true, false]);
    assert!(one.take(day + 1).await.unwrap(), "a new day");
    let another_portal = hubrelay_core::budget::budget_key("pat-other");
    let apart = hubrelay_aws::dynamodb_budget::DynamoDailyCalls::new(client.clone(), &table, &another_portal, 3);
    assert!(apart.take(day).await.unwrap(), "each portal its own count");
    // What the console reads: the day's count, without taking one.
    assert_eq!((one.taken(day).await.unwrap(), other.taken(day + 1).await.unwrap()), (3, 1));
    assert_eq!((apart.taken(day).await.unwrap(), one.taken(day + 2).await.unwrap()), (1, 0));
    assert_eq!(one.taken(day).await.unwrap(), 3, "reading takes nothing");
}
