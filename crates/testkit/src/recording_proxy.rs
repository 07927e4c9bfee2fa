//! A recording HTTP proxy: forwards every request to an upstream (a sandbox) unchanged and keeps
//! `METHOD /path?query` of each, so a test sees exactly what hubrelay sent on the wire.

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
}

pub struct RecordingProxy {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    /// Listens on 127.0.0.1 (any free port) in front of `upstream` (e.g. `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> RecordingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state =
            Upstream { base: upstream.trim_end_matches('/').into(), http: reqwest::Client::new(), seen: seen.clone() };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingProxy { url, seen, _task: task }
    }

    /// `METHOD /path?query` of every request so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    up.seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{} {target}", parts.method));
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let mut out = up.http.request(parts.method.clone(), format!("{}{target}", up.base)).body(bytes);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    match out.send().await {
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
