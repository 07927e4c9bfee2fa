//! The `retry-worker` handler (`SqsWorker::handle`) driven with Lambda SQS events (the committed fixture
//! `fixtures/sqs-event-retry-queue.json`, bodies filled in here) against moto server (SQS, DynamoDB) and the
//! HubSpot sandbox in-process. Needs `scripts/install-test-tools` (or `HUBRELAY_MOTO_SERVER`).

use std::collections::BTreeSet;

use hubrelay_aws::sqs_worker::UNREADABLE_MESSAGE;
use hubrelay_core::domain::{RetryMessage, RetrySchedule};
use hubrelay_sandbox::hubspot::Faults;
use hubrelay_testkit::worker::{body, message_id, moto_messages, retry_message, worker_env, Options, WorkerEnv};
use serde_json::{json, Value};
use time::OffsetDateTime;

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> BTreeSet<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

fn lead(email: &str, first_name: &str) -> Value {
    json!({"email": email, "first_name": first_name, "vehicle_of_interest": "Model Y", "priority": "high"})
}

/// A contact's properties as the sandbox holds them.
async fn contact(env: &WorkerEnv, email: &str) -> Value {
    let url = format!(
        "{}/crm/v3/objects/contacts/{email}?idProperty=email&properties=firstname,vehicle_of_interest",
        env.sandbox.url()
    );
    let resp =
        reqwest::Client::new().get(url).bearer_auth(hubrelay_testkit::worker::SANDBOX_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200, "contact {email}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_message_is_delivered_and_its_event_recorded() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    let m = retry_message(&lead("due@example.com", "Ada"), now - time::Duration::seconds(10), 1, now);
    let response = env.worker.handle(env.event(&[(message_id(), body(&m))]), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 1);
    assert_eq!(contact(&env, "due@example.com").await["properties"]["firstname"], "Ada");
    assert_eq!(env.event_status(&m.event_id).await.as_deref(), Some("delivered"));
    let record = env.event_record(&m.event_id).await.unwrap();
    assert!(record["contact_id"].is_string(), "{record}");
    assert_eq!(env.upsert_calls(), 1);
    // Success sends nothing anywhere: Lambda deletes the record.
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));
    assert_eq!(env.depth(&env.dlq_url).await, (0, 0));

    // SQS hands the same message over again (at least once), or an import resumed after a crash sent it twice:
    // the copy of a delivered event is dropped, with no second write.
    let response = env.worker.handle(env.event(&[(message_id(), body(&m))]), now).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.upsert_calls(), 1, "no second write");
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_merges_into_one_hubspot_call_newest_lead_winning() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    let at = |secs: i64| now - time::Duration::seconds(secs);
    // 5 records for 2 emails, not in receive order; the newest lead per email must win.
    let messages = [
        retry_message(&lead("one@example.com", "Old"), at(50), 1, now),
        retry_message(&lead("two@example.com", "Newest"), at(10), 1, now),
        retry_message(&lead("one@example.com", "Newest"), at(20), 1, now),
        retry_message(&lead("two@example.com", "Old"), at(40), 1, now),
        retry_message(&lead("One@Example.com", "Middle"), at(30), 1, now),
    ];
    let records: Vec<(String, String)> = messages.iter().map(|m| (message_id(), body(m))).collect();
    let response = env.worker.handle(env.event(&records), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.upsert_calls(), 1, "{:?}", env.sandbox.sandbox.stats());
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 2);
    assert_eq!(contact(&env, "one@example.com").await["properties"]["firstname"], "Newest");
    assert_eq!(contact(&env, "two@example.com").await["properties"]["firstname"], "Newest");
    for m in &messages {
        assert_eq!(env.event_status(&m.event_id).await.as_deref(), Some("delivered"), "{}", m.event_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delay_beyond_fifteen_minutes_is_chained_with_the_same_not_before() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    // Attempt 5 failed; the 2 h step is under way, with more than 15 minutes still to go.
    let not_before = now + time::Duration::hours(2);
    let m = retry_message(&lead("later@example.com", "Lin"), now - time::Duration::hours(1), 5, not_before);
    let response = env.worker.handle(env.event(&[(message_id(), body(&m))]), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.upsert_calls(), 0, "nothing may be written to HubSpot before not_before");
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 0);
    assert_eq!(env.depth(&env.queue_url).await, (0, 1), "one delayed message on the retry queue");
    let sent = moto_messages(&m.event_id).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!((sent[0].delay_seconds - 900.0).abs() < 1.0, "DelaySeconds {}", sent[0].delay_seconds);
    let resent = env.opened(&sent[0].body).await;
    assert_eq!(resent, m, "the hop re-sends the message unchanged (same not_before, same history)");
    assert_eq!(sent[0].attributes["attempt"], "5");
    // No event record is written for a hop: the record says "retrying until not_before" already.
    assert_eq!(env.event_status(&m.event_id).await, None);

    // The last hop: 5 minutes left → DelaySeconds 300, rounded up, never early.
    let near = retry_message(&lead("near@example.com", "Noa"), now, 5, now + time::Duration::milliseconds(299_500));
    let response = env.worker.handle(env.event(&[(message_id(), body(&near))]), now).await;
    assert!(response.batch_item_failures.is_empty());
    let sent = moto_messages(&near.event_id).await;
    assert!((sent[0].delay_seconds - 300.0).abs() < 1.0, "DelaySeconds {}", sent[0].delay_seconds);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_hops_go_out_in_batches_and_all_arrive() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    let messages: Vec<RetryMessage> = (0..25)
        .map(|i| retry_message(&lead(&format!("h{i}@example.com"), "H"), now, 6, now + time::Duration::hours(5)))
        .collect();
    let records: Vec<(String, String)> = messages.iter().map(|m| (message_id(), body(m))).collect();
    let response = env.worker.handle(env.event(&records), now).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.depth(&env.queue_url).await, (0, 25));
    assert_eq!(env.upsert_calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_attempt_goes_back_with_the_next_step_of_the_schedule() {
    let env = worker_env(Options::default()).await;
    env.sandbox.sandbox.set_faults(Faults { failure_rate: 1.0, failure_status: 503, ..Default::default() });
    let now = OffsetDateTime::now_utc();
    // Attempt 1 (inline) failed, the 5 s wait is over: attempt 2 fails too → wait 5 min (no jitter here).
    let m = retry_message(&lead("retry@example.com", "Rae"), now - time::Duration::seconds(6), 1, now);
    let response = env.worker.handle(env.event(&[(message_id(), body(&m))]), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let sent = moto_messages(&m.event_id).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!((sent[0].delay_seconds - 300.0).abs() < 1.0, "DelaySeconds {}", sent[0].delay_seconds);
    let next = env.opened(&sent[0].body).await;
    assert_eq!(next.attempts.len(), 2);
    assert_eq!(next.attempts[1].status, Some(503));
    assert_eq!(next.not_before, now + time::Duration::minutes(5));
    assert_eq!(sent[0].attributes["attempt"], "2");
    let record = env.event_record(&m.event_id).await.unwrap();
    assert_eq!(record["status"], "retrying");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 2);
    assert!(record["next_attempt_at"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_schedule_dead_letters_with_the_whole_history() {
    let env = worker_env(Options::default()).await;
    env.sandbox.sandbox.set_faults(Faults { failure_rate: 1.0, failure_status: 503, ..Default::default() });
    let now = OffsetDateTime::now_utc();
    let schedule = RetrySchedule::default();
    // Nine attempts failed; the tenth (the last the schedule allows) fails now.
    let m = retry_message(&lead("gone@example.com", "Gil"), now - time::Duration::hours(75), 9, now);
    let response = env.worker.handle(env.event(&[(message_id(), body(&m))]), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let parked = env.receive(&env.dlq_url).await;
    assert_eq!(parked.len(), 1);
    let (dlq_body, attributes) = &parked[0];
    assert!(!dlq_body.contains("gone@example.com"), "sealed on the DLQ: {dlq_body}");
    let dead = env.opened(dlq_body).await;
    assert_eq!(dead.event_id, m.event_id);
    assert_eq!(dead.idempotency_key, m.idempotency_key);
    assert_eq!(dead.event, m.event);
    assert_eq!(dead.attempts.len() as u32, schedule.max_attempts());
    assert_eq!(dead.attempts[..9], m.attempts[..]);
    assert_eq!(dead.attempts[9].attempt, 10);
    assert_eq!(dead.attempts[9].status, Some(503));
    let reason = dead.dead_letter_reason.as_ref().expect("dead_letter_reason");
    assert_eq!(reason.code, "retries_exhausted");
    assert_eq!(attributes["error_code"], "retries_exhausted");
    assert_eq!(attributes["event_id"], m.event_id);
    assert_eq!(attributes["attempt"], "10");
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));
    assert_eq!(env.event_status(&m.event_id).await.as_deref(), Some("dead_lettered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_body_goes_to_the_dlq_byte_for_byte() {
    let env = worker_env(Options::default()).await;
    let now = OffsetDateTime::now_utc();
    let garbage = format!("{{\"event_id\":\"evt_garbage_{}\",\"truncated\":", uuid::Uuid::new_v4().simple());
    let mut newer = retry_message(&lead("newer@example.com", "Nia"), now, 1, now);
    newer.version = RetryMessage::VERSION + 1;
    let good = retry_message(&lead("fine@example.com", "Fay"), now, 1, now);
    let records = [(message_id(), garbage.clone()), (message_id(), body(&newer)), (message_id(), body(&good))];
    let response = env.worker.handle(env.event(&records), now).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let mut parked = env.receive(&env.dlq_url).await;
    parked.sort_by_key(|(b, _)| b.len());
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].0, garbage, "kept exactly as received");
    assert_eq!(parked[0].1["error_code"], UNREADABLE_MESSAGE);
    assert!(!parked[0].1.contains_key("event_id"), "not JSON: no event id to show");
    assert_eq!(parked[1].0, body(&newer));
    assert_eq!(parked[1].1["event_id"], newer.event_id, "JSON with an event_id: shown as an attribute");
    assert!(parked[1].1.get("error").is_some_and(|e| e.contains("newer")), "{parked:?}");
    // The readable record in the same batch was delivered.
    assert_eq!(env.event_status(&good.event_id).await.as_deref(), Some("delivered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_records_whose_resend_failed_are_reported() {
    let env = worker_env(Options::default()).await;
    // The DLQ is gone: every send to it fails; the retry queue still works.
    env.sqs.delete_queue().queue_url(&env.dlq_url).send().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let delivered = retry_message(&lead("ok@example.com", "Oli"), now, 1, now);
    // A property the portal lacks: HubSpot refuses it → dead letter → the send fails.
    let refused = retry_message(
        &json!({"email": "refused@example.com", "first_name": "Rex", "properties": {"no_such_property": "1"}}),
        now,
        1,
        now,
    );
    let waiting = retry_message(&lead("wait@example.com", "Wes"), now, 4, now + time::Duration::minutes(40));
    let ids: Vec<String> = (0..4).map(|_| message_id()).collect();
    let records = [
        (ids[0].clone(), body(&delivered)),
        (ids[1].clone(), body(&refused)),
        (ids[2].clone(), body(&waiting)),
        (ids[3].clone(), "not json at all".to_string()),
    ];
    let response = env.worker.handle(env.event(&records), now).await;

    assert_eq!(failed_ids(&response), BTreeSet::from([ids[1].clone(), ids[3].clone()]), "{response:?}");
    assert_eq!(env.event_status(&delivered.event_id).await.as_deref(), Some("delivered"));
    assert_eq!(env.sandbox.sandbox.contact_count().unwrap(), 1);
    // The waiting one made its hop (a single 900 s delay).
    let hop = moto_messages(&waiting.event_id).await;
    assert_eq!(hop.len(), 1);
    assert!((hop[0].delay_seconds - 900.0).abs() < 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_error_reports_every_readable_record() {
    let env = worker_env(Options { missing_table: true, ..Options::default() }).await;
    let now = OffsetDateTime::now_utc();
    let a = retry_message(&lead("a@example.com", "A"), now, 1, now);
    let b = retry_message(&lead("b@example.com", "B"), now, 1, now);
    let ids = [message_id(), message_id()];
    let records = [(ids[0].clone(), body(&a)), (ids[1].clone(), body(&b))];
    let response = env.worker.handle(env.event(&records), now).await;

    assert_eq!(failed_ids(&response), BTreeSet::from(ids.clone()));
    assert_eq!(env.depth(&env.queue_url).await, (0, 0), "nothing re-sent: the originals come back");
    assert_eq!(env.depth(&env.dlq_url).await, (0, 0));
}

#[test]
fn the_fixture_is_a_lambda_sqs_event() {
    let fixture = hubrelay_testkit::worker::fixture();
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(fixture).unwrap();
    assert_eq!(event.records.len(), 2);
    for r in &event.records {
        assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
        assert!(r.message_id.is_some() && r.receipt_handle.is_some());
        assert!(r.attributes.contains_key("ApproximateReceiveCount"));
        assert_eq!(r.message_attributes["function"].string_value.as_deref(), Some("lead-captured"));
    }
}
