//! The console's pages, rendered on the server (maud): plain HTML forms and links, styles inline, no script and
//! nothing fetched from elsewhere. Personal data arrives masked; only the reveal page shows it, and that is audited.

use hubrelay_core::display::{age, time};
use hubrelay_core::dlq::{DeadLetter, RedriveReport};
use hubrelay_core::domain::DeliveryAttempt;
use hubrelay_core::privacy::{ErasureCounts, ErasureReceipt, ErasureSource, HubSpotErasure};
use hubrelay_core::store::EventRecord;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use time::OffsetDateTime;

use crate::audit::AuditEntry;
use crate::backend::{PortalCheck, TenantHealth};

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfd6e6;text-decoration:none}header a.on{color:#fff;font-weight:600}
header form{margin-left:auto}main{padding:1rem 1.2rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}code{font-size:12px}
.status{padding:.1rem .45rem;border-radius:.6rem;font-size:12px;font-weight:600}
.delivered{background:#d9f2e3;color:#14663a}.retrying{background:#fff1cc;color:#7a5600}
.dead_lettered{background:#fde0e0;color:#8a1c1c}.superseded{background:#e6e9f0;color:#475066}
form.filters{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin-bottom:.8rem}
label{display:flex;flex-direction:column;font-size:12px;color:#475066}
input,select,button{font:inherit;padding:.25rem .4rem}button{cursor:pointer}
button.danger{background:#8a1c1c;color:#fff;border:0;border-radius:3px;padding:.35rem .8rem}
button.primary{background:#1f5fbf;color:#fff;border:0;border-radius:3px;padding:.35rem .8rem}
.note{color:#475066}.error{color:#8a1c1c;font-weight:600}pre{background:#fff;padding:.6rem;overflow:auto}
form.inline{display:inline}
"#;

/// Where a page sits in the menu.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Events,
    DeadLetters,
    Portals,
    Privacy,
    Audit,
}

pub fn layout(title: &str, section: Option<Section>, operator: Option<&str>, csrf: &str, body: Markup) -> Markup {
    let link = |s: Section, href: &str, text: &str| {
        html! { a href=(href) class=[(section == Some(s)).then_some("on")] { (text) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hubrelay console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "hubrelay" }
                    @if let Some(name) = operator {
                        (link(Section::Events, "/console/events", "Events"))
                        (link(Section::DeadLetters, "/console/dead-letters", "Dead letters"))
                        (link(Section::Portals, "/console/portals", "Portals"))
                        (link(Section::Privacy, "/console/privacy", "Privacy"))
                        (link(Section::Audit, "/console/audit", "Audit"))
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            span { (name) " " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(e) = error { p.error { (e) } }
        form method="post" action="/console/login" {
            label { "Operator token" input type="password" name="token" autocomplete="current-password" autofocus; }
            p { button.primary type="submit" { "Sign in" } }
        }
        p.note { "Operator tokens are the console's own (HUBRELAY_CONSOLE_OPERATORS), never a sender's token." }
    };
    layout("Sign in", None, None, "", body)
}

fn tenant_select(tenants: &[String], current: &str) -> Markup {
    html! {
        label { "Tenant" select name="tenant" {
            @for t in tenants { option value=(t) selected[t == current] { (t) } }
        } }
    }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={"status " (status)} { (status.replace('_', " ")) } }
}

/// The events page's filters, as given.
#[derive(Default, Clone)]
pub struct EventQuery {
    pub tenant: String,
    pub event_id: String,
    /// The hash of the email searched for (`hubrelay_core::store::email_hash`); empty for any.
    pub email_hash: String,
    pub status: String,
    pub function: String,
    pub since: String,
    /// A time range (UTC, as a `datetime-local` input sends it, or RFC 3339): from, inclusive; until, exclusive.
    pub from: String,
    pub until: String,
    pub limit: usize,
}

pub fn events(
    q: &EventQuery,
    tenants: &[String],
    records: &[EventRecord],
    more: bool,
    error: Option<&str>,
    csrf: &str,
) -> Markup {
    let options = |current: &str, values: &[&str]| {
        html! { option value="" { "any" } @for v in values { option value=(v) selected[*v == current] { (v) } } }
    };
    html! {
        form.filters method="get" action="/console/events" {
            (tenant_select(tenants, &q.tenant))
            label { "Event id" input name="event_id" value=(q.event_id) size="30"; }
            @if !q.email_hash.is_empty() { input type="hidden" name="email_hash" value=(q.email_hash); }
            label { "Status" select name="status" { (options(&q.status, &["delivered", "retrying", "dead_lettered", "superseded"])) } }
            label { "Function" select name="function" { (options(&q.function, &["lead-captured", "status-update", "activity", "referral-event", "lead-follow-up"])) } }
            label { "Received within" input name="since" value=(q.since) placeholder="e.g. 2h, 3d" size="8"; }
            label { "From (UTC)" input type="datetime-local" name="from" value=(q.from); }
            label { "Until (UTC)" input type="datetime-local" name="until" value=(q.until); }
            button type="submit" { "Search" }
        }
        // Posted, not in a URL: the address stays out of histories and access logs.
        form.filters id="email-search" method="post" action="/console/events/search" novalidate {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(q.tenant);
            input type="hidden" name="status" value=(q.status);
            input type="hidden" name="function" value=(q.function);
            input type="hidden" name="since" value=(q.since);
            input type="hidden" name="from" value=(q.from);
            input type="hidden" name="until" value=(q.until);
            label { "Email" input type="email" name="email" size="34" autocomplete="off" placeholder="matched by its hash, never stored"; }
            button type="submit" { "Find its events" }
        }
        @if let Some(e) = error { p.error { (e) } }
        @if !q.email_hash.is_empty() {
            p.note id="email-filter" {
                "The events of one email (matched by its hash, shown masked). "
                a href={"/console/events?" (event_query_string(&EventQuery { email_hash: String::new(), ..q.clone() }, q.limit))} { "Any email" }
            }
        }
        table id="events" {
            thead { tr { th { "Event" } th { "Status" } th { "Function" } th { "Received" } th { "Attempts" } th { "Next attempt" } th { "Email" } th { "Reason" } } }
            tbody {
                @for r in records {
                    tr {
                        td { a href={"/console/events/" (r.event_id) "?tenant=" (q.tenant)} { code { (r.event_id) } } }
                        td { (status_badge(r.status.as_str())) }
                        td { (r.function.as_str()) }
                        td { (time(r.received_at)) }
                        td { (r.attempts.len()) }
                        td { @if let Some(n) = r.next_attempt_at { (time(n)) } @else { "–" } }
                        td { (r.email_masked.as_deref().unwrap_or("–")) }
                        td { @if let Some(reason) = &r.reason { code { (reason.code) } } @else { "–" } }
                    }
                }
            }
        }
        @if records.is_empty() { p.note { "No event matches." } }
        @if more {
            p { a href={"/console/events?" (more_query(q))} { "Show more" } }
        } @else if records.len() >= 1000 {
            p.note { "The first 1,000 are shown: narrow the filters to see the rest." }
        }
    }
}

/// The events page's query with twice the limit, encoded.
fn more_query(q: &EventQuery) -> String {
    event_query_string(q, q.limit * 2)
}

/// The events page's query string for `q` showing `limit` events.
pub fn event_query_string(q: &EventQuery, limit: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("tenant", &q.tenant).append_pair("event_id", &q.event_id);
    if !q.email_hash.is_empty() {
        query.append_pair("email_hash", &q.email_hash);
    }
    query
        .append_pair("status", &q.status)
        .append_pair("function", &q.function)
        .append_pair("since", &q.since)
        .append_pair("from", &q.from)
        .append_pair("until", &q.until)
        .append_pair("limit", &limit.to_string())
        .finish()
}

pub fn attempts(attempts: &[DeliveryAttempt]) -> Markup {
    html! {
        table id="attempts" {
            thead { tr { th { "#" } th { "Time" } th { "Outcome" } th { "Upstream" } th { "Status" } th { "Code" } th { "Correlation id" } th { "Error (masked)" } } }
            tbody {
                @for a in attempts {
                    tr {
                        td { (a.attempt) }
                        td { (time(a.at)) }
                        td { (serde_json::to_value(a.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()) }
                        td { (a.system.as_deref().unwrap_or("–")) }
                        td { @if let Some(s) = a.status { (s) } @else { "–" } }
                        td { code { (a.error_code.as_deref().unwrap_or("–")) } }
                        td { code { (a.correlation_id.as_deref().unwrap_or("–")) } }
                        td { (a.error.as_deref().map(hubrelay_core::pii::mask_message).unwrap_or_else(|| "–".into())) }
                    }
                }
            }
        }
    }
}

pub fn event(tenant: &str, r: &EventRecord, dead_letter: bool) -> Markup {
    html! {
        table id="summary" {
            tr { th { "Event" } td { code { (r.event_id) } } }
            tr { th { "Tenant" } td { (tenant) } }
            tr { th { "Status" } td { (status_badge(r.status.as_str())) } }
            tr { th { "Function" } td { (r.function.as_str()) } }
            tr { th { "Received" } td { (time(r.received_at)) } }
            tr { th { "Updated" } td { (time(r.updated_at)) } }
            tr { th { "Next attempt" } td { @if let Some(n) = r.next_attempt_at { (time(n)) } @else { "–" } } }
            tr { th { "Contact" } td { (r.contact_id.as_deref().unwrap_or("–")) } }
            tr { th { "Email" } td { (r.email_masked.as_deref().unwrap_or("–")) } }
            tr { th { "Reason" } td { @if let Some(reason) = &r.reason { code { (reason.code) } " " (reason.message) } @else { "–" } } }
        }
        h2 { "Timeline" }
        (attempts(&r.attempts))
        @if dead_letter {
            p { a href={"/console/dead-letters?tenant=" (tenant) "&event_id=" (r.event_id)} { "In the dead-letter queue: redrive or purge it there" } }
        }
    }
}

/// The dead-letter page's filters, as given.
#[derive(Default)]
pub struct LetterQuery {
    pub tenant: String,
    pub event_id: String,
    pub error_code: String,
    pub function: String,
    pub older_than: String,
}

pub fn dead_letters(
    q: &LetterQuery,
    tenants: &[String],
    letters: &[DeadLetter],
    now: OffsetDateTime,
    csrf: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        form.filters method="get" action="/console/dead-letters" {
            (tenant_select(tenants, &q.tenant))
            label { "Error code" input name="error_code" value=(q.error_code) size="22"; }
            label { "Function" input name="function" value=(q.function) size="14" placeholder="lead-captured"; }
            label { "Older than" input name="older_than" value=(q.older_than) size="8" placeholder="e.g. 1h"; }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = error { p.error { (e) } }
        form method="post" action="/console/dead-letters/preview" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(q.tenant);
            table id="dead-letters" {
                thead { tr { th { "" } th { "Event" } th { "Function" } th { "Age" } th { "Attempts" } th { "Code" } th { "Email" } } }
                tbody {
                    @for l in letters {
                        tr {
                            td { input type="checkbox" name="id" value=(l.event_id()) checked[!q.event_id.is_empty()]; }
                            td { a href={"/console/events/" (l.event_id()) "?tenant=" (q.tenant)} { code { (l.event_id()) } } }
                            td { (l.function().as_str()) }
                            td { (age(l.age(now))) }
                            td { (l.attempts()) }
                            td { code { (l.last_error_code().unwrap_or("–")) } }
                            td { (masked_email(l)) }
                        }
                    }
                }
            }
            @if letters.is_empty() { p.note { "The dead-letter queue holds nothing that matches." } }
            @else {
                p {
                    button.primary type="submit" name="action" value="redrive" { "Preview redrive of the selected" } " "
                    button.danger type="submit" name="action" value="purge" { "Preview purge of the selected" }
                }
            }
        }
    }
}

fn masked_email(l: &DeadLetter) -> String {
    l.message
        .event
        .get("email")
        .and_then(|e| e.as_str())
        .map(hubrelay_core::pii::mask_email)
        .unwrap_or_else(|| "–".into())
}

/// The confirmation of a redrive (its dry run) or a purge.
pub fn confirm(tenant: &str, action: &str, ids: &[String], report: Option<&RedriveReport>, csrf: &str) -> Markup {
    let count = report.map(|r| r.moved.len() + r.already_delivered.len()).unwrap_or(ids.len());
    html! {
        @if let Some(r) = report {
            p { "Dry run: nothing has changed yet." }
            ul id="preview" {
                li { (r.moved.len()) " back on the retry queue with a restarted schedule" }
                li { (r.already_delivered.len()) " already delivered (only removed from the dead-letter queue)" }
                @if !r.not_found.is_empty() { li { (r.not_found.len()) " no longer in the dead-letter queue" } }
                @if !r.failed.is_empty() { li.error { (r.failed.len()) " cannot be redriven" } }
            }
        } @else {
            p.error { "Purging deletes these dead letters for good: they will never be delivered." }
        }
        p { "Events: " @for id in ids { code { (id) } " " } }
        form method="post" action={"/console/dead-letters/" (action)} {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(tenant);
            @for id in ids { input type="hidden" name="id" value=(id); }
            @if action == "purge" {
                button.danger type="submit" name="confirm" value="yes" { "Purge " (count) " for good" }
            } @else {
                button.primary type="submit" name="confirm" value="yes" { "Redrive " (count) }
            }
            " " a href={"/console/dead-letters?tenant=" (tenant)} { "Cancel" }
        }
    }
}

pub fn redriven(tenant: &str, r: &RedriveReport) -> Markup {
    html! {
        ul id="result" {
            li { (r.moved.len()) " redriven: back on the retry queue, due now" }
            li { (r.already_delivered.len()) " were already delivered: removed from the dead-letter queue" }
            @for f in &r.failed { li.error { code { (f.event_id) } ": " (f.error) } }
        }
        p { "Follow them: " @for id in &r.moved { a href={"/console/events/" (id) "?tenant=" (tenant)} { code { (id) } } " " } }
    }
}

pub fn purged(tenant: &str, removed: &[(String, usize)]) -> Markup {
    html! {
        ul id="result" { @for (id, n) in removed { li { code { (id) } ": " (n) " copies removed" } } }
        p { a href={"/console/dead-letters?tenant=" (tenant)} { "Back to the dead letters" } }
    }
}

pub fn revealed(tenant: &str, event_id: &str, payload: &str) -> Markup {
    html! {
        p.error { "Unmasked, for you alone: this reveal is recorded in the audit trail." }
        p { "Event " code { (event_id) } " of " (tenant) }
        pre id="payload" { (payload) }
    }
}

pub fn reveal_form(tenant: &str, event_id: &str, csrf: &str) -> Markup {
    html! {
        form method="post" action={"/console/dead-letters/" (event_id) "/reveal"} {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(tenant);
            button type="submit" { "Reveal the payload (recorded)" }
        }
    }
}

/// The tenants' health; `check`: the tenant just checked and what came of it.
pub fn portals(tenants: &[TenantHealth], check: Option<(&str, &Result<PortalCheck, String>)>, csrf: &str) -> Markup {
    html! {
        @if let Some((tenant, result)) = check {
            @match result.as_ref().map(|c| (c, &c.missing_properties)) {
                Ok((c, Ok(missing))) if missing.is_empty() => {
                    p.note id="check" { "Portal of " code { (tenant) } " checked: all " (c.required) " custom properties it needs exist." }
                }
                Ok((c, Ok(missing))) => {
                    p.error id="check" {
                        "Portal of " code { (tenant) } " lacks " (missing.len()) " of the " (c.required)
                        " custom properties it needs: " code { (missing.join(", ")) }
                        ". Events carrying them are parked: create them (" code { "hubrelay properties sync" } "), then redrive."
                    }
                }
                Ok((_, Err(e))) | Err(e) => { p.error id="check" { "Portal of " code { (tenant) } " not checked: " (e) } }
            }
        }
        table id="portals" {
            thead { tr { th { "Tenant" } th { "Enabled" } th { "Portal" } th { "Connection" } th { "Needs reauth" } th { "Calls today" } th { "Queued" } th { "Dead letters" } th { "Missing properties" } } }
            tbody {
                @for t in tenants {
                    tr {
                        td { (t.id) }
                        td { (if t.enabled { "yes" } else { "no" }) }
                        td { @if let Some(h) = t.hub_id { (h) } @else { "–" } }
                        td { (t.connection) }
                        td { @if t.needs_reauth { span.error { "yes: reconnect it" } } @else { "no" } }
                        td { @match (t.calls_today, t.daily_budget) {
                            (Some(n), Some(cap)) => { (n) " of " (cap) }
                            (None, Some(cap)) => { "cap " (cap) }
                            _ => { "no cap" }
                        } }
                        td { @if let Some(n) = t.queued { (n) } @else { "–" } }
                        td { @if let Some(n) = t.dead_letters { (n) } @else { "–" } }
                        td {
                            @match &t.missing_properties {
                                None => {}
                                Some(names) if names.is_empty() => { "none " }
                                Some(names) => { code { (names.join(", ")) } " " }
                            }
                            form.inline method="post" action="/console/portals/check" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="tenant" value=(t.id);
                                button type="submit" { "Check" }
                            }
                        }
                    }
                }
            }
        }
        p.note { "Check asks the tenant's portal for its properties (one HubSpot call, as " code { "hubrelay doctor --tenant <id>" } " does) and reads its calls today against its daily cap." }
    }
}

/// The privacy page: the tenant menu, the erasure form (an email or a contact id, and a confirmation), what was
/// just erased, and the tenant's receipts — which name no one.
pub fn privacy(
    tenants: &[String],
    tenant: &str,
    receipts: &Result<Vec<ErasureReceipt>, String>,
    done: Option<&ErasureReceipt>,
    error: Option<&str>,
    csrf: &str,
) -> Markup {
    let counts = |c: &ErasureCounts| {
        format!(
            "{} queued, {} dead letters, {} event records, {} answers, {} versions, {} links, {} ledger entries, {} message keys",
            c.queued_messages,
            c.dead_letters,
            c.event_records,
            c.idempotency_records,
            c.contact_versions,
            c.lead_links,
            c.ledger_entries,
            c.message_keys
        )
    };
    let hubspot = |h: &HubSpotErasure| match h {
        HubSpotErasure::NotRequested => "not asked".to_string(),
        HubSpotErasure::Deleted => "deleted".to_string(),
        HubSpotErasure::NotFound => "no such contact".to_string(),
        HubSpotErasure::Failed { code } => format!("failed ({code})"),
    };
    html! {
        form.filters method="get" action="/console/privacy" {
            (tenant_select(tenants, tenant))
            button type="submit" { "Show" }
        }
        @if let Some(e) = error { p.error id="erase-error" { (e) } }
        @if let Some(r) = done {
            p id="erased" { "Erased: receipt " code { (r.receipt_id) } " — " (counts(&r.counts)) "." }
        }
        h2 { "Erase a person" }
        form method="post" action="/console/privacy/erase" id="erase" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="tenant" value=(tenant);
            div.filters {
                label { "Email" input type="email" name="email" autocomplete="off"; }
                label { "or HubSpot contact id" input type="text" name="contact_id" inputmode="numeric" autocomplete="off"; }
            }
            p { label { span { input type="checkbox" name="hubspot_gdpr_delete" value="yes";
                " Also have HubSpot GDPR-delete the contact from the tenant's portal" } } }
            p { label { span { input type="checkbox" name="confirm" value="yes";
                " Erase every record of this person from tenant " (tenant) ": it cannot be undone" } } }
            p { button.danger type="submit" { "Erase" } }
        }
        p.note {
            "Their queued and dead-lettered messages, event records, answers, contact version, links and ledgers go; "
            "with the box ticked, HubSpot deletes the contact for good too (its GDPR delete, by email or id). "
            "The receipt and the audit trail name no one."
        }
        h2 { "Receipts" }
        @match receipts {
            Err(e) => p.error { (e) },
            Ok(list) => {
                table id="receipts" {
                    thead { tr { th { "Receipt" } th { "When" } th { "Asked by" } th { "Erased" } th { "HubSpot" } } }
                    tbody { @for r in list { tr {
                        td { code { (r.receipt_id) } }
                        td { (r.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()) }
                        td { (r.operator.as_deref().unwrap_or(match r.source {
                            ErasureSource::HubSpotPrivacyDeletion => "HubSpot (privacy deletion)",
                            ErasureSource::Cli => "hubrelay privacy erase",
                            _ => "-",
                        })) }
                        td { (counts(&r.counts)) }
                        td { (hubspot(&r.hubspot)) }
                    } } }
                }
                @if list.is_empty() { p.note { "No erasure yet." } }
            }
        }
    }
}

pub fn audit(entries: &[AuditEntry]) -> Markup {
    html! {
        table id="audit" {
            thead { tr { th { "When" } th { "Operator" } th { "Action" } th { "Tenant" } th { "Detail" } } }
            tbody { @for e in entries { tr { td { (e.at) } td { (e.operator) } td { (e.action) } td { (e.tenant) } td { (e.detail) } } } }
        }
        @if entries.is_empty() { p.note { "Nothing recorded yet." } }
    }
}
