//! The retry worker against the real sandbox (in process, on 127.0.0.1:0) and an in-memory SQLite store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::domain::RetrySchedule;
use hubrelay_core::domain::{AttemptOutcome, DeliveryAttempt, FunctionName};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::mapping::Mapping;
use hubrelay_core::store::{ContactVersions, EventLog, EventStatus};
use hubrelay_core::worker::*;
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::{LocalWorker, TickReport, WakingQueue};
use hubrelay_sandbox::hubspot::{self as sandbox, Faults, SandboxHandle, SandboxOptions};

const TOKEN: &str = "worker-test-token";
const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

struct Fixture {
    sandbox: SandboxHandle,
    store: SqliteStore,
    worker: RetryWorker,
    http: reqwest::Client,
}

async fn fixture(schedule: RetrySchedule) -> Fixture {
    fixture_with(schedule, SqliteStore::open_in_memory().unwrap()).await
}

async fn fixture_with(schedule: RetrySchedule, store: SqliteStore) -> Fixture {
    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = HubSpotClient::new(&sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let mapping = Mapping::load("chat-widget").unwrap();
    hubrelay_core::properties::sync(&client, &mapping.all_property_definitions()).await.unwrap();
    let shared = Arc::new(store.clone());
    let worker = RetryWorker::new(Arc::new(client), mapping, schedule, Jitter::NONE, shared.clone(), shared);
    Fixture { sandbox, store, worker, http: reqwest::Client::new() }
}

impl Fixture {
    fn upsert_calls(&self) -> u64 {
        self.sandbox.sandbox.stats().by_endpoint.get(UPSERT).copied().unwrap_or(0)
    }

    fn faults(&self, failure_rate: f64, failure_status: u16) {
        self.sandbox.sandbox.set_faults(Faults { failure_rate, failure_status, ..Faults::default() });
    }

    async fn contact(&self, email: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!(
                "{}/crm/v3/objects/contacts/{email}?idProperty=email&properties=vehicle_of_interest,budget_range,phone",
                self.sandbox.url()
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return None;
        }
        Some(resp.json::<Value>().await.unwrap()["properties"].clone())
    }

    async fn status(&self, event_id: &str) -> EventStatus {
        self.store.get_event(event_id).await.unwrap().expect("event record").status
    }
}

fn lead(email: &str, vehicle: &str) -> Value {
    json!({"email": email, "first_name": "Jane", "vehicle_of_interest": vehicle, "priority": "high"})
}

/// A message as the inline path queues it: received at `received_at`, its first attempt failed with 503.
fn queued(lead: Value, received_at: OffsetDateTime) -> RetryMessage {
    let parsed = hubrelay_core::lead::parse_json(lead.to_string().as_bytes()).unwrap();
    RetryMessage {
        version: RetryMessage::UNSCOPED_VERSION,
        tenant: None,
        event_id: hubrelay_core::domain::new_event_id(),
        function: FunctionName::LeadCaptured,
        idempotency_key: format!("lead-captured:test:{}", uuid::Uuid::new_v4()),
        received_at,
        event: serde_json::to_value(&parsed.lead).unwrap(),
        attempts: vec![failed_attempt(1, received_at)],
        not_before: received_at + Duration::from_secs(5),
        dead_letter_reason: None,
        schedule_offset: 0,
        redrives: 0,
        write_intent: None,
    }
}

fn failed_attempt(attempt: u32, at: OffsetDateTime) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt,
        at,
        outcome: AttemptOutcome::Retryable,
        system: None,
        status: Some(503),
        correlation_id: None,
        error_code: Some("hubspot_unavailable".into()),
        error: Some("Service Unavailable".into()),
    }
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn disposition<'a>(outcomes: &'a [Outcome], event_id: &str) -> &'a Disposition {
    &outcomes.iter().find(|o| o.event_id == event_id).expect("an outcome for every message").disposition
}

#[tokio::test]
async fn leads_for_one_email_become_one_input_with_the_newest_values() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let mut oldest = lead("merge@example.com", "oldest");
    oldest["phone"] = json!("+1 555 0100"); // only the oldest lead has a phone
    let oldest = queued(oldest, now - secs(60));
    let middle = queued(lead("merge@example.com", "middle"), now - secs(40));
    let newest = queued(lead("Merge@Example.com", "newest"), now - secs(20));
    let other = queued(lead("other@example.com", "other"), now - secs(30));
    // Arrival order differs from age order: the newest lead still wins.
    let messages = vec![middle.clone(), newest.clone(), other.clone(), oldest.clone()];
    let outcomes = f.worker.process(messages, now).await.unwrap();

    assert_eq!(f.upsert_calls(), 1, "one batch call for both contacts");
    assert_eq!(outcomes.len(), 4);
    for m in [&oldest, &middle, &newest, &other] {
        assert!(matches!(disposition(&outcomes, &m.event_id), Disposition::Delivered { .. }), "{outcomes:?}");
        assert_eq!(f.status(&m.event_id).await, EventStatus::Delivered);
    }
    let c = f.contact("merge@example.com").await.expect("contact");
    assert_eq!(c["vehicle_of_interest"], "newest");
    assert_eq!(c["phone"], "+1 555 0100", "values only an older lead had are kept");
    assert_eq!(f.sandbox.sandbox.contact_count().unwrap(), 2);
    // The newest lead's time is recorded (the store keeps milliseconds).
    let applied = f.store.last_applied("merge@example.com").await.unwrap().unwrap();
    assert_eq!(applied.unix_timestamp_nanos() / 1_000_000, newest.received_at.unix_timestamp_nanos() / 1_000_000);
}

#[tokio::test]
async fn an_older_lead_after_a_newer_one_was_applied_is_superseded() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let older = queued(lead("late@example.com", "older"), now - secs(600));
    let newer = queued(lead("late@example.com", "newer"), now - secs(10));
    let outcomes = f.worker.process(vec![newer.clone()], now).await.unwrap();
    assert!(matches!(outcomes[0].disposition, Disposition::Delivered { .. }));
    // The older one comes back from its retry delay only now.
    let outcomes = f.worker.process(vec![older.clone()], now + secs(1)).await.unwrap();
    assert_eq!(outcomes, vec![Outcome { event_id: older.event_id.clone(), disposition: Disposition::Superseded }]);
    assert_eq!(f.upsert_calls(), 1, "the superseded lead is not written");
    assert_eq!(f.contact("late@example.com").await.unwrap()["vehicle_of_interest"], "newer");
    assert_eq!(f.status(&older.event_id).await, EventStatus::Superseded);
}

#[tokio::test]
async fn one_bad_input_is_dead_lettered_and_the_good_ones_delivered() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let mut good = Vec::new();
    for i in 0..7 {
        good.push(queued(lead(&format!("good{i}@example.com"), "fine"), now - secs(30)));
    }
    let mut bad = lead("bad@example.com", "fine");
    bad["properties"] = json!({"no_such_property": "x"});
    let bad = queued(bad, now - secs(30));
    let mut messages = good.clone();
    messages.insert(3, bad.clone());
    let outcomes = f.worker.process(messages, now).await.unwrap();

    for m in &good {
        assert!(matches!(disposition(&outcomes, &m.event_id), Disposition::Delivered { .. }), "{outcomes:?}");
    }
    match disposition(&outcomes, &bad.event_id) {
        Disposition::DeadLetter(m, reason) => {
            assert_eq!(reason.code, "property_doesnt_exist");
            assert!(reason.message.contains("no_such_property"), "{}", reason.message);
            assert_eq!(m.attempts.len(), 2, "the refused attempt is in the history");
            assert_eq!(m.attempts[1].outcome, AttemptOutcome::Rejected);
            assert_eq!(m.attempts[1].status, Some(400));
            assert!(m.attempts[1].correlation_id.is_some());
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    let record = f.store.get_event(&bad.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.reason.unwrap().code, "property_doesnt_exist");
    assert_eq!(f.sandbox.sandbox.contact_count().unwrap(), 7);
    assert!(f.contact("bad@example.com").await.is_none());
    // HubSpot's 207 named the refused input: one call, nothing split or re-sent.
    assert_eq!(f.upsert_calls(), 1);
}

#[tokio::test]
async fn an_outage_schedules_the_next_step() {
    let f = fixture(RetrySchedule::default()).await;
    f.faults(1.0, 503);
    let now = OffsetDateTime::now_utc();
    let m = queued(lead("down@example.com", "x"), now - secs(5));
    let outcomes = f.worker.process(vec![m.clone()], now).await.unwrap();
    let Disposition::Retry(next) = &outcomes[0].disposition else { panic!("{outcomes:?}") };
    // Attempt 2 failed: the next wait is the schedule's second step, 5 minutes (jitter off).
    assert_eq!(next.not_before, now + Duration::from_secs(300));
    assert_eq!(next.attempts.len(), 2);
    let a = &next.attempts[1];
    assert_eq!((a.attempt, a.at, a.status, a.outcome), (2, now, Some(503), AttemptOutcome::Retryable));
    assert_eq!(a.error_code.as_deref(), Some("hubspot_unavailable"));
    let record = f.store.get_event(&m.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Retrying);
    assert_eq!(record.next_attempt_at, Some(now + Duration::from_secs(300)));
    assert_eq!(record.attempts.len(), 2);
}

#[tokio::test]
async fn messages_not_yet_due_are_left_alone() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let m = queued(lead("later@example.com", "x"), now);
    let outcomes = f.worker.process(vec![m.clone()], now).await.unwrap();
    assert_eq!(outcomes[0].disposition, Disposition::NotYetDue);
    assert_eq!(f.upsert_calls(), 0);
    assert!(f.store.get_event(&m.event_id).await.unwrap().is_none());
}

#[tokio::test]
async fn an_exhausted_schedule_dead_letters_with_the_whole_history() {
    let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3)]);
    let f = fixture(schedule).await;
    f.faults(1.0, 502);
    let start = OffsetDateTime::now_utc();
    let mut m = queued(lead("gone@example.com", "x"), start);
    m.not_before = start;
    let mut now = start;
    let mut seen_delays = Vec::new();
    let reason = loop {
        now += secs(10);
        let outcomes = f.worker.process(vec![m.clone()], now).await.unwrap();
        match outcomes.into_iter().next().unwrap().disposition {
            Disposition::Retry(next) => {
                seen_delays.push((next.not_before - now).whole_seconds());
                m = next;
            }
            Disposition::DeadLetter(last, reason) => {
                m = last;
                break reason;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seen_delays, [2, 3], "attempts 2 and 3 wait the 2nd and 3rd steps");
    assert_eq!(reason.code, "retries_exhausted");
    assert!(reason.message.starts_with("4 attempts failed; last: hubspot_unavailable"), "{}", reason.message);
    assert_eq!(m.attempts.len(), 4, "inline attempt + one per step");
    assert_eq!(m.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(m.attempts[1..].iter().all(|a| a.status == Some(502)));
    assert_eq!(m.dead_letter_reason.as_ref(), Some(&reason));
    let record = f.store.get_event(&m.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.attempts, m.attempts);
    assert_eq!(record.reason, Some(reason));
}

#[tokio::test]
async fn ten_secondly_rate_limit_waits_at_least_ten_seconds() {
    let f = fixture(RetrySchedule::new(vec![Duration::from_millis(100); 5])).await;
    f.faults(1.0, 429);
    let now = OffsetDateTime::now_utc();
    let mut m = queued(lead("busy@example.com", "x"), now);
    m.not_before = now;
    let outcomes = f.worker.process(vec![m], now).await.unwrap();
    let Disposition::Retry(next) = &outcomes[0].disposition else { panic!("{outcomes:?}") };
    assert_eq!(next.not_before, now + Duration::from_secs(10), "not the 100 ms step");
    assert_eq!(next.attempts[1].error_code.as_deref(), Some("rate_limited"));
    assert_eq!(next.attempts[1].status, Some(429));
}

/// Keeps the notices the worker sends.
#[derive(Default)]
struct KeptNotices(std::sync::Mutex<Vec<hubrelay_core::notify::Notice>>);

#[async_trait::async_trait]
impl hubrelay_core::notify::NoticeSender for KeptNotices {
    async fn send(&self, notices: Vec<hubrelay_core::notify::Notice>) {
        self.0.lock().unwrap().extend(notices);
    }
}

#[tokio::test]
async fn a_message_dead_lettered_before_any_attempt_is_told_apart_once_redriven() {
    use hubrelay_core::metrics::{EventKey, EventOutcome, Metrics};
    use hubrelay_core::notify::{NoticeKind, Notifications};
    let f = fixture(RetrySchedule::default()).await;
    let (metrics, kept) = (Metrics::new(), Arc::new(KeptNotices::default()));
    let worker = f.worker.with_metrics(metrics.clone()).with_notifications(Notifications::new(kept.clone()));
    // Parked before any call (a daily budget spent, a partner not configured, ...), then redriven.
    let now = OffsetDateTime::now_utc();
    let mut m = queued(lead("never-tried@example.com", "fixed"), now - secs(60));
    m.attempts.clear();
    m.redrive(now);
    assert_eq!((m.redrives, m.schedule_offset), (1, 0), "no attempt to restart the schedule from");
    let outcomes = worker.process(vec![m.clone()], now).await.unwrap();
    assert!(matches!(outcomes[0].disposition, Disposition::Delivered { .. }), "{outcomes:?}");
    let count = |outcome| {
        let key = EventKey { tenant: "default".into(), function: FunctionName::LeadCaptured, outcome };
        metrics.snapshot().events.get(&key).copied().unwrap_or(0)
    };
    assert_eq!((count(EventOutcome::Delivered), count(EventOutcome::Redriven)), (1, 1));
    let kinds: Vec<NoticeKind> = kept.0.lock().unwrap().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NoticeKind::Recovered]);
}

#[tokio::test]
async fn a_redriven_message_restarts_the_schedule() {
    let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(2)]);
    let f = fixture(schedule).await;
    f.faults(1.0, 503);
    let now = OffsetDateTime::now_utc();
    // Exhausted: inline attempt + two retries.
    let mut m = queued(lead("again@example.com", "fixed"), now - secs(100));
    m.attempts.push(failed_attempt(2, now - secs(99)));
    m.not_before = now - secs(97);
    let outcomes = f.worker.process(vec![m.clone()], now).await.unwrap();
    let Disposition::DeadLetter(mut dead, reason) = outcomes[0].disposition.clone() else { panic!("{outcomes:?}") };
    assert_eq!(reason.code, "retries_exhausted");
    assert_eq!(dead.attempts.len(), 3);

    // The on-call engineer redrives it while HubSpot is still down: a fresh schedule, history kept.
    let later = now + secs(3600);
    dead.redrive(later);
    assert_eq!(dead.schedule_offset, 3);
    let outcomes = f.worker.process(vec![dead], later).await.unwrap();
    let Disposition::Retry(next) = outcomes[0].disposition.clone() else { panic!("{outcomes:?}") };
    assert_eq!(next.not_before, later + Duration::from_secs(1), "the first step again");
    assert_eq!(next.attempts.len(), 4);
    assert_eq!(next.attempts[3].attempt, 4);

    // HubSpot is back: delivered, once.
    f.faults(0.0, 0);
    let calls = f.upsert_calls();
    let at = later + secs(2);
    let outcomes = f.worker.process(vec![next], at).await.unwrap();
    assert!(matches!(outcomes[0].disposition, Disposition::Delivered { .. }), "{outcomes:?}");
    assert_eq!(f.upsert_calls(), calls + 1);
    assert_eq!(f.contact("again@example.com").await.unwrap()["vehicle_of_interest"], "fixed");
    let record = f.store.get_event(&m.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Delivered);
    // The record ends with the successful attempt.
    assert_eq!(record.attempts.len(), 5);
    let last = record.attempts.last().unwrap();
    assert_eq!((last.attempt, last.at, last.outcome), (5, at, AttemptOutcome::Delivered));
}

#[tokio::test]
async fn batches_hold_at_most_one_hundred_inputs() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let messages: Vec<_> = (0..250).map(|i| queued(lead(&format!("b{i}@example.com"), "x"), now - secs(30))).collect();
    let outcomes = f.worker.process(messages, now).await.unwrap();
    assert_eq!(outcomes.len(), 250);
    assert!(outcomes.iter().all(|o| matches!(o.disposition, Disposition::Delivered { .. })));
    assert_eq!(f.upsert_calls(), 3);
    assert_eq!(f.sandbox.sandbox.contact_count().unwrap(), 250);
}

#[tokio::test]
async fn an_unreadable_event_is_dead_lettered() {
    let f = fixture(RetrySchedule::default()).await;
    let now = OffsetDateTime::now_utc();
    let mut m = queued(lead("x@example.com", "x"), now - secs(30));
    m.event = json!({"email": 42});
    let outcomes = f.worker.process(vec![m], now).await.unwrap();
    let Disposition::DeadLetter(_, reason) = &outcomes[0].disposition else { panic!("{outcomes:?}") };
    assert_eq!(reason.code, "unreadable_event");
}

// ---- the local worker: dispositions applied to the SQLite queues ----

use hubrelay_core::store::RetryQueue;

fn ids(messages: &[RetryMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.event_id.as_str()).collect()
}

#[tokio::test]
async fn a_tick_stores_every_fate_and_a_store_error_leaves_the_queue_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hubrelay.db");
    let f = fixture_with(RetrySchedule::default(), SqliteStore::open(&path).unwrap()).await;
    let store = f.store.clone();
    let now = OffsetDateTime::now_utc();
    let good = queued(lead("tick-good@example.com", "x"), now - secs(30));
    let mut bad = lead("tick-bad@example.com", "x");
    bad["properties"] = json!({"no_such_property": "x"});
    let bad = queued(bad, now - secs(30));
    let later = queued(lead("tick-later@example.com", "x"), now);
    for m in [&good, &bad, &later] {
        store.enqueue(m).await.unwrap();
    }
    let Fixture { sandbox, worker, .. } = f;
    let local = LocalWorker::new(store.clone(), worker);

    let report = local.tick(now).await.unwrap();
    assert_eq!(report, TickReport { fetched: 2, delivered: 1, dead_lettered: 1, ..TickReport::default() });
    assert_eq!(ids(&store.queued().unwrap()), [later.event_id.as_str()]);
    let dlq = store.dead_letters().unwrap();
    assert_eq!(ids(&dlq), [bad.event_id.as_str()]);
    assert_eq!(dlq[0].dead_letter_reason.as_ref().unwrap().code, "property_doesnt_exist");
    assert_eq!(dlq[0].attempts.len(), 2);

    // HubSpot down: the message is replaced by its updated copy.
    sandbox.sandbox.set_faults(Faults { failure_rate: 1.0, ..Faults::default() });
    let report = local.tick(now + secs(5)).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, retried: 1, ..TickReport::default() });
    let queued_now = store.queued().unwrap();
    assert_eq!(queued_now[0].attempts.len(), 2);
    assert_eq!(queued_now[0].not_before, now + secs(5) + Duration::from_secs(300));
    assert_eq!(local.tick(now + secs(6)).await.unwrap(), TickReport::default(), "nothing due");

    // The store fails while the fates are recorded: nothing is settled, the message stays queued as it was.
    sandbox.sandbox.set_faults(Faults::default());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("ALTER TABLE events RENAME TO events_away").unwrap();
    let at = now + secs(400);
    assert!(local.tick(at).await.is_err());
    assert_eq!(store.queued().unwrap(), queued_now);
    // The store is back: the next tick delivers it.
    raw.execute_batch("ALTER TABLE events_away RENAME TO events").unwrap();
    let report = local.tick(at).await.unwrap();
    assert_eq!(report, TickReport { fetched: 1, delivered: 1, ..TickReport::default() });
    assert!(store.queued().unwrap().is_empty());
    assert_eq!(store.get_event(&later.event_id).await.unwrap().unwrap().status, EventStatus::Delivered);
}

#[tokio::test]
async fn run_wakes_on_enqueue_and_stops_on_shutdown() {
    let f = fixture(RetrySchedule::default()).await;
    let store = f.store.clone();
    let Fixture { sandbox: _sandbox, worker, .. } = f;
    // An idle interval far longer than the test: only the wake-up can make it deliver in time.
    let local = LocalWorker::new(store.clone(), worker).with_idle_interval(Duration::from_secs(600));
    let queue = WakingQueue::new(Arc::new(store.clone()), local.waker());
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    let task = tokio::spawn(local.run(async move { stop2.notified().await }));
    tokio::time::sleep(Duration::from_millis(100)).await; // the worker is idle now

    let now = OffsetDateTime::now_utc();
    let mut m = queued(lead("wake@example.com", "x"), now);
    m.not_before = now;
    queue.enqueue(&m).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.queued().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker did not wake up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.get_event(&m.event_id).await.unwrap().unwrap().status, EventStatus::Delivered);

    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the worker stops").unwrap();
}

#[tokio::test]
async fn a_worker_on_a_shared_lane_ticks_only_with_its_turn_and_stops_while_waiting() {
    let f = fixture(RetrySchedule::default()).await;
    let store = f.store.clone();
    let Fixture { sandbox: _sandbox, worker, .. } = f;
    let now = OffsetDateTime::now_utc();
    let mut m = queued(lead("turn@example.com", "x"), now);
    m.not_before = now;
    store.enqueue(&m).await.unwrap();
    // Another worker holds the lane's one permit: this one waits, its due message untouched.
    let lane = Arc::new(tokio::sync::Semaphore::new(1));
    let held = lane.clone().acquire_owned().await.unwrap();
    let local = LocalWorker::new(store.clone(), worker)
        .with_idle_interval(Duration::from_millis(10))
        .with_turn(hubrelay_local::turn::Turn::new(lane.clone()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    let task = tokio::spawn(local.run(async move { stop2.notified().await }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.queued().unwrap().len(), 1, "no tick without the lane's permit");
    // Its turn comes: the message is delivered.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.queued().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker never took its turn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Waiting for its turn again, it still stops when told.
    let _held = lane.acquire_owned().await.unwrap();
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the worker stops").unwrap();
}

// ---- the worker's check-write-record of a contact excludes inline deliveries ----

/// Holds the worker's HubSpot call until told to go on.
struct Gated {
    inner: HubSpotClient,
    entered: tokio::sync::Notify,
    proceed: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl hubrelay_core::hubspot::HubSpot for Gated {
    async fn upsert_contacts(
        &self,
        inputs: &[hubrelay_core::domain::ContactUpsert],
    ) -> Result<hubrelay_core::hubspot::UpsertResults, hubrelay_core::hubspot::HubSpotError> {
        self.entered.notify_one();
        self.proceed.notified().await;
        self.inner.upsert_contacts(inputs).await
    }

    async fn list_properties(
        &self,
    ) -> Result<Vec<hubrelay_core::hubspot::PropertyDefinition>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.list_properties().await
    }

    async fn create_property(
        &self,
        p: &hubrelay_core::hubspot::PropertyDefinition,
    ) -> Result<(), hubrelay_core::hubspot::HubSpotError> {
        self.inner.create_property(p).await
    }

    async fn update_contact(
        &self,
        id: &str,
        properties: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), hubrelay_core::hubspot::HubSpotError> {
        self.inner.update_contact(id, properties).await
    }

    async fn create_engagement(
        &self,
        engagement: &hubrelay_core::hubspot::Engagement,
    ) -> Result<String, hubrelay_core::hubspot::HubSpotError> {
        self.inner.create_engagement(engagement).await
    }

    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.contact_id_by_email(email).await
    }

    async fn associated_ids(
        &self,
        from: &str,
        id: &str,
        to: &str,
    ) -> Result<Vec<String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.associated_ids(from, id, to).await
    }

    async fn engagement_properties(
        &self,
        kind: hubrelay_core::hubspot::EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<std::collections::BTreeMap<String, String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.engagement_properties(kind, id, properties).await
    }

    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<hubrelay_core::hubspot::CrmObject>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.read_object(object, id, properties, associations).await
    }
}

#[tokio::test]
async fn an_inline_delivery_cannot_land_between_the_workers_check_and_write() {
    let f = fixture(RetrySchedule::default()).await;
    let client = HubSpotClient::new(&f.sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let gated = Arc::new(Gated {
        inner: client.clone(),
        entered: tokio::sync::Notify::new(),
        proceed: tokio::sync::Notify::new(),
    });
    let locks = ContactLocks::new();
    let shared = Arc::new(f.store.clone());
    let worker = RetryWorker::new(
        gated.clone(),
        Mapping::load("chat-widget").unwrap(),
        RetrySchedule::default(),
        Jitter::NONE,
        shared.clone(),
        shared,
    )
    .with_contact_locks(locks.clone());
    let now = OffsetDateTime::now_utc();
    let older = queued(lead("race@example.com", "older"), now - secs(60));
    let work = tokio::spawn(async move { worker.process(vec![older], now).await.unwrap() });
    // The worker has checked the contact's version and is about to write the older lead...
    gated.entered.notified().await;
    // ...when a newer lead arrives inline (what `LeadService` does with shared locks).
    let (locks2, store, inline_client) = (locks.clone(), f.store.clone(), client.clone());
    let inline = tokio::spawn(async move {
        let _shared = locks2.share("race@example.com").await;
        let upsert = hubrelay_core::domain::ContactUpsert {
            email: "race@example.com".into(),
            properties: [("vehicle_of_interest".to_string(), "newer".to_string())].into(),
        };
        inline_client.upsert_contact(&upsert).await.unwrap();
        store.record_applied("race@example.com", now).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!inline.is_finished(), "the inline delivery waits for the worker");
    gated.proceed.notify_one();
    let outcomes = work.await.unwrap();
    assert!(matches!(outcomes[0].disposition, Disposition::Delivered { .. }));
    inline.await.unwrap();
    assert_eq!(f.contact("race@example.com").await.unwrap()["vehicle_of_interest"], "newer");
    assert!(locks.is_empty());
}

// ---- HubSpot's multi-status answer: one refused input, the others delivered in the same call ----

#[tokio::test]
async fn a_207_batch_delivers_the_good_inputs_in_that_call_and_parks_only_the_refused_one() {
    let f = fixture(RetrySchedule::default()).await;
    // A portal rule (enforced from API version 2026-09) the second lead breaks.
    f.sandbox.sandbox.set_validation_rules(vec![hubrelay_sandbox::hubspot::ValidationRule {
        property: "phone".into(),
        message: Some("Test-drive leads need a phone number".into()),
        when: Some(hubrelay_sandbox::hubspot::Condition {
            property: "vehicle_of_interest".into(),
            equals: "Test drive".into(),
        }),
        on: Default::default(),
    }]);
    let now = OffsetDateTime::now_utc();
    let good = queued(lead("good@example.com", "Trawler"), now - secs(30));
    let bad = queued(lead("bad@example.com", "Test drive"), now - secs(20));
    let mut fine = lead("fine@example.com", "Test drive");
    fine["phone"] = json!("+1 555 0102");
    let fine = queued(fine, now - secs(10));
    let outcomes = f.worker.process(vec![good.clone(), bad.clone(), fine.clone()], now).await.unwrap();

    assert_eq!(f.upsert_calls(), 1, "one call: the 207 named the refused input, nothing was split or re-sent");
    for m in [&good, &fine] {
        assert!(matches!(disposition(&outcomes, &m.event_id), Disposition::Delivered { .. }), "{outcomes:?}");
        assert_eq!(f.status(&m.event_id).await, EventStatus::Delivered);
    }
    match disposition(&outcomes, &bad.event_id) {
        Disposition::DeadLetter(_, reason) => {
            assert_eq!(reason.code, "portal_validation_rule");
            assert!(reason.message.contains("Test-drive leads need a phone number"), "{reason:?}");
        }
        other => panic!("the refused input should be parked, got {other:?}"),
    }
    assert!(f.contact("good@example.com").await.is_some() && f.contact("fine@example.com").await.is_some());
    assert!(f.contact("bad@example.com").await.is_none());
}

// ---- a batch refused whole (no per-input answer) is split, so one bad input cannot sink the others ----

/// A HubSpot that refuses a batch whole when any input is `bad@…` (as an email-keyed batch without trace ids
/// is refused), and otherwise answers as the sandbox does.
struct WholeBatchRefusal {
    inner: HubSpotClient,
    calls: std::sync::atomic::AtomicU64,
    /// Whether a batch holding this input is refused whole, and with what.
    refuses: fn(&hubrelay_core::domain::ContactUpsert) -> Option<hubrelay_core::hubspot::HubSpotError>,
}

/// `bad@…` inputs are refused without naming anything (the batch must be split to find them).
fn refuses_bad_email(i: &hubrelay_core::domain::ContactUpsert) -> Option<hubrelay_core::hubspot::HubSpotError> {
    i.email.starts_with("bad@").then(|| {
        hubrelay_core::hubspot::HubSpotError::new(Some(400), "property_doesnt_exist", "Property values were not valid")
    })
}

/// A portal that lacks `budget_range`: HubSpot names the property in its refusal.
fn refuses_budget_range(i: &hubrelay_core::domain::ContactUpsert) -> Option<hubrelay_core::hubspot::HubSpotError> {
    i.properties.contains_key("budget_range").then(|| {
        hubrelay_core::hubspot::HubSpotError::new(
            Some(400),
            "validation_error",
            r#"Property values were not valid: [{"isValid":false,"message":"Property \"budget_range\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"budget_range"}]"#,
        )
    })
}

#[async_trait::async_trait]
impl hubrelay_core::hubspot::HubSpot for WholeBatchRefusal {
    async fn upsert_contacts(
        &self,
        inputs: &[hubrelay_core::domain::ContactUpsert],
    ) -> Result<hubrelay_core::hubspot::UpsertResults, hubrelay_core::hubspot::HubSpotError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(refusal) = inputs.iter().find_map(self.refuses) {
            return Err(refusal);
        }
        self.inner.upsert_contacts(inputs).await
    }
    async fn list_properties(
        &self,
    ) -> Result<Vec<hubrelay_core::hubspot::PropertyDefinition>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.list_properties().await
    }
    async fn create_property(
        &self,
        p: &hubrelay_core::hubspot::PropertyDefinition,
    ) -> Result<(), hubrelay_core::hubspot::HubSpotError> {
        self.inner.create_property(p).await
    }
    async fn update_contact(
        &self,
        id: &str,
        properties: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), hubrelay_core::hubspot::HubSpotError> {
        self.inner.update_contact(id, properties).await
    }
    async fn create_engagement(
        &self,
        engagement: &hubrelay_core::hubspot::Engagement,
    ) -> Result<String, hubrelay_core::hubspot::HubSpotError> {
        self.inner.create_engagement(engagement).await
    }
    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.contact_id_by_email(email).await
    }
    async fn associated_ids(
        &self,
        from: &str,
        id: &str,
        to: &str,
    ) -> Result<Vec<String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.associated_ids(from, id, to).await
    }
    async fn engagement_properties(
        &self,
        kind: hubrelay_core::hubspot::EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<std::collections::BTreeMap<String, String>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.engagement_properties(kind, id, properties).await
    }
    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<hubrelay_core::hubspot::CrmObject>, hubrelay_core::hubspot::HubSpotError> {
        self.inner.read_object(object, id, properties, associations).await
    }
}

#[tokio::test]
async fn a_batch_refused_whole_is_split_in_halves_and_only_the_bad_input_parked() {
    let f = fixture(RetrySchedule::default()).await;
    let client = HubSpotClient::new(&f.sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let hubspot = Arc::new(WholeBatchRefusal { inner: client, calls: Default::default(), refuses: refuses_bad_email });
    let store = Arc::new(f.store.clone());
    let worker = RetryWorker::new(
        hubspot.clone(),
        Mapping::load("chat-widget").unwrap(),
        RetrySchedule::default(),
        Jitter::NONE,
        store.clone(),
        store,
    );
    let now = OffsetDateTime::now_utc();
    let mut messages: Vec<RetryMessage> =
        (0..7).map(|i| queued(lead(&format!("good{i}@example.com"), "fine"), now - secs(30))).collect();
    let bad = queued(lead("bad@example.com", "fine"), now - secs(30));
    messages.insert(5, bad.clone());
    let outcomes = worker.process(messages.clone(), now).await.unwrap();
    for m in messages.iter().filter(|m| m.event_id != bad.event_id) {
        assert!(matches!(disposition(&outcomes, &m.event_id), Disposition::Delivered { .. }), "{outcomes:?}");
    }
    match disposition(&outcomes, &bad.event_id) {
        Disposition::DeadLetter(_, reason) => assert_eq!(reason.code, "property_doesnt_exist"),
        other => panic!("expected a dead letter, got {other:?}"),
    }
    // Halving 8 inputs down to the bad one: a handful of calls, not one per input.
    let calls = hubspot.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..=8).contains(&calls), "{calls} calls");
}

/// Finding 6: 200 leads carrying a property the portal lacks, among 100 good ones, cost one refused call
/// (not ~1.7 per bad lead from bisecting): every input carrying it parks at once, the rest go on in the
/// same chunk's next call, and later chunks and passes park such leads without a call.
#[tokio::test]
async fn a_refusal_naming_a_property_parks_every_input_carrying_it_without_bisecting() {
    let f = fixture(RetrySchedule::default()).await;
    let client = HubSpotClient::new(&f.sandbox.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let hubspot =
        Arc::new(WholeBatchRefusal { inner: client, calls: Default::default(), refuses: refuses_budget_range });
    let store = Arc::new(f.store.clone());
    let worker = RetryWorker::new(
        hubspot.clone(),
        Mapping::load("chat-widget").unwrap(),
        RetrySchedule::default(),
        Jitter::NONE,
        store.clone(),
        store,
    );
    let now = OffsetDateTime::now_utc();
    let mut messages = Vec::new();
    for i in 0..300 {
        let mut body = lead(&format!("lead{i}@example.com"), "fine");
        if i % 3 != 0 {
            body["budget_range"] = json!("40-50k");
        }
        messages.push(queued(body, now - secs(30)));
    }
    let outcomes = worker.process(messages.clone(), now).await.unwrap();
    let (mut delivered, mut parked) = (0, 0);
    for m in &messages {
        match disposition(&outcomes, &m.event_id) {
            Disposition::Delivered { .. } => delivered += 1,
            Disposition::DeadLetter(_, reason) => {
                assert_eq!(reason.code, "property_doesnt_exist", "{reason:?}");
                assert!(reason.message.contains("budget_range"), "{reason:?}");
                parked += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((delivered, parked), (100, 200));
    // Every call the wrapper saw, less those it passed on to the sandbox.
    let refused = |h: &WholeBatchRefusal| h.calls.load(std::sync::atomic::Ordering::SeqCst) - f.upsert_calls();
    let refused_calls = refused(&hubspot);
    assert_eq!(refused_calls, 1, "one refused call named the property; nothing was bisected");
    // The 300 inputs come in three chunks of 100: each chunk's good leads in one call (the first chunk's
    // after its refusal; the later chunks' bad leads are parked before their call).
    assert_eq!(f.upsert_calls(), 3);

    // The next such lead parks without a call.
    let late = queued(json!({"email": "late@example.com", "budget_range": "10-20k"}), now - secs(1));
    let outcomes = worker.process(vec![late.clone()], late.not_before).await.unwrap();
    assert!(matches!(disposition(&outcomes, &late.event_id), Disposition::DeadLetter(..)), "{outcomes:?}");
    assert_eq!(refused(&hubspot), 1);
}
