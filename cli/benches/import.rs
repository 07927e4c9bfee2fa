//! Import benchmark: `hubrelay import` of a large backfill into a rate-limited HubSpot, interrupted by `kill -9`.
//!
//! Writes a CSV of N rows over M emails (row i → email i mod M, so a contact's rows lie far apart in the file and
//! each row is its own write) plus 25 bad rows, and runs the real binaries against a sandbox of its own (limited to
//! 190 requests per 10 s, HubSpot Professional, its SQLite on disk, outliving the processes killed):
//! - `hubrelay import --skip-invalid --no-wait`, killed with SIGKILL while it queues, then run again (resumes);
//! - `hubrelay serve` delivering the queue, killed with SIGKILL twice (by default at 15 s and 35 s) and restarted.
//!
//! It measures the wall time from the first import until every row is settled (restarts included), HubSpot calls
//! and writes, calls per 10 s against the limit, 429s, and from the sandbox's write journal the writes sent twice
//! (the same write id written more than once), which must be 0; and checks one contact per email and the bad lines
//! reported. The floor: N rows / 100 per call / 19 calls per second.
//!
//! Run: `cargo bench -p hubrelay-cli --bench import -- [--rows 100000] [--emails 25000] [--runs 1] [--kills 15,35]`

mod common;
use common::{flag_pairs, median, number};

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LIMIT_PER_10S: u32 = 190;
const TOKEN: &str = "import-bench";
const BAD_ROWS: usize = 25;

struct Args {
    rows: usize,
    emails: usize,
    runs: usize,
    kills: Vec<u64>,
}

fn parse_args() -> Args {
    let mut a = Args { rows: 100_000, emails: 25_000, runs: 1, kills: vec![15, 35] };
    for (flag, value) in flag_pairs() {
        match flag.as_str() {
            "--rows" => a.rows = number(&flag, &value),
            "--emails" => a.emails = number(&flag, &value),
            "--runs" => a.runs = number(&flag, &value),
            "--kills" => {
                a.kills = value.split(',').filter(|s| !s.is_empty()).map(|s| number(&flag, s) as u64).collect()
            }
            _ => {}
        }
    }
    a
}

/// The file, and the line numbers of its bad rows (an invalid email every rows/25 rows).
fn write_csv(path: &Path, args: &Args) -> Vec<usize> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "email,first_name,last_name,vehicle_of_interest,budget_range,dealership.name").unwrap();
    let mut line = 1;
    let mut bad = Vec::new();
    let every = (args.rows / BAD_ROWS).max(1);
    for i in 0..args.rows {
        if i % every == every / 2 && bad.len() < BAD_ROWS {
            line += 1;
            writeln!(out, "not-an-email-{i},Bad,Row,x,y,Lakeside").unwrap();
            bad.push(line);
        }
        line += 1;
        writeln!(out, "buyer{}@example.com,Import,Row{i},Model {},seq-{i},Lakeside", i % args.emails, i % 7).unwrap();
    }
    out.flush().unwrap();
    bad
}

struct RunResult {
    seconds: f64,
    calls: u64,
    writes: u64,
    repeated: u64,
    rate_limited: u64,
    busiest_10s: u64,
    settled: u64,
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = rt.block_on(one_run(&args));
        eprintln!(
            "run {run}: {} rows settled in {:.1} s; {} HubSpot calls, {} writes, {} written twice, {} × 429, \
             at most {} calls in a 10 s window",
            r.settled, r.seconds, r.calls, r.writes, r.repeated, r.rate_limited, r.busiest_10s
        );
        results.push(r);
    }
    let floor = args.rows as f64 / 100.0 / (f64::from(LIMIT_PER_10S) / 10.0);
    println!(
        "{} rows over {} emails (+{BAD_ROWS} bad); sandbox limit {LIMIT_PER_10S} req/10 s; importer killed once, \
         serve killed at {:?} s; {} runs",
        args.rows, args.emails, args.kills, args.runs
    );
    let seconds = median(results.iter().map(|r| r.seconds).collect());
    println!(
        "median wall time to settle every row: {seconds:.1} s (floor at the limit: {floor:.1} s, ratio {:.2})",
        seconds / floor
    );
    println!("median HubSpot calls: {}", median(results.iter().map(|r| r.calls as f64).collect()));
    println!("median contact writes: {}", median(results.iter().map(|r| r.writes as f64).collect()));
    println!("writes sent twice (all runs): {}", results.iter().map(|r| r.repeated).sum::<u64>());
    println!("429s received (all runs): {}", results.iter().map(|r| r.rate_limited).sum::<u64>());
    println!("most calls in any 10 s window: {}", results.iter().map(|r| r.busiest_10s).max().unwrap_or(0));
}

fn start_serve(data_dir: &Path, sandbox: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("HUBSPOT_TOKEN", TOKEN)
        .env("HUBSPOT_BASE_URL", sandbox)
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
            if line.starts_with("hubrelay listening on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("serve did not start");
    child
}

fn import(data_dir: &Path, file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubrelay"));
    cmd.args(["import", "--skip-invalid", "--no-wait", "--data-dir"]).arg(data_dir).arg(file);
    cmd.env("RUST_LOG", "error").env_remove("HUBRELAY_MAPPING");
    cmd
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

async fn one_run(args: &Args) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let file = dir.path().join("backfill.csv");
    let bad_lines = write_csv(&file, args);
    let opts = hubrelay_sandbox::hubspot::SandboxOptions {
        token: Some(TOKEN.into()),
        db_path: Some(dir.path().join("sandbox.db")),
        rate_limit_per_10s: LIMIT_PER_10S,
        ..Default::default()
    };
    let sandbox = hubrelay_sandbox::hubspot::spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = sandbox.url();
    let client = hubrelay_clients::HubSpotClient::new(&url, TOKEN, Duration::from_secs(10)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    let wanted = hubrelay_core::properties::required(&mapping, &Default::default());
    hubrelay_core::properties::sync(&client, &wanted).await.unwrap();
    // The property sync's calls leave the rolling window before the import starts.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let http = reqwest::Client::new();
    let base = sandbox.sandbox.stats();

    let started = Instant::now();
    let mut serve = start_serve(&data_dir, &url);
    // The importer, killed while it queues (its first chunks are in), then run again to the end.
    let mut first = import(&data_dir, &file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let store_path = data_dir.join("hubrelay.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued = std::fs::metadata(&store_path).is_ok()
            && hubrelay_local::sqlite::SqliteStore::open(&store_path).unwrap().queued_count().unwrap() > 0;
        if queued || Instant::now() > deadline || first.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(&mut first);
    let out = import(&data_dir, &file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the resumed import failed: {text}");
    for line in &bad_lines[..3] {
        assert!(text.contains(&format!("line {line} ")), "bad line {line} reported: {text}");
    }
    assert!(text.contains(&format!("{BAD_ROWS} bad")), "{text}");

    // serve killed mid-delivery, and started again on the same data dir.
    let store = hubrelay_local::sqlite::SqliteStore::open(&store_path).unwrap();
    for at in &args.kills {
        let at = Duration::from_secs(*at);
        while started.elapsed() < at && store.queued_count().unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kill(&mut serve);
        serve = start_serve(&data_dir, &url);
    }
    // The busiest rolling 10 s window, sampled from the sandbox's count of requests.
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    while store.queued_count().unwrap() > 0 && Instant::now() < deadline {
        samples.push((Instant::now(), sandbox.sandbox.stats().requests));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    kill(&mut serve);
    let busiest_10s = samples
        .iter()
        .map(|(t, n)| {
            let back =
                samples.iter().find(|(u, _)| t.duration_since(*u) <= Duration::from_secs(10)).map_or(*n, |s| s.1);
            n - back
        })
        .max()
        .unwrap_or(0);
    assert_eq!(store.queued_count().unwrap(), 0, "every row settled within 15 minutes");
    assert!(store.dead_letters().unwrap().is_empty(), "no row dead-lettered");

    let stats = sandbox.sandbox.stats();
    let journal = get(&http, format!("{url}/__sandbox/writes")).await;
    let contacts = sandbox.sandbox.contact_count().unwrap_or(0);
    assert_eq!(contacts as usize, args.emails, "one contact per email");
    let repeated = journal["repeated_markers"].as_u64().unwrap();
    assert_eq!(repeated, 0, "no write sent twice: {journal}");
    RunResult {
        seconds,
        calls: stats.requests - base.requests,
        writes: journal["writes"].as_u64().unwrap(),
        repeated,
        rate_limited: stats.rate_limited - base.rate_limited,
        busiest_10s,
        settled: (args.rows) as u64,
    }
}
