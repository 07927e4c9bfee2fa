//! The binary-level flow under `cargo lambda watch` (cargo-lambda's own Lambda emulator, pinned in
//! `scripts/requirements-lambda.lock`), bound to 127.0.0.1, against moto server and the HubSpot sandbox. Watch
//! builds and runs each function from its crate folder, as `sam build` does (so without the CLI's `local`
//! feature), and is invoked with the committed API Gateway v2 and SQS event fixtures: a lead creates its contact
//! and its idempotency record in moto's DynamoDB; a lead HubSpot answers 503 lands on moto's SQS retry queue, and
//! the `retry-worker` binary, invoked with that very message, delivers it.
//!
//! cargo-lambda is `$HUBRELAY_CARGO_LAMBDA`, else `<workspace>/.tools/lambda/bin/cargo-lambda`
//! (`scripts/install-test-tools lambda`); without it the test fails, it never skips.

use hubrelay_testkit::runtime;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

const SQS_FIXTURE: &str = hubrelay_testkit::runtime::SQS_EVENT_FIXTURE;
const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");
/// The first invocation compiles the function (debug): generous, as on a busy 2-core CI machine.
const FIRST_INVOKE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn cargo_lambda() -> PathBuf {
    let path = std::env::var_os("HUBRELAY_CARGO_LAMBDA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools/lambda/bin/cargo-lambda"));
    assert!(path.exists(), "{} not found: run scripts/install-test-tools lambda", path.display());
    path
}

/// One `cargo lambda watch` serving one function from its crate folder. Dropping it kills watch, cargo and the
/// function (one process group).
struct Watch {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Watch {
    fn start(function: &str, env: &[(&str, String)]) -> Watch {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("hubrelay-watch-{}-{function}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join("env");
        let mut file = std::fs::File::create(&env_file).unwrap();
        for (k, v) in env {
            writeln!(file, "{k}={v}").unwrap();
        }
        let log = dir.join("watch.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .args(["--ignore-changes", "--wait", "--env-file"])
            .arg(&env_file)
            .current_dir(workspace().join("functions").join(function))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting cargo lambda watch: {e}"));
        let mut watch = Watch { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&watch.addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = watch.child.try_wait() {
                panic!("cargo lambda watch exited ({status}):\n{}", watch.log_text());
            }
            assert!(Instant::now() < deadline, "cargo lambda watch did not listen:\n{}", watch.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        watch
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Invoke `function` (watch starts `cargo run --bin <function>` on the first call) with `event`.
    async fn invoke(&self, function: &str, event: &Value) -> Value {
        let url = format!("http://{}/2015-03-31/functions/{function}/invocations", self.addr);
        let resp = reqwest::Client::new().post(url).json(event).timeout(FIRST_INVOKE_TIMEOUT).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("invoking {function}: {e}\n{}", self.log_text()));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{function}: {status} {text}\n{}", self.log_text());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{function} answered {text}: {e}\n{}", self.log_text()))
    }

    async fn post_lead(&self, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let event = runtime::http_api_event(runtime::HTTP_API_FIXTURE, "/v1/leads", headers, &body.to_string());
        let answer = self.invoke("lead-captured", &event).await;
        let status = answer["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode: {answer}")) as u16;
        (status, serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body"))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The process group watch leads (`process_group(0)`): watch, its `cargo run` and the function.
        // `kill -KILL -<pgid>` signals the whole group (no unsafe FFI needed for it).
        let pgid = self.child.id();
        if pgid > 1 {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
        }
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The fixture's first record carrying `message` as SQS delivered it.
fn sqs_event(message: &aws_sdk_sqs::types::Message) -> Value {
    let mut event: Value = serde_json::from_str(SQS_FIXTURE).unwrap();
    let mut record = event["Records"][0].clone();
    record["messageId"] = message.message_id().unwrap().into();
    record["receiptHandle"] = message.receipt_handle().unwrap().into();
    record["body"] = message.body().unwrap().into();
    event["Records"] = json!([record]);
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn lead_captured_and_retry_worker_under_cargo_lambda_watch() {
    let stage = runtime::aws_stage().await;
    let leads = Watch::start("lead-captured", &stage.env);
    let worker = Watch::start("retry-worker", &stage.env);

    let (status, body) =
        leads.post_lead(&[AUTH, ("idempotency-key", "watch-1")], &json!({"email": "watch@example.com"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert_eq!(stage.sandbox.sandbox.contact_count().unwrap(), 1);
    assert_eq!(
        stage.idempotency_status("lead-captured:key:watch-1").await.as_deref(),
        Some("COMPLETED"),
        "idempotency record in DynamoDB"
    );

    // HubSpot down: queued on the retry queue (after its 5 s delay) ...
    stage.hubspot_down(true);
    let (status, body) = leads.post_lead(&[AUTH], &json!({"email": "retried@example.com"})).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while messages.is_empty() && Instant::now() < deadline {
        let out = stage.sqs.receive_message().queue_url(&stage.queue_url).wait_time_seconds(2).send().await.unwrap();
        messages.extend(out.messages.unwrap_or_default());
    }
    assert_eq!(messages.len(), 1, "the queued lead on moto's retry queue");

    // ... and HubSpot back: the worker delivers that message, reporting no failures.
    stage.hubspot_down(false);
    let answer = worker.invoke("retry-worker", &sqs_event(&messages[0])).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(stage.sandbox.sandbox.contact_count().unwrap(), 2);
    let event = stage
        .dynamo
        .get_item()
        .table_name(&stage.table)
        .key("id", AttributeValue::S(format!("event:{}", body["event_id"].as_str().unwrap())));
    let event = event.send().await.unwrap().item.expect("the event's record");
    assert_eq!(event["status"], AttributeValue::S("delivered".into()), "{event:?}");
}
