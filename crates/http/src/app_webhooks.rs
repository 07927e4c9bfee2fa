//! `POST /v1/hubspot/app-webhooks`: the one URL of a HubSpot app's webhook subscriptions, for every portal
//! that installed the app. HubSpot signs each request with the app's client secret (v3) and sends events of
//! many portals in one batch; each event names its portal (`portalId`). The batch is verified once, split by
//! portal, and each portal's events go to its tenant's `POST /v1/referrals/hubspot` (that tenant's program,
//! partners and idempotency keys), as if HubSpot had called it.
//!
//! The answer is `202` when every portal's events were accepted (or `200` when none had anything to do); a
//! portal that no tenant has is reported as ignored. When a tenant could not take its events (unavailable,
//! disabled), the answer is that failure, and HubSpot sends the whole batch again (it retries for 24 hours):
//! the portals that accepted it before find their events already taken, so nothing is queued twice.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt;

use hubrelay_core::auth::{AuthConfig, AuthMethod, Authenticator, RequestParts};
use hubrelay_core::tenant::TenantId;

use crate::error::ApiError;
use crate::referrals::HUBSPOT_PATH;
use crate::tenant_routes::{TenantRoute, TenantRouter};
use crate::PathPrefix;

pub const APP_WEBHOOKS_PATH: &str = "/v1/hubspot/app-webhooks";

/// The most events HubSpot sends in one request (the docs say under 100); more is not HubSpot.
const MAX_EVENTS: usize = 1_000;

/// Which tenant has a portal.
#[async_trait]
pub trait PortalDirectory: Send + Sync + 'static {
    /// The tenant whose hub id is `portal`; `Err` when that cannot be told now (the reason, for the log).
    async fn tenant_of(&self, portal: u64) -> Result<Option<TenantId>, String>;
}

/// Put on the request handed to a tenant's HubSpot referral route: this route verified its signature. Only
/// this module makes one, and a request's extensions never come from the network.
#[derive(Clone, Debug)]
pub struct VerifiedAppWebhook(());

pub struct AppWebhooks {
    auth: Authenticator,
    portals: Arc<dyn PortalDirectory>,
    tenants: Arc<dyn TenantRouter>,
    max_body_bytes: usize,
}

impl AppWebhooks {
    /// `client_secrets`: the app's (two during a rotation); `public_url`: where HubSpot calls, for v3.
    pub fn new(
        client_secrets: Vec<String>,
        public_url: &str,
        portals: Arc<dyn PortalDirectory>,
        tenants: Arc<dyn TenantRouter>,
        max_body_bytes: usize,
    ) -> Result<AppWebhooks, String> {
        let config = AuthConfig {
            hubspot_client_secrets: client_secrets,
            public_url: Some(public_url.to_string()),
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(config).map_err(|e| e.to_string())?;
        Ok(AppWebhooks { auth, portals, tenants, max_body_bytes })
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new().route(APP_WEBHOOKS_PATH, post(receive).fallback(crate::method_not_allowed)).with_state(self)
    }
}

/// The route where no OAuth app is configured: `404 oauth_not_configured`.
pub fn not_configured() -> Router {
    Router::new().route(
        APP_WEBHOOKS_PATH,
        post(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "oauth_not_configured",
                "no HubSpot app is configured here (HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET)",
            )
        })
        .fallback(crate::method_not_allowed),
    )
}

/// One portal's part of a batch and what its tenant answered.
struct PortalResult {
    portal: u64,
    tenant: Option<TenantId>,
    status: StatusCode,
    body: Value,
}

async fn receive(State(hooks): State<Arc<AppWebhooks>>, req: Request) -> Response {
    match handle(hooks, req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(status = e.status.as_u16(), code = e.code, "app webhook refused");
            e.into_response()
        }
    }
}

async fn handle(hooks: Arc<AppWebhooks>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = crate::read_body(body, hooks.max_body_bytes).await?;
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(APP_WEBHOOKS_PATH);
    let request = RequestParts { method: parts.method.as_str(), path_and_query, headers: &parts.headers, body: &body };
    match hooks.auth.verify(&request, OffsetDateTime::now_utc())? {
        AuthMethod::HubSpotV3 => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "app webhooks are signed by HubSpot (X-HubSpot-Signature-v3)",
            ))
        }
    }
    let batches = split_by_portal(&body)?;
    // The portals at once: HubSpot waits 5 s for the whole batch.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (portal, events)) in batches.into_iter().enumerate() {
        let hooks = hooks.clone();
        tasks.spawn(async move { (i, deliver(&hooks, portal, events).await) });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(e) => {
                tracing::error!(error = %e, "an app webhook portal's delivery failed");
                return Err(ApiError::unavailable("tenant_unavailable", "the batch could not be taken; retry"));
            }
        }
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(answer(results.into_iter().map(|(_, r)| r).collect()))
}

/// The events by portal, in the order each portal first appears.
fn split_by_portal(body: &[u8]) -> Result<Vec<(u64, Vec<Value>)>, ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", message);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Array(events) = value else {
        return Err(invalid("an app webhook body is a JSON array of events".into()));
    };
    if events.len() > MAX_EVENTS {
        return Err(invalid(format!("{} events in one request; HubSpot sends under 100", events.len())));
    }
    let mut batches: Vec<(u64, Vec<Value>)> = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let portal = event
            .get("portalId")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(format!("event {i} has no numeric `portalId`")))?;
        match batches.iter_mut().find(|(p, _)| *p == portal) {
            Some((_, list)) => list.push(event),
            None => batches.push((portal, vec![event])),
        }
    }
    Ok(batches)
}

/// One portal's events to its tenant's HubSpot referral route.
async fn deliver(hooks: &AppWebhooks, portal: u64, events: Vec<Value>) -> PortalResult {
    let result =
        |tenant: Option<TenantId>, status: StatusCode, body: Value| PortalResult { portal, tenant, status, body };
    let error = |e: ApiError| e.body()["error"].clone();
    let tenant = match hooks.portals.tenant_of(portal).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            tracing::warn!(portal, events = events.len(), "app webhook for a portal no tenant has; ignored");
            let reason = format!("no tenant has portal {portal} (add one with --hub-id {portal}, or connect it)");
            return result(None, StatusCode::OK, json!({"status": "ignored", "reasons": [reason]}));
        }
        Err(why) => {
            tracing::error!(portal, error = %why, "cannot tell the portal's tenant");
            let e = ApiError::unavailable("tenant_unavailable", format!("portal {portal}'s tenant cannot be read now"));
            return result(None, e.status, error(e));
        }
    };
    let router = match hooks.tenants.route(&tenant).await {
        TenantRoute::Ready(router) => router,
        // The registry names the tenant but its routes are not there yet (just added, not built or seen by
        // this process): HubSpot sends the batch again.
        TenantRoute::Unknown => {
            let e = ApiError::unavailable(
                "tenant_unavailable",
                format!("tenant {tenant} of portal {portal} is not ready yet"),
            );
            return result(Some(tenant), e.status, error(e));
        }
        TenantRoute::Disabled => {
            let e = ApiError::new(StatusCode::FORBIDDEN, "tenant_disabled", format!("tenant {tenant} is disabled"));
            return result(Some(tenant), e.status, error(e));
        }
        TenantRoute::Unavailable => {
            let e = ApiError::unavailable("tenant_unavailable", format!("tenant {tenant} cannot take events now"));
            return result(Some(tenant), e.status, error(e));
        }
    };
    let body = serde_json::to_vec(&Value::Array(events)).unwrap_or_default();
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = axum::http::Method::POST;
    *request.uri_mut() = axum::http::Uri::from_static(HUBSPOT_PATH);
    request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request.extensions_mut().insert(VerifiedAppWebhook(()));
    request.extensions_mut().insert(PathPrefix(format!("/t/{tenant}")));
    let span = tracing::info_span!("tenant", tenant = %tenant, portal);
    let response = match tracing::Instrument::instrument(router.oneshot(request), span).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    result(Some(tenant), status, body)
}

/// Every portal accepted (or had nothing): 202 or 200 with each portal's answer; else the first failure, so
/// HubSpot sends the batch again.
fn answer(results: Vec<PortalResult>) -> Response {
    let listed: Vec<Value> = results
        .iter()
        .map(|r| json!({"portal_id": r.portal, "tenant": r.tenant, "status": r.status.as_u16(), "answer": r.body}))
        .collect();
    let failed = results
        .iter()
        .filter(|r| !r.status.is_success())
        .max_by_key(|r| (r.status.is_server_error(), r.status.as_u16()));
    if let Some(f) = failed {
        let failed_portals: Vec<u64> = results.iter().filter(|r| !r.status.is_success()).map(|r| r.portal).collect();
        let code = match f.body["code"].as_str() {
            Some("tenant_disabled") => "tenant_disabled",
            Some("tenant_unavailable") => "tenant_unavailable",
            _ if f.status.is_server_error() => "tenant_unavailable",
            _ => "portal_refused",
        };
        let message = format!(
            "portal(s) {failed_portals:?} could not take their events; send the batch again (the others accepted theirs, and will not queue them twice)"
        );
        let status = if f.status.is_server_error() { StatusCode::SERVICE_UNAVAILABLE } else { f.status };
        return ApiError::new(status, code, message).with_details(json!({"portals": listed})).into_response();
    }
    let accepted = results.iter().any(|r| r.status == StatusCode::ACCEPTED);
    let (status, word) = if accepted { (StatusCode::ACCEPTED, "accepted") } else { (StatusCode::OK, "ignored") };
    (status, axum::Json(json!({"status": word, "portals": listed}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Portal 1 is tenant `acme`'s, whose routes are `route`; no other portal has a tenant.
    struct One(TenantRoute);

    #[async_trait]
    impl PortalDirectory for One {
        async fn tenant_of(&self, portal: u64) -> Result<Option<TenantId>, String> {
            Ok((portal == 1).then(|| "acme".parse().unwrap()))
        }
    }

    #[async_trait]
    impl TenantRouter for One {
        async fn route(&self, _: &TenantId) -> TenantRoute {
            self.0.clone()
        }
    }

    async fn send(route: TenantRoute, portals: &[u64]) -> (StatusCode, Value) {
        let one = Arc::new(One(route));
        let hooks = AppWebhooks::new(vec!["app-secret".into()], "https://relay.example.com", one.clone(), one, 1 << 20);
        let body: Vec<Value> = portals.iter().map(|p| json!({"portalId": p, "eventId": 1})).collect();
        let body = serde_json::to_vec(&body).unwrap();
        let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let uri = format!("https://relay.example.com{APP_WEBHOOKS_PATH}");
        let sig = hubrelay_core::auth::hubspot_v3_signature("app-secret", "POST", &uri, &body, now_ms);
        let request = Request::post(APP_WEBHOOKS_PATH)
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", sig)
            .header("x-hubspot-request-timestamp", now_ms.to_string())
            .body(Body::from(body))
            .unwrap();
        let response = Arc::new(hooks.unwrap()).routes().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_tenant_not_ready_has_the_batch_sent_again_and_a_portal_without_one_is_reported() {
        // Named by the registry but not built here yet: 503, so HubSpot sends the batch again.
        let (status, body) = send(TenantRoute::Unknown, &[1, 7]).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("tenant_unavailable"))
        );
        let portals = body["error"]["details"]["portals"].as_array().unwrap();
        assert_eq!((portals[0]["portal_id"].as_u64(), portals[0]["status"].as_u64()), (Some(1), Some(503)));
        assert_eq!(portals[1]["answer"]["status"], "ignored", "portal 7 has no tenant: {body}");
        // Disabled: the tenant's refusal, with every portal's answer.
        let (status, body) = send(TenantRoute::Disabled, &[1]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("tenant_disabled")));
        // Only portals without a tenant: nothing to do.
        let (status, body) = send(TenantRoute::Unknown, &[7]).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ignored")), "{body}");
    }

    #[test]
    fn a_batch_splits_by_portal_in_order_and_needs_each_portal() {
        let body = json!([{"portalId": 2, "eventId": 1}, {"portalId": 1, "eventId": 2}, {"portalId": 2, "eventId": 3}]);
        let split = split_by_portal(body.to_string().as_bytes()).unwrap();
        let shape: Vec<(u64, usize)> = split.iter().map(|(p, e)| (*p, e.len())).collect();
        assert_eq!(shape, vec![(2, 2), (1, 1)]);
        assert_eq!(split[0].1[1]["eventId"], 3);
        let err = split_by_portal(br#"[{"portalId": 2}, {"eventId": 1}]"#).unwrap_err();
        assert_eq!((err.status, err.code), (StatusCode::BAD_REQUEST, "invalid_payload"));
        assert!(err.message.contains("event 1"), "{}", err.message);
        assert_eq!(split_by_portal(br#"{"portalId": 2}"#).unwrap_err().code, "invalid_payload");
        assert_eq!(split_by_portal(b"[{").unwrap_err().code, "invalid_json");
    }
}
