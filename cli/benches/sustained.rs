//! Sustained-load benchmark: `hubrelay serve` answering a steady stream of distinct leads while its HubSpot
//! (the sandbox) allows only `--limit` requests per rolling 10 s (100: HubSpot Free/Starter).
//!
//! An open-loop generator posts `--rate` leads per second for `--seconds` (each lead a new email, sent on
//! schedule whatever the answers), samples the retry queue every second, then waits until the queue is empty
//! and checks that every lead was delivered. It reports the answers (200 delivered / 202 queued), answer
//! latency p50 / p99, the largest backlog, HubSpot calls per lead, 429s received, and serve's CPU per lead.
//!
//! Run: `cargo bench -p hubrelay-cli --bench sustained -- [--rate 50] [--seconds 300] [--limit 100] [--runs 1]
//! [--bin path/to/hubrelay]` (`--bin` measures another build, e.g. an earlier commit's).

mod common;
use common::{cpu_ticks, median};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubrelay_core::store::{EventFilter, EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};

const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";
const TOKEN: &str = "bench-token";

struct Args {
    rate: usize,
    seconds: usize,
    limit: u32,
    runs: usize,
    bin: String,
}

fn parse_args() -> Args {
    let mut a = Args { rate: 50, seconds: 300, limit: 100, runs: 1, bin: env!("CARGO_BIN_EXE_hubrelay").into() };
    for (flag, value) in common::flag_pairs() {
        match flag.as_str() {
            "--rate" => a.rate = common::number(&flag, &value),
            "--seconds" => a.seconds = common::number(&flag, &value),
            "--limit" => a.limit = common::number(&flag, &value) as u32,
            "--runs" => a.runs = common::number(&flag, &value),
            "--bin" => a.bin = value,
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

struct Run {
    sent: usize,
    delivered_inline: usize,
    queued: usize,
    other: usize,
    /// Answers other than 200 and 202, by status (0: no answer, the connection failed).
    other_by_status: std::collections::BTreeMap<u16, usize>,
    p50_ms: f64,
    p99_ms: f64,
    max_backlog: u64,
    drain_secs: f64,
    delivered: usize,
    dead: usize,
    upsert_calls: u64,
    rate_limited: u64,
    cpu_us_per_lead: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn start_serve(bin: &str, data_dir: &std::path::Path, limit: u32) -> (std::process::Child, String, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBRELAY_CONFIG")
        .env("HUBRELAY_API_TOKENS", TOKEN)
        .env("HUBSPOT_RATE_LIMIT_PER_10S", limit.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hubrelay serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut url = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("hubrelay listening on ") {
                url = u.trim().to_string();
            }
            if let Some(rest) = line.trim().strip_prefix("HubSpot sandbox ") {
                let _ = tx.send((url.clone(), rest.split_whitespace().next().unwrap_or_default().to_string()));
            }
        }
    });
    let (url, sandbox) = rx.recv_timeout(Duration::from_secs(60)).expect("serve did not start");
    (child, url, sandbox)
}

async fn stats(http: &reqwest::Client, sandbox: &str) -> Value {
    http.get(format!("{sandbox}/__sandbox/stats")).send().await.unwrap().json().await.unwrap()
}

fn upserts(stats: &Value) -> u64 {
    stats["by_endpoint"][UPSERT].as_u64().unwrap_or(0)
}

async fn run(args: &Args, n: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, sandbox) = start_serve(&args.bin, dir.path(), args.limit);
    let http = reqwest::Client::new();
    http.post(format!("{sandbox}/__sandbox/faults"))
        .json(&json!({"requests_per_10s": args.limit}))
        .send()
        .await
        .unwrap();
    // Let the start-up property sync leave the rolling window.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let before = stats(&http, &sandbox).await;
    let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
    let cpu_before = cpu_ticks(child.id());

    let total = args.rate * args.seconds;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (store, sampling) = (store.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut max = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(store.queued_count().unwrap_or(0));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            max
        })
    };
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / args.rate as f64)).await;
        let (http, url) = (http.clone(), url.clone());
        let lead = json!({"email": format!("run{n}-lead{i}@example.com"), "first_name": "Load", "last_name": format!("L{i}"),
            "vehicle_of_interest": format!("Model {}", i % 7), "priority": "high", "origin_channel": "chat_widget"});
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = http
                .post(format!("{url}/v1/leads"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(lead.to_string())
                .send()
                .await;
            let latency = sent.elapsed().as_secs_f64() * 1000.0;
            match resp {
                Ok(r) => (r.status().as_u16(), latency),
                Err(_) => (0, latency),
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let (mut delivered_inline, mut queued, mut other) = (0, 0, 0);
    let mut other_by_status = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, latency) = t.await.unwrap();
        latencies.push(latency);
        match status {
            200 => delivered_inline += 1,
            202 => queued += 1,
            _ => {
                other += 1;
                *other_by_status.entry(status).or_insert(0) += 1;
            }
        }
    }
    let load_end = Instant::now();
    let deadline = load_end + Duration::from_secs(900);
    while store.queued_count().unwrap() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_secs = load_end.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let max_backlog = sampler.await.unwrap();
    let cpu = cpu_ticks(child.id()) - cpu_before;
    let after = stats(&http, &sandbox).await;
    let _ = child.kill();
    let _ = child.wait();
    let settled = |status| {
        let store = store.clone();
        async move { store.list_events(&EventFilter { status: Some(status), ..Default::default() }).await.unwrap().len() }
    };
    let delivered = settled(EventStatus::Delivered).await + settled(EventStatus::Superseded).await;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Clock ticks are 10 ms on Linux.
    let cpu_us_per_lead = cpu as f64 * 10_000.0 / total as f64;
    Run {
        sent: total,
        delivered_inline,
        queued,
        other,
        other_by_status,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_backlog,
        drain_secs,
        delivered,
        dead: store.dead_letters().unwrap().len(),
        upsert_calls: upserts(&after) - upserts(&before),
        rate_limited: after["rate_limited"].as_u64().unwrap_or(0) - before["rate_limited"].as_u64().unwrap_or(0),
        cpu_us_per_lead,
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runs = Vec::new();
    for n in 1..=args.runs {
        let r = rt.block_on(run(&args, n));
        eprintln!(
            "run {n}: {} sent; {} delivered inline, {} queued, {} other {:?}; p50 {:.1} ms, p99 {:.1} ms; max backlog {}; \
             drained {:.1} s after the load; {} delivered, {} dead-lettered; {} upsert calls ({:.4}/lead); {} × 429; \
             {:.0} µs CPU/lead",
            r.sent,
            r.delivered_inline,
            r.queued,
            r.other,
            r.other_by_status,
            r.p50_ms,
            r.p99_ms,
            r.max_backlog,
            r.drain_secs,
            r.delivered,
            r.dead,
            r.upsert_calls,
            r.upsert_calls as f64 / r.sent as f64,
            r.rate_limited,
            r.cpu_us_per_lead
        );
        runs.push(r);
    }
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    println!(
        "{} leads/s for {} s against a sandbox limited to {} req/10 s; {} run(s); binary {}",
        args.rate, args.seconds, args.limit, args.runs, args.bin
    );
    println!(
        "median answers: {:.0} delivered inline, {:.0} queued, {:.0} other",
        m(&|r| r.delivered_inline as f64),
        m(&|r| r.queued as f64),
        m(&|r| r.other as f64)
    );
    println!("median p50 / p99 answer latency: {:.1} / {:.1} ms", m(&|r| r.p50_ms), m(&|r| r.p99_ms));
    println!(
        "median largest backlog: {:.0}; drained {:.1} s after the load",
        m(&|r| r.max_backlog as f64),
        m(&|r| r.drain_secs)
    );
    println!(
        "median delivered: {:.0} of {}; dead-lettered: {:.0}",
        m(&|r| r.delivered as f64),
        runs[0].sent,
        m(&|r| r.dead as f64)
    );
    println!(
        "median HubSpot upsert calls per lead: {:.4}; 429s: {:.0}",
        m(&|r| r.upsert_calls as f64 / r.sent as f64),
        m(&|r| r.rate_limited as f64)
    );
    println!("median serve CPU per lead: {:.0} µs", m(&|r| r.cpu_us_per_lead));
}
