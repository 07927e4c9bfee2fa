//! The HubSpot HTTP client (reqwest, rustls): private-app bearer token, configurable base URL and path prefix,
//! and an optional client-side rate limiter ([`super::ratelimit`]) shared by every client of one token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ratelimit::{quota_from_headers, RateLimiter};
use hubrelay_core::domain::{ContactUpsert, UpsertedContact};
use hubrelay_core::hubspot::{CrmObject, Engagement, EngagementKind, HubSpot, HubSpotError, PropertyDefinition};

/// Default HubSpot API base URL.
pub use hubrelay_core::hubspot::DEFAULT_BASE_URL;

#[derive(Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: String,
    /// `/crm/v3` or a date-versioned prefix such as `/crm/2026-03`.
    crm_prefix: String,
    token: String,
    limiter: Option<Arc<RateLimiter>>,
    /// How long a call may wait for a rate-limit slot (`None`: as long as it takes).
    max_slot_wait: Option<Duration>,
}

impl std::fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never appears in debug output.
        f.debug_struct("HubSpotClient").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl HubSpotClient {
    /// `timeout` bounds a whole call: the inline attempt must leave the sender's own timeout room.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, HubSpotError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("hubrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport_error(&e))?;
        Ok(HubSpotClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            crm_prefix: "/crm/v3".into(),
            token: token.to_string(),
            limiter: None,
            max_slot_wait: None,
        })
    }

    /// Send no more calls than `limiter` allows (share one limiter between every client of a token).
    /// With `max_wait`, a call that gets no slot in time fails at once with the retryable code
    /// `client_rate_limited` instead of waiting (the inline path: the sender is waiting, the worker is not).
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>, max_wait: Option<Duration>) -> Self {
        self.limiter = Some(limiter);
        self.max_slot_wait = max_wait;
        self
    }

    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.limiter.as_ref()
    }

    pub fn with_crm_prefix(mut self, prefix: &str) -> Self {
        self.crm_prefix = format!("/{}", prefix.trim_matches('/'));
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), HubSpotError> {
        let url = format!("{}{}{}", self.base_url, self.crm_prefix, path);
        let mut permit = match &self.limiter {
            None => None,
            Some(limiter) => match self.max_slot_wait {
                None => Some(limiter.acquire().await),
                Some(wait) => Some(limiter.try_acquire_for(wait).await.ok_or_else(|| HubSpotError {
                    status: None,
                    code: "client_rate_limited".into(),
                    message: format!(
                        "not sent: hubrelay's own limit of {} calls per 10 s had no slot within {} ms",
                        limiter.limit(),
                        wait.as_millis()
                    ),
                    category: None,
                    correlation_id: None,
                    policy: None,
                    retry_after_secs: None,
                })?),
            },
        };
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status();
        if let Some(p) = permit.as_mut() {
            p.observe(quota_from_headers(resp.headers()));
        }
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok((status, value))
        } else {
            Err(error_from_response(status.as_u16(), &value, retry_after))
        }
    }
}

fn transport_error(e: &reqwest::Error) -> HubSpotError {
    let code = if e.is_timeout() { "hubspot_timeout" } else { "hubspot_unreachable" };
    HubSpotError {
        status: None,
        code: code.into(),
        message: e.to_string(),
        category: None,
        correlation_id: None,
        policy: None,
        retry_after_secs: None,
    }
}

/// HubSpot's error body; every field optional (reference: "Every field is optional when parsing").
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    message: Option<String>,
    correlation_id: Option<String>,
    category: Option<String>,
    policy_name: Option<String>,
    #[serde(default)]
    errors: Vec<InnerError>,
}

#[derive(Debug, Default, Deserialize)]
struct InnerError {
    code: Option<String>,
    message: Option<String>,
}

/// Classify a non-2xx answer into a stable code.
pub fn error_from_response(status: u16, body: &Value, retry_after_secs: Option<u64>) -> HubSpotError {
    let parsed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_default();
    let inner_code = parsed.errors.iter().find_map(|e| e.code.clone());
    let code = match status {
        429 => "rate_limited".to_string(),
        423 => "locked".into(),
        477 => "migration_in_progress".into(),
        s if s >= 500 => "hubspot_unavailable".into(),
        401 => "hubspot_unauthorized".into(),
        403 => "missing_scopes".into(),
        404 => "object_not_found".into(),
        409 => "conflict".into(),
        _ => inner_code
            .clone()
            .or_else(|| parsed.category.clone())
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_else(|| format!("hubspot_{status}")),
    };
    let mut message = parsed.message.unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(inner) = parsed.errors.iter().find_map(|e| e.message.clone()) {
        if !message.contains(&inner) {
            message = format!("{message} ({inner})");
        }
    }
    HubSpotError {
        status: Some(status),
        code,
        message,
        category: parsed.category,
        correlation_id: parsed.correlation_id,
        policy: parsed.policy_name,
        retry_after_secs,
    }
}

#[async_trait]
impl HubSpot for HubSpotClient {
    async fn upsert_contacts(&self, inputs: &[ContactUpsert]) -> Result<Vec<UpsertedContact>, HubSpotError> {
        let body = json!({
            "inputs": inputs.iter().map(|c| json!({
                "id": c.email,
                "idProperty": "email",
                "properties": c.properties,
            })).collect::<Vec<_>>()
        });
        let (status, value) = self.call(Method::POST, "/objects/contacts/batch/upsert", Some(&body)).await?;
        if status == StatusCode::MULTI_STATUS {
            // Partial result: with email as idProperty HubSpot fails such batches whole, but be safe.
            let first = value.get("errors").and_then(|e| e.get(0)).cloned().unwrap_or(Value::Null);
            return Err(error_from_response(400, &first, None));
        }
        match_results(inputs, &value)
    }

    async fn list_properties(&self) -> Result<Vec<PropertyDefinition>, HubSpotError> {
        let (_, value) = self.call(Method::GET, "/properties/contacts", None).await?;
        let results = value.get("results").cloned().unwrap_or(Value::Array(vec![]));
        serde_json::from_value(results).map_err(|e| HubSpotError {
            status: Some(200),
            code: "unexpected_response".into(),
            message: format!("cannot read property list: {e}"),
            category: None,
            correlation_id: None,
            policy: None,
            retry_after_secs: None,
        })
    }

    async fn create_property(&self, property: &PropertyDefinition) -> Result<(), HubSpotError> {
        let body = serde_json::to_value(property).unwrap_or(Value::Null);
        self.call(Method::POST, "/properties/contacts", Some(&body)).await.map(|_| ())
    }

    async fn update_contact(&self, id: &str, properties: &BTreeMap<String, String>) -> Result<(), HubSpotError> {
        let body = json!({ "properties": properties });
        let path = format!("/objects/contacts/{}", encode_segment(id));
        self.call(Method::PATCH, &path, Some(&body)).await.map(|_| ())
    }

    async fn create_engagement(&self, engagement: &Engagement) -> Result<String, HubSpotError> {
        let path = format!("/objects/{}", engagement.kind.object_path());
        let (_, value) = self.call(Method::POST, &path, Some(&engagement.create_body())).await?;
        value_id(&value).ok_or_else(|| {
            let message = format!("{} create answered without an id", engagement.kind.object_path());
            HubSpotError::new(Some(201), "unexpected_response", message)
        })
    }

    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, HubSpotError> {
        self.lookup_contact(email).await
    }

    async fn contact_engagements(&self, contact_id: &str, kind: EngagementKind) -> Result<Vec<String>, HubSpotError> {
        let path = format!("/objects/contacts/{}/associations/{}", encode_segment(contact_id), kind.object_path());
        let (_, value) = self.call(Method::GET, &path, None).await?;
        let results = value.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        // v4 shape `toObjectId` (number), v3 shape `id` (string).
        Ok(results
            .iter()
            .filter_map(|r| match (r.get("toObjectId"), r.get("id")) {
                (Some(Value::Number(n)), _) => Some(n.to_string()),
                (_, Some(Value::String(s))) => Some(s.clone()),
                (Some(Value::String(s)), _) => Some(s.clone()),
                _ => None,
            })
            .collect())
    }

    async fn engagement_properties(
        &self,
        kind: EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, String>, HubSpotError> {
        let path =
            format!("/objects/{}/{}?properties={}", kind.object_path(), encode_segment(id), properties.join(","));
        let (_, value) = self.call(Method::GET, &path, None).await?;
        let props = value.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        Ok(props.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect())
    }

    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError> {
        let mut path =
            format!("/objects/{}/{}?properties={}", encode_segment(object), encode_segment(id), properties.join(","));
        if !associations.is_empty() {
            path.push_str(&format!("&associations={}", associations.join(",")));
        }
        let value = match self.call(Method::GET, &path, None).await {
            Ok((_, value)) => value,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(crm_object(&value)))
    }
}

/// A v3 object answer: `properties` (strings only; `null` is unset) and `associations.{type}.results[].id`.
fn crm_object(value: &Value) -> CrmObject {
    let props = value.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let properties = props.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect();
    let mut associations = BTreeMap::new();
    for (kind, list) in value.get("associations").and_then(Value::as_object).into_iter().flatten() {
        let results = list.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        let ids: Vec<String> = results.iter().filter_map(value_id).collect();
        associations.insert(kind.clone(), ids);
    }
    CrmObject { id: value_id(value).unwrap_or_default(), properties, associations }
}

impl HubSpotClient {
    async fn lookup_contact(&self, email: &str) -> Result<Option<String>, HubSpotError> {
        let path = format!("/objects/contacts/{}?idProperty=email&properties=email", encode_segment(email));
        match self.call(Method::GET, &path, None).await {
            Ok((_, value)) => Ok(value_id(&value)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `"id"` as HubSpot sends it (a string; a number in some older answers).
fn value_id(value: &Value) -> Option<String> {
    match value.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    }
}

/// Percent-encodes one path segment (ids are numeric, but never let one change the path).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// HubSpot does not promise result order: match each input to its result by email.
fn match_results(inputs: &[ContactUpsert], value: &Value) -> Result<Vec<UpsertedContact>, HubSpotError> {
    let results = value.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
    inputs
        .iter()
        .map(|input| {
            let found = results.iter().find(|r| {
                r.pointer("/properties/email")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.eq_ignore_ascii_case(&input.email))
            });
            let found = found.or(if inputs.len() == 1 && results.len() == 1 { results.first() } else { None });
            let r = found.ok_or_else(|| HubSpotError {
                status: Some(200),
                code: "unexpected_response".into(),
                message: "batch upsert answered without a result for an input".into(),
                category: None,
                correlation_id: None,
                policy: None,
                retry_after_secs: None,
            })?;
            Ok(UpsertedContact {
                id: r.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                created: r.get("new").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_core::domain::AttemptOutcome;

    #[test]
    fn classifies_validation_errors_by_inner_code() {
        let body = json!({"status":"error","message":"Property values were not valid","correlationId":"c-1",
            "category":"VALIDATION_ERROR","errors":[{"message":"Property \"x\" does not exist","code":"PROPERTY_DOESNT_EXIST"}]});
        let e = error_from_response(400, &body, None);
        assert_eq!(e.code, "property_doesnt_exist");
        assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(e.outcome(), AttemptOutcome::Rejected);
        assert!(e.message.contains("does not exist"));
    }

    #[test]
    fn rate_limits_and_outages_are_retryable() {
        let body = json!({"status":"error","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"});
        let e = error_from_response(429, &body, None);
        assert_eq!((e.code.as_str(), e.policy.as_deref()), ("rate_limited", Some("TEN_SECONDLY_ROLLING")));
        assert_eq!(e.outcome(), AttemptOutcome::Retryable);
        for s in [423, 477, 500, 502, 503, 504, 521] {
            assert_eq!(error_from_response(s, &Value::Null, None).outcome(), AttemptOutcome::Retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 409] {
            assert_eq!(error_from_response(s, &Value::Null, None).outcome(), AttemptOutcome::Rejected, "{s}");
        }
    }

    #[test]
    fn results_match_inputs_by_email_in_any_order() {
        let inputs = vec![
            ContactUpsert { email: "a@x.com".into(), properties: Default::default() },
            ContactUpsert { email: "b@x.com".into(), properties: Default::default() },
        ];
        let value = json!({"results":[
            {"id":"2","new":true,"properties":{"email":"b@x.com"}},
            {"id":"1","new":false,"properties":{"email":"A@x.com"}}]});
        let got = match_results(&inputs, &value).unwrap();
        assert_eq!(got[0], UpsertedContact { id: "1".into(), created: false });
        assert_eq!(got[1], UpsertedContact { id: "2".into(), created: true });
    }
}
