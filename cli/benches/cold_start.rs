//! Cold-start benchmark of the Lambda bootstraps: each function's release binary (built as deployed: no
//! SQLite, no sandboxes) is started under a Lambda Runtime API emulator against moto server and the HubSpot
//! sandbox, and measured: time from process start to its first `GET /runtime/invocation/next` (init done:
//! settings, AWS and HubSpot clients), once with the HubSpot token given directly (no AWS call: what the 20 ms
//! goal counts) and once read from SSM on moto as deployed; the first event's latency; and the process's peak
//! RSS. Medians of `--runs` fresh processes. Also prints the binaries' sizes: the x86_64 ones
//! measured here and the arm64 bootstraps that `infra/build-lambdas` left in `target/lambda/` (what deploys).
//!
//! Run: `cargo build --release -p lead-captured -p status-update -p activity -p referral-event -p retry-worker`
//!      then `cargo bench -p hubrelay-cli --bench cold_start -- [--runs 7]`
//! (moto server from `scripts/install-test-tools`, or `HUBRELAY_MOTO_SERVER`).

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

/// The first event each function gets.
fn first_event(function: &str, contact_id: &str, run: usize) -> Value {
    let email = format!("cold-{function}-{run}@example.com");
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let runs = argv.iter().position(|a| a == "--runs").and_then(|i| argv.get(i + 1)?.parse().ok()).unwrap_or(7);
    let stage = runtime::aws_stage().await;
    let hs =
        hubrelay_clients::HubSpotClient::new(&stage.sandbox.url(), "bootstrap-sandbox-token", Duration::from_secs(5))
            .unwrap();
    let upsert =
        hubrelay_core::domain::ContactUpsert { email: "cold@example.com".into(), properties: Default::default() };
    let contact_id = hubrelay_core::hubspot::HubSpot::upsert_contact(&hs, &upsert).await.unwrap().id;

    let direct_env: Vec<(&str, String)> = stage
        .env
        .iter()
        .map(|(k, v)| match *k {
            "HUBSPOT_TOKEN_SSM_PARAMETER" => ("HUBSPOT_TOKEN", runtime::SANDBOX_TOKEN.to_string()),
            _ => (*k, v.clone()),
        })
        .collect();
    println!("cold start, medians of {runs} runs (x86_64 release, moto and the sandbox on loopback)");
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>14} {:>10} {:>11}",
        "function", "init ms", "w/ SSM ms", "1st event ms", "peak RSS MiB", "size MiB", "arm64 MiB"
    );
    for function in ["lead-captured", "status-update", "activity", "referral-event", "retry-worker"] {
        let binary = release_dir().join(function);
        let size = std::fs::metadata(&binary)
            .unwrap_or_else(|_| {
                panic!("{} missing: build the release binaries first (see the header)", binary.display())
            })
            .len();
        let (mut init, mut local_init, mut first, mut rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // Init without any AWS call: the token given directly instead of read from SSM.
            let f = runtime::start(&binary, function, &direct_env).await;
            local_init.push(ready_after(&f, function).await);
            drop(f);
            let f = runtime::start(&binary, function, &stage.env).await;
            init.push(ready_after(&f, function).await);
            let sent = Instant::now();
            let id = f.emulator.push(first_event(function, &contact_id, run));
            let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response");
            first.push(sent.elapsed().as_secs_f64() * 1000.0);
            let status = answer.get("statusCode").and_then(Value::as_u64);
            assert!(status.is_none_or(|s| s < 300), "{function}: {answer}");
            rss.push(f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0);
        }
        let arm64 = arm64_size(function).map_or("- (run infra/build-lambdas)".to_string(), |m| format!("{m:.2}"));
        println!(
            "{function:<16} {:>10.1} {:>10.1} {:>12.1} {:>14.1} {:>10.2} {:>11}",
            median(local_init),
            median(init),
            median(first),
            median(rss),
            size as f64 / 1_048_576.0,
            arm64
        );
    }
}
