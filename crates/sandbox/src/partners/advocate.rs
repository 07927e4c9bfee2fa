//! The impact.com Advocate (SaaSquatch) participant API double, for the participant sync: `PUT /api/v1/{tenantAlias}/open/account/{accountId}/user/{userId}` upserts a participant (created
//! with a referral code and a share link, or updated), `GET` the same path reads it, `DELETE
//! /api/v1/{tenantAlias}/account/{accountId}/user/{userId}` deletes it (404 when there is none). HTTP Basic with
//! the tenant's API key as the user name (SaaSquatch's `-u API_KEY:`). An upsert's `cookies` (the base64
//! `_saasquatch` cookie, `{"app.referralsaasquatch.com": {"<tenant>_CODE": code | {"codes": {program: code}}}}`)
//! sets who referred a new participant (`referredBy.code`); an unreadable cookie attributes nothing.
//! `GET /__sandbox/participants` lists every participant (`hubrelay serve --advocate-sandbox` prints its URL).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::server::{local_any, serve, SandboxError, ServerHandle};

#[derive(Debug, Clone, Default)]
pub struct AdvocateSandboxOptions {
    /// The tenant alias in every path; `None` accepts any.
    pub tenant_alias: Option<String>,
    /// The API key; `None` accepts any non-empty key.
    pub api_key: Option<String>,
}

#[derive(Clone)]
pub struct AdvocateSandbox {
    options: AdvocateSandboxOptions,
    users: Arc<Mutex<HashMap<(String, String), Value>>>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "statusCode": status.as_u16()}))).into_response()
}

impl AdvocateSandbox {
    pub fn new(options: AdvocateSandboxOptions) -> Self {
        AdvocateSandbox { options, users: Arc::default() }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/{alias}/open/account/{account}/user/{user}", put(upsert).get(read))
            .route("/api/v1/{alias}/account/{account}/user/{user}", delete(remove))
            .route("/__sandbox/participants", get(list_participants))
            .with_state(self.clone())
    }

    pub async fn serve_local(&self) -> Result<ServerHandle, SandboxError> {
        serve(self.router(), local_any()).await
    }

    pub async fn serve(&self, addr: SocketAddr) -> Result<ServerHandle, SandboxError> {
        serve(self.router(), addr).await
    }

    /// Every participant, as the API answers it, by account and user id.
    pub fn participants(&self) -> Vec<Value> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = users.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| users[k].clone()).collect()
    }

    fn refused(&self, alias: &str, headers: &HeaderMap) -> Option<Response> {
        if self.options.tenant_alias.as_deref().is_some_and(|want| want != alias) {
            return Some(error(StatusCode::NOT_FOUND, "tenant not found"));
        }
        let key = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|pair| pair.split_once(':').map_or(pair.clone(), |(user, _)| user.to_string()));
        match key {
            Some(k) if !k.is_empty() && self.options.api_key.as_deref().is_none_or(|want| want == k) => None,
            _ => Some(error(StatusCode::UNAUTHORIZED, "API key is invalid")),
        }
    }
}

/// `GET /__sandbox/participants`: what a newcomer looks at (no API key: the sandbox listens on 127.0.0.1 only).
async fn list_participants(State(sb): State<AdvocateSandbox>) -> Json<Vec<Value>> {
    Json(sb.participants())
}

async fn upsert(
    State(sb): State<AdvocateSandbox>,
    Path((alias, account, user)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = sb.refused(&alias, &headers) {
        return r;
    }
    let Ok(Value::Object(given)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON user object");
    };
    if given.get("id").and_then(Value::as_str).is_some_and(|id| id != user)
        || given.get("accountId").and_then(Value::as_str).is_some_and(|a| a != account)
    {
        return error(StatusCode::BAD_REQUEST, "id and accountId must match the path");
    }
    let mut users = sb.users.lock().unwrap_or_else(|e| e.into_inner());
    let created = !users.contains_key(&(account.clone(), user.clone()));
    let entry = users.entry((account.clone(), user.clone())).or_insert_with(|| {
        let code = format!(
            "{}{}",
            given.get("firstName").and_then(Value::as_str).unwrap_or("USER").to_uppercase(),
            code_suffix(&user)
        );
        let link = format!("https://ssqt.co/m{}", code.to_lowercase());
        json!({
            "id": user, "accountId": account,
            "referralCodes": {"referral-program": code},
            "shareLinks": {"referral-program": link},
            "messageLinks": {"referral-program": {"EMAIL": format!("{link}?m=email"), "SMS": format!("{link}?m=sms")}},
        })
    });
    if created {
        let referred_by = given.get("cookies").and_then(Value::as_str).and_then(|c| cookie_code(c, &alias));
        if let Some(code) = referred_by {
            entry["referredBy"] = json!({"code": code, "isConverted": false});
        }
    }
    for key in ["email", "firstName", "lastName", "locale", "customFields"] {
        if let Some(v) = given.get(key) {
            entry[key] = v.clone();
        }
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(entry.clone())).into_response()
}

/// The referral code in a `_saasquatch` cookie for tenant `alias` (else any tenant's code it holds).
fn cookie_code(cookie: &str, alias: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let cookie = cookie.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(cookie).ok())?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let tenants = value.get("app.referralsaasquatch.com")?.as_object()?;
    let entry = tenants
        .get(&format!("{alias}_CODE"))
        .or_else(|| tenants.iter().find(|(k, _)| k.ends_with("_CODE")).map(|(_, v)| v))?;
    match entry {
        Value::String(code) => Some(code.clone()),
        other => other.get("codes")?.as_object()?.values().find_map(|c| c.as_str().map(String::from)),
    }
}

/// A short, stable suffix for a generated referral code.
fn code_suffix(user: &str) -> String {
    let sum: u32 = user.bytes().map(u32::from).sum();
    format!("{:04}", sum % 10_000)
}

async fn read(
    State(sb): State<AdvocateSandbox>,
    Path((alias, account, user)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = sb.refused(&alias, &headers) {
        return r;
    }
    match sb.users.lock().unwrap_or_else(|e| e.into_inner()).get(&(account, user)) {
        Some(u) => Json(u.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "user not found"),
    }
}

async fn remove(
    State(sb): State<AdvocateSandbox>,
    Path((alias, account, user)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = sb.refused(&alias, &headers) {
        return r;
    }
    match sb.users.lock().unwrap_or_else(|e| e.into_inner()).remove(&(account, user)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "user not found"),
    }
}
