//! Throughput benchmark: how many distinct leads one `hubrelay serve` answers per second on this machine,
//! at what latency and CPU, with HubSpot's rate limit out of the way.
//!
//! Starts `hubrelay sandbox` (its own process, limit 1,000,000 per 10 s, so serve's CPU is the relay's
//! alone), creates the mapping's custom properties there, starts `hubrelay serve` against it with
//! `HUBSPOT_RATE_LIMIT_PER_10S=10000` and its default logging (one line per lead, to a file), and drives it
//! with `wrk` (closed loop, `--connections` at once, every request a new email; see `throughput/leads.lua`).
//! After the load it waits for the retry queue to drain and checks that every answered lead is a delivered
//! event and a contact. Reports leads/s, p50 / p99 answer latency, serve's CPU per lead (user + system from
//! `/proc`, during the load only; also the part on its SQLite writer thread), HubSpot calls per lead, the
//! SQLite writes per commit, how much CPU time the hypervisor stole from this VM meanwhile, and how long the
//! machine took for a fixed piece of work before the run (its speed of the moment: compare runs at similar values).
//!
//! `--floor` measures instead what no relay can go below on this machine: a server (this bench binary, in its
//! own process, on axum and tokio like `serve`) that answers the same requests with no work but reading the
//! JSON body, after the two waits a lead's answer has in `serve`: a timer of `--floor-wait-ms` (the batch
//! gathering leads and its HubSpot call), then a reply from another thread (the writer committing the answer).
//! Requests that wait make the threads sleep and wake for each one; that, and the kernel's TCP work, is what
//! its CPU per request counts.
//!
//! `scripts/install-test-tools bench` installs wrk. Run: `cargo bench -p hubrelay-cli --bench throughput --
//! [--connections 16,64] [--seconds 30] [--runs 3] [--bin path/to/hubrelay] [--floor [--floor-wait-ms 3]]`.

mod common;
use common::{cpu_ticks, median, stat_ticks};

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hubrelay_core::store::{EventFilter, EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::Value;

const TOKEN: &str = "bench-token";
const SANDBOX_TOKEN: &str = "bench-sandbox-token";
const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

struct Args {
    connections: Vec<usize>,
    seconds: u64,
    runs: usize,
    bin: String,
    floor: bool,
    floor_wait_ms: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        connections: vec![16, 64],
        seconds: 30,
        runs: 3,
        bin: env!("CARGO_BIN_EXE_hubrelay").into(),
        floor: false,
        floor_wait_ms: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--connections" => {
                a.connections = value.split(',').map(|c| c.trim().parse().expect("--connections 16,64")).collect()
            }
            "--seconds" => a.seconds = value.parse().expect("--seconds needs a number"),
            "--runs" => a.runs = value.parse().expect("--runs needs a number"),
            "--bin" => a.bin = value,
            "--floor" => {
                a.floor = true;
                i += 1;
                continue;
            }
            "--floor-wait-ms" => a.floor_wait_ms = value.parse().expect("--floor-wait-ms needs a number"),
            _ => {
                i += 1; // cargo bench passes `--bench`
                continue;
            }
        }
        i += 2;
    }
    a
}

#[derive(Debug, Clone)]
struct Run {
    answered: u64,
    leads_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    not_2xx: u64,
    socket_errors: u64,
    delivered: usize,
    contacts: usize,
    dead: usize,
    serve_cpu_us_per_lead: f64,
    /// The part of serve's CPU spent on its SQLite writer thread (statements, commits, checkpoints).
    writer_cpu_us_per_lead: f64,
    sandbox_cpu_us_per_lead: f64,
    calls_per_lead: f64,
    /// Bytes `serve` wrote towards the disk per lead (`write_bytes` of `/proc/<pid>/io`: the WAL, its
    /// checkpoints into the database, the log), in KiB: the storage work, set by how many leads share a commit,
    /// not by the CPU's speed.
    disk_kib_per_lead: f64,
    /// Share of the machine's CPU time the hypervisor gave to others during the load (a VM's noisy neighbours
    /// slow every figure above; compare runs only when this is near 0).
    steal_percent: f64,
    reference_ms: f64,
}

/// User + system CPU of `pid`'s thread named `name` (the SQLite writer: `sqlite-writer`), in clock ticks.
fn thread_cpu_ticks(pid: u32, name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| stat_ticks(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// Bytes `pid` has caused to be written to storage (`write_bytes` in `/proc/<pid>/io`).
fn disk_write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The machine's CPU ticks since boot from `/proc/stat`: (all, stolen by the hypervisor).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    (cpu.iter().take(8).sum(), cpu.get(7).copied().unwrap_or(0))
}

/// Milliseconds this machine takes for a fixed piece of CPU work (SHA-256 of 64 MiB, best of 3), before a run:
/// a VM's speed drifts with its neighbours (not all of it shows as steal), and runs compare only at a similar
/// figure.
fn reference_work_ms() -> f64 {
    use sha2::Digest;
    let data = vec![0x5au8; 64 << 20];
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(&data));
            started.elapsed().as_secs_f64() * 1000.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// Start `command`, wait for a stdout line starting with `prefix`, return its rest; later output is drained.
fn start(mut command: Command, prefix: &'static str) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("start hubrelay");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no `{prefix}` line"));
    (child, found)
}

fn relay_env(command: &mut Command, sandbox: &str) {
    command
        .env_remove("HUBRELAY_CONFIG")
        .env("HUBSPOT_TOKEN", SANDBOX_TOKEN)
        .env("HUBSPOT_BASE_URL", sandbox)
        .env("HUBRELAY_API_TOKENS", TOKEN)
        .env("HUBSPOT_RATE_LIMIT_PER_10S", "10000");
}

fn wrk(url: &str, connections: usize, seconds: u64, nonce: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/throughput/leads.lua");
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--timeout", "10s", "-s", script])
        .arg(url)
        .args(["--", nonce, TOKEN])
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk is not installed: run scripts/install-test-tools bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("wrk said: {text}"));
    serde_json::from_str(line).unwrap()
}

async fn stats(sandbox: &str) -> Value {
    reqwest::get(format!("{sandbox}/__sandbox/stats")).await.unwrap().json().await.unwrap()
}

fn upserts(stats: &Value) -> u64 {
    stats["by_endpoint"][UPSERT].as_u64().unwrap_or(0)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn run(args: &Args, connections: usize, n: usize) -> Run {
    let reference_ms = reference_work_ms();
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox_cmd = Command::new(&args.bin);
    sandbox_cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--rate-limit", "1000000", "--token", SANDBOX_TOKEN]);
    let (sandbox_child, sandbox) = start(sandbox_cmd, "HubSpot sandbox listening on ");

    let mut sync = Command::new(&args.bin);
    sync.args(["properties", "sync"]);
    relay_env(&mut sync, &sandbox);
    let synced = sync.output().unwrap();
    assert!(synced.status.success(), "properties sync: {}", String::from_utf8_lossy(&synced.stderr));

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut serve_cmd = Command::new(&args.bin);
    serve_cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path()).stderr(log);
    relay_env(&mut serve_cmd, &sandbox);
    let (serve_child, url) = start(serve_cmd, "hubrelay listening on ");

    // Warm up (connections, allocator, SQLite pages), then measure only the load.
    wrk(&url, connections, 2, &format!("warm{n}"));
    let before = stats(&sandbox).await;
    let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
    let (serve_cpu, sandbox_cpu) = (cpu_ticks(serve_child.id()), cpu_ticks(sandbox_child.id()));
    let writer_cpu = thread_cpu_ticks(serve_child.id(), "sqlite-writer");
    let written = disk_write_bytes(serve_child.id());
    let machine = machine_ticks();
    let since = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let figures = wrk(&url, connections, args.seconds, &format!("run{n}c{connections}"));
    let elapsed = started.elapsed().as_secs_f64();
    let serve_cpu = cpu_ticks(serve_child.id()) - serve_cpu;
    let writer_cpu = thread_cpu_ticks(serve_child.id(), "sqlite-writer").saturating_sub(writer_cpu);
    let written = disk_write_bytes(serve_child.id()).saturating_sub(written);
    let machine = {
        let (all, stolen) = machine_ticks();
        (all - machine.0, stolen - machine.1)
    };
    let sandbox_cpu = cpu_ticks(sandbox_child.id()) - sandbox_cpu;

    let deadline = Instant::now() + Duration::from_secs(300);
    while store.queued_count().unwrap() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests wrk left in flight at its deadline finish too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stats(&sandbox).await;
    let filter =
        EventFilter { status: Some(EventStatus::Delivered), received_after: Some(since), ..Default::default() };
    let delivered_events = store.list_events(&filter).await.unwrap();
    let delivered = delivered_events.len();
    // Every lead is a new email: as many distinct contacts as leads.
    let contacts = delivered_events.iter().filter_map(|e| e.contact_id.as_deref()).collect::<HashSet<_>>().len();
    let dead = store.dead_letters().unwrap().len();
    stop(serve_child);
    stop(sandbox_child);

    let u = |k: &str| figures[k].as_u64().unwrap_or(0);
    let answered = u("requests") - u("non_2xx");
    let per_lead = |ticks: u64| ticks as f64 * 10_000.0 / answered.max(1) as f64;
    Run {
        answered,
        leads_per_s: answered as f64 / elapsed,
        p50_ms: u("p50_us") as f64 / 1000.0,
        p99_ms: u("p99_us") as f64 / 1000.0,
        not_2xx: u("non_2xx"),
        socket_errors: u("connect_errors") + u("read_errors") + u("write_errors") + u("timeouts"),
        delivered,
        contacts,
        dead,
        serve_cpu_us_per_lead: per_lead(serve_cpu),
        writer_cpu_us_per_lead: per_lead(writer_cpu),
        sandbox_cpu_us_per_lead: per_lead(sandbox_cpu),
        calls_per_lead: (upserts(&after) - upserts(&before)) as f64 / answered.max(1) as f64,
        disk_kib_per_lead: written as f64 / 1024.0 / answered.max(1) as f64,
        steal_percent: 100.0 * machine.1 as f64 / machine.0.max(1) as f64,
        reference_ms,
    }
}

/// The floor server (see the module comment), run by this binary re-executed with `HUBRELAY_BENCH_FLOOR_WAIT_MS`.
fn floor_server(wait_ms: u64) {
    use axum::{body::Bytes, http::StatusCode, routing::post, Router};
    let (jobs, replies) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
    std::thread::spawn(move || {
        while let Ok(reply) = replies.recv() {
            let _ = reply.send(());
        }
    });
    let jobs = std::sync::Mutex::new(jobs);
    let jobs: &'static _ = Box::leak(Box::new(jobs));
    let answer = move |body: Bytes| async move {
        let lead: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        std::hint::black_box(&lead);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        jobs.lock().unwrap().send(tx).unwrap();
        let _ = rx.await;
        (StatusCode::ACCEPTED, [("content-type", "application/json")], r#"{"status":"delivered"}"#)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("floor listening on http://{}", listener.local_addr().unwrap());
        axum::serve(listener, Router::new().route("/v1/leads", post(answer))).await.unwrap();
    });
}

/// One run against the floor server: (requests per second, p50 ms, CPU µs per request).
fn floor_run(args: &Args, connections: usize, n: usize) -> (f64, f64, f64) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("HUBRELAY_BENCH_FLOOR_WAIT_MS", args.floor_wait_ms.to_string());
    let (child, url) = start(cmd, "floor listening on ");
    wrk(&url, connections, 2, &format!("floorwarm{n}"));
    let cpu = cpu_ticks(child.id());
    let started = Instant::now();
    let figures = wrk(&url, connections, args.seconds, &format!("floor{n}"));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(child.id()) - cpu;
    stop(child);
    let answered = figures["requests"].as_u64().unwrap_or(0) - figures["non_2xx"].as_u64().unwrap_or(0);
    let p50 = figures["p50_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
    (answered as f64 / elapsed, p50, cpu as f64 * 10_000.0 / answered.max(1) as f64)
}

fn main() {
    if let Ok(wait) = std::env::var("HUBRELAY_BENCH_FLOOR_WAIT_MS") {
        return floor_server(wait.parse().unwrap());
    }
    let args = parse_args();
    if args.floor {
        for &c in &args.connections {
            let runs: Vec<_> = (1..=args.runs).map(|n| floor_run(&args, c, n)).collect();
            eprintln!("floor, {c} connections: {runs:?}");
            println!(
                "floor, {c} connections, {} s, waits of {} ms, median of {}: {:.0} requests/s, p50 {:.1} ms, \
                 {:.0} µs of CPU per request",
                args.seconds,
                args.floor_wait_ms,
                args.runs,
                median(runs.iter().map(|r| r.0).collect()),
                median(runs.iter().map(|r| r.1).collect()),
                median(runs.iter().map(|r| r.2).collect()),
            );
        }
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for &c in &args.connections {
        let mut runs = Vec::new();
        for n in 1..=args.runs {
            let r = rt.block_on(run(&args, c, n));
            eprintln!("{c} connections, run {n}: {r:?}");
            runs.push(r);
        }
        let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "{c} connections, {} s, median of {}: {:.0} leads/s; p50 {:.1} ms, p99 {:.1} ms; serve CPU {:.0} µs/lead \
             (of which its SQLite writer {:.0}; sandbox {:.0}); {:.4} HubSpot calls/lead; {:.1} KiB written/lead; not 2xx {:.0}, socket errors {:.0}; answered {:.0}, \
             delivered {:.0}, contacts {:.0}, dead-lettered {:.0}; CPU stolen by the hypervisor {:.1} %, \
             reference work {:.0} ms",
            args.seconds,
            args.runs,
            m(&|r| r.leads_per_s),
            m(&|r| r.p50_ms),
            m(&|r| r.p99_ms),
            m(&|r| r.serve_cpu_us_per_lead),
            m(&|r| r.writer_cpu_us_per_lead),
            m(&|r| r.sandbox_cpu_us_per_lead),
            m(&|r| r.calls_per_lead),
            m(&|r| r.disk_kib_per_lead),
            m(&|r| r.not_2xx as f64),
            m(&|r| r.socket_errors as f64),
            m(&|r| r.answered as f64),
            m(&|r| r.delivered as f64),
            m(&|r| r.contacts as f64),
            m(&|r| r.dead as f64),
            m(&|r| r.steal_percent),
            m(&|r| r.reference_ms),
        );
    }
}
