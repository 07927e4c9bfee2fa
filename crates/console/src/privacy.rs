//! The operators' privacy API: `POST /v1/privacy/erasure` erases a person from a tenant's records (and optionally
//! has HubSpot GDPR-delete the contact), `GET /v1/privacy/erasures?tenant=` lists the receipts. Both take an
//! operator's token (`Authorization: Bearer`, the console's tokens), never a sender's: erasing is an operator's
//! act, recorded in the audit trail by receipt id, never by the person.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use hubrelay_core::privacy::{ErasureError, ErasureReceipt, ErasureSource, Subject};

use crate::{tenant_or_default, Console};

pub const ERASURE_PATH: &str = "/v1/privacy/erasure";
pub const RECEIPTS_PATH: &str = "/v1/privacy/erasures";

/// The body of an erasure request; any other field is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureRequest {
    email: Option<String>,
    contact_id: Option<String>,
    tenant: Option<String>,
    #[serde(default)]
    hubspot_gdpr_delete: bool,
}

pub(crate) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(ERASURE_PATH, post(erase).fallback(method_not_allowed))
        .route(RECEIPTS_PATH, get(receipts).fallback(method_not_allowed))
        .route("/console/privacy", get(page))
        .route("/console/privacy/erase", post(erase_from_page))
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(default)]
    tenant: String,
}

/// The privacy page (a signed-in operator): the erasure form and the tenant's receipts.
async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(session) = console.session(&headers) else { return crate::sign_in_first() };
    let Query(q) = query.unwrap_or_default();
    let tenant = tenant_or_default(&q.tenant);
    render(&console, &session, &tenant, None, None).await
}

async fn render(
    console: &Console,
    session: &crate::Session,
    tenant: &str,
    done: Option<&ErasureReceipt>,
    error: Option<&str>,
) -> Response {
    let tenants = console.tenant_ids().await;
    let receipts = match console.backend.eraser(tenant, false).await {
        Ok(eraser) => eraser.store().receipts(50).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let csrf = console.gate.csrf(&session.cookie);
    let body = crate::pages::privacy(&tenants, tenant, &receipts, done, error, &csrf);
    console.page(session, "Privacy", crate::pages::Section::Privacy, body)
}

/// The form's erasure: confirmed, recorded in the audit trail before and after (by receipt id, never the person).
async fn erase_from_page(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = crate::Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return crate::sign_in_first() };
    let tenant = form.tenant();
    let given = |key: &str| Some(form.one(key).trim().to_string()).filter(|v| !v.is_empty());
    let subject = Subject { email: given("email"), contact_id: given("contact_id") };
    if form.one("confirm") != "yes" {
        let message = "Tick the confirmation: an erasure cannot be undone.";
        return render(&console, &session, &tenant, None, Some(message)).await;
    }
    let hubspot_gdpr_delete = form.one("hubspot_gdpr_delete") == "yes";
    let eraser = match console.backend.eraser(&tenant, hubspot_gdpr_delete).await {
        Ok(eraser) => eraser,
        Err(e) => return render(&console, &session, &tenant, None, Some(&e)).await,
    };
    if let Err(e) = console.record(&session.operator, "erasure_requested", &tenant, String::new()).await {
        return render(&console, &session, &tenant, None, Some(&format!("Not erased: {e}"))).await;
    }
    match eraser.erase(&subject, ErasureSource::Console, Some(&session.operator), hubspot_gdpr_delete).await {
        Ok(receipt) => {
            let detail = format!("{} {:?}", receipt.receipt_id, receipt.counts);
            if let Err(e) = console.record(&session.operator, "erasure", &tenant, detail).await {
                tracing::error!(error = %e, "the audit trail could not record an erasure");
            }
            render(&console, &session, &tenant, Some(&receipt), None).await
        }
        Err(ErasureError::Invalid(message)) => render(&console, &session, &tenant, None, Some(&message)).await,
        Err(ErasureError::Store(e)) => {
            render(&console, &session, &tenant, None, Some(&format!("Not erased: {e}"))).await
        }
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this path takes another method")
}

/// The operator whose bearer token this is.
fn operator(console: &Console, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send an operator's token: Authorization: Bearer …",
        ));
    };
    match console.gate.operator_for(token) {
        Some(op) => Ok(op.name.clone()),
        None => {
            tracing::info!("privacy API: not an operator token");
            Err(error(StatusCode::UNAUTHORIZED, "invalid_token", "that is not an operator token"))
        }
    }
}

async fn erase(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let operator = match operator(&console, &headers) {
        Ok(op) => op,
        Err(response) => return response,
    };
    let request: ErasureRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_body", format!("not an erasure request: {e}")),
    };
    let tenant = tenant_or_default(request.tenant.as_deref().unwrap_or_default());
    let eraser = match console.backend.eraser(&tenant, request.hubspot_gdpr_delete).await {
        Ok(eraser) => eraser,
        Err(e) => return error(StatusCode::NOT_FOUND, "tenant_not_found", e),
    };
    // Recorded before it is done, without the person: no erasure goes unrecorded.
    if let Err(e) = console.record(&operator, "erasure_requested", &tenant, String::new()).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", format!("not erased: {e}"));
    }
    let subject = Subject { email: request.email, contact_id: request.contact_id };
    match eraser.erase(&subject, ErasureSource::Api, Some(&operator), request.hubspot_gdpr_delete).await {
        Ok(receipt) => {
            let detail = format!("{} {:?} hubspot {:?}", receipt.receipt_id, receipt.counts, receipt.hubspot);
            if let Err(e) = console.record(&operator, "erasure", &tenant, detail).await {
                tracing::error!(error = %e, "the audit trail could not record an erasure");
            }
            (StatusCode::OK, Json(json!({ "tenant": tenant, "receipt": receipt }))).into_response()
        }
        Err(ErasureError::Invalid(message)) => error(StatusCode::BAD_REQUEST, "invalid_request", message),
        Err(ErasureError::Store(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptsQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

async fn receipts(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<ReceiptsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(response) = operator(&console, &headers) {
        return response;
    }
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "invalid_query", "the query takes `tenant` and `limit`");
    };
    let tenant = tenant_or_default(query.tenant.as_deref().unwrap_or_default());
    let eraser = match console.backend.eraser(&tenant, false).await {
        Ok(eraser) => eraser,
        Err(e) => return error(StatusCode::NOT_FOUND, "tenant_not_found", e),
    };
    match eraser.store().receipts(query.limit.unwrap_or(100).min(1000)).await {
        Ok(list) => Json(json!({ "tenant": tenant, "receipts": list })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
}
