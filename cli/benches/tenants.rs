//! Many tenants on one `serve`: `--tenants` busy tenants each with a backlog of `--backlog` queued leads and a
//! HubSpot limit of `--limit` calls per rolling 10 s (its own sandbox portal, its own limiter), plus one quiet
//! tenant whose fresh leads keep arriving at `--quiet-rate` per second. Does every busy tenant drain at its own
//! pace, with no 429, while the quiet tenant's leads wait no longer than they would alone?
//!
//! How: the busy tenants' portals fail every call while their backlogs are posted (each lead answered `202
//! queued`, its retry 10 minutes away; posted at a budget of 190 calls per 10 s, a lower `--limit` is set with
//! `hubrelay tenants update` afterwards); then the faults go, `hubrelay events retry-now --tenant` makes every
//! backlog due at once, and the quiet tenant's stream runs while they drain. The quiet stream also runs alone
//! first, as the baseline. Reported: per busy tenant the drain time, HubSpot calls, the most calls in any
//! 10 s (sampled every 250 ms) and 429s; the quiet tenant's answer latency p50 / p99 alone and during the drain.
//!
//! A busy tenant's pace is its HubSpot calls per 10 s over its drain, against its limit (and its drain time
//! against the fastest its limit allows): at 190 calls per 10 s a
//! backlog of 5,000 leads is only 50 batch calls and the drain is paced by this machine, so `--limit 10` is the
//! run that shows whether every tenant can use its whole budget at once (its drain bound by its portal).
//!
//! Run: `cargo bench -p hubrelay-cli --bench tenants -- [--tenants 20] [--backlog 5000] [--limit 190]
//! [--quiet-limit 190] [--quiet-rate 20] [--quiet-seconds 10] [--slow-portal-ms 0] [--bin path/to/hubrelay]`
//! (`--slow-portal-ms N`: the first busy tenant's portal answers every call N ms late, a slow portal among fast
//! ones: do the other tenants drain as if it were not there?)

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubrelay_core::store::{EventFilter, EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};

const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

struct Args {
    tenants: usize,
    backlog: usize,
    limit: u32,
    quiet_limit: u32,
    quiet_rate: usize,
    quiet_seconds: usize,
    /// busy00's portal answers each call this late during the drain (a slow portal among fast ones).
    slow_portal_ms: u64,
    bin: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        tenants: 20,
        backlog: 5000,
        limit: 190,
        quiet_limit: 190,
        quiet_rate: 20,
        quiet_seconds: 10,
        slow_portal_ms: 0,
        bin: env!("CARGO_BIN_EXE_hubrelay").into(),
    };
    for (flag, value) in common::flag_pairs() {
        match flag.as_str() {
            "--tenants" => a.tenants = common::number(&flag, &value),
            "--backlog" => a.backlog = common::number(&flag, &value),
            "--limit" => a.limit = common::number(&flag, &value) as u32,
            "--quiet-limit" => a.quiet_limit = common::number(&flag, &value) as u32,
            "--quiet-rate" => a.quiet_rate = common::number(&flag, &value),
            "--quiet-seconds" => a.quiet_seconds = common::number(&flag, &value),
            "--slow-portal-ms" => a.slow_portal_ms = common::number(&flag, &value) as u64,
            "--bin" => a.bin = value,
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

fn busy(i: usize) -> String {
    format!("busy{i:02}")
}

fn token(tenant: &str) -> String {
    format!("bench-{tenant}-sender-token")
}

fn cli(bin: &str, dir: &Path, args: &[&str]) {
    let out = Command::new(bin).args(args).arg("--data-dir").arg(dir).output().expect("run hubrelay");
    assert!(out.status.success(), "hubrelay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Serve and each tenant's sandbox portal URL (from its `tenant X: … HubSpot sandbox URL …` line).
fn start_serve(bin: &str, dir: &Path, tenants: usize) -> (std::process::Child, String, BTreeMap<String, String>) {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBRELAY_CONFIG")
        .env("HUBRELAY_API_TOKENS", "bench-default-token")
        .env("HUBRELAY_RETRY_SCHEDULE", "10m")
        .env("HUBRELAY_RETRY_JITTER", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hubrelay serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut url = String::new();
        let mut portals = BTreeMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("hubrelay listening on ") {
                url = u.trim().to_string();
            }
            if let Some(rest) = line.trim().strip_prefix("tenant ") {
                let id = rest.split(':').next().unwrap_or_default().to_string();
                if let Some(sandbox) = rest.split("HubSpot sandbox ").nth(1).and_then(|r| r.split_whitespace().next()) {
                    portals.insert(id, sandbox.to_string());
                }
            }
            if line.trim().starts_with("HubSpot sandbox ") {
                let _ = tx.send((url.clone(), portals.clone()));
            }
        }
    });
    let (url, portals) = rx.recv_timeout(Duration::from_secs(120)).expect("serve did not start");
    assert_eq!(portals.len(), tenants + 1, "a portal per tenant");
    (child, url, portals)
}

async fn stats(http: &reqwest::Client, sandbox: &str) -> Value {
    http.get(format!("{sandbox}/__sandbox/stats")).send().await.unwrap().json().await.unwrap()
}

async fn faults(http: &reqwest::Client, sandbox: &str, faults: Value) {
    let resp = http.post(format!("{sandbox}/__sandbox/faults")).json(&faults).send().await.unwrap();
    assert!(resp.status().is_success());
}

async fn post(http: &reqwest::Client, url: &str, tenant: &str, email: &str) -> (u16, f64) {
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/t/{tenant}/v1/leads"))
        .bearer_auth(token(tenant))
        .header("content-type", "application/json")
        .body(json!({"email": email, "first_name": "Bench"}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    (status, started.elapsed().as_secs_f64() * 1000.0)
}

/// The quiet tenant's stream, open loop: `rate` leads a second for `seconds`; the answer latencies (ms).
async fn quiet_stream(http: &reqwest::Client, url: &str, rate: usize, seconds: usize, tag: &str) -> Vec<f64> {
    let mut tasks = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    for i in 0..rate * seconds {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (http, url, email) = (http.clone(), url.to_string(), format!("quiet-{tag}-{i}@example.com"));
        tasks.push(tokio::spawn(async move { post(&http, &url, "quiet", &email).await }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        let (status, ms) = t.await.unwrap();
        assert!(status == 200 || status == 202, "quiet lead answered {status}");
        latencies.push(ms);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..args.tenants).map(busy).chain(["quiet".to_string()]).collect();
    let limit_of = |name: &str| if name == "quiet" { args.quiet_limit } else { args.limit };
    for (i, name) in names.iter().enumerate() {
        let file = secrets.path().join(name);
        std::fs::write(&file, token(name)).unwrap();
        // A low limit is set once the backlog is queued: posting it waits on the inline path's budget otherwise.
        let limit = limit_of(name).max(190).to_string();
        let hub = (3000 + i).to_string();
        let file = file.display().to_string();
        cli(
            &args.bin,
            dir.path(),
            &["tenants", "add", name, "--hub-id", &hub, "--rate-limit-per-10s", &limit, "--api-token-file", &file],
        );
    }
    let (mut child, url, portals) = start_serve(&args.bin, dir.path(), args.tenants);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    for name in &names {
        faults(&http, &portals[name], json!({"requests_per_10s": limit_of(name).max(190)})).await;
    }
    println!(
        "{} busy tenants x {} queued leads, {} calls per 10 s each; quiet tenant {} leads/s ({} calls per 10 s)",
        args.tenants, args.backlog, args.limit, args.quiet_rate, args.quiet_limit
    );

    let alone = quiet_stream(&http, &url, args.quiet_rate, args.quiet_seconds, "alone").await;

    // The backlogs: every busy portal failing, so each lead is queued.
    for name in names.iter().take(args.tenants) {
        faults(&http, &portals[name], json!({"failure_rate": 1.0, "requests_per_10s": args.limit.max(190)})).await;
    }
    let posting = Instant::now();
    let jobs: Vec<(String, String)> = (0..args.backlog)
        .flat_map(|i| (0..args.tenants).map(move |t| (busy(t), format!("{}-{i}@example.com", busy(t)))))
        .collect();
    let jobs = Arc::new(std::sync::Mutex::new(jobs.into_iter()));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (http, url, jobs) = (http.clone(), url.clone(), jobs.clone());
            tokio::spawn(async move {
                loop {
                    let Some((tenant, email)) = jobs.lock().unwrap().next() else { return };
                    let (status, _) = post(&http, &url, &tenant, &email).await;
                    assert_eq!(status, 202, "a backlog lead was not queued");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    println!("backlog posted: {} leads in {:.1} s", args.backlog * args.tenants, posting.elapsed().as_secs_f64());
    for name in names.iter().take(args.tenants) {
        faults(&http, &portals[name], json!({"failure_rate": 0.0, "requests_per_10s": args.limit.max(190)})).await;
        if args.limit < 190 {
            cli(&args.bin, dir.path(), &["tenants", "update", name, "--rate-limit-per-10s", &args.limit.to_string()]);
        }
    }
    if args.limit < 190 {
        // serve reads the registry once a second and rebuilds each changed tenant with the new budget; then the
        // portals' rolling windows forget the backlog's failed calls, and take the lower limit.
        tokio::time::sleep(Duration::from_secs(11)).await;
        for name in names.iter().take(args.tenants) {
            faults(&http, &portals[name], json!({"requests_per_10s": args.limit})).await;
        }
    }
    if args.slow_portal_ms > 0 {
        let slow = json!({"requests_per_10s": args.limit, "latency_ms": args.slow_portal_ms});
        faults(&http, &portals[&busy(0)], slow).await;
        println!("{}'s portal answers every call after {} ms", busy(0), args.slow_portal_ms);
    }
    let before: BTreeMap<String, Value> = {
        let mut m = BTreeMap::new();
        for name in &names {
            m.insert(name.clone(), stats(&http, &portals[name]).await);
        }
        m
    };

    // Each busy tenant's own store: drained when its retry queue is empty.
    let stores: BTreeMap<String, SqliteStore> = names
        .iter()
        .take(args.tenants)
        .map(|n| (n.clone(), SqliteStore::open(&dir.path().join("tenants").join(n).join("hubrelay.db")).unwrap()))
        .collect();
    for (name, store) in &stores {
        assert_eq!(store.queued_count().unwrap(), args.backlog as u64, "{name}'s backlog");
    }
    // Drain: every backlog due now, the quiet stream alongside.
    let t0 = Instant::now();
    for name in names.iter().take(args.tenants) {
        cli(&args.bin, dir.path(), &["events", "retry-now", "--tenant", name]);
    }
    let quiet = {
        let (http, url) = (http.clone(), url.clone());
        let (rate, seconds) = (args.quiet_rate, args.quiet_seconds);
        tokio::spawn(async move { quiet_stream(&http, &url, rate, seconds, "drain").await })
    };
    let mut samples: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let mut done: BTreeMap<String, f64> = BTreeMap::new();
    while done.len() < args.tenants {
        for name in names.iter().take(args.tenants) {
            let s = stats(&http, &portals[name]).await;
            let calls = s["by_endpoint"][UPSERT].as_u64().unwrap_or(0)
                - before[name]["by_endpoint"][UPSERT].as_u64().unwrap_or(0);
            samples.entry(name.clone()).or_default().push((t0.elapsed().as_secs_f64(), calls));
            if !done.contains_key(name) && stores[name].queued_count().unwrap() == 0 {
                done.insert(name.clone(), t0.elapsed().as_secs_f64());
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "the backlogs did not drain in 10 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = quiet.await.unwrap();
    // Every queued lead delivered.
    for (name, store) in &stores {
        let delivered = store
            .list_events(&EventFilter { status: Some(EventStatus::Delivered), limit: 0, ..EventFilter::default() })
            .await
            .unwrap()
            .len();
        assert_eq!(delivered, args.backlog, "{name}: every backlog lead delivered");
    }

    println!("\n| tenant | drained in | HubSpot calls | most calls in 10 s | calls per 10 s (of the limit) | fastest drain the limit allows | 429s | leads/s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut worst_429 = 0;
    let mut slowest_pace = f64::MAX;
    for name in names.iter().take(args.tenants) {
        let s = stats(&http, &portals[name]).await;
        let r429 = s["rate_limited"].as_u64().unwrap_or(0) - before[name]["rate_limited"].as_u64().unwrap_or(0);
        worst_429 = worst_429.max(r429);
        let points = &samples[name];
        let calls = points.last().map(|p| p.1).unwrap_or(0);
        let peak = points
            .iter()
            .map(|(t, c)| c - points.iter().filter(|(u, _)| *u <= t - 10.0).map(|p| p.1).next_back().unwrap_or(0))
            .max()
            .unwrap_or(0);
        // The pace a tenant kept: its calls per 10 s over its drain, against its limit. And against the fastest
        // drain its limit allows (a rolling window lets the first `limit` calls go at once, then `limit` a window).
        let pace = calls as f64 / done[name] * 10.0;
        slowest_pace = slowest_pace.min(pace);
        let fastest = calls.saturating_sub(u64::from(args.limit)) as f64 / f64::from(args.limit) * 10.0;
        let against_fastest = if fastest > 0.0 {
            format!("{fastest:.0} s ({:.0} %)", fastest / done[name] * 100.0)
        } else {
            "- (fewer calls than one window allows)".into()
        };
        println!(
            "| {name} | {:.1} s | {calls} | {peak} (limit {}) | {pace:.1} ({:.0} %) | {against_fastest} | {r429} | {:.0} |",
            done[name],
            args.limit,
            pace / f64::from(args.limit) * 100.0,
            args.backlog as f64 / done[name]
        );
    }
    println!(
        "\nquiet tenant ({} leads/s): alone p50 {:.1} ms, p99 {:.1} ms; during the drain p50 {:.1} ms, p99 {:.1} ms",
        args.quiet_rate,
        percentile(&alone, 0.5),
        percentile(&alone, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99)
    );
    println!(
        "slowest pace of a busy tenant: {slowest_pace:.1} calls per 10 s ({:.0} % of its limit)",
        slowest_pace / f64::from(args.limit) * 100.0
    );
    let slowest = done.values().cloned().fold(0.0, f64::max);
    println!(
        "all {} backlogs drained in {slowest:.1} s ({:.0} leads/s in all); most 429s of a tenant: {worst_429}",
        args.tenants,
        (args.backlog * args.tenants) as f64 / slowest
    );
    let _ = child.kill();
    let _ = child.wait();
}
