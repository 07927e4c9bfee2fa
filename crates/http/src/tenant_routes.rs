//! `/t/{tenant}/…`: a request for a tenant goes to that tenant's routes with the prefix taken off (the handlers
//! get it back as a [`PathPrefix`], for signatures over the URL). Where the routes come from is the
//! deployment's business ([`TenantRouter`]: serve's registry poll, a Lambda's cache over DynamoDB).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;
use tracing::Instrument;

use hubrelay_core::tenant::TenantId;

use crate::error::ApiError;
use crate::PathPrefix;

/// What a tenant's requests get.
#[derive(Clone)]
pub enum TenantRoute {
    Ready(Router),
    /// `403 tenant_disabled`.
    Disabled,
    /// Its relay cannot be built or read right now (the reason is logged): `503 tenant_unavailable`.
    Unavailable,
    /// `404 unknown_tenant`.
    Unknown,
}

#[async_trait]
pub trait TenantRouter: Send + Sync + 'static {
    async fn route(&self, tenant: &TenantId) -> TenantRoute;
}

/// The router of every tenant's routes.
pub fn tenant_routes(tenants: Arc<dyn TenantRouter>) -> Router {
    Router::new().route("/t/{*rest}", axum::routing::any(dispatch)).with_state(tenants)
}

async fn dispatch(State(tenants): State<Arc<dyn TenantRouter>>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/t/").unwrap_or_default();
    let (id, inner_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(id) = id.parse::<TenantId>() else {
        return ApiError::new(StatusCode::NOT_FOUND, "unknown_tenant", "no such tenant").into_response();
    };
    let router = match tenants.route(&id).await {
        TenantRoute::Ready(router) => router,
        TenantRoute::Disabled => {
            return ApiError::new(StatusCode::FORBIDDEN, "tenant_disabled", format!("tenant {id} is disabled"))
                .into_response()
        }
        TenantRoute::Unavailable => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
                format!("tenant {id} cannot take events right now; retry later"),
            )
            .into_response()
        }
        TenantRoute::Unknown => {
            return ApiError::new(StatusCode::NOT_FOUND, "unknown_tenant", format!("no tenant {id}")).into_response()
        }
    };
    req.extensions_mut().insert(PathPrefix(format!("/t/{id}")));
    let inner = match req.uri().query() {
        Some(q) => format!("{inner_path}?{q}"),
        None => inner_path.to_string(),
    };
    match inner.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return ApiError::not_found().into_response(),
    }
    let span = tracing::info_span!("tenant", tenant = %id);
    match router.oneshot(req).instrument(span).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
