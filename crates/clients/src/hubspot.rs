//! The HubSpot HTTP client (reqwest, rustls): a bearer token (Service Key, project-app token or legacy
//! private-app token), a configurable base URL and API version ([`ApiVersion`]: dated paths by default), and
//! an optional client-side rate limiter ([`super::ratelimit`]) shared by every client of one token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::oauth::OAuthTokens;
use crate::ratelimit::{quota_from_headers, RateLimiter};
use hubrelay_core::budget::{CallBudget, DailyCalls, Lane, WINDOW};
use hubrelay_core::domain::{ContactUpsert, UpsertedContact};
use hubrelay_core::hubspot::{
    ApiVersion, AssociationRead, CrmObject, Engagement, EngagementKind, HubSpot, HubSpotError, PropertyDefinition,
    UpsertResults,
};
use hubrelay_core::metrics::Metrics;

/// Default HubSpot API base URL.
pub use hubrelay_core::hubspot::DEFAULT_BASE_URL;

#[derive(Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: String,
    version: ApiVersion,
    auth: Bearer,
    limiter: Option<Arc<RateLimiter>>,
    /// How long a call may wait for a rate-limit slot (`None`: as long as it takes).
    max_slot_wait: Option<Duration>,
    /// A budget shared with other processes (the stack's other Lambdas), taken before every call.
    shared: Option<SharedBudget>,
    /// The portal's own cap on calls per day (a tenant's daily budget), taken before every call.
    daily: Option<Arc<dyn DailyCalls>>,
    /// With OAuth: the longest one request may take, its token (a wait for another process's refresh, or a
    /// refresh) and a resend after a 401 included — a request function must keep time to queue the event.
    oauth_deadline: Option<Duration>,
    /// The portal's UTC offset (ms) from `account-info` and when it was read (its daily budget resets at its
    /// midnight); read again after [`OFFSET_FRESH`], so a daylight-saving change is followed.
    portal_offset: Arc<std::sync::Mutex<Option<(i64, std::time::Instant)>>>,
    /// Counts every call sent, by answer, with its latency.
    metrics: Metrics,
    /// Searches have their own limit (five a second per token): shared by the clones of this client.
    search_pace: Arc<SearchPace>,
}

/// Searches sent under HubSpot's five-a-second search limit, with room for clock edges: four a second.
#[derive(Debug, Default)]
struct SearchPace(tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>);

const SEARCHES_PER_SECOND: usize = 4;

impl SearchPace {
    /// Waits for a slot (holding the lock while waiting keeps searches in order).
    async fn take(&self) {
        let mut sent = self.0.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            while sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
                sent.pop_front();
            }
            match sent.front() {
                Some(oldest) if sent.len() >= SEARCHES_PER_SECOND => {
                    tokio::time::sleep_until(*oldest + Duration::from_secs(1)).await;
                }
                _ => {
                    sent.push_back(now);
                    return;
                }
            }
        }
    }
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
            version: ApiVersion::default(),
            auth: Bearer::Static(token.to_string()),
            limiter: None,
            max_slot_wait: None,
            shared: None,
            daily: None,
            oauth_deadline: None,
            portal_offset: Arc::new(std::sync::Mutex::new(None)),
            metrics: Metrics::default(),
            search_pace: Arc::default(),
        })
    }

    /// Count every call sent (by answer, with its latency) in `metrics`, scoped to the portal's tenant.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// At most `calls.limit()` calls per day of the portal (its midnight, as HubSpot's daily limit): past it a
    /// call is not sent and fails as `daily_budget_spent` (policy `DAILY`, retryable after the reset).
    pub fn with_daily_budget(mut self, calls: Arc<dyn DailyCalls>) -> Self {
        self.daily = Some(calls);
        self
    }

    /// With OAuth, bound each request, token included, by `deadline` (past it: `hubspot_timeout`, retryable).
    pub fn with_oauth_deadline(mut self, deadline: Duration) -> Self {
        self.oauth_deadline = Some(deadline);
        self
    }

    /// A portal installed with OAuth: every call carries `tokens`' current access token; a 401 drops it and the
    /// call is sent once more with a fresh one.
    pub fn with_oauth(mut self, tokens: Arc<OAuthTokens>) -> Self {
        self.auth = Bearer::OAuth(tokens);
        self
    }

    /// Send no more calls than `limiter` allows (share one limiter between every client of a token).
    /// With `max_wait`, a call that gets no slot in time fails at once with the retryable code
    /// `client_rate_limited` instead of waiting (the inline path: the sender is waiting, the worker is not).
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>, max_wait: Option<Duration>) -> Self {
        self.limiter = Some(limiter);
        self.max_slot_wait = max_wait;
        self
    }

    /// Take every call from `budget`, shared with other processes, as `lane`; wait at most `max_wait` for it
    /// (the inline path: none, the event is queued instead), else fail with `client_rate_limited` (not sent, so
    /// retried without counting an attempt). A rolling-window 429, or an answer saying no calls remain, tells the
    /// budget the window is spent.
    pub fn with_shared_budget(mut self, budget: Arc<dyn CallBudget>, lane: Lane, max_wait: Duration) -> Self {
        self.shared = Some(SharedBudget { budget, lane, max_wait });
        self
    }

    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.limiter.as_ref()
    }

    /// Speak `version` (default: [`hubrelay_core::hubspot::DEFAULT_API_VERSION`]).
    pub fn with_api_version(mut self, version: ApiVersion) -> Self {
        self.version = version;
        self
    }

    pub fn api_version(&self) -> &ApiVersion {
        &self.version
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
        self.call_traced(method, path, body).await.map(|(status, value, _)| (status, value))
    }

    /// [`Self::call`], also returning the answer's `X-HubSpot-Correlation-Id` (a 207's per-input errors carry none
    /// of their own). A `DAILY` 429 learns when the portal's budget resets.
    async fn call_traced(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, Option<String>), HubSpotError> {
        match self.send(method, path, body).await {
            // HubSpot's own (a 429); the portal's own budget (not sent) knows its reset already.
            Err(mut e) if e.status == Some(429) && e.policy.as_deref() == Some("DAILY") => {
                e.resets_in_secs = self.daily_reset_in().await;
                Err(e)
            }
            other => other,
        }
    }

    /// One request, and with OAuth a second one when HubSpot answered 401 to the first token (it expired early
    /// or was revoked): the token is dropped and refreshed once.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, Option<String>), HubSpotError> {
        let tokens = match &self.auth {
            Bearer::Static(token) => return self.send_with(method, path, body, token).await,
            Bearer::OAuth(tokens) => tokens,
        };
        let Some(deadline) = self.oauth_deadline else {
            return self.send_oauth(tokens, method, path, body).await;
        };
        match tokio::time::timeout(deadline, self.send_oauth(tokens, method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(HubSpotError::new(
                None,
                "hubspot_timeout",
                format!("no answer within {} s (the access token included)", deadline.as_secs_f64()),
            )),
        }
    }

    async fn send_oauth(
        &self,
        tokens: &OAuthTokens,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, Option<String>), HubSpotError> {
        let token = tokens.access_token().await?;
        match self.send_with(method.clone(), path, body, &token).await {
            Err(e) if e.status == Some(401) => {
                tokens.rejected(&token).await;
                let fresh = tokens.access_token().await?;
                self.send_with(method, path, body, &fresh).await
            }
            other => other,
        }
    }

    /// One request: the rate limiter's slot, the call, the answer read and classified.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
    ) -> Result<(StatusCode, Value, Option<String>), HubSpotError> {
        self.take_daily().await?;
        let url = format!("{}{path}", self.base_url);
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
                    resets_in_secs: None,
                })?),
            },
        };
        if let Some(shared) = &self.shared {
            shared.take().await?;
        }
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        // Counted however the call ends: answered, failed, or dropped by a caller's deadline (OAuth's).
        let mut timer = CallTimer { metrics: &self.metrics, started: std::time::Instant::now(), status: None };
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let quota = quota_from_headers(resp.headers());
        if let Some(p) = permit.as_mut() {
            p.observe(quota);
        }
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());

        let correlation =
            resp.headers().get("x-hubspot-correlation-id").and_then(|v| v.to_str().ok()).map(String::from);
        // An answer cut off mid-body is no answer.
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        timer.status = Some(status.as_u16());
        drop(timer);
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let result = if status.is_success() {
            Ok((status, value, correlation))
        } else {
            Err(error_from_response(status.as_u16(), &value, retry_after))
        };
        if let Some(shared) = &self.shared {
            let policy = result.as_ref().err().and_then(|e| e.policy.as_deref());
            shared.observe(status, quota, policy).await;
        }
        result
    }
}

/// Counts one call sent when dropped: with its status once the whole answer is read, else as no answer.
struct CallTimer<'a> {
    metrics: &'a Metrics,
    started: std::time::Instant,
    status: Option<u16>,
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        self.metrics.hubspot_call(self.status, self.started.elapsed());
    }
}

/// What a call carries as its bearer token.
#[derive(Clone)]
enum Bearer {
    /// A Service Key, a project app's static token or a legacy private-app token.
    Static(String),
    OAuth(Arc<OAuthTokens>),
}

/// [`HubSpotClient::with_shared_budget`]'s settings.
#[derive(Clone)]
struct SharedBudget {
    budget: Arc<dyn CallBudget>,
    lane: Lane,
    max_wait: Duration,
}

impl SharedBudget {
    async fn take(&self) -> Result<(), HubSpotError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.budget.take(self.lane).await {
                Ok(()) => return Ok(()),
                Err(refused) if started.elapsed() + refused.retry_in <= self.max_wait => {
                    tokio::time::sleep(refused.retry_in).await;
                }
                Err(refused) => {
                    return Err(HubSpotError {
                        status: None,
                        code: "client_rate_limited".into(),
                        message: format!("not sent: {refused}"),
                        category: None,
                        correlation_id: None,
                        policy: None,
                        retry_after_secs: None,
                        resets_in_secs: None,
                    })
                }
            }
        }
    }

    /// A 429 for the rolling window (not the daily budget, which the worker times from the portal's midnight), or
    /// an answer with no calls remaining: nobody sharing the budget calls until the window has passed.
    async fn observe(&self, status: StatusCode, quota: crate::ratelimit::Quota, policy: Option<&str>) {
        let window = quota.interval.filter(|d| !d.is_zero()).unwrap_or(WINDOW).min(WINDOW);
        let rolling_429 = status == StatusCode::TOO_MANY_REQUESTS && policy != Some("DAILY");
        if rolling_429 || quota.remaining == Some(0) {
            self.budget.spent(window).await;
        }
    }
}

/// The portal as `account-info` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetails {
    pub portal_id: u64,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub utc_offset_milliseconds: i64,
}

/// A side-effect-free call that shows whether the token holds one scope: it addresses a record that cannot
/// exist (id 0) or sends an empty definition, so a permitted call answers 404 or 400 and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    ContactsRead,
    ContactsWrite,
    EngagementsWrite,
    PropertiesRead,
    PropertiesWrite,
    DealsRead,
}

impl Probe {
    pub const ALL: [Probe; 6] = [
        Probe::ContactsRead,
        Probe::ContactsWrite,
        Probe::EngagementsWrite,
        Probe::PropertiesRead,
        Probe::PropertiesWrite,
        Probe::DealsRead,
    ];

    /// The scope the probe checks, and what hubrelay needs it for.
    pub fn scope(self) -> (&'static str, &'static str) {
        match self {
            Probe::ContactsRead => ("crm.objects.contacts.read", "find contacts for status updates and activities"),
            Probe::ContactsWrite => ("crm.objects.contacts.write", "create and update contacts from leads"),
            Probe::EngagementsWrite => ("crm.objects.contacts.write", "log activities (notes, calls, ...) on contacts"),
            Probe::PropertiesRead => ("crm.schemas.contacts.read", "check the custom properties exist"),
            Probe::PropertiesWrite => {
                ("crm.schemas.contacts.write", "create missing custom properties (properties sync)")
            }
            Probe::DealsRead => ("crm.objects.deals.read", "read deals for referral conversions"),
        }
    }
}

/// Seconds from `now_ms` (Unix ms) to the next midnight at UTC offset `offset_ms`.
fn secs_to_local_midnight(now_ms: i64, offset_ms: i64) -> u64 {
    const DAY_MS: i64 = 86_400_000;
    let local = now_ms + offset_ms;
    let next = (local.div_euclid(DAY_MS) + 1) * DAY_MS;
    ((next - local) as u64).div_ceil(1000)
}

impl HubSpotClient {
    /// The portal's day now and the time (Unix ms), at the offset last read (UTC until the portal was asked:
    /// asking now would be a call of its own).
    fn portal_day(&self) -> (i64, i64, i64) {
        let offset = self.portal_offset.lock().unwrap_or_else(|e| e.into_inner()).map_or(0, |(o, _)| o);
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        ((now_ms + offset).div_euclid(86_400_000), now_ms, offset)
    }

    /// The calls of the portal's day so far and its daily budget, `(used, limit)`; `None` without a budget.
    pub async fn daily_use(&self) -> Option<Result<(u32, u32), String>> {
        let daily = self.daily.as_ref()?;
        let (day, _, _) = self.portal_day();
        Some(daily.taken(day).await.map(|used| (used, daily.limit())))
    }

    /// One call of the portal's day from its daily budget, if it has one.
    async fn take_daily(&self) -> Result<(), HubSpotError> {
        let Some(daily) = &self.daily else { return Ok(()) };
        let (day, now_ms, offset) = self.portal_day();
        match daily.take(day).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let mut e = HubSpotError::new(
                    None,
                    "daily_budget_spent",
                    format!(
                        "not sent: the portal's daily budget of {} calls is spent until its midnight",
                        daily.limit()
                    ),
                );
                e.policy = Some("DAILY".into());
                e.resets_in_secs = Some(secs_to_local_midnight(now_ms, offset));
                Err(e)
            }
            Err(message) => Err(HubSpotError::new(
                None,
                "daily_budget_unavailable",
                format!("not sent: the daily budget could not be read: {message}"),
            )),
        }
    }

    /// Seconds until the portal's daily budget resets (its midnight), from the offset kept (read again when
    /// stale). `None` when the portal could not be asked (the worker then assumes UTC midnight).
    async fn daily_reset_in(&self) -> Option<u64> {
        let kept = *self.portal_offset.lock().unwrap_or_else(|e| e.into_inner());
        let offset = match kept {
            Some((offset, at)) if at.elapsed() < OFFSET_FRESH => offset,
            _ => self.portal().await.ok()?.utc_offset_milliseconds,
        };
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        Some(secs_to_local_midnight(now_ms, offset))
    }

    /// The portal's details, kept for the daily-limit timing (`serve` reads them at start for its banner).
    pub async fn portal(&self) -> Result<AccountDetails, HubSpotError> {
        let details = self.account_details().await?;
        *self.portal_offset.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((details.utc_offset_milliseconds, std::time::Instant::now()));
        Ok(details)
    }

    /// `GET /account-info/{version}/details`.
    pub async fn account_details(&self) -> Result<AccountDetails, HubSpotError> {
        let (_, value, _) = self.send(Method::GET, &self.version.account_info("details"), None).await?;
        serde_json::from_value(value).map_err(|e| {
            HubSpotError::new(Some(200), "unexpected_response", format!("cannot read the account details: {e}"))
        })
    }

    /// Runs one probe: `Ok` when HubSpot let the call through (whatever it then said about id 0 or the empty
    /// body), `Err` with HubSpot's refusal otherwise (403 `missing_scopes`, 401, an outage).
    pub async fn probe(&self, probe: Probe) -> Result<(), HubSpotError> {
        let v = &self.version;
        let empty = json!({ "properties": {} });
        let (method, path, body) = match probe {
            Probe::ContactsRead => (Method::GET, v.objects("contacts?limit=1"), None),
            Probe::ContactsWrite => (Method::PATCH, v.objects("contacts/0"), Some(empty)),
            Probe::EngagementsWrite => (Method::POST, v.objects("notes"), Some(empty)),
            Probe::PropertiesRead => (Method::GET, v.properties("contacts"), None),
            Probe::PropertiesWrite => (Method::POST, v.properties("contacts"), Some(json!({}))),
            Probe::DealsRead => (Method::GET, v.objects("deals/0"), None),
        };
        match self.call(method, &path, body.as_ref()).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status, Some(400 | 404)) => Ok(()),
            Err(e) => Err(e),
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
        resets_in_secs: None,
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

/// Inner codes of a rule a portal admin configured: property validations (letters only, numeric, length,
/// pattern, allowed domains, ...) and, from 2026-09, conditionally required properties and required
/// create-form fields. They are parked as `portal_validation_rule` with HubSpot's message (the admin's text),
/// to be fixed in the portal or the mapping; every other inner code keeps its own (lower-cased) code.
fn is_portal_rule(code: &str) -> bool {
    const RULE_CODES: [&str; 12] = [
        "INVALID_ALPHA",
        "INVALID_ALPHANUMERIC",
        "INVALID_NUMERIC",
        "INVALID_MIN_LENGTH",
        "INVALID_MAX_LENGTH",
        "INVALID_LENGTH",
        "INVALID_REGEX",
        "INVALID_PATTERN",
        "INVALID_DOMAIN",
        "INVALID_EMAIL_DOMAIN",
        "REQUIRED_BY_RULE",
        "CONDITIONALLY_REQUIRED",
    ];
    code.starts_with("VALIDATION_RULE") || code.contains("CONDITIONAL") || RULE_CODES.contains(&code)
}

/// The inner code of a validation answer: `errors[].code`, or (as many real answers carry it) the
/// `"error":"CODE"` inside the message's embedded list (`Property values were not valid: [{…,"error":"INVALID_ALPHA",…}]`).
fn inner_code(parsed: &ErrorBody) -> Option<String> {
    if let Some(code) = parsed.errors.iter().find_map(|e| e.code.clone()) {
        return Some(code);
    }
    let texts = parsed.message.iter().chain(parsed.errors.iter().filter_map(|e| e.message.as_ref()));
    for text in texts {
        let text = text.replace("\\\"", "\"");
        if let Some(at) = text.find("\"error\":\"") {
            let rest = &text[at + 9..];
            let code: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            if !code.is_empty() {
                return Some(code);
            }
        }
    }
    None
}

/// Classify a non-2xx answer into a stable code.
pub fn error_from_response(status: u16, body: &Value, retry_after_secs: Option<u64>) -> HubSpotError {
    let parsed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_default();
    let inner = inner_code(&parsed);
    let validation = parsed.category.as_deref() == Some("VALIDATION_ERROR");
    let code = match status {
        429 => "rate_limited".to_string(),
        423 => "locked".into(),
        477 => "migration_in_progress".into(),
        s if s >= 500 => "hubspot_unavailable".into(),
        401 => "hubspot_unauthorized".into(),
        403 => "missing_scopes".into(),
        404 => "object_not_found".into(),
        409 => "conflict".into(),
        _ => match inner {
            Some(c) if validation && is_portal_rule(&c) => "portal_validation_rule".into(),
            Some(c) => c.to_ascii_lowercase(),
            None => {
                parsed.category.clone().map(|c| c.to_ascii_lowercase()).unwrap_or_else(|| format!("hubspot_{status}"))
            }
        },
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
        resets_in_secs: None,
    }
}

/// How long a portal's UTC offset is trusted before it is read again (daylight saving moves it twice a year).
const OFFSET_FRESH: Duration = Duration::from_secs(12 * 3600);

/// The most association ids one page may carry (HubSpot's v4 maximum).
const ASSOCIATION_PAGE: usize = 500;

#[async_trait]
impl HubSpot for HubSpotClient {
    async fn upsert_contacts(&self, inputs: &[ContactUpsert]) -> Result<UpsertResults, HubSpotError> {
        // A trace id per input: HubSpot then answers 207 naming the inputs that failed and stores the rest.
        let body = json!({
            "inputs": inputs.iter().enumerate().map(|(i, c)| json!({
                "id": c.email,
                "idProperty": "email",
                "objectWriteTraceId": i.to_string(),
                "properties": c.properties,
            })).collect::<Vec<_>>()
        });
        let path = self.version.objects("contacts/batch/upsert");
        let (_, value, correlation) = self.call_traced(Method::POST, &path, Some(&body)).await?;
        let mut results = match_results(inputs.len(), &value);
        for e in results.iter_mut().filter_map(|r| r.as_mut().err()) {
            if e.correlation_id.is_none() {
                e.correlation_id = correlation.clone();
            }
        }
        Ok(results)
    }

    async fn list_properties(&self) -> Result<Vec<PropertyDefinition>, HubSpotError> {
        let (_, value) = self.call(Method::GET, &self.version.properties("contacts"), None).await?;
        let results = value.get("results").cloned().unwrap_or(Value::Array(vec![]));
        serde_json::from_value(results)
            .map_err(|e| HubSpotError::new(Some(200), "unexpected_response", format!("cannot read property list: {e}")))
    }

    async fn create_property(&self, property: &PropertyDefinition) -> Result<(), HubSpotError> {
        let body = serde_json::to_value(property).unwrap_or(Value::Null);
        self.call(Method::POST, &self.version.properties("contacts"), Some(&body)).await.map(|_| ())
    }

    async fn update_contact(&self, id: &str, properties: &BTreeMap<String, String>) -> Result<(), HubSpotError> {
        let body = json!({ "properties": properties });
        let path = self.version.objects(&format!("contacts/{}", encode_segment(id)));
        self.call(Method::PATCH, &path, Some(&body)).await.map(|_| ())
    }

    async fn create_engagement(&self, engagement: &Engagement) -> Result<String, HubSpotError> {
        let path = self.version.objects(engagement.kind.object_path());
        let (_, value) = self.call(Method::POST, &path, Some(&engagement.create_body())).await?;
        value_id(&value).ok_or_else(|| {
            let message = format!("{} create answered without an id", engagement.kind.object_path());
            HubSpotError::new(Some(201), "unexpected_response", message)
        })
    }

    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, HubSpotError> {
        let path =
            self.version.objects(&format!("contacts/{}?idProperty=email&properties=email", encode_segment(email)));
        match self.call(Method::GET, &path, None).await {
            Ok((_, value)) => Ok(value_id(&value)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_contacts_by_email(
        &self,
        emails: &[String],
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted = vec!["email"];
        wanted.extend(properties.iter().filter(|p| **p != "email"));
        let body = json!({
            "idProperty": "email",
            "properties": wanted,
            "inputs": emails.iter().map(|e| json!({ "id": e })).collect::<Vec<_>>(),
        });
        // 207 names the emails without a contact: they are simply not in the results.
        let (_, value) = self.call(Method::POST, &self.version.objects("contacts/batch/read"), Some(&body)).await?;
        let results = value.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(results.iter().map(crm_object).collect())
    }

    async fn search_contacts(
        &self,
        property: &str,
        value: &str,
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        let body = json!({
            "filterGroups": [{"filters": [{"propertyName": property, "operator": "EQ", "value": value}]}],
            "properties": properties,
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": 100,
        });
        self.search_pace.take().await;
        let (_, value) = self.call(Method::POST, &self.version.objects("contacts/search"), Some(&body)).await?;
        let results = value.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(results.iter().map(crm_object).collect())
    }

    async fn create_deal(
        &self,
        properties: &BTreeMap<String, String>,
        contact_id: &str,
    ) -> Result<String, HubSpotError> {
        let body = json!({
            "properties": properties,
            "associations": [{
                "to": {"id": contact_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
            }],
        });
        let (_, value) = self.call(Method::POST, &self.version.objects("deals"), Some(&body)).await?;
        value_id(&value)
            .ok_or_else(|| HubSpotError::new(Some(201), "unexpected_response", "deal create answered without an id"))
    }

    async fn gdpr_delete_contact(&self, id: &str, by_email: bool) -> Result<bool, HubSpotError> {
        let mut body = json!({ "objectId": id });
        if by_email {
            body["idProperty"] = json!("email");
        }
        match self.call(Method::POST, &self.version.objects("contacts/gdpr-delete"), Some(&body)).await {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn associated_ids(&self, from: &str, id: &str, to: &str) -> Result<Vec<String>, HubSpotError> {
        let (from, to) = (encode_segment(from), encode_segment(to));
        let read = self.version.association_read(&from, &encode_segment(id), &to);
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        // Follow `paging.next.after` until it is absent (a bound keeps a looping cursor from spinning forever).
        for _ in 0..10_000 {
            let page = match &read {
                AssociationRead::Batch { path } => {
                    let mut input = json!({ "id": id });
                    if let Some(a) = &after {
                        input["after"] = json!(a);
                    }
                    let (_, value) = self.call(Method::POST, path, Some(&json!({ "inputs": [input] }))).await?;
                    // A record with no associations answers 207 with a "no associations found" error, not a result.
                    value.pointer("/results/0").cloned().unwrap_or(Value::Null)
                }
                AssociationRead::Get { path } => {
                    let mut url = format!("{path}?limit={ASSOCIATION_PAGE}");
                    if let Some(a) = &after {
                        url.push_str(&format!("&after={}", encode_segment(a)));
                    }
                    match self.call(Method::GET, &url, None).await {
                        Ok((_, value)) => json!({ "to": value.get("results"), "paging": value.get("paging") }),
                        Err(e) if e.status == Some(404) && ids.is_empty() => return Ok(ids),
                        Err(e) => return Err(e),
                    }
                }
            };
            for r in page.get("to").and_then(Value::as_array).into_iter().flatten() {
                match r.get("toObjectId") {
                    Some(Value::Number(n)) => ids.push(n.to_string()),
                    Some(Value::String(s)) => ids.push(s.clone()),
                    _ => {}
                }
            }
            match page.pointer("/paging/next/after").and_then(Value::as_str) {
                Some(next) if Some(next) != after.as_deref() => after = Some(next.to_string()),
                _ => return Ok(ids),
            }
        }
        Err(HubSpotError::new(Some(200), "unexpected_response", "association paging did not end"))
    }

    async fn engagement_properties(
        &self,
        kind: EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, String>, HubSpotError> {
        let rest = format!("{}/{}?properties={}", kind.object_path(), encode_segment(id), properties.join(","));
        let (_, value) = self.call(Method::GET, &self.version.objects(&rest), None).await?;
        let props = value.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        Ok(props.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect())
    }

    async fn read_archived_contact(&self, id: &str, properties: &[&str]) -> Result<Option<CrmObject>, HubSpotError> {
        let rest = format!("contacts/{}?archived=true&properties={}", encode_segment(id), properties.join(","));
        match self.call(Method::GET, &self.version.objects(&rest), None).await {
            Ok((_, value)) => Ok(Some(crm_object(&value))),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError> {
        let rest = format!("{}/{}?properties={}", encode_segment(object), encode_segment(id), properties.join(","));
        let value = match self.call(Method::GET, &self.version.objects(&rest), None).await {
            Ok((_, value)) => value,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut found = crm_object(&value);
        // Inline `associations=` lists only a first page: read each type on the association API, every page.
        let id = if found.id.is_empty() { id.to_string() } else { found.id.clone() };
        for to in associations {
            let ids = self.associated_ids(object, &id, to).await?;
            found.associations.insert((*to).to_string(), ids);
        }
        Ok(Some(found))
    }
}

/// An object answer: `properties` (strings only; `null` is unset).
fn crm_object(value: &Value) -> CrmObject {
    let props = value.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let properties = props.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect();
    CrmObject { id: value_id(value).unwrap_or_default(), properties, associations: BTreeMap::new() }
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

/// The HTTP status one input's error stands for: its `status` when numeric (HubSpot usually sends `"error"`),
/// else its `category`, so a per-input rate limit, lock or outage is retried rather than parked.
fn input_status(error: &Value) -> u16 {
    if let Some(n) = error.get("status").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
        return n;
    }
    match error.get("category").and_then(Value::as_str).unwrap_or_default() {
        "RATE_LIMITS" | "RATE_LIMIT" => 429,
        "LOCKED" => 423,
        "CONFLICT" => 409,
        "OBJECT_NOT_FOUND" => 404,
        "MISSING_SCOPES" => 403,
        "INTERNAL_ERROR" | "SERVICE_UNAVAILABLE" | "TIMEOUT" => 503,
        _ => 400,
    }
}

/// The trace ids an error names: `context.objectWriteTraceId` (HubSpot's multi-status answers).
fn error_trace_ids(error: &Value) -> Vec<usize> {
    let ids = error.pointer("/context/objectWriteTraceId").and_then(Value::as_array).cloned().unwrap_or_default();
    ids.iter().filter_map(|v| v.as_str()?.parse().ok()).collect()
}

/// One result per input, matched by the `objectWriteTraceId` we sent (the input's index): HubSpot promises
/// neither result order nor an echoed email. A 207's `errors` fail only the inputs they name; an input
/// neither answered nor named fails retryably (nothing says it was refused).
fn match_results(count: usize, value: &Value) -> UpsertResults {
    let mut out: Vec<Option<Result<UpsertedContact, HubSpotError>>> = (0..count).map(|_| None).collect();
    let results: &[Value] = value.get("results").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    for r in results {
        let Some(i) = r.get("objectWriteTraceId").and_then(Value::as_str).and_then(|t| t.parse::<usize>().ok()) else {
            continue;
        };
        if let (Some(slot), Some(id)) = (out.get_mut(i), value_id(r)) {
            *slot = Some(Ok(UpsertedContact { id, created: r.get("new").and_then(Value::as_bool).unwrap_or(false) }));
        }
    }
    // An older answer without trace ids: a single input's single result is its own.
    if count == 1 && results.len() == 1 && out[0].is_none() {
        if let Some(id) = value_id(&results[0]) {
            let created = results[0].get("new").and_then(Value::as_bool).unwrap_or(false);
            out[0] = Some(Ok(UpsertedContact { id, created }));
        }
    }
    for e in value.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let status = input_status(e);
        for i in error_trace_ids(e) {
            if let Some(slot) = out.get_mut(i).filter(|s| s.is_none()) {
                *slot = Some(Err(error_from_response(status, e, None)));
            }
        }
    }
    out.into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                Err(HubSpotError::new(
                    None,
                    "unexpected_response",
                    "batch upsert answered neither a result nor an error for this input",
                ))
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
    fn the_daily_reset_is_the_portals_midnight() {
        let six_pm_utc = 1_764_007_200_000; // 2025-11-24 18:00 UTC
        assert_eq!(secs_to_local_midnight(six_pm_utc, 0), 6 * 3600);
        assert_eq!(secs_to_local_midnight(six_pm_utc, -5 * 3_600_000), 11 * 3600, "US/Eastern: 05:00 UTC");
        assert_eq!(secs_to_local_midnight(six_pm_utc, 9 * 3_600_000), 21 * 3600, "Tokyo: 15:00 UTC");
    }

    #[test]
    fn codes_inside_the_message_count_and_portal_rules_get_their_own() {
        // A real answer: the inner code only inside `message`.
        let body = json!({"status":"error","category":"VALIDATION_ERROR","correlationId":"c-2",
            "message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"x\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"x\"}]"});
        assert_eq!(error_from_response(400, &body, None).code, "property_doesnt_exist");
        let body = json!({"status":"error","category":"VALIDATION_ERROR",
            "message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Enter only letters\",\"error\":\"INVALID_ALPHA\",\"name\":\"firstname\"}]"});
        let e = error_from_response(400, &body, None);
        assert_eq!(e.code, "portal_validation_rule");
        assert!(e.message.contains("Enter only letters"));
        let plain = json!({"status":"error","category":"VALIDATION_ERROR","message":"Invalid input JSON"});
        assert_eq!(error_from_response(400, &plain, None).code, "validation_error");
    }

    #[test]
    fn results_match_inputs_by_trace_id_and_207_errors_fail_only_their_inputs() {
        let value = json!({"status":"COMPLETE","numErrors":1,
            "results":[
                {"id":"2","new":true,"objectWriteTraceId":"2","properties":{}},
                {"id":"1","new":false,"objectWriteTraceId":"0","properties":{"email":"someone-else@x.com"}}],
            "errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid",
                "errors":[{"code":"INVALID_OPTION","message":"bad option"}],
                "context":{"objectWriteTraceId":["1"]}}]});
        let got = match_results(4, &value);
        assert_eq!(got[0].as_ref().unwrap(), &UpsertedContact { id: "1".into(), created: false });
        assert_eq!(got[1].as_ref().unwrap_err().code, "invalid_option");
        assert_eq!(got[2].as_ref().unwrap(), &UpsertedContact { id: "2".into(), created: true });
        let missing = got[3].as_ref().unwrap_err();
        assert_eq!((missing.code.as_str(), missing.outcome()), ("unexpected_response", AttemptOutcome::Retryable));
        // A per-input error's `status` is the word "error": its category says whether to retry.
        let locked = json!({"results": [], "errors": [
            {"status": "error", "category": "LOCKED", "message": "locked", "context": {"objectWriteTraceId": ["0"]}},
            {"status": "error", "category": "VALIDATION_ERROR", "message": "bad", "context": {"objectWriteTraceId": ["1"]}}]});
        let got = match_results(2, &locked);
        assert_eq!(got[0].as_ref().unwrap_err().outcome(), AttemptOutcome::Retryable);
        assert_eq!(got[1].as_ref().unwrap_err().outcome(), AttemptOutcome::Rejected);
    }
}
