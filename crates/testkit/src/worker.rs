//! Helpers for driving the `retry-worker` handler ([`hubrelay_aws::sqs_worker::SqsWorker`]) against moto
//! server and the HubSpot sandbox: a fresh table, retry queue and DLQ per test, SQS events built from the
//! committed fixture `fixtures/sqs-event-retry-queue.json` (bodies filled in at test time), and ways to look
//! at what the worker sent (including messages still delayed, through moto's state dump).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::sqs::SqsRetryQueue;
use hubrelay_aws::sqs_worker::SqsWorker;
use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{AttemptOutcome, DeliveryAttempt, FunctionName, RetryMessage, RetrySchedule};
use hubrelay_core::mapping::Mapping;
use hubrelay_core::worker::{Jitter, RetryWorker};
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxHandle, SandboxOptions};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::moto;

pub const SANDBOX_TOKEN: &str = "worker-sandbox-token";
pub const BATCH_UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

/// The committed Lambda SQS event fixture.
pub fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sqs-event-retry-queue.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the SQS event fixture")).expect("fixture JSON")
}

/// An `aws:sqs` event with one record per `(messageId, body)`, shaped like the fixture's records (taken in
/// turn as templates), from the queue `queue_arn`. The worker reads `messageId` and `body`; the rest is
/// there because Lambda sends it (`md5OfBody` stays the fixture's, the MD5 of its empty body: nothing checks it).
pub fn sqs_event(queue_arn: &str, records: &[(String, String)]) -> SqsEvent {
    let fixture = fixture();
    let templates = fixture["Records"].as_array().expect("Records").clone();
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, (message_id, body))| {
            let mut r = templates[i % templates.len()].clone();
            r["messageId"] = json!(message_id);
            r["receiptHandle"] = json!(format!("AQEB{}", uuid::Uuid::new_v4().simple()));
            r["body"] = json!(body);
            r["eventSourceARN"] = json!(queue_arn);
            match serde_json::from_str::<Value>(body).ok().and_then(|b| b.get("event_id").cloned()) {
                Some(event_id) => r["messageAttributes"]["event_id"]["stringValue"] = event_id,
                None => {
                    r["messageAttributes"].as_object_mut().unwrap().remove("event_id");
                }
            }
            r
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SqsEvent")
}

/// A fresh message id, like SQS's.
pub fn message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A failed attempt (HubSpot answered 503) at `at`.
pub fn failed_attempt(attempt: u32, at: OffsetDateTime) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt,
        at,
        outcome: AttemptOutcome::Retryable,
        system: None,
        status: Some(503),
        correlation_id: Some(format!("corr-{attempt}")),
        error_code: Some("hubspot_unavailable".into()),
        error: Some("HubSpot answered 503".into()),
    }
}

/// A message for `lead` (a lead as a sender posts it) received at `received_at`, after `attempts` failed
/// attempts, due at `not_before`; the event is normalised exactly as `lead-captured` stores it.
pub fn retry_message(
    lead: &Value,
    received_at: OffsetDateTime,
    attempts: u32,
    not_before: OffsetDateTime,
) -> RetryMessage {
    let parsed = hubrelay_core::lead::parse_json(lead.to_string().as_bytes()).expect("a valid lead");
    RetryMessage {
        version: RetryMessage::UNSCOPED_VERSION,
        tenant: None,
        event_id: hubrelay_core::domain::new_event_id(),
        function: FunctionName::LeadCaptured,
        idempotency_key: format!("lead-captured:key:{}", uuid::Uuid::new_v4().simple()),
        received_at,
        event: serde_json::to_value(&parsed.lead).unwrap(),
        attempts: (1..=attempts)
            .map(|n| failed_attempt(n, received_at + time::Duration::seconds(i64::from(n))))
            .collect(),
        not_before,
        dead_letter_reason: None,
        schedule_offset: 0,
        redrives: 0,
        write_intent: None,
    }
}

pub fn body(message: &RetryMessage) -> String {
    serde_json::to_string(message).unwrap()
}

/// Everything one test needs: its own table, queues and sandbox, and the worker wired to them.
pub struct WorkerEnv {
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub table: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub sandbox: SandboxHandle,
    pub worker: SqsWorker,
}

#[derive(Default)]
pub struct Options {
    pub schedule: RetrySchedule,
    /// Point the worker at a table that does not exist (every store call fails).
    pub missing_table: bool,
}

pub async fn worker_env(options: Options) -> WorkerEnv {
    let server = moto::shared();
    let sqs = moto::sqs(server);
    let dynamo = moto::dynamodb(server);
    let table =
        if options.missing_table { moto::unique("no-such-table") } else { moto::idempotency_table(&dynamo).await };
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();

    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some(SANDBOX_TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("sandbox");
    let mapping = Mapping::builtin("chat-widget").unwrap();
    let hubspot = HubSpotClient::new(&sandbox.url(), SANDBOX_TOKEN, Duration::from_secs(5)).unwrap();
    hubrelay_core::properties::sync(&hubspot, &mapping.all_property_definitions()).await.expect("sandbox properties");

    let store = Arc::new(DynamoIdempotencyStore::new(dynamo.clone(), table.clone()));
    let worker = RetryWorker::new(Arc::new(hubspot), mapping, options.schedule, Jitter::NONE, store.clone(), store);
    // As in the stack: every message the worker sends is sealed with its person's key.
    let sealer = hubrelay_aws::sqs_seal::MessageSealer::new(DynamoIdempotencyStore::new(dynamo.clone(), table.clone()));
    let queue = SqsRetryQueue::new(sqs.clone(), queue_url.clone(), dlq_url.clone()).with_sealer(sealer);
    let settled = DynamoIdempotencyStore::new(dynamo.clone(), table.clone());
    let worker = SqsWorker::new(worker, queue).with_settled_check(settled);
    WorkerEnv { sqs, dynamo, table, queue_url, queue_arn, dlq_url, sandbox, worker }
}

impl WorkerEnv {
    pub fn event(&self, records: &[(String, String)]) -> SqsEvent {
        sqs_event(&self.queue_arn, records)
    }

    /// HubSpot batch-upsert calls the sandbox has seen.
    pub fn upsert_calls(&self) -> u64 {
        self.sandbox.sandbox.stats().by_endpoint.get(BATCH_UPSERT).copied().unwrap_or(0)
    }

    /// The event record's status in DynamoDB (`delivered`, `retrying`, ...).
    pub async fn event_status(&self, event_id: &str) -> Option<String> {
        self.event_record(event_id).await.and_then(|r| r["status"].as_str().map(String::from))
    }

    /// The full event record JSON.
    pub async fn event_record(&self, event_id: &str) -> Option<Value> {
        self.dynamo
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("event:{event_id}")))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .and_then(|i| i.get("record").and_then(|s| s.as_s().ok()).cloned())
            .map(|s| serde_json::from_str(&s).unwrap())
    }

    /// A message body from one of the queues, its event opened with its person's key.
    pub async fn opened(&self, body: &str) -> RetryMessage {
        let sealed: RetryMessage = serde_json::from_str(body).expect("a retry message");
        match self.worker.queue().sealer().expect("a sealing queue").open(&sealed).await.expect("the key table") {
            hubrelay_aws::sqs_seal::Opened::Plain(m) | hubrelay_aws::sqs_seal::Opened::Opened(m) => m,
            hubrelay_aws::sqs_seal::Opened::Erased => panic!("the message's key is gone"),
        }
    }

    /// `(visible, delayed)` counts of a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let n = |k: QueueAttributeName| attrs.get(&k).map(|v| v.parse().unwrap()).unwrap_or(0);
        (n(QueueAttributeName::ApproximateNumberOfMessages), n(QueueAttributeName::ApproximateNumberOfMessagesDelayed))
    }

    /// Receive what is visible on `url` now: (body, message attributes as name → string value).
    pub async fn receive(&self, url: &str) -> Vec<(String, HashMap<String, String>)> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| {
                let attrs = m
                    .message_attributes()
                    .map(|a| a.iter().map(|(k, v)| (k.clone(), v.string_value().unwrap_or("").to_owned())).collect())
                    .unwrap_or_default();
                (m.body().unwrap_or("").to_owned(), attrs)
            })
            .collect()
    }
}

/// A message moto holds (visible or still delayed), found through its state dump by a string its body contains.
#[derive(Debug)]
pub struct MotoMessage {
    pub body: String,
    /// `delayed_until - sent_timestamp`: the DelaySeconds it was sent with.
    pub delay_seconds: f64,
    pub attributes: HashMap<String, String>,
}

/// All messages whose body contains `needle` (moto's `/moto-api/data.json`; moto does not say which queue).
pub async fn moto_messages(needle: &str) -> Vec<MotoMessage> {
    let url = format!("{}/moto-api/data.json", moto::shared().endpoint());
    // moto renders the dump from live state: a test writing meanwhile can make one rendering fail; ask again.
    let mut dump = Value::Null;
    for attempt in 1..=5 {
        match reqwest::get(&url).await.and_then(|r| r.error_for_status()) {
            Ok(resp) => match resp.json::<Value>().await {
                Ok(v) => {
                    dump = v;
                    break;
                }
                Err(e) if attempt == 5 => panic!("moto's data dump: {e}"),
                Err(_) => {}
            },
            Err(e) if attempt == 5 => panic!("moto's data dump: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    dump["sqs"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.contains(needle)))
        .map(|m| {
            let sent = m["sent_timestamp"].as_f64().unwrap_or(0.0);
            let delay = m["delayed_until"].as_f64().map(|d| (d - sent) / 1000.0).unwrap_or(0.0);
            let attributes = m["message_attributes"]
                .as_object()
                .map(|a| {
                    a.iter().map(|(k, v)| (k.clone(), v["StringValue"].as_str().unwrap_or("").to_owned())).collect()
                })
                .unwrap_or_default();
            MotoMessage { body: m["body"].as_str().unwrap().to_owned(), delay_seconds: delay, attributes }
        })
        .collect()
}
