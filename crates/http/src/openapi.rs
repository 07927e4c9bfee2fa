//! `GET /openapi.json`: the OpenAPI 3.1 description of every inbound route (`crates/http/openapi.json`), its
//! `servers` set to where this deployment is called. The tests below tie it to the routes the code declares;
//! `tests/it/openapi.rs` validates it and fuzzes a running `serve` against it with schemathesis.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// The description, as committed.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Where the description is served: `serve` answers every route itself; on AWS API Gateway routes only the
/// stack's routes (no `/health`, no `/metrics`) and answers what it does not route itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Serve,
    Aws,
}

/// Paths only `serve` answers.
const SERVE_ONLY_PATHS: [&str; 2] = ["/health", "/metrics"];

/// Answers of `serve`'s own transport (API Gateway has its own limits and answers).
const SERVE_ONLY_STATUSES: [&str; 2] = ["414", "431"];

/// The description for `deployment`, with `public_url` as its server (without one, `/`: the host it was
/// fetched from).
pub fn document(deployment: Deployment, public_url: Option<&str>) -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).expect("crates/http/openapi.json is JSON (tested)");
    if let Some(url) = public_url {
        doc["servers"] = json!([{ "url": url.trim_end_matches('/') }]);
    }
    if deployment == Deployment::Aws {
        let paths = doc["paths"].as_object_mut().expect("paths");
        for path in SERVE_ONLY_PATHS {
            paths.remove(path);
        }
        for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for status in SERVE_ONLY_STATUSES {
                    responses.remove(status);
                }
            }
        }
        let note = " On AWS, API Gateway answers a path or method the stack does not route with its own \
                    `404 {\"message\":\"Not Found\"}`, and its own throttling and integration errors likewise.";
        if let Some(description) = doc["info"]["description"].as_str() {
            doc["info"]["description"] = Value::String(format!("{description}{note}"));
        }
    }
    doc
}

/// `GET /openapi.json`.
pub fn openapi_routes(deployment: Deployment, public_url: Option<&str>) -> Router {
    let body = document(deployment, public_url).to_string();
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
        })
        .fallback(crate::method_not_allowed),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::app_webhooks::APP_WEBHOOKS_PATH;
    use crate::referrals::ReferralSource;
    use crate::{ACTIVITIES_PATH, STATUS_PATH};

    /// (method, path) of every operation described.
    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                if item.get(method).is_some() {
                    found.insert((method.to_string(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn every_route_the_code_declares_is_described_and_nothing_else() {
        let event_routes = [
            "/v1/leads",
            STATUS_PATH,
            ACTIVITIES_PATH,
            ReferralSource::HubSpot.path(),
            ReferralSource::Extole.path(),
            ReferralSource::Impact.path(),
        ];
        let mut declared: BTreeSet<(String, String)> = BTreeSet::new();
        for path in event_routes {
            declared.insert(("post".into(), path.to_string()));
            // Each tenant has the same event routes under its prefix (crate::tenant_routes).
            declared.insert(("post".into(), format!("/t/{{tenant}}{path}")));
        }
        declared.insert(("post".into(), APP_WEBHOOKS_PATH.to_string()));
        for path in ["/oauth/install", "/oauth/callback", "/health", "/metrics", "/openapi.json"] {
            declared.insert(("get".into(), path.to_string()));
        }
        assert_eq!(operations(&document(Deployment::Serve, None)), declared);
        let on_aws = operations(&document(Deployment::Aws, None));
        for path in SERVE_ONLY_PATHS {
            declared.remove(&("get".to_string(), path.to_string()));
        }
        assert_eq!(on_aws, declared, "on AWS, the same but what only serve answers");
    }

    #[test]
    fn operations_have_unique_ids_and_every_error_a_described_body() {
        let doc = document(Deployment::Serve, Some("https://relay.example.com/prod/"));
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"], json!([{"url": "https://relay.example.com/prod"}]));
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
                let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{id} has no responses"));
                assert!(!responses.is_empty(), "{id}");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let response = match response["$ref"].as_str() {
                            Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
                            None => response,
                        };
                        assert!(response["content"].is_object(), "{id} {status} has no described body");
                    }
                }
            }
        }
    }
}
