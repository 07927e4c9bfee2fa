//! Injected failures: the decision and the HubSpot-shaped body for each status.

use axum::http::StatusCode;

use super::error::{ApiError, Policy};

/// True with probability `rate` (≤ 0 never, ≥ 1 always).
pub(crate) fn roll(rate: f64) -> bool {
    rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
}

/// The answer of an injected failure with `status` (an error status, see [`super::Faults::effective_status`]).
pub(crate) fn fault_error(status: u16) -> ApiError {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = code.canonical_reason().unwrap_or("Origin Error");
    match status {
        401 => ApiError::unauthorized(),
        429 => ApiError::rate_limited(Policy::TenSecondly),
        403 => {
            ApiError::new(code, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.")
        }
        404 => ApiError::new(code, "OBJECT_NOT_FOUND", "resource not found"),
        409 => ApiError::new(code, "CONFLICT", "Conflict"),
        423 => {
            ApiError::new(code, "LOCKED", "The resource is locked by another request; retry after at least 2 seconds.")
        }
        477 => ApiError::new(code, "MIGRATION_IN_PROGRESS", "This portal is being migrated; retry later.")
            .header("retry-after", "2"),
        500 => ApiError::new(code, "INTERNAL_ERROR", "internal error"),
        s if s >= 500 => ApiError::new(code, "SERVICE_UNAVAILABLE", reason),
        _ => ApiError::new(code, "VALIDATION_ERROR", reason),
    }
}
