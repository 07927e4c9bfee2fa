//! The product's promise, end to end against the real `hubrelay serve`: every lead answered with a 2xx ends
//! delivered (or superseded by a newer lead for the same contact) or in the dead-letter queue with its
//! history — through HubSpot outages, 429 bursts and `kill -9`. A fast retry schedule (100 ms steps, no
//! jitter) keeps each test to seconds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubrelay_core::domain::DeliveryAttempt;
use hubrelay_core::store::{EventFilter, EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};

use crate::harness::{headers, Serve, TOKEN, UPSERT};

fn lead(email: &str, seq: usize) -> Value {
    json!({
        "email": email, "first_name": "Lee", "last_name": format!("Number {seq}"),
        "vehicle_of_interest": "2026 Model X", "budget_range": format!("seq-{seq}"), "priority": "high",
        "origin_channel": "chat_widget", "dealership": {"name": "Lakeside", "slug": "lakeside"},
    })
}

fn email(i: usize) -> String {
    format!("buyer{i}@example.com")
}

fn steps(n: usize, step: &str) -> String {
    vec![step; n].join(",")
}

/// Poll until the retry queue is empty; the store for further checks.
async fn drained(serve: &Serve, within: Duration) -> SqliteStore {
    let store = SqliteStore::open(&serve.db_path()).unwrap();
    let deadline = Instant::now() + within;
    loop {
        let left = store.queued_count().unwrap();
        if left == 0 {
            return store;
        }
        assert!(Instant::now() < deadline, "{left} events still queued after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `seq` in each contact's `budget_range`, by email.
async fn contact_seqs(serve: &Serve) -> BTreeMap<String, usize> {
    serve
        .all_contacts_with(&["budget_range"])
        .await
        .iter()
        .map(|c| {
            let email = c["properties"]["email"].as_str().unwrap().to_string();
            let seq = c["properties"]["budget_range"].as_str().unwrap().trim_start_matches("seq-").parse().unwrap();
            (email, seq)
        })
        .collect()
}

/// What each sender saw: per email, the leads in the order their POSTs were made (one at a time per email).
#[derive(Default)]
struct Ledger {
    by_email: HashMap<String, Vec<(usize, Answer)>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// 2xx: the event is ours to deliver.
    Accepted { event_id: String, status: String },
    /// No answer (the process died mid-request): the lead may or may not have been taken.
    Unknown,
}

impl Ledger {
    fn accepted(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for answers in self.by_email.values() {
            for (_, a) in answers {
                if let Answer::Accepted { event_id, status } = a {
                    out.push((event_id.clone(), status.clone()));
                }
            }
        }
        out
    }

    /// The seqs a contact may hold: the last accepted lead's, or a later one that got no answer.
    fn allowed(&self, email: &str) -> Vec<usize> {
        let answers = &self.by_email[email];
        let last = answers.iter().rposition(|(_, a)| matches!(a, Answer::Accepted { .. }));
        let from = last.unwrap_or(0);
        answers[from..].iter().map(|(seq, _)| *seq).collect()
    }
}

/// POST `leads` (seq, email) with at most `concurrency` in flight and never two for the same email at
/// once, so "the lead accepted last" is well defined per email.
async fn post_all(
    url: &str,
    leads: Vec<(usize, String)>,
    concurrency: usize,
    ledger: &Arc<Mutex<Ledger>>,
) -> Vec<(usize, Option<(u16, Value)>)> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let email_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = Arc::default();
    let mut tasks = Vec::new();
    for (seq, email) in leads {
        let (http, slots, email_locks, ledger, url) =
            (http.clone(), slots.clone(), email_locks.clone(), ledger.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let lock = email_locks.lock().unwrap().entry(email.clone()).or_default().clone();
            let _one_at_a_time = lock.lock().await;
            let answer = http
                .post(format!("{url}/v1/leads"))
                .bearer_auth(TOKEN)
                .json(&lead(&email, seq))
                .send()
                .await
                .ok()
                .map(|r| (r.status().as_u16(), r));
            let answer = match answer {
                Some((status, resp)) => resp.json::<Value>().await.ok().map(|v| (status, v)),
                None => None,
            };
            let entry = match &answer {
                Some((200..=299, body)) => Answer::Accepted {
                    event_id: body["event_id"].as_str().unwrap_or_default().to_string(),
                    status: body["status"].as_str().unwrap_or_default().to_string(),
                },
                Some((status, body)) => panic!("lead {seq} refused: {status} {body}"),
                None => Answer::Unknown,
            };
            ledger.lock().unwrap().by_email.entry(email).or_default().push((seq, entry));
            (seq, answer)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Every accepted event was answered `delivered` or `queued`, and its record now shows one of `allowed`.
async fn assert_fates(store: &SqliteStore, ledger: &Ledger, allowed: &[EventStatus]) {
    for (event_id, status) in ledger.accepted() {
        assert!(status == "delivered" || status == "queued", "{event_id} answered {status}");
        let record = store.get_event(&event_id).await.unwrap().unwrap_or_else(|| panic!("no record for {event_id}"));
        assert!(allowed.contains(&record.status), "{event_id} ended {:?}: {record:?}", record.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_leads_over_200_emails_come_through_5xx_and_429_bursts() {
    let schedule = steps(20, "100ms");
    let serve =
        Serve::start(&[("HUBRELAY_RETRY_SCHEDULE", &schedule), ("HUBRELAY_RETRY_JITTER", "0"), ("RUST_LOG", "error")]);
    // The portal allows 100 calls per 10 s, hubrelay's default limit. Half the calls fail with 503, except
    // for a burst of 429 TEN_SECONDLY_ROLLING refusing every call for twenty calls after the 20th.
    let outage = json!({"failure_rate": 0.5, "failure_status": 503, "requests_per_10s": 100});
    let burst = json!({"failure_rate": 1.0, "failure_status": 429, "requests_per_10s": 100});
    serve.set_faults(outage.clone()).await;
    let phases = {
        let (http, url) = (serve.http.clone(), serve.sandbox_url.clone());
        tokio::spawn(async move {
            let calls = || async {
                let stats: Value =
                    http.get(format!("{url}/__sandbox/stats")).send().await.unwrap().json().await.unwrap();
                stats["by_endpoint"][UPSERT].as_u64().unwrap_or(0)
            };
            let mut until = 20;
            for faults in [burst, outage] {
                while calls().await < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                http.post(format!("{url}/__sandbox/faults")).json(&faults).send().await.unwrap();
                // Twenty calls in this phase.
                until = calls().await + 20;
            }
        })
    };
    let started = Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let leads: Vec<_> = (0..1000).map(|seq| (seq, email(seq % 200))).collect();
    post_all(&serve.url, leads, 32, &ledger).await;
    let posted = started.elapsed();
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    assert_eq!(ledger.accepted().len(), 1000, "every lead is accepted");

    eprintln!("1000 leads posted in {posted:?}");
    let store = drained(&serve, Duration::from_secs(60)).await;
    let settled = started.elapsed();
    phases.await.unwrap();
    serve.set_faults(json!({"failure_rate": 0.0, "requests_per_10s": 100_000})).await;

    assert!(store.dead_letters().unwrap().is_empty(), "{:?}", store.dead_letters().unwrap());
    assert_fates(&store, &ledger, &[EventStatus::Delivered, EventStatus::Superseded]).await;
    let contacts = contact_seqs(&serve).await;
    assert_eq!(contacts.len(), 200);
    for (email, seq) in &contacts {
        assert_eq!(ledger.allowed(email), [*seq], "{email} holds seq-{seq}, not the lead accepted last");
    }
    // The run did meet 5xx and 429s; hubrelay's own limiter kept it from earning real 429s; the worker's
    // batches saved calls.
    let records = store.list_events(&EventFilter::default()).await.unwrap();
    let statuses: Vec<u16> = records.iter().flat_map(|r| r.attempts.iter().filter_map(|a| a.status)).collect();
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    let stats = serve.sandbox_stats().await;
    let calls = stats["by_endpoint"][UPSERT].as_u64().unwrap();
    eprintln!(
        "1000 leads: posted in {posted:?}, settled in {settled:?}; {calls} upsert calls; sandbox refused {} \
         (rate limit) + injected {}; attempts seen: {} × 503, {} × 429",
        stats["rate_limited"],
        stats["faults_injected"],
        count(503),
        count(429)
    );
    assert!(count(503) > 0 && count(429) > 0, "503s: {}, 429s: {}", count(503), count(429));
    assert_eq!(stats["rate_limited"], 0, "the sandbox's limiter never had to refuse hubrelay");
    assert!(calls < 1000, "{calls} calls for 1000 leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hubspot_down_every_event_is_dead_lettered_and_a_redrive_delivers_each_once() {
    let schedule = steps(5, "100ms");
    let serve = Serve::start(&[
        ("HUBRELAY_RETRY_SCHEDULE", &schedule),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("HUBSPOT_RATE_LIMIT_PER_10S", "1000"),
        ("RUST_LOG", "error"),
    ]);
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503, "requests_per_10s": 100_000})).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let leads: Vec<_> = (0..60).map(|seq| (seq, email(seq % 20))).collect();
    post_all(&serve.url, leads, 8, &ledger).await;
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let accepted = ledger.accepted();
    assert_eq!(accepted.len(), 60);
    assert!(accepted.iter().all(|(_, status)| status == "queued"));

    let store = drained(&serve, Duration::from_secs(30)).await;
    assert_fates(&store, &ledger, &[EventStatus::DeadLettered]).await;
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), 60);
    for m in &dead {
        assert_eq!(m.dead_letter_reason.as_ref().unwrap().code, "retries_exhausted");
        assert_eq!(m.attempts.len(), 6, "the inline attempt and five retries: {m:?}");
        // The inline attempt may also find the contact held by the worker (under load, past the 250 ms wait):
        // then it was queued unsent, as `contact_busy`.
        let unavailable =
            |a: &DeliveryAttempt| a.status == Some(503) && a.error_code.as_deref() == Some("hubspot_unavailable");
        let (first, rest) = m.attempts.split_first().unwrap();
        assert!(unavailable(first) || first.error_code.as_deref() == Some("contact_busy"), "{first:?}");
        assert!(rest.iter().all(unavailable), "{m:?}");
        let record = store.get_event(&m.event_id).await.unwrap().unwrap();
        assert_eq!(record.attempts, m.attempts);
    }
    // Every 503 went to hubrelay so far (the check below is the test's own call, refused too).
    let injected = serve.sandbox_stats().await["faults_injected"].as_f64().unwrap();
    assert!(serve.all_contacts().await.is_empty(), "nothing was written");

    // HubSpot is back; the on-call engineer redrives everything with `hubrelay dlq redrive --all` (a fresh
    // schedule, the history kept) while serve runs.
    serve.set_faults(json!({"failure_rate": 0.0, "requests_per_10s": 100_000})).await;
    let calls_before = serve.sandbox_calls(UPSERT).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["dlq", "redrive", "--all", "--data-dir"])
        .arg(serve.data_dir.path())
        .env_remove("HUBRELAY_IDEMPOTENCY_TABLE")
        .env_remove("HUBRELAY_DLQ_URL")
        .env_remove("HUBRELAY_RETRY_QUEUE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = drained(&serve, Duration::from_secs(30)).await;
    assert_fates(&store, &ledger, &[EventStatus::Delivered]).await;
    assert!(store.dead_letters().unwrap().is_empty());
    // Delivered once: each event's history is its six failures and exactly one delivery. (The CLI moves events one
    // by one while serve runs, so the worker may pick them up over a few passes: a handful of batch calls, never
    // one per lead.)
    for m in &dead {
        let record = store.get_event(&m.event_id).await.unwrap().unwrap();
        assert_eq!(record.attempts.len(), 7, "{:?}", record.attempts);
        assert_eq!(record.attempts[6].outcome, hubrelay_core::domain::AttemptOutcome::Delivered);
    }
    let calls = serve.sandbox_calls(UPSERT).await - calls_before;
    assert!((1..=20).contains(&calls), "60 leads over 20 contacts took {calls} batch calls");
    let contacts = contact_seqs(&serve).await;
    assert_eq!(contacts.len(), 20);
    for (email, seq) in &contacts {
        assert_eq!(ledger.allowed(email), [*seq], "{email}");
    }

    // `GET /metrics` tells the same story: every lead queued, dead-lettered, redriven and delivered once, none
    // parked; HubSpot's 503s and its successes counted with their latencies.
    let metrics = serve.metrics().await;
    let events = |outcome: &str| {
        metrics[&format!(r#"hubrelay_events_total{{tenant="default",function="lead-captured",outcome="{outcome}"}}"#)]
    };
    assert!(events("queued") >= 60.0, "{metrics:?}");
    for (outcome, n) in [("dead_lettered", 60.0), ("redriven", 60.0), ("delivered", 60.0), ("parked", 0.0)] {
        assert_eq!(events(outcome), n, "{outcome}");
    }
    let calls =
        |answer: &str| metrics[&format!(r#"hubrelay_hubspot_requests_total{{tenant="default",answer="{answer}"}}"#)];
    assert_eq!(calls("server_error"), injected, "each 503 the sandbox sent was counted: {metrics:?}");
    assert!(injected >= 1.0 && calls("success") >= 1.0, "{metrics:?}");
    let all_calls: f64 =
        ["success", "rate_limited", "client_error", "server_error", "no_answer"].map(calls).iter().sum();
    let timed = metrics[r#"hubrelay_hubspot_request_duration_seconds_count{tenant="default"}"#];
    assert_eq!(timed, all_calls, "one latency per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_flight_loses_nothing() {
    // Long enough that nothing exhausts during the outages below.
    let schedule = steps(40, "300ms");
    let mut serve = Serve::start(&[
        ("HUBRELAY_RETRY_SCHEDULE", &schedule),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("HUBSPOT_RATE_LIMIT_PER_10S", "10000"),
        ("RUST_LOG", "error"),
    ]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let emails = 50;
    let mut seq = 0;
    let mut next = |n: usize| {
        let batch: Vec<_> = (seq..seq + n).map(|s| (s, email(s % emails))).collect();
        seq += n;
        batch
    };
    for round in 0..4u64 {
        // HubSpot down: 100 leads pile up on the queue.
        serve.set_faults(json!({"failure_rate": 1.0, "requests_per_10s": 100_000})).await;
        for (_, answer) in post_all(&serve.url, next(100), 16, &ledger).await {
            let (status, body) = answer.expect("serve is up");
            assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
        }
        // HubSpot back but slow: the worker's batches are in flight, and more leads arrive...
        serve.set_faults(json!({"failure_rate": 0.0, "latency_ms": 400, "requests_per_10s": 100_000})).await;
        let (url, more, ledger2) = (serve.url.clone(), next(60), ledger.clone());
        let poster = tokio::spawn(async move { post_all(&url, more, 8, &ledger2).await });
        // ...when the process is killed, at a different moment each round.
        let jitter =
            u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis());
        tokio::time::sleep(Duration::from_millis(150 + (round * 300 + jitter) % 1000)).await;
        serve.kill();
        poster.await.unwrap();
        serve.restart();
    }
    // The last restart's sandbox has no faults: everything drains.
    let store = drained(&serve, Duration::from_secs(60)).await;
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let accepted = ledger.accepted();
    let unknown: usize = ledger.by_email.values().flatten().filter(|(_, a)| *a == Answer::Unknown).count();
    eprintln!("crash test: {} leads accepted, {unknown} without an answer", accepted.len());
    assert!(accepted.len() >= 400, "{}", accepted.len());
    assert!(store.dead_letters().unwrap().is_empty(), "{:?}", store.dead_letters().unwrap());
    assert_fates(&store, &ledger, &[EventStatus::Delivered, EventStatus::Superseded]).await;
    let contacts = contact_seqs(&serve).await;
    assert_eq!(contacts.len(), emails);
    for (email, seq) in &contacts {
        let allowed = ledger.allowed(email);
        assert!(allowed.contains(seq), "{email} holds seq-{seq}; allowed {allowed:?}");
    }
}

/// `kill -9` while `serve` answers distinct leads as fast as it can (HubSpot healthy, its limit out of the
/// way): every lead answered 2xx is delivered, and once the senders retry what got no answer — and repeat
/// some that did — every lead is one event and one contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_full_load_loses_and_duplicates_nothing() {
    let mut serve = Serve::start(&[("HUBSPOT_RATE_LIMIT_PER_10S", "10000"), ("RUST_LOG", "error")]);
    serve.set_faults(json!({"requests_per_10s": 1_000_000})).await;
    async fn post(http: reqwest::Client, url: String, seq: usize) -> Option<String> {
        let mut lead = lead(&email(seq), seq);
        lead["lead_id"] = json!(format!("L-{seq}"));
        let resp = http.post(format!("{url}/v1/leads")).bearer_auth(TOKEN).json(&lead).send().await.ok()?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.ok()?;
        assert!((200..300).contains(&status), "lead {seq}: {status} {body}");
        Some(body["event_id"].as_str().unwrap().to_string())
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    // 32 senders at once, each posting its next lead as soon as the last is answered, until serve is gone.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(BTreeMap::<usize, Option<String>>::new()));
    let senders: Vec<_> = (0..32)
        .map(|_| {
            let (next, answers, http, url) = (next.clone(), answers.clone(), http.clone(), serve.url.clone());
            tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let answer = post(http.clone(), url.clone(), seq).await;
                    let gone = answer.is_none();
                    answers.lock().unwrap().insert(seq, answer);
                    if gone {
                        return;
                    }
                }
            })
        })
        .collect();
    let jitter = u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis());
    tokio::time::sleep(Duration::from_millis(1000 + jitter)).await;
    serve.kill();
    for sender in senders {
        sender.await.unwrap();
    }
    let first = Arc::try_unwrap(answers).unwrap().into_inner().unwrap();
    let total = first.len();
    let acknowledged: BTreeMap<usize, String> =
        first.iter().filter_map(|(seq, a)| a.clone().map(|id| (*seq, id))).collect();
    eprintln!("kill under load: {} of {total} leads acknowledged before the kill", acknowledged.len());
    assert!(
        acknowledged.len() >= 50 && acknowledged.len() < total,
        "kill the process under load: {}",
        acknowledged.len()
    );

    serve.restart();
    serve.set_faults(json!({"requests_per_10s": 1_000_000})).await;
    // The senders retry every lead without an answer, and repeat every third acknowledged one.
    for &seq in first.keys() {
        let repeat = acknowledged.get(&seq);
        if repeat.is_none() || seq % 3 == 0 {
            let again = post(http.clone(), serve.url.clone(), seq)
                .await
                .unwrap_or_else(|| panic!("lead {seq} after the restart"));
            if let Some(first) = repeat {
                assert_eq!(&again, first, "lead {seq}: a repeat is the same event");
            }
        }
    }
    let store = drained(&serve, Duration::from_secs(60)).await;
    for (seq, event_id) in &acknowledged {
        let record = store.get_event(event_id).await.unwrap().unwrap_or_else(|| panic!("lead {seq} lost"));
        assert_eq!(record.status, EventStatus::Delivered, "lead {seq}: {record:?}");
    }
    let events = store.list_events(&EventFilter::default()).await.unwrap();
    assert!(events.iter().all(|e| e.status == EventStatus::Delivered), "every event delivered");
    assert_eq!(events.len(), total, "one event per lead, none twice");
    assert_eq!(contact_seqs(&serve).await.len(), total, "one contact per lead");
}

#[tokio::test]
async fn retry_now_makes_waiting_events_due_at_once() {
    // A 10-minute schedule: without `events retry-now` the lead would wait that long.
    let serve = Serve::start(&[("HUBRELAY_RETRY_SCHEDULE", "10m"), ("HUBRELAY_RETRY_JITTER", "0")]);
    serve.set_faults(json!({"failure_rate": 1.0})).await;
    let (status, _, body) = serve.post_lead(&json!({"email": "later@example.com"}), headers(&[])).await;
    assert_eq!(status, 202, "{body}");
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["events", "retry-now", "--data-dir"])
        .arg(serve.data_dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("1 retrying events are due now"), "{text}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while serve.contact("later@example.com").await.is_none() {
        assert!(std::time::Instant::now() < deadline, "the hastened lead was not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
