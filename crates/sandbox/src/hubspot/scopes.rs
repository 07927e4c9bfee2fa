//! Scopes: which granted scope each API call needs, and HubSpot's 403 `MISSING_SCOPES` answer for a token
//! without it. Service Keys and project apps are granted scopes one by one, so a half set-up token is common.
//!
//! Set with `POST /__sandbox/scopes` `{"scopes":["crm.objects.contacts.read", …]}` (or `{"scopes":null}` for
//! every scope), read with `GET`.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::error::ApiError;

/// Every scope the sandbox knows (what a fully set-up hubrelay token holds).
pub const ALL: [&str; 6] = [
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
];

/// The scope a call needs, from its path (with or without a version) and method; `None`: any token.
pub(crate) fn required(method: &Method, path: &str) -> Option<&'static str> {
    let read = matches!(*method, Method::GET) || path.ends_with("/batch/read") || path.ends_with("/search");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&"account-info") {
        return None;
    }
    let family = segments.get(1).copied().unwrap_or_default();
    // `/crm/v3/objects/deals/…`, `/crm/objects/2026-09/deals/…`, `/crm/associations/2026-09/deals/contacts/…`
    let object = segments.get(3).copied().unwrap_or_default();
    let schema = family == "properties" || segments.get(2) == Some(&"properties");
    Some(match (schema, object, read) {
        (true, _, true) => "crm.schemas.contacts.read",
        (true, _, false) => "crm.schemas.contacts.write",
        (false, "deals" | "0-3", true) => "crm.objects.deals.read",
        (false, "deals" | "0-3", false) => "crm.objects.deals.write",
        // Contacts and the engagements on their timelines.
        (false, _, true) => "crm.objects.contacts.read",
        (false, _, false) => "crm.objects.contacts.write",
    })
}

/// HubSpot's answer to a token without the scope.
pub(crate) fn missing(scope: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: \
         https://developers.hubspot.com/scopes.",
    )
    .with(
        "errors",
        json!([{"message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [scope]}}]),
    )
    .with("links", json!({"scopes": "https://developers.hubspot.com/scopes"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_needs_its_scope_whatever_the_path_style() {
        let cases = [
            (Method::POST, "/crm/objects/2026-09/contacts/batch/upsert", "crm.objects.contacts.write"),
            (Method::POST, "/crm/v3/objects/contacts/batch/read", "crm.objects.contacts.read"),
            (Method::GET, "/crm/v3/objects/contacts/7", "crm.objects.contacts.read"),
            (Method::POST, "/crm/objects/2026-09/notes", "crm.objects.contacts.write"),
            (Method::GET, "/crm/properties/2026-09/contacts", "crm.schemas.contacts.read"),
            (Method::POST, "/crm/v3/properties/contacts", "crm.schemas.contacts.write"),
            (Method::GET, "/crm/objects/2026-09/deals/9", "crm.objects.deals.read"),
            (Method::PATCH, "/crm/v3/objects/deals/9", "crm.objects.deals.write"),
            (Method::POST, "/crm/associations/2026-09/deals/contacts/batch/read", "crm.objects.deals.read"),
            (Method::GET, "/crm/v4/objects/contacts/7/associations/notes", "crm.objects.contacts.read"),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required(&method, path), Some(scope), "{method} {path}");
        }
        assert_eq!(required(&Method::GET, "/account-info/2026-09/details"), None);
    }
}
