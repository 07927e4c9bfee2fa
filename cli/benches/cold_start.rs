//! Cold-start benchmark of the Lambda bootstraps: each function's release binary (built as deployed: no
//! SQLite, no sandboxes) is started under a Lambda Runtime API emulator against moto server and the HubSpot
//! sandbox, and measured: time from process start to its first `GET /runtime/invocation/next` (init done:
//! settings, AWS and HubSpot clients), once with the HubSpot token given directly (no AWS call: what the 20 ms
//! goal counts) and once read from SSM on moto as deployed; the first event's latency; the warm invocations
//! after it (`--warm` more distinct events per process, one at a time: p50 and p99 over all runs, and the
//! process's own CPU per warm event from `/proc/<pid>/task/*/schedstat`, which moto's speed does not
//! change; HubSpot's limit is lifted for them, in the sandbox and the shared budget); and the process's
//! peak RSS. Medians of `--runs` fresh processes. Also prints the binaries' sizes: the x86_64 ones
//! measured here and the arm64 bootstraps that `infra/build-lambdas` left in `target/lambda/` (what deploys).
//!
//! Run: `cargo build --release -p lead-captured -p status-update -p activity -p referral-event -p retry-worker`
//!      then `cargo bench -p hubrelay-cli --bench cold_start -- [--runs 7] [--warm 50]`
//! (moto server from `scripts/install-test-tools`, or `HUBRELAY_MOTO_SERVER`).

mod common;
use common::median;

use hubrelay_testkit::runtime;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SQS_FIXTURE: &str = hubrelay_testkit::runtime::SQS_EVENT_FIXTURE;
const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// `target/lambda/<function>/bootstrap`'s size in MiB, if `infra/build-lambdas` built it.
fn arm64_size(function: &str) -> Option<f64> {
    let bootstrap = release_dir().join("../lambda").join(function).join("bootstrap");
    Some(std::fs::metadata(bootstrap).ok()?.len() as f64 / 1_048_576.0)
}

fn sqs_event(email: &str) -> Value {
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let key = format!("lead-captured:body:{email}");
    let message = hubrelay_core::domain::RetryMessage::new(
        hubrelay_core::domain::FunctionName::LeadCaptured,
        &event_id,
        &key,
        json!({"email": email}),
        time::OffsetDateTime::now_utc(),
    );
    let mut event: Value = serde_json::from_str(SQS_FIXTURE).unwrap();
    let mut record = event["Records"][0].clone();
    record["body"] = serde_json::to_string(&message).unwrap().into();
    event["Records"] = json!([record]);
    event
}

/// The `n`th event a function gets in run `run` (0 is the first, on the cold process); every one distinct.
fn event(function: &str, contact_id: &str, run: usize, n: usize) -> Value {
    let email = format!("cold-{function}-{run}-{n}@example.com");
    let http =
        |path: &str, body: Value| runtime::http_api_event(runtime::HTTP_API_FIXTURE, path, &[AUTH], &body.to_string());
    match function {
        "lead-captured" => http("/v1/leads", json!({"email": email})),
        "status-update" => http("/v1/leads/status", json!({"contact_id": contact_id, "status": "Viewed"})),
        "activity" => http("/v1/leads/activities", json!({"contact_id": contact_id, "type": "note", "body": email})),
        "referral-event" => http(
            "/v1/referrals/extole",
            json!({"event": "Share Link Created", "email": email, "share_link": "https://refer.example.com/x", "share_code": "x"}),
        ),
        _ => sqs_event(&email),
    }
}

/// Milliseconds from the bootstrap's start to its first poll for an event (init done).
async fn ready_after(f: &runtime::Function, function: &str) -> f64 {
    while f.emulator.ready_at().is_none() {
        assert!(f.started.elapsed() < Duration::from_secs(20), "{function} never became ready");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    (f.emulator.ready_at().unwrap() - f.started).as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `p` (0..=1) of `v`.
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Nanoseconds `pid`'s live threads have run on a CPU (`/proc/<pid>/task/*/schedstat`, first field; a
/// thread that exits between two readings takes its time along, so a difference can undercount, never wrap).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Send `event` to `f` and wait for its answer; milliseconds from queueing it to the answer.
async fn invoke(f: &runtime::Function, function: &str, event: Value) -> f64 {
    let sent = Instant::now();
    let id = f.emulator.push(event);
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response");
    let ms = sent.elapsed().as_secs_f64() * 1000.0;
    let status = answer.get("statusCode").and_then(Value::as_u64);
    assert!(status.is_none_or(|s| s < 300), "{function}: {answer}");
    // A queued answer would measure the retry queue, not the delivery.
    let body = answer.get("body").and_then(Value::as_str).unwrap_or("");
    assert!(!body.contains("\"queued\""), "{function} queued the event: {answer}");
    ms
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)?.parse().ok()).unwrap_or(default)
    };
    let (runs, warm_events) = (flag("--runs", 7), flag("--warm", 50));
    assert!(runs >= 1, "--runs needs at least 1");
    let only = argv.iter().position(|a| a == "--only").and_then(|i| argv.get(i + 1).cloned());
    let stage = runtime::aws_stage().await;
    let hs =
        hubrelay_clients::HubSpotClient::new(&stage.sandbox.url(), "bootstrap-sandbox-token", Duration::from_secs(5))
            .unwrap();
    let upsert =
        hubrelay_core::domain::ContactUpsert { email: "cold@example.com".into(), properties: Default::default() };
    let contact_id = hubrelay_core::hubspot::HubSpot::upsert_contact(&hs, &upsert).await.unwrap().id;

    // HubSpot's limit out of the way (as in the throughput bench), in the sandbox and in the shared budget: the
    // warm events come faster than 100 per 10 s, and the worker would wait out its budget slot.
    let limit = hubrelay_sandbox::hubspot::Faults { requests_per_10s: Some(1_000_000), ..Default::default() };
    stage.sandbox.sandbox.set_faults(limit);
    let mut deployed_env = stage.env.clone();
    deployed_env.push(("HUBSPOT_RATE_LIMIT_PER_10S", "10000".into()));
    let direct_env: Vec<(&str, String)> = deployed_env
        .iter()
        .map(|(k, v)| match *k {
            "HUBSPOT_TOKEN_SSM_PARAMETER" => ("HUBSPOT_TOKEN", runtime::SANDBOX_TOKEN.to_string()),
            _ => (*k, v.clone()),
        })
        .collect();
    // The floor under every warm figure: one DynamoDB request to moto (a Python server) on loopback.
    let mut moto_ms = Vec::new();
    for _ in 0..50 {
        let sent = Instant::now();
        let key = aws_sdk_dynamodb::types::AttributeValue::S("cold-start-probe".into());
        stage.dynamo.get_item().table_name(&stage.table).key("id", key).send().await.unwrap();
        moto_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    println!("one DynamoDB GetItem to moto: p50 {:.2} ms", median(moto_ms));
    println!(
        "cold start, medians of {runs} runs; warm: p50 / p99 of {warm_events} more events per run (x86_64 release, \
         moto and the sandbox on loopback)"
    );
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>9} {:>9} {:>12} {:>14} {:>10} {:>11}",
        "function",
        "init ms",
        "w/ SSM ms",
        "1st event ms",
        "warm p50",
        "warm p99",
        "warm CPU µs",
        "peak RSS MiB",
        "size MiB",
        "arm64 MiB"
    );
    let functions = ["lead-captured", "status-update", "activity", "referral-event", "retry-worker"];
    if let Some(only) = &only {
        assert!(functions.contains(&only.as_str()), "--only takes one of {functions:?}");
    }
    for function in functions.into_iter().filter(|f| only.as_deref().is_none_or(|o| o == *f)) {
        let binary = release_dir().join(function);
        let size = std::fs::metadata(&binary)
            .unwrap_or_else(|_| {
                panic!("{} missing: build the release binaries first (see the header)", binary.display())
            })
            .len();
        let (mut init, mut local_init, mut first, mut warm, mut warm_cpu, mut rss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // Init without any AWS call: the token given directly instead of read from SSM.
            let f = runtime::start(&binary, function, &direct_env).await;
            local_init.push(ready_after(&f, function).await);
            drop(f);
            let f = runtime::start(&binary, function, &deployed_env).await;
            init.push(ready_after(&f, function).await);
            first.push(invoke(&f, function, event(function, &contact_id, run, 0)).await);
            // Peak RSS after the first event: what a cold start costs (warm events add their own buffers).
            rss.push(f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0);
            let cpu_before = cpu_ns(f.child.id());
            for n in 1..=warm_events {
                warm.push(invoke(&f, function, event(function, &contact_id, run, n)).await);
            }
            if warm_events > 0 {
                warm_cpu.push(cpu_ns(f.child.id()).saturating_sub(cpu_before) as f64 / 1000.0 / warm_events as f64);
            }
        }
        let arm64 = arm64_size(function).map_or("- (run infra/build-lambdas)".to_string(), |m| format!("{m:.2}"));
        if std::env::var_os("COLD_START_WARM_TAIL").is_some() {
            let mut tail = warm.clone();
            tail.sort_by(|a, b| b.total_cmp(a));
            eprintln!("{function} slowest warm: {:?}", &tail[..tail.len().min(10)]);
        }
        let (warm_p50, warm_p99) = if warm.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(warm.clone(), 0.5), percentile(warm, 0.99))
        };
        println!(
            "{function:<16} {:>10.1} {:>10.1} {:>12.1} {:>9.2} {:>9.2} {:>12.0} {:>14.1} {:>10.2} {:>11}",
            median(local_init),
            median(init),
            median(first),
            warm_p50,
            warm_p99,
            if warm_cpu.is_empty() { f64::NAN } else { median(warm_cpu) },
            median(rss),
            size as f64 / 1_048_576.0,
            arm64
        );
    }
}
