//! Delivery benchmark: how fast and how cheaply `hubrelay serve` drains a backlog into a rate-limited HubSpot.
//!
//! Seeds N queued leads over M emails into a fresh data dir (as if HubSpot had been down), starts the real
//! `hubrelay serve` with its sandbox limited to 190 requests per 10 s (HubSpot Professional), and measures until every
//! event is delivered: HubSpot calls per delivered lead, leads delivered per second, 429s received, leads
//! dead-lettered, and serve's peak RSS. `--baseline` measures the search-then-create pattern of other tools
//! (one read by email, then a create or an update: two calls per lead) against the same sandbox and limit.
//!
//! Run: `cargo bench -p hubrelay-cli --bench delivery -- [--leads 20000] [--emails 5000] [--runs 3] [--baseline]`

mod common;
use common::median;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hubrelay_core::domain::{FunctionName, RetryMessage};
use hubrelay_core::store::{EventFilter, EventLog, EventStatus};
use hubrelay_local::sqlite::{QueueChange, SqliteStore};
use serde_json::{json, Value};
use time::OffsetDateTime;

const LIMIT_PER_10S: u32 = 190;
const PACER_WINDOW: Duration = Duration::from_millis(10_200);

struct Args {
    leads: usize,
    emails: usize,
    runs: usize,
    baseline: bool,
}

fn parse_args() -> Args {
    let mut a = Args { leads: 20_000, emails: 5_000, runs: 3, baseline: false };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = |i: usize| argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--leads" => a.leads = next(i).expect("--leads N"),
            "--emails" => a.emails = next(i).expect("--emails N"),
            "--runs" => a.runs = next(i).expect("--runs N"),
            "--baseline" => {
                a.baseline = true;
                i -= 1;
            }
            _ => {
                i -= 1; // cargo bench passes `--bench`; ignore what we do not know
            }
        }
        i += 2;
    }
    a
}

fn lead(i: usize, emails: usize) -> Value {
    json!({
        "email": format!("buyer{}@example.com", i % emails),
        "first_name": "Bench", "last_name": format!("Lead{i}"),
        "vehicle_of_interest": format!("Model {}", i % 7), "budget_range": format!("seq-{i}"),
        "priority": "high", "origin_channel": "chat_widget",
        "dealership": {"name": "Lakeside", "slug": "lakeside"},
    })
}

struct RunResult {
    delivered: usize,
    dead: usize,
    seconds: f64,
    calls: u64,
    rate_limited: u64,
    peak_rss_kib: u64,
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = if args.baseline { rt.block_on(baseline(&args)) } else { rt.block_on(relay(&args)) };
        eprintln!(
            "run {run}: {} delivered, {} dead-lettered in {:.1} s; {} HubSpot calls ({:.4}/lead), {} × 429, peak RSS {} KiB",
            r.delivered,
            r.dead,
            r.seconds,
            r.calls,
            r.calls as f64 / r.delivered.max(1) as f64,
            r.rate_limited,
            r.peak_rss_kib
        );
        results.push(r);
    }
    let mode = if args.baseline { "baseline (read by email, then create or update)" } else { "hubrelay" };
    println!(
        "mode: {mode}; {} leads over {} emails; sandbox limit {LIMIT_PER_10S} req/10 s; {} runs",
        args.leads, args.emails, args.runs
    );
    println!(
        "median calls per delivered lead: {:.4}",
        median(results.iter().map(|r| r.calls as f64 / r.delivered.max(1) as f64).collect())
    );
    println!(
        "median leads delivered per second: {:.0}",
        median(results.iter().map(|r| r.delivered as f64 / r.seconds).collect())
    );
    println!("median 429s received: {}", median(results.iter().map(|r| r.rate_limited as f64).collect()));
    println!("median leads dead-lettered: {}", median(results.iter().map(|r| r.dead as f64).collect()));
    if !args.baseline {
        println!(
            "median peak RSS of serve: {:.1} MiB",
            median(results.iter().map(|r| r.peak_rss_kib as f64 / 1024.0).collect())
        );
    }
}

/// Seed the backlog straight into serve's store, as if HubSpot had been down while these leads came in.
async fn seed(store: &SqliteStore, args: &Args) {
    let now = OffsetDateTime::now_utc();
    let mut changes = Vec::with_capacity(args.leads);
    for i in 0..args.leads {
        let body = lead(i, args.emails).to_string();
        let parsed = hubrelay_core::lead::parse_json(body.as_bytes()).expect("bench lead parses");
        changes.push(QueueChange::Requeue(RetryMessage {
            version: RetryMessage::UNSCOPED_VERSION,
            tenant: None,
            event_id: format!("evt_bench_{i:06}"),
            function: FunctionName::LeadCaptured,
            idempotency_key: format!("lead-captured:bench:{i}"),
            // Strictly increasing: lead i+1 is newer than lead i, so the newest per email must win.
            received_at: now - time::Duration::seconds(60) + time::Duration::microseconds(i as i64),
            event: serde_json::to_value(&parsed.lead).unwrap(),
            attempts: vec![],
            not_before: now,
            dead_letter_reason: None,
            schedule_offset: 0,
            redrives: 0,
            write_intent: None,
        }));
    }
    store.settle(changes).await.expect("seed the queue");
}

/// Start `hubrelay serve` on `data_dir`; returns the child and the sandbox URL.
fn start_serve(data_dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("HUBSPOT_TOKEN")
        .env("HUBRELAY_API_TOKENS", "bench-token")
        .env("HUBSPOT_RATE_LIMIT_PER_10S", LIMIT_PER_10S.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hubrelay serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("HubSpot sandbox ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("serve did not start");
    (child, url)
}

async fn sandbox_stats(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/__sandbox/stats")).send().await.unwrap().json().await.unwrap()
}

async fn relay(args: &Args) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
    seed(&store, args).await;
    let started = Instant::now();
    let (mut child, sandbox) = start_serve(dir.path());
    let http = reqwest::Client::new();
    let before = sandbox_stats(&http, &sandbox).await; // the start-up property sync
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.queued_count().unwrap() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = sandbox_stats(&http, &sandbox).await;
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let delivered = store
        .list_events(&EventFilter { status: Some(EventStatus::Delivered), ..Default::default() })
        .await
        .unwrap()
        .len()
        + store
            .list_events(&EventFilter { status: Some(EventStatus::Superseded), ..Default::default() })
            .await
            .unwrap()
            .len();
    RunResult {
        delivered,
        dead: store.dead_letters().unwrap().len(),
        seconds,
        calls: after["requests"].as_u64().unwrap() - before["requests"].as_u64().unwrap(),
        rate_limited: after["rate_limited"].as_u64().unwrap(),
        peak_rss_kib: peak,
    }
}

/// Read by email, then create or update: what search-then-create tools cost (two calls per lead).
async fn baseline(args: &Args) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let opts = hubrelay_sandbox::hubspot::SandboxOptions {
        token: Some("bench".into()),
        db_path: Some(dir.path().join("sandbox.db")),
        ..Default::default()
    };
    let sandbox = hubrelay_sandbox::hubspot::spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    let client = hubrelay_clients::HubSpotClient::new(&sandbox.url(), "bench", Duration::from_secs(10)).unwrap();
    hubrelay_core::properties::sync(&client, &mapping.all_property_definitions()).await.unwrap();
    // Let the property sync's calls leave the sandbox's rolling window before the pacer starts counting.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let base = sandbox.sandbox.stats();
    let http = reqwest::Client::new();
    let url = sandbox.url();
    let pacer = Pacer::new(LIMIT_PER_10S as usize);
    let started = Instant::now();
    let mut delivered = 0;
    for i in 0..args.leads {
        let parsed = hubrelay_core::lead::parse_json(lead(i, args.emails).to_string().as_bytes()).unwrap();
        let upsert = mapping.apply(&parsed.lead).unwrap();
        pacer.wait().await;
        let found = http
            .get(format!("{url}/crm/v3/objects/contacts/{}?idProperty=email", upsert.email))
            .bearer_auth("bench")
            .send()
            .await
            .unwrap();
        pacer.wait().await;
        let body = json!({ "properties": upsert.properties });
        let resp = if found.status().is_success() {
            let id = found.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            http.patch(format!("{url}/crm/v3/objects/contacts/{id}"))
                .bearer_auth("bench")
                .json(&body)
                .send()
                .await
                .unwrap()
        } else {
            http.post(format!("{url}/crm/v3/objects/contacts")).bearer_auth("bench").json(&body).send().await.unwrap()
        };
        if resp.status().is_success() {
            delivered += 1;
        }
    }
    let stats = sandbox.sandbox.stats();
    RunResult {
        delivered,
        dead: args.leads - delivered,
        seconds: started.elapsed().as_secs_f64(),
        calls: stats.requests - base.requests,
        rate_limited: stats.rate_limited - base.rate_limited,
        peak_rss_kib: 0,
    }
}

/// At most `limit` calls in any rolling 10 s, like a well-behaved client (the window padded by 200 ms, as the
/// sandbox counts a call when it arrives, a little after the client sent it).
struct Pacer {
    limit: usize,
    sent: std::sync::Mutex<std::collections::VecDeque<Instant>>,
}

impl Pacer {
    fn new(limit: usize) -> Self {
        Pacer { limit, sent: Default::default() }
    }

    async fn wait(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap();
                let now = Instant::now();
                while sent.front().is_some_and(|t| now.duration_since(*t) >= PACER_WINDOW) {
                    sent.pop_front();
                }
                if sent.len() < self.limit {
                    sent.push_back(now);
                    return;
                }
                PACER_WINDOW - now.duration_since(*sent.front().unwrap())
            };
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
        }
    }
}
