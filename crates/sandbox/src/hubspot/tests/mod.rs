//! HTTP-level tests: the router driven with `oneshot`, and a few over a real socket with reqwest.

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use super::{Sandbox, SandboxOptions};

mod batch;
mod contacts;
mod deals;
mod engagements;
mod limits;
mod oauth;
mod platform;
mod properties;
mod search;

pub(super) const TOKEN: &str = "pat-test-token";

pub(super) fn options() -> SandboxOptions {
    SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() }
}

pub(super) fn sandbox() -> (Sandbox, Router) {
    let sb = Sandbox::open(options()).expect("open sandbox");
    let app = sb.router();
    (sb, app)
}

#[derive(Debug)]
pub(super) struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `errors[].code` of a validation error.
    pub fn codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["code"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// Asserts the common HubSpot error shape and returns the category.
    pub fn error_category(&self) -> &str {
        assert_eq!(self.body["status"], "error", "{:?}", self.body);
        let cid = self.body["correlationId"].as_str().expect("correlationId");
        assert!(uuid::Uuid::parse_str(cid).is_ok(), "correlationId is a uuid: {cid}");
        assert!(self.body["message"].is_string());
        self.body["category"].as_str().expect("category")
    }
}

/// A request with any token (`None` = no Authorization header) and a raw body.
pub(super) async fn call_raw(app: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or_default().to_string())).expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Resp { status, headers, body }
}

/// An authenticated JSON request.
pub(super) async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Resp {
    let body = body.map(|b| b.to_string());
    call_raw(app, method, uri, Some(TOKEN), body.as_deref()).await
}

pub(super) fn upsert_body(inputs: &[(&str, Value)]) -> Value {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|(email, props)| serde_json::json!({"id": email, "idProperty": "email", "properties": props}))
        .collect();
    serde_json::json!({ "inputs": inputs })
}

pub(super) const UPSERT: &str = "/crm/v3/objects/contacts/batch/upsert";
pub(super) const CONTACTS: &str = "/crm/v3/objects/contacts";
