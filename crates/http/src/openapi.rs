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

/// The description with `public_url` as its server (without one, `/`: the host it was fetched from).
pub fn document(public_url: Option<&str>) -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).expect("crates/http/openapi.json is JSON (tested)");
    if let Some(url) = public_url {
        doc["servers"] = json!([{ "url": url.trim_end_matches('/') }]);
    }
    doc
}

/// `GET /openapi.json`.
pub fn openapi_routes(public_url: Option<&str>) -> Router {
    let body = document(public_url).to_string();
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
        assert_eq!(operations(&document(None)), declared);
    }

    #[test]
    fn operations_have_ids_and_every_answer_a_described_body() {
        let doc = document(Some("https://relay.example.com/prod/"));
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
            }
        }
    }
}
