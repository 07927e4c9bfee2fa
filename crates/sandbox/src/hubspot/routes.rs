//! The router: HubSpot API routes behind the gate (auth → rate limit → latency → faults), property
//! endpoints, the OAuth routes (when configured) and the `/__sandbox` admin routes.

use std::time::Instant;

use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use super::contacts::{self, parse_object, path_param, PathParams};
use super::deals;
use super::engagements::{self, Object};
use super::error::{correlation_id, ApiError, CORRELATION_HEADER};
use super::faults::{fault_error, roll};
use super::oauth::{self, AccessCheck};
use super::properties::{self, parse_create, to_json};
use super::ratelimit::{Quota, WINDOW};
use super::validate::now_ms;
use super::{account, associations, batch, rules, scopes};
use super::{lock, Faults, Sandbox};

const DAY_MS: i64 = 86_400_000;

/// The portal's calendar day (its daily budget resets at its own midnight, not UTC's).
fn portal_day(options: &super::SandboxOptions) -> i64 {
    (now_ms() + i64::from(options.utc_offset_minutes) * 60_000).div_euclid(DAY_MS)
}

/// The dated API versions the sandbox serves (HubSpot supports each for 18 months).
pub(crate) const SUPPORTED_VERSIONS: [&str; 3] = ["2025-09", "2026-03", "2026-09"];

/// Portal validation rules apply to writes from this version on.
const RULES_FROM: &str = "2026-09";

/// How a request addressed the API, for handlers: whether the portal's validation rules apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub enforces_rules: bool,
}

pub(crate) fn router(sb: Sandbox) -> Router {
    let api = api_routes("/crm/v3/objects", "/crm/v3/properties")
        .merge(api_routes("/crm/objects/{version}", "/crm/properties/{version}"))
        .route("/crm/associations/{version}/{from}/{to}/batch/read", post(associations::batch_read))
        .route("/crm/v4/associations/{from}/{to}/batch/read", post(associations::batch_read))
        .route("/crm/v4/objects/{from}/{id}/associations/{to}", get(associations::list))
        .route("/account-info/v3/details", get(account::details))
        .route("/account-info/{version}/details", get(account::details))
        .route_layer(middleware::from_fn_with_state(sb.clone(), gate));
    let admin = Router::new()
        .route("/__sandbox/faults", get(get_faults).post(set_faults).delete(clear_faults))
        .route("/__sandbox/validation-rules", get(get_rules).post(set_rules).delete(clear_rules))
        .route("/__sandbox/scopes", get(get_scopes).post(set_scopes))
        .route("/__sandbox/merge", post(merge_contacts))
        .route("/__sandbox/stats", get(stats))
        .route("/__sandbox/writes", get(writes))
        .route("/__sandbox/reset", post(reset))
        .route("/__sandbox/oauth/revoke", post(revoke_oauth));
    let api = if sb.inner.oauth.is_some() { api.merge(oauth::routes()) } else { api };
    api.merge(admin).with_state(sb)
}

/// `dated` (`/crm/objects/2026-09/…`) or `legacy` (`/crm/v3/…`, `/crm/v4/…`, `/account-info/v3/…`), and the
/// version named; `Err` for a dated path with a version HubSpot does not serve.
fn path_style(path: &str) -> Result<(&'static str, String), String> {
    let mut segments = path.trim_start_matches('/').split('/');
    let (family, next) = match (segments.next(), segments.next()) {
        (Some("crm"), Some(v @ ("v3" | "v4"))) => return Ok(("legacy", v.to_string())),
        (Some("account-info"), Some("v3")) => return Ok(("legacy", "v3".into())),
        (Some("crm"), Some(family)) => (family, segments.next().unwrap_or_default()),
        (Some("account-info"), Some(version)) => ("account-info", version),
        _ => return Ok(("other", String::new())),
    };
    if SUPPORTED_VERSIONS.contains(&next) {
        Ok(("dated", next.to_string()))
    } else {
        Err(format!("no {family} API version '{next}'; versions served: {}", SUPPORTED_VERSIONS.join(", ")))
    }
}

fn api_routes(objects: &str, props: &str) -> Router<Sandbox> {
    let mut r = Router::new();
    for object in Object::ALL {
        let name = object.path();
        r = r
            .route(
                &format!("{objects}/{name}"),
                post(move |State(sb): State<Sandbox>, body: Bytes| engagements::create(sb, object, body)),
            )
            .route(
                &format!("{objects}/{name}/{{id}}"),
                get(move |State(sb): State<Sandbox>, params: PathParams, RawQuery(q): RawQuery| {
                    engagements::get(sb, object, params, q)
                }),
            );
    }
    r.route(&format!("{objects}/contacts"), get(contacts::list).post(contacts::create))
        .route(&format!("{objects}/contacts/batch/upsert"), post(batch::batch_upsert))
        .route(&format!("{objects}/contacts/batch/read"), post(batch::batch_read))
        .route(&format!("{objects}/contacts/gdpr-delete"), post(contacts::gdpr_delete))
        .route(&format!("{objects}/contacts/search"), post(super::search::search))
        .route(
            &format!("{objects}/contacts/{{id}}"),
            get(contacts::get).patch(contacts::patch).delete(contacts::archive),
        )
        .route(&format!("{objects}/deals"), post(deals::create))
        .route(&format!("{objects}/deals/{{id}}"), get(deals::get).patch(deals::patch))
        .route(&format!("{props}/contacts"), get(list_properties).post(create_property))
        .route(&format!("{props}/contacts/{{name}}"), get(get_property).delete(archive_property))
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), non-empty.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who a request's bearer token is.
struct Caller {
    /// The key of its rate-limit window.
    key: String,
    /// Its granted scopes (`None`: every scope).
    scopes: Option<Vec<String>>,
}

/// The static token (or, without one and without OAuth, any non-empty token) with the portal's scopes, or an
/// OAuth access token this sandbox issued with its own scopes; an expired access token gets its own 401.
fn authenticate(sb: &Sandbox, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let options = &sb.inner.options;
    if options.token.as_deref() == Some(token) {
        return Ok(Caller { key: token.to_string(), scopes: sb.scopes() });
    }
    match &sb.inner.oauth {
        Some(o) => match lock(o).check_access(token) {
            AccessCheck::Valid(scopes) => Ok(Caller { key: oauth::API_LIMIT_KEY.into(), scopes: Some(scopes) }),
            AccessCheck::Expired(seconds_ago) => Err(oauth::expired(seconds_ago)),
            AccessCheck::Unknown => Err(ApiError::unauthorized()),
        },
        None if options.token.is_none() => Ok(Caller { key: token.to_string(), scopes: sb.scopes() }),
        None => Err(ApiError::unauthorized()),
    }
}

fn set_quota_headers(res: &mut Response, q: &Quota) {
    let h = res.headers_mut();
    let mut put = |name: &'static str, v: u64| {
        h.insert(name, HeaderValue::from(v));
    };
    put("x-hubspot-ratelimit-max", q.max.into());
    put("x-hubspot-ratelimit-remaining", q.remaining.into());
    put("x-hubspot-ratelimit-interval-milliseconds", WINDOW.as_millis() as u64);
    put("x-hubspot-ratelimit-daily", q.daily.into());
    put("x-hubspot-ratelimit-daily-remaining", q.daily_remaining.into());
}

/// Every API request: counted, authenticated, rate limited, delayed and maybe failed, in that order.
/// 401s carry no rate-limit headers (there is no valid token to account them to); everything after does.
async fn gate(State(sb): State<Sandbox>, mut req: Request, next: Next) -> Response {
    let inner = &sb.inner;
    let path =
        req.extensions().get::<MatchedPath>().map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let style = path_style(req.uri().path());
    {
        let mut stats = lock(&inner.stats);
        stats.requests += 1;
        *stats.by_endpoint.entry(format!("{} {path}", req.method())).or_default() += 1;
        if let Ok((style, version)) = &style {
            *stats.by_path_style.entry((*style).to_string()).or_default() += 1;
            *stats.by_version.entry(version.clone()).or_default() += 1;
        }
    }
    let version = match style {
        Ok((_, version)) => version,
        Err(message) => return ApiError::not_found(message).into_response(),
    };
    let enforces_rules = SUPPORTED_VERSIONS.contains(&version.as_str()) && version.as_str() >= RULES_FROM;
    req.extensions_mut().insert(Dialect { enforces_rules });
    let Caller { key: token, scopes: granted } = match authenticate(&sb, req.headers()) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let (Some(granted), Some(scope)) = (granted, scopes::required(req.method(), req.uri().path())) {
        if !granted.iter().any(|g| g == scope) {
            return scopes::missing(scope).into_response();
        }
    }
    let faults = sb.faults();
    if path.ends_with("/contacts/search") {
        return search_gate(&sb, &token, &faults, req, next).await;
    }
    let max = faults.requests_per_10s.unwrap_or(inner.options.rate_limit_per_10s);
    let (quota, refused) =
        lock(&inner.limiter).check(&token, max, inner.options.daily_limit, Instant::now(), portal_day(&inner.options));
    let mut res = if let Some(policy) = refused {
        lock(&inner.stats).rate_limited += 1;
        ApiError::rate_limited(policy).into_response()
    } else {
        if faults.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
        }
        let writes = req.method() != axum::http::Method::GET && !path.ends_with("/batch/read");
        if roll(faults.failure_rate) {
            lock(&inner.stats).faults_injected += 1;
            fault_error(faults.effective_status()).into_response()
        } else if writes && faults.apply_then_fail_rate > 0.0 {
            let res = next.run(req).await;
            // Stored, then the answer is lost: what a gateway timeout after the write looks like to the caller.
            if res.status().is_success() && roll(faults.apply_then_fail_rate) {
                lock(&inner.stats).faults_injected += 1;
                fault_error(504).into_response()
            } else {
                res
            }
        } else {
            next.run(req).await
        }
    };
    set_quota_headers(&mut res, &quota);
    if !res.headers().contains_key(CORRELATION_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&correlation_id()) {
            res.headers_mut().insert(CORRELATION_HEADER, v);
        }
    }
    res
}

/// A search: its own limit (five a second per token, outside the 10-second budget), latency and failures, and
/// no rate-limit headers (HubSpot sends none on search answers).
async fn search_gate(sb: &Sandbox, token: &str, faults: &Faults, req: Request, next: Next) -> Response {
    if !lock(&sb.inner.search_limiter).allow(token, Instant::now()) {
        lock(&sb.inner.stats).rate_limited += 1;
        return super::search::secondly_limited().into_response();
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
    }
    if roll(faults.failure_rate) {
        lock(&sb.inner.stats).faults_injected += 1;
        return fault_error(faults.effective_status()).into_response();
    }
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&correlation_id()) {
        res.headers_mut().entry(CORRELATION_HEADER).or_insert(v);
    }
    res
}

/// `GET /crm/v3/properties/contacts`
async fn list_properties(State(sb): State<Sandbox>) -> Result<Json<Value>, ApiError> {
    let results = sb.with_store(|st| Ok(st.properties().map(to_json).collect::<Vec<_>>())).await?;
    Ok(Json(json!({ "results": results })))
}

/// `GET /crm/v3/properties/contacts/{name}`
async fn get_property(State(sb): State<Sandbox>, params: PathParams) -> Result<Json<Value>, ApiError> {
    let name = path_param(params, "name")?;
    let out =
        sb.with_store(move |st| st.property(&name).map(to_json).ok_or_else(|| properties::not_found(&name))).await?;
    Ok(Json(out))
}

/// `DELETE /crm/v3/properties/contacts/{name}` → 204: a custom property archived; 404 when there is none; 400 for
/// a HubSpot-defined one.
async fn archive_property(State(sb): State<Sandbox>, params: PathParams) -> Result<StatusCode, ApiError> {
    let name = path_param(params, "name")?;
    sb.with_store(move |st| st.archive_property(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /crm/v3/properties/contacts` → 201; 409 `OBJECT_ALREADY_EXISTS`; 400 on a bad definition.
async fn create_property(State(sb): State<Sandbox>, body: Bytes) -> Result<Response, ApiError> {
    let p = parse_create(&parse_object(&body)?, now_ms())?;
    let out = to_json(&p);
    sb.with_store(move |st| st.create_property(p)).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn get_faults(State(sb): State<Sandbox>) -> Json<Faults> {
    Json(sb.faults())
}

const FAULT_FIELDS: [&str; 6] =
    ["failure_rate", "failure_status", "requests_per_10s", "latency_ms", "apply_then_fail_rate", "search_lag_ms"];

/// `DELETE /__sandbox/faults`: no faults at all (and the search index's default lag).
async fn clear_faults(State(sb): State<Sandbox>) -> Json<Faults> {
    sb.set_faults(Faults::default());
    Json(Faults::default())
}

/// `POST /__sandbox/faults`: the fields given change, the others keep their values (so ending an outage is
/// `{"failure_rate":0}` and starting the next one `{"failure_rate":1}` keeps its status).
async fn set_faults(State(sb): State<Sandbox>, body: Bytes) -> Result<Json<Faults>, ApiError> {
    let v = parse_object(&body)?;
    let Some(given) = v.as_object() else {
        return Err(ApiError::validation("the body must be a JSON object of fault fields"));
    };
    if let Some(unknown) = given.keys().find(|k| !FAULT_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "unknown field '{unknown}'; expected one of [{}]",
            FAULT_FIELDS.join(", ")
        )));
    }
    let mut merged = serde_json::to_value(sb.faults()).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(current) = merged.as_object_mut() {
        current.extend(given.clone());
    }
    let faults: Faults = serde_json::from_value(merged).map_err(ApiError::invalid_json)?;
    if !(0.0..=1.0).contains(&faults.failure_rate) {
        return Err(ApiError::validation(format!(
            "failure_rate must be within 0.0..=1.0, got {}",
            faults.failure_rate
        )));
    }
    if !(0.0..=1.0).contains(&faults.apply_then_fail_rate) {
        return Err(ApiError::validation(format!(
            "apply_then_fail_rate must be within 0.0..=1.0, got {}",
            faults.apply_then_fail_rate
        )));
    }
    if faults.search_lag_ms > 60_000 {
        return Err(ApiError::validation(format!("search_lag_ms must be at most 60000, got {}", faults.search_lag_ms)));
    }
    if faults.failure_status != 0 && !(400..=599).contains(&faults.failure_status) {
        return Err(ApiError::validation(format!(
            "failure_status must be 0 (= 503) or an error status 400..=599, got {}",
            faults.failure_status
        )));
    }
    sb.set_faults(faults.clone());
    Ok(Json(faults))
}

/// `POST /__sandbox/merge` `{"primary","merged","new_id"?}` (see `merge.rs`).
async fn merge_contacts(State(sb): State<Sandbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_object(&body)?;
    let out = sb.with_store(move |st| st.write(|conn| super::merge::merge(conn, &v))).await?;
    Ok(Json(out))
}

async fn get_scopes(State(sb): State<Sandbox>) -> Json<Value> {
    Json(json!({ "scopes": sb.scopes(), "known": scopes::ALL }))
}

/// `POST /__sandbox/scopes` `{"scopes":[…]}` (or `null`: every scope).
async fn set_scopes(State(sb): State<Sandbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_object(&body)?;
    let granted = match v.get("scopes") {
        Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|s| s.as_str().map(String::from).ok_or_else(|| ApiError::validation("scopes must be strings")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => {
            return Err(ApiError::validation(
                "expected {\"scopes\": [\"crm.objects.contacts.read\", …]} or {\"scopes\": null}",
            ))
        }
    };
    sb.set_scopes(granted);
    Ok(Json(json!({ "scopes": sb.scopes() })))
}

async fn get_rules(State(sb): State<Sandbox>) -> Json<Value> {
    Json(json!({ "rules": sb.validation_rules() }))
}

/// `POST /__sandbox/validation-rules` `{"rules":[…]}`: the portal's rules from now on (see `rules.rs`).
async fn set_rules(State(sb): State<Sandbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let parsed = rules::parse(&parse_object(&body)?)?;
    sb.set_validation_rules(parsed);
    Ok(Json(json!({ "rules": sb.validation_rules() })))
}

async fn clear_rules(State(sb): State<Sandbox>) -> Json<Value> {
    sb.set_validation_rules(Vec::new());
    Json(json!({ "rules": [] }))
}

/// The API's counters, and the OAuth token endpoint's under `"oauth"`.
async fn stats(State(sb): State<Sandbox>) -> Result<Json<Value>, ApiError> {
    let mut out = serde_json::to_value(sb.stats()).map_err(|e| ApiError::internal(e.to_string()))?;
    let oauth = serde_json::to_value(sb.oauth_stats()).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(map) = out.as_object_mut() {
        map.insert("oauth".into(), oauth);
    }
    Ok(Json(out))
}

/// `GET /__sandbox/writes`: the write journal of batch upserts — how many writes, how many carried hubrelay's
/// write marker, and the markers written more than once (one write sent twice). Never a value or an email.
async fn writes(State(sb): State<Sandbox>) -> Result<Json<Value>, ApiError> {
    let journal = sb.with_store(|st| st.write_journal().map_err(|e| ApiError::internal(e.to_string()))).await?;
    let repeated: Vec<Value> = journal.repeated.iter().map(|(m, n)| json!({"marker": m, "writes": n})).collect();
    Ok(Json(json!({
        "writes": journal.writes,
        "marked": journal.marked,
        "repeated_markers": repeated.len(),
        "repeated": repeated,
    })))
}

/// `POST /__sandbox/oauth/revoke`: every refresh token stops working (the user uninstalled the app).
async fn revoke_oauth(State(sb): State<Sandbox>) -> Result<Json<Value>, ApiError> {
    if sb.inner.oauth.is_none() {
        return Err(ApiError::not_found("OAuth is not configured on this sandbox (SandboxOptions::oauth)"));
    }
    Ok(Json(json!({ "revoked": sb.revoke_all_refresh_tokens() })))
}

async fn reset(State(sb): State<Sandbox>) -> Result<Json<Value>, ApiError> {
    let inner = sb.clone();
    tokio::task::spawn_blocking(move || inner.reset())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"status": "reset"})))
}
