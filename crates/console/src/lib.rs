//! The operators' web console at `/console`: events by tenant, status, function, id and time, each with its
//! timeline; dead letters, redriven after a dry-run preview and a confirmation, or purged after one; each tenant's
//! health; and the audit trail of every action, by operator. Server-rendered pages over core's traits
//! ([`backend::ConsoleBackend`]), embedded in the binary.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod pages;
pub mod privacy;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, COOKIE, LOCATION, SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hubrelay_core::dlq::{parse_duration, parse_function, parse_instant, parse_status, Redriver, Selection};
use hubrelay_core::domain::DEFAULT_TENANT;
use hubrelay_core::store::{EventFilter, EventStatus};
use maud::Markup;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditLog};
use crate::auth::{Gate, COOKIE as SESSION_COOKIE, SESSION_SECS};
use crate::backend::ConsoleBackend;
use crate::pages::{EventQuery, LetterQuery, Section};

/// The most events one page lists.
const MAX_LIMIT: usize = 1000;

pub struct Console {
    backend: Arc<dyn ConsoleBackend>,
    gate: Gate,
    audit: Arc<dyn AuditLog>,
    /// Mark the cookie `Secure` (the console is reached over https).
    secure_cookie: bool,
}

/// A signed-in request: the operator and the session (for the forms' CSRF token).
struct Session {
    operator: String,
    cookie: String,
}

impl Console {
    pub fn new(backend: Arc<dyn ConsoleBackend>, gate: Gate, audit: Arc<dyn AuditLog>, secure_cookie: bool) -> Self {
        Console { backend, gate, audit, secure_cookie }
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/console", get(|| async { redirect("/console/events") }))
            .route("/console/login", get(login_page).post(login))
            .route("/console/logout", post(logout))
            .route("/console/events", get(events))
            .route("/console/events/search", post(search_by_email))
            .route("/console/events/{id}", get(event))
            .route("/console/dead-letters", get(dead_letters))
            .route("/console/dead-letters/preview", post(preview))
            .route("/console/dead-letters/redrive", post(redrive))
            .route("/console/dead-letters/purge", post(purge))
            .route("/console/dead-letters/{id}/reveal", post(reveal))
            .route("/console/portals", get(portals))
            .route("/console/portals/check", post(check_portal))
            .route("/console/audit", get(audit_page))
            .merge(privacy::routes())
            .with_state(self)
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let cookies = headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok());
        let value = cookies
            .flat_map(|c| c.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, v)| v.to_string())?;
        let operator = self.gate.check_session(&value, now)?;
        Some(Session { operator, cookie: value })
    }

    /// The session of a form: signed in, and the form's CSRF token is the session's.
    fn form_session(&self, headers: &HeaderMap, form: &Form) -> Option<Session> {
        let session = self.session(headers)?;
        self.gate.check_csrf(&session.cookie, form.one("csrf")).then_some(session)
    }

    fn page(&self, session: &Session, title: &str, section: Section, body: Markup) -> Response {
        let csrf = self.gate.csrf(&session.cookie);
        html(StatusCode::OK, pages::layout(title, Some(section), Some(&session.operator), &csrf, body))
    }

    async fn record(&self, operator: &str, action: &str, tenant: &str, detail: String) -> Result<(), String> {
        let at = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        tracing::info!(operator, action, tenant, detail = %detail, "console action");
        let entry = AuditEntry { at, operator: operator.into(), action: action.into(), tenant: tenant.into(), detail };
        self.audit.record(&entry).await
    }

    async fn tenant_ids(&self) -> Vec<String> {
        self.backend.tenant_ids().await.unwrap_or_else(|_| vec![DEFAULT_TENANT.to_string()])
    }
}

/// A form body: its pairs in order (a key may come many times: `id`).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    fn one(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty()).collect()
    }

    fn tenant(&self) -> String {
        tenant_or_default(self.one("tenant"))
    }
}

fn tenant_or_default(tenant: &str) -> String {
    if tenant.trim().is_empty() {
        DEFAULT_TENANT.to_string()
    } else {
        tenant.trim().to_string()
    }
}

/// What a page may load and where its forms may go: nothing but its inline styles, forms to the console itself,
/// and never framed by another site.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";

fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    // Pages carry operational data: never cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_SECURITY_POLICY_HEADER, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

/// Not signed in (or a form without the session's CSRF token): to the sign-in page.
fn sign_in_first() -> Response {
    redirect("/console/login")
}

async fn login_page() -> Response {
    html(StatusCode::OK, pages::login(None))
}

async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(operator) = console.gate.operator_for(form.one("token")).map(|o| o.name.clone()) else {
        tracing::info!("console sign-in refused");
        return html(StatusCode::UNAUTHORIZED, pages::login(Some("That is not an operator token.")));
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let session = console.gate.session(&operator, now);
    if let Err(e) = console.record(&operator, "sign_in", "-", String::new()).await {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::login(Some(&format!("The audit trail cannot be written: {e}"))),
        );
    }
    let secure = if console.secure_cookie { "; Secure" } else { "" };
    let cookie =
        format!("{SESSION_COOKIE}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}");
    let mut response = redirect("/console/events");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    // Only the session's own form signs it out (another site cannot sign an operator out).
    if console.form_session(&headers, &Form::parse(&body)).is_none() {
        return sign_in_first();
    }
    let mut response = redirect("/console/login");
    let cookie = format!("{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EventParams {
    tenant: String,
    event_id: String,
    /// The events of one email, by its hash (`POST /console/events/search` makes it).
    email_hash: String,
    status: String,
    function: String,
    since: String,
    from: String,
    until: String,
    limit: Option<usize>,
}

async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Response {
    let Some(session) = console.session(&headers) else { return sign_in_first() };
    let (p, unreadable) = match params {
        Ok(Query(p)) => (p, None),
        Err(e) => {
            (EventParams::default(), Some(format!("The filters cannot be read ({}): showing all.", e.body_text())))
        }
    };
    let limit = p.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let q = EventQuery {
        tenant: tenant_or_default(&p.tenant),
        event_id: p.event_id.trim().to_string(),
        email_hash: p.email_hash.trim().to_ascii_lowercase(),
        status: p.status,
        function: p.function,
        since: p.since,
        from: p.from,
        until: p.until,
        limit,
    };
    events_page(&console, &session, &q, unreadable).await
}

async fn events_page(console: &Console, session: &Session, q: &EventQuery, error: Option<String>) -> Response {
    let tenants = console.tenant_ids().await;
    let (records, error) = match find_events(console, q, OffsetDateTime::now_utc()).await {
        Ok(records) => (records, error),
        Err(e) => (Vec::new(), Some(e)),
    };
    let more = records.len() == q.limit && q.limit < MAX_LIMIT;
    let csrf = console.gate.csrf(&session.cookie);
    let body = pages::events(q, &tenants, &records, more, error.as_deref(), &csrf);
    console.page(session, "Events", Section::Events, body)
}

/// The email search: a form post (so the address never sits in a URL, a history or an access log), answered
/// with a redirect to the events of its hash.
async fn search_by_email(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let mut q = EventQuery {
        tenant: form.tenant(),
        status: form.one("status").to_string(),
        function: form.one("function").to_string(),
        since: form.one("since").to_string(),
        from: form.one("from").to_string(),
        until: form.one("until").to_string(),
        limit: 50,
        ..EventQuery::default()
    };
    match hubrelay_core::store::email_search_hash(form.one("email")) {
        Ok(hash) => {
            q.email_hash = hash;
            redirect(&format!("/console/events?{}", pages::event_query_string(&q, q.limit)))
        }
        Err(e) => events_page(&console, &session, &q, Some(format!("Email search: {e}."))).await,
    }
}

async fn find_events(
    console: &Console,
    q: &EventQuery,
    now: OffsetDateTime,
) -> Result<Vec<hubrelay_core::store::EventRecord>, String> {
    let log = console.backend.event_log(&q.tenant)?;
    if !q.event_id.is_empty() {
        return Ok(log.get_event(&q.event_id).await.map_err(|e| e.to_string())?.into_iter().collect());
    }
    let status: Option<EventStatus> =
        Some(q.status.as_str()).filter(|s| !s.is_empty()).map(parse_status).transpose()?;
    let function = Some(q.function.as_str()).filter(|s| !s.is_empty()).map(parse_function).transpose()?;
    let since = Some(q.since.trim()).filter(|s| !s.is_empty()).map(parse_duration).transpose()?;
    let from = Some(q.from.trim()).filter(|s| !s.is_empty()).map(parse_instant).transpose()?;
    let received_before = Some(q.until.trim()).filter(|s| !s.is_empty()).map(parse_instant).transpose()?;
    // Both bounds from below: the later one holds.
    let received_after = since.map(|d| now - d).max(from);
    let email_hash = Some(q.email_hash.as_str()).filter(|h| !h.is_empty()).map(String::from);
    if email_hash.as_ref().is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err("email_hash: 64 hex digits (search by email to make one)".into());
    }
    let filter = EventFilter { status, function, received_after, received_before, email_hash, limit: q.limit };
    log.list_events(&filter).await.map_err(|e| e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TenantParam {
    tenant: String,
}

async fn event(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<TenantParam>, QueryRejection>,
) -> Response {
    let Some(session) = console.session(&headers) else { return sign_in_first() };
    let tenant = tenant_or_default(&params.map(|Query(p)| p.tenant).unwrap_or_default());
    let record = match console.backend.event_log(&tenant) {
        Ok(log) => log.get_event(&id).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let csrf = console.gate.csrf(&session.cookie);
    let body = match record {
        Ok(Some(r)) => {
            let dead = r.status == EventStatus::DeadLettered;
            maud::html! { (pages::event(&tenant, &r, dead)) @if dead { (pages::reveal_form(&tenant, &id, &csrf)) } }
        }
        Ok(None) => maud::html! { p.error { "No event " code { (id) } " for tenant " (tenant) "." } },
        Err(e) => maud::html! { p.error { (e) } },
    };
    console.page(&session, "Event", Section::Events, body)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LetterParams {
    tenant: String,
    event_id: String,
    error_code: String,
    function: String,
    older_than: String,
}

async fn dead_letters(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    params: Result<Query<LetterParams>, QueryRejection>,
) -> Response {
    let Some(session) = console.session(&headers) else { return sign_in_first() };
    let Query(p) = params.unwrap_or_default();
    let q = LetterQuery {
        tenant: tenant_or_default(&p.tenant),
        event_id: p.event_id.trim().to_string(),
        error_code: p.error_code.trim().to_string(),
        function: p.function.trim().to_string(),
        older_than: p.older_than.trim().to_string(),
    };
    let now = OffsetDateTime::now_utc();
    let tenants = console.tenant_ids().await;
    let listed = async {
        let selection = Selection {
            event_ids: Some(q.event_id.clone()).filter(|s| !s.is_empty()).into_iter().collect(),
            error_code: Some(q.error_code.clone()).filter(|s| !s.is_empty()),
            function: Some(q.function.as_str()).filter(|s| !s.is_empty()).map(parse_function).transpose()?,
            older_than: Some(q.older_than.as_str()).filter(|s| !s.is_empty()).map(parse_duration).transpose()?,
            all: false,
        };
        let letters = console.backend.dead_letters(&q.tenant)?.list().await.map_err(|e| e.to_string())?;
        let unfiltered = selection == Selection::default();
        Ok::<_, String>(letters.into_iter().filter(|l| unfiltered || selection.matches(l, now)).collect::<Vec<_>>())
    }
    .await;
    let (letters, error) = match listed {
        Ok(letters) => (letters, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let csrf = console.gate.csrf(&session.cookie);
    let body = pages::dead_letters(&q, &tenants, &letters, now, &csrf, error.as_deref());
    console.page(&session, "Dead letters", Section::DeadLetters, body)
}

/// A redrive's dry run, or the list a purge would delete: shown with a button that confirms it.
async fn preview(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let tenant = form.tenant();
    let ids = form.all("id");
    let action = form.one("action");
    let csrf = console.gate.csrf(&session.cookie);
    if ids.is_empty() || !matches!(action, "redrive" | "purge") {
        let body = maud::html! { p.error { "Select at least one dead letter, then redrive or purge it." } };
        return console.page(&session, "Nothing selected", Section::DeadLetters, body);
    }
    let report = if action == "redrive" {
        match run_redrive(&console, &tenant, &ids, true).await {
            Ok(report) => Some(report),
            Err(e) => return console.page(&session, "Preview failed", Section::DeadLetters, error_body(&e)),
        }
    } else {
        None
    };
    let title = if action == "redrive" { "Confirm the redrive" } else { "Confirm the purge" };
    console.page(&session, title, Section::DeadLetters, pages::confirm(&tenant, action, &ids, report.as_ref(), &csrf))
}

async fn run_redrive(
    console: &Console,
    tenant: &str,
    ids: &[String],
    dry_run: bool,
) -> Result<hubrelay_core::dlq::RedriveReport, String> {
    let letters = console.backend.dead_letters(tenant)?;
    let mut progress = |_: usize, _: usize| {};
    Redriver::new(letters.as_ref())
        .run(&Selection::ids(ids.iter().cloned()), dry_run, OffsetDateTime::now_utc(), &mut progress)
        .await
        .map_err(|e| e.to_string())
}

fn error_body(e: &str) -> Markup {
    maud::html! { p.error { (e) } }
}

async fn redrive(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let (tenant, ids) = (form.tenant(), form.all("id"));
    if form.one("confirm") != "yes" || ids.is_empty() {
        return redirect("/console/dead-letters");
    }
    // Recorded before it is done: no redrive goes unrecorded.
    if let Err(e) = console.record(&session.operator, "redrive_requested", &tenant, format!("{ids:?}")).await {
        let body = error_body(&format!("Not redriven: the audit trail cannot be written ({e})."));
        return console.page(&session, "Redrive refused", Section::DeadLetters, body);
    }
    let report = match run_redrive(&console, &tenant, &ids, false).await {
        Ok(report) => report,
        Err(e) => return console.page(&session, "Redrive failed", Section::DeadLetters, error_body(&e)),
    };
    let detail = format!(
        "redriven {:?}; already delivered {:?}; failed {:?}",
        report.moved,
        report.already_delivered,
        report.failed.iter().map(|f| &f.event_id).collect::<Vec<_>>()
    );
    if let Err(e) = console.record(&session.operator, "redrive", &tenant, detail).await {
        tracing::error!(error = %e, "console: the audit trail could not record a redrive");
    }
    console.page(&session, "Redriven", Section::DeadLetters, pages::redriven(&tenant, &report))
}

async fn purge(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let (tenant, ids) = (form.tenant(), form.all("id"));
    if form.one("confirm") != "yes" || ids.is_empty() {
        return redirect("/console/dead-letters");
    }
    let letters = match console.backend.dead_letters(&tenant) {
        Ok(letters) => letters,
        Err(e) => return console.page(&session, "Purge failed", Section::DeadLetters, error_body(&e)),
    };
    // Recorded before it is done: no purge goes unrecorded.
    if let Err(e) = console.record(&session.operator, "purge_requested", &tenant, format!("{ids:?}")).await {
        let body = error_body(&format!("Not purged: the audit trail cannot be written ({e})."));
        return console.page(&session, "Purge refused", Section::DeadLetters, body);
    }
    let mut removed = Vec::new();
    let mut failure = None;
    for id in &ids {
        match letters.purge(id).await {
            Ok(n) => removed.push((id.clone(), n)),
            Err(e) => {
                failure = Some(format!("{id}: {e}"));
                break;
            }
        }
    }
    let detail =
        format!("purged {removed:?}{}", failure.as_deref().map(|f| format!("; stopped at {f}")).unwrap_or_default());
    if let Err(e) = console.record(&session.operator, "purge", &tenant, detail).await {
        tracing::error!(error = %e, "console: the audit trail could not record a purge's outcome");
    }
    if let Some(failure) = failure {
        let body = error_body(&format!("{failure} (purged before it: {removed:?})"));
        return console.page(&session, "Purge failed", Section::DeadLetters, body);
    }
    console.page(&session, "Purged", Section::DeadLetters, pages::purged(&tenant, &removed))
}

/// A dead letter's payload unmasked: recorded first, shown only once it is.
async fn reveal(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let tenant = form.tenant();
    let letter = match console.backend.dead_letters(&tenant) {
        Ok(letters) => letters.get(&id).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let letter = match letter {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return console.page(&session, "Not found", Section::DeadLetters, error_body("No such dead letter."))
        }
        Err(e) => return console.page(&session, "Reveal failed", Section::DeadLetters, error_body(&e)),
    };
    if let Err(e) = console.record(&session.operator, "reveal", &tenant, format!("payload of {id}")).await {
        let body = error_body(&format!("Not shown: the audit trail cannot be written ({e})."));
        return console.page(&session, "Reveal refused", Section::DeadLetters, body);
    }
    let payload = serde_json::to_string_pretty(&letter.message.event).unwrap_or_default();
    console.page(&session, "Revealed", Section::DeadLetters, pages::revealed(&tenant, &id, &payload))
}

async fn portals(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = console.session(&headers) else { return sign_in_first() };
    let csrf = console.gate.csrf(&session.cookie);
    let body = match console.backend.tenants().await {
        Ok(tenants) => pages::portals(&tenants, None, &csrf),
        Err(e) => error_body(&e),
    };
    console.page(&session, "Portals", Section::Portals, body)
}

/// One tenant's portal checked (its properties, one HubSpot call; its calls today), shown in its row.
async fn check_portal(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(session) = console.form_session(&headers, &form) else { return sign_in_first() };
    let tenant = form.tenant();
    let csrf = console.gate.csrf(&session.cookie);
    let mut tenants = match console.backend.tenants().await {
        Ok(tenants) => tenants,
        Err(e) => return console.page(&session, "Portals", Section::Portals, error_body(&e)),
    };
    let Some(row) = tenants.iter_mut().find(|t| t.id == tenant) else {
        return console.page(&session, "Portals", Section::Portals, error_body(&format!("No tenant {tenant}.")));
    };
    let checked = console.backend.check_portal(&tenant).await;
    if let Ok(check) = &checked {
        row.missing_properties = check.missing_properties.clone().ok();
        if let Some((used, limit)) = check.daily {
            (row.calls_today, row.daily_budget) = (Some(u64::from(used)), Some(limit));
        }
    }
    let body = pages::portals(&tenants, Some((&tenant, &checked)), &csrf);
    console.page(&session, "Portals", Section::Portals, body)
}

async fn audit_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = console.session(&headers) else { return sign_in_first() };
    let body = match console.audit.recent(200).await {
        Ok(entries) => pages::audit(&entries),
        Err(e) => error_body(&e),
    };
    console.page(&session, "Audit trail", Section::Audit, body)
}
