//! A recording HTTP proxy: forwards every request to an upstream (a sandbox) unchanged and keeps
//! `METHOD /path?query` of each, so a test sees exactly what hubrelay sent on the wire. In front of moto it
//! also keeps each request's `X-Amz-Target` (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`): the AWS
//! operations a function called.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
    targets: Arc<Mutex<Vec<(String, String)>>>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

/// One request and how the upstream answered it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `METHOD /path?query`
    pub request: String,
    pub body: String,
    pub status: u16,
}

pub struct RecordingProxy {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    targets: Arc<Mutex<Vec<(String, String)>>>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    /// Listens on 127.0.0.1 (any free port) in front of `upstream` (e.g. `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> RecordingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let state = Upstream {
            base: upstream.trim_end_matches('/').into(),
            http: reqwest::Client::new(),
            seen: seen.clone(),
            targets: targets.clone(),
            exchanges: exchanges.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingProxy { url, seen, targets, exchanges, _task: task }
    }

    /// `METHOD /path?query` of every request so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `X-Amz-Target` of every request that had one, in arrival order.
    pub fn amz_targets(&self) -> Vec<String> {
        self.amz_requests().into_iter().map(|(target, _)| target).collect()
    }

    /// The `X-Amz-Target` and the (JSON) body of every request that had one, in arrival order.
    pub fn amz_requests(&self) -> Vec<(String, String)> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every request with its body and the upstream's status, in the order the answers came.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forget what was seen so far (between the steps of a test).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.targets.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.exchanges.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    up.seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{} {target}", parts.method));
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    if let Some(amz) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let body = String::from_utf8_lossy(&bytes).into_owned();
        up.targets.lock().unwrap_or_else(|e| e.into_inner()).push((amz.to_string(), body));
    }
    let mut out = up.http.request(parts.method.clone(), format!("{}{target}", up.base)).body(bytes.clone());
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let record = |status: u16| Exchange {
        request: format!("{} {target}", parts.method),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        status,
    };
    let answered = out.send().await;
    let exchange = record(answered.as_ref().map_or(502, |r| r.status().as_u16()));
    up.exchanges.lock().unwrap_or_else(|e| e.into_inner()).push(exchange);
    match answered {
        Ok(resp) => {
            let mut builder = Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                    builder = builder.header(name, value);
                }
            }
            let body = resp.bytes().await.unwrap_or_default();
            builder.body(Body::from(body)).unwrap_or_else(|_| Response::new(Body::empty()))
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(e.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty())),
    }
}
