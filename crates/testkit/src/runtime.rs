//! A Lambda Runtime API emulator on 127.0.0.1 for running real function bootstraps in tests and benchmarks:
//! `GET /2018-06-01/runtime/invocation/next` hands out queued events (with the request id, deadline and ARN
//! headers the runtime reads), `.../response` and `.../error` record the answers, `/runtime/init/error`
//! records an init failure. The bootstrap runs as a child process with `AWS_LAMBDA_RUNTIME_API` set.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    answers: HashMap<String, Result<Value, Value>>,
    init_error: Option<Value>,
    /// When the bootstrap first asked for an event: it has finished init.
    first_next: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Emulator {
    inner: Arc<Mutex<Inner>>,
    /// Wakes a bootstrap waiting in `next` when an event is queued.
    notify: Arc<tokio::sync::Notify>,
    /// Wakes callers of [`Emulator::answer`] when any answer arrives (so warm latencies are not rounded to a poll).
    answered: Arc<tokio::sync::Notify>,
}

/// A running function: the bootstrap process and its emulator. Dropping it kills the process.
pub struct Function {
    pub emulator: Emulator,
    pub child: Child,
    pub started: Instant,
    pub addr: std::net::SocketAddr,
    /// What the bootstrap wrote to stdout (its JSON logs and EMF lines), as CloudWatch Logs would get it.
    stdout: tempfile::NamedTempFile,
}

impl Emulator {
    /// Queue `event`; returns its request id.
    pub fn push(&self, event: Value) -> String {
        let id = format!("req-{}", uuid::Uuid::new_v4().simple());
        self.inner.lock().unwrap().queue.push_back((id.clone(), event));
        self.notify.notify_waiters();
        id
    }

    /// The function's answer to `id`: `Ok(response)` or `Err(error report)`, waiting up to `timeout`.
    pub async fn answer(&self, id: &str, timeout: Duration) -> Result<Value, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let answered = self.answered.notified();
            if let Some(a) = self.inner.lock().unwrap().answers.get(id).cloned() {
                return a;
            }
            if let Some(e) = self.inner.lock().unwrap().init_error.clone() {
                panic!("the function failed its init: {e}");
            }
            let now = Instant::now();
            assert!(now < deadline, "no answer to {id} within {timeout:?}");
            let _ = tokio::time::timeout(deadline - now, answered).await;
        }
    }

    /// When the bootstrap first polled for an event (init done).
    pub fn ready_at(&self) -> Option<Instant> {
        self.inner.lock().unwrap().first_next
    }

    pub fn init_error(&self) -> Option<Value> {
        self.inner.lock().unwrap().init_error.clone()
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(self.clone())
    }
}

async fn next(State(em): State<Emulator>) -> Response {
    loop {
        let notified = em.notify.notified();
        {
            let mut inner = em.inner.lock().unwrap();
            inner.first_next.get_or_insert_with(Instant::now);
            if let Some((id, event)) = inner.queue.pop_front() {
                let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
                let ms = deadline.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
                let mut headers = HeaderMap::new();
                headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                headers.insert("lambda-runtime-deadline-ms", ms.to_string().parse().unwrap());
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:test".parse().unwrap(),
                );
                headers.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".parse().unwrap());
                return (StatusCode::OK, headers, event.to_string()).into_response();
            }
        }
        notified.await;
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(em): State<Emulator>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    em.inner.lock().unwrap().answers.insert(id, Ok(json(&body)));
    em.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn error(State(em): State<Emulator>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    em.inner.lock().unwrap().answers.insert(id, Err(json(&body)));
    em.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_error(State(em): State<Emulator>, body: Bytes) -> StatusCode {
    em.inner.lock().unwrap().init_error = Some(json(&body));
    em.answered.notify_waiters();
    StatusCode::ACCEPTED
}

/// Start an emulator and the bootstrap at `binary` with `env` (plus the variables Lambda always sets).
pub async fn start(binary: &Path, name: &str, env: &[(&str, String)]) -> Function {
    let emulator = Emulator::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = emulator.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let stdout = tempfile::NamedTempFile::new().expect("a file for the bootstrap's stdout");
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("RUST_LOG", "warn")
        .stdout(stdout.reopen().expect("reopen the stdout file"))
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    Function { emulator, child, started, addr, stdout }
}

impl Function {
    /// The CloudWatch Embedded Metric Format documents the bootstrap wrote so far (stdout lines with `_aws`).
    pub fn emf_documents(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.stdout.path()).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|doc| doc.get("_aws").is_some())
            .collect()
    }

    /// Peak resident memory of the bootstrap so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API Gateway HTTP API (payload 2.0) event for `POST {path}` with a JSON body, as API Gateway sends it.
pub fn http_api_event(fixture: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut event: Value = serde_json::from_str(fixture).expect("fixture");
    let stage = event["requestContext"]["stage"].as_str().unwrap_or("$default").to_string();
    let raw = if stage == "$default" { path.to_string() } else { format!("/{stage}{path}") };
    event["rawPath"] = raw.clone().into();
    event["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["http"]["path"] = raw.into();
    for (k, v) in headers {
        event["headers"][k.to_string()] = (*v).into();
    }
    event["body"] = body.into();
    event
}

/// The committed API Gateway HTTP API (payload 2.0) event the HTTP functions' bootstrap tests start from.
pub const HTTP_API_FIXTURE: &str = include_str!("../fixtures/apigw-http-post-lead.json");

/// The committed SQS event (a batch from the retry queue) that the worker tests fill in.
pub const SQS_EVENT_FIXTURE: &str = include_str!("../fixtures/sqs-event-retry-queue.json");

/// `POST {path}` to an HTTP function through the emulator: its status code and JSON body.
pub async fn invoke_http(f: &Function, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let id = f.emulator.push(http_api_event(HTTP_API_FIXTURE, path, headers, body));
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response, not an error");
    let status = answer["statusCode"].as_u64().expect("statusCode") as u16;
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    (status, body)
}

/// One browser-like request to an HTTP function on a `$default`-stage HTTP API (the console's): method, path,
/// query string, headers, cookies (API Gateway sends them apart, in `cookies`) and body.
#[derive(Debug, Default, Clone)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub cookies: &'a [String],
    pub body: &'a str,
}

/// What the function answered: status, headers (lower-case names), the cookies it sets, and the body as text.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Value,
    pub cookies: Vec<String>,
    pub body: String,
}

/// The API Gateway HTTP API (payload 2.0) event of `req`, on the `$default` stage.
pub fn http_request_event(req: &HttpRequest<'_>) -> Value {
    let mut event: Value = serde_json::from_str(HTTP_API_FIXTURE).expect("fixture");
    let route = format!("{} {}", req.method, req.path);
    event["routeKey"] = route.clone().into();
    event["rawPath"] = req.path.into();
    event["rawQueryString"] = req.query.into();
    event["requestContext"]["stage"] = "$default".into();
    event["requestContext"]["routeKey"] = route.into();
    event["requestContext"]["http"]["method"] = req.method.into();
    event["requestContext"]["http"]["path"] = req.path.into();
    event["headers"] = serde_json::json!({"host": "console.example.com", "x-forwarded-proto": "https"});
    for (k, v) in req.headers {
        event["headers"][k.to_ascii_lowercase()] = (*v).into();
    }
    if !req.query.is_empty() {
        let pairs: serde_json::Map<String, Value> = req
            .query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(pairs);
    }
    if !req.cookies.is_empty() {
        event["cookies"] = req.cookies.iter().map(|c| Value::from(c.as_str())).collect();
    }
    // API Gateway passes a form's body base64-encoded (bodies other than JSON and text/* are, to it).
    let form = req
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("application/x-www-form-urlencoded"));
    if form {
        use base64::Engine;
        event["body"] = base64::engine::general_purpose::STANDARD.encode(req.body).into();
        event["isBase64Encoded"] = true.into();
    } else {
        event["body"] = req.body.into();
    }
    event
}

/// `req` to an HTTP function through the emulator.
pub async fn invoke_request(f: &Function, req: &HttpRequest<'_>) -> HttpAnswer {
    let id = f.emulator.push(http_request_event(req));
    let answer = f.emulator.answer(&id, Duration::from_secs(30)).await.expect("a response, not an error");
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body).expect("base64 body")).expect("text")
    } else {
        body.to_string()
    };
    HttpAnswer {
        status: answer["statusCode"].as_u64().expect("statusCode") as u16,
        headers: answer["headers"].clone(),
        cookies: answer["cookies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .map(String::from)
            .collect(),
        body,
    }
}

/// What a bootstrap needs around it: moto (DynamoDB table, retry queue + DLQ, the HubSpot token in SSM) and
/// the HubSpot sandbox with the mapping's properties; `env` is the function's environment as the template
/// sets it.
pub struct AwsStage {
    pub sandbox: hubrelay_sandbox::hubspot::SandboxHandle,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub env: Vec<(&'static str, String)>,
}

/// The HubSpot sandbox's token (also in SSM, as `HUBSPOT_TOKEN_SSM_PARAMETER`) and the senders' API token.
pub const SANDBOX_TOKEN: &str = "bootstrap-sandbox-token";
pub const API_TOKEN: &str = "bootstrap-token";

pub async fn aws_stage() -> AwsStage {
    aws_stage_with(hubrelay_sandbox::hubspot::SandboxOptions::default()).await
}

/// [`aws_stage`] with a sandbox of these options (its token is always [`SANDBOX_TOKEN`]).
pub async fn aws_stage_with(options: hubrelay_sandbox::hubspot::SandboxOptions) -> AwsStage {
    use crate::moto;
    let server = moto::shared();
    let (dynamo, sqs, ssm) = (moto::dynamodb(server), moto::sqs(server), moto::ssm(server));
    let table = moto::idempotency_table(&dynamo).await;
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let token = SANDBOX_TOKEN;
    let param = moto::secure_parameter(&ssm, token).await;
    let options = hubrelay_sandbox::hubspot::SandboxOptions { token: Some(token.into()), ..options };
    let sandbox = hubrelay_sandbox::hubspot::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let hs = hubrelay_clients::HubSpotClient::new(&sandbox.url(), token, Duration::from_secs(5)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    hubrelay_core::properties::sync(&hs, &mapping.all_property_definitions()).await.unwrap();
    let env = vec![
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", moto::REGION.into()),
        // As template.yaml sets them (Globals): the fixture's stage is `prod`.
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ("HUBRELAY_STAGE", "prod".into()),
        ("HUBRELAY_METRICS_NAMESPACE", "hubrelay/bootstrap-test".into()),
        ("HUBSPOT_TOKEN_SSM_PARAMETER", param),
        ("HUBSPOT_BASE_URL", sandbox.url()),
        ("HUBRELAY_API_TOKENS", API_TOKEN.into()),
        ("HUBRELAY_MAPPING", "chat-widget".into()),
        ("HUBRELAY_IDEMPOTENCY_TABLE", table.clone()),
        ("HUBRELAY_RETRY_QUEUE_URL", queue_url.clone()),
        ("HUBRELAY_DLQ_URL", dlq_url.clone()),
    ];
    AwsStage { sandbox, dynamo, sqs, table, queue_url, dlq_url, env }
}

impl AwsStage {
    /// The status (`COMPLETED`, `IN_PROGRESS`) of the idempotency record stored under `key`, if there is one.
    pub async fn idempotency_status(&self, key: &str) -> Option<String> {
        let item = self.dynamo.get_item().table_name(&self.table).key("id", AttributeValue::S(key.into()));
        let item = item.send().await.expect("GetItem").item?;
        item.get("status").and_then(|s| s.as_s().ok()).cloned()
    }

    /// Up to 10 messages from the retry queue (waiting up to 1 s), as `(message id, body)` records for the
    /// worker — what the event source mapping would hand it.
    pub async fn receive_queued(&self) -> Vec<(String, String)> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = received.messages().iter();
        messages
            .map(|m| (m.message_id().unwrap_or_default().to_string(), m.body().unwrap_or_default().to_string()))
            .collect()
    }

    /// HubSpot answers every call with 503 (`true`), or behaves again (`false`).
    pub fn hubspot_down(&self, down: bool) {
        let faults = if down {
            hubrelay_sandbox::hubspot::Faults { failure_rate: 1.0, failure_status: 503, ..Default::default() }
        } else {
            hubrelay_sandbox::hubspot::Faults::default()
        };
        self.sandbox.sandbox.set_faults(faults);
    }
}

/// `POST {path}` with `body` as JSON and `token` as the bearer to an in-process function router: the status and
/// the JSON answer (`null` when there is none).
pub async fn post_json(app: &axum::Router, path: &str, token: &str, body: &Value) -> (u16, Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
