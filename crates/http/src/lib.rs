//! HTTP handlers shared by the Lambdas (through `lambda_http`) and `hubrelay serve` (through axum directly).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use time::OffsetDateTime;

use crate::error::ApiError;

pub mod app;
pub mod app_webhooks;
pub mod error;
pub mod intake;
pub mod leads;
pub mod metrics;
pub mod oauth_install;
pub mod openapi;
pub mod referrals;
pub mod tenant_routes;
pub mod transport;
pub mod updates;

pub use app::{Relay, Stores};
pub use intake::{EventKind, Intake, Reply};
pub use leads::LeadService;
pub use referrals::{ReferralService, ReferralSource};
pub use updates::UpdateService;

/// Where `status-update` listens.
pub const STATUS_PATH: &str = "/v1/leads/status";
/// Where `activity` listens.
pub const ACTIVITIES_PATH: &str = "/v1/leads/activities";

/// The part of the request's path a router in front took off before routing it here (`/t/acme`): the
/// handlers put it back where the sender's view of the URL matters (signatures over the URL).
#[derive(Clone, Debug)]
pub struct PathPrefix(pub String);

/// `POST /v1/leads` and the routes every deployment has.
pub fn lead_routes(service: Arc<LeadService>) -> Router {
    Router::new()
        .route("/v1/leads", post(post_event::<LeadService>).fallback(method_not_allowed))
        .with_state(service)
        .merge(common_routes())
}

/// `POST path` for a status-update or activity service, without the common routes (so several merge into
/// one `hubrelay serve` router); add [`common_routes`] for a function of its own.
pub fn update_routes(path: &str, service: Arc<UpdateService>) -> Router {
    Router::new().route(path, post(post_event::<UpdateService>).fallback(method_not_allowed)).with_state(service)
}

/// `POST` on the service's referral route (`/v1/referrals/{hubspot|extole|impact}`), without the common routes.
pub fn referral_routes(service: Arc<ReferralService>) -> Router {
    let path = service.source().path();
    Router::new().route(path, post(post_event::<ReferralService>).fallback(method_not_allowed)).with_state(service)
}

/// Health check and JSON 404 / 405 for everything else.
pub fn common_routes() -> Router {
    let health = get(|| async { Json(serde_json::json!({"status": "ok"})) }).fallback(method_not_allowed);
    Router::new().route("/health", health).fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// The JSON 405 of every route (a method router's fallback).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Any endpoint: refuse a declared body over the limit before reading it, read the body (413 over the limit),
/// then [`Intake::run`]. A refused request is logged once, at info, with nothing a sender could use against
/// us or a person (no body, credentials masked).
async fn post_event<K: EventKind>(State(kind): State<Arc<K>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let limit = kind.intake().max_body_bytes;
    // A body refused or broken off before its end leaves bytes of it unread on the connection, which can't
    // carry another request: the answer says `Connection: close`, so the client does not send its next
    // request on a connection the server is closing (hyper closes it; the client would see it cut off).
    let (result, unread) = match declared_length(&parts.headers) {
        Some(declared) if declared > limit as u64 => (Err(ApiError::payload_too_large(limit)), true),
        _ => match read_body(body, limit).await {
            Err(e) => (Err(e), true),
            Ok(body) => {
                let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                // Behind `/t/{tenant}` the sender signed (HubSpot v3) the whole path, prefix included.
                let prefixed;
                let path_and_query = match parts.extensions.get::<PathPrefix>() {
                    Some(PathPrefix(prefix)) => {
                        prefixed = format!("{prefix}{path_and_query}");
                        prefixed.as_str()
                    }
                    None => path_and_query,
                };
                let now = OffsetDateTime::now_utc();
                let method = parts.method.as_str();
                let verified = parts.extensions.get::<app_webhooks::VerifiedAppWebhook>().is_some();
                let request =
                    intake::Request { method, path_and_query, headers: &parts.headers, body: &body, verified };
                (Intake::run(kind.as_ref(), request, now).await, false)
            }
        },
    };
    let mut response = match result {
        Ok(reply) => reply.into_response(),
        Err(e) => {
            if e.status.is_client_error() {
                tracing::info!(
                    function = kind.function().as_str(),
                    path = parts.uri.path(),
                    status = e.status.as_u16(),
                    code = e.code,
                    credentials = %presented_credentials(&parts.headers),
                    "request refused"
                );
            }
            e.into_response()
        }
    };
    if unread {
        response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `Content-Length`, when the sender declared one we can read.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// What credentials a refused request carried, masked: enough to tell a stale token from no token.
fn presented_credentials(headers: &axum::http::HeaderMap) -> String {
    let mut seen = Vec::new();
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, value) = auth.trim().split_once(' ').unwrap_or(("?", auth));
        seen.push(format!("{scheme} {}", hubrelay_core::pii::mask_token(value)));
    }
    for name in [
        "webhook-id",
        "webhook-signature",
        "x-hubspot-signature",
        "x-hubspot-signature-v3",
        "x-extole-signature",
        "x-hook-signature",
    ] {
        if headers.contains_key(name) {
            seen.push(name.to_string());
        }
    }
    if seen.is_empty() {
        "none".to_string()
    } else {
        seen.join(", ")
    }
}

/// How long a sender may take to send a body once its headers are in (256 KiB at 26 KB/s).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Read the whole body within [`BODY_READ_TIMEOUT`], refusing more than `limit` bytes with a JSON 413; a
/// body that breaks off or is malformed on the wire (bad chunked encoding) is a 400, not a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        )
    })?;
    read.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::payload_too_large(limit);
            }
            source = err.source();
        }
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("the request body could not be read: {e}"))
    })
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = status;
        resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        if self.replayed {
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        resp
    }
}
