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
pub mod error;
pub mod intake;
pub mod leads;
pub mod referrals;
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
    Router::new().route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) })).fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Any endpoint: read the body (413 over the limit), then [`Intake::run`].
async fn post_event<K: EventKind>(State(kind): State<Arc<K>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, kind.intake().max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let now = OffsetDateTime::now_utc();
    match Intake::run(kind.as_ref(), parts.method.as_str(), path_and_query, &parts.headers, &body, now).await {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Read the whole body, refusing more than `limit` bytes with a JSON 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::payload_too_large(limit))
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
