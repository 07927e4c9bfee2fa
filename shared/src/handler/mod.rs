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

pub mod lambda;
pub mod leads;
pub mod sqs_worker;

pub use leads::{LeadReply, LeadService};

/// `POST /v1/leads` and the routes every deployment has.
pub fn lead_routes(service: Arc<LeadService>) -> Router {
    Router::new()
        .route("/v1/leads", post(post_lead).fallback(method_not_allowed))
        .with_state(service)
        .merge(common_routes())
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

async fn post_lead(State(service): State<Arc<LeadService>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, service.max_body_bytes()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match service.handle(parts.method.as_str(), path_and_query, &parts.headers, &body, OffsetDateTime::now_utc()).await
    {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Read the whole body, refusing more than `limit` bytes with a JSON 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::payload_too_large(limit))
}

impl IntoResponse for LeadReply {
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
