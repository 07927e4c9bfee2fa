//! `POST …/objects/…/contacts/search`: HubSpot's CRM search, with its index lag.
//!
//! HubSpot's search index follows writes by seconds: a contact just created is not found, a contact just changed
//! is found by its old values. The sandbox keeps every contact version in `search_index` (SQLite triggers on
//! `contacts`, see `store.rs`) and answers from the newest version older than [`super::Faults::search_lag_ms`].
//! Search has its own limit (five requests a second per token) and its answers carry no rate-limit headers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rusqlite::params;
use serde_json::{json, Map, Value};

use super::contacts::{parse_object, render, Selection};
use super::error::{correlation_id, ApiError};
use super::store::Contact;
use super::validate::now_ms;
use super::Sandbox;

/// Requests a second per token (HubSpot's documented search limit).
pub(crate) const SEARCH_PER_SECOND: usize = 5;
/// The most results one page holds.
const PAGE_MAX: u64 = 200;
/// How deep paging goes (`after` + `limit`).
const DEPTH_MAX: u64 = 10_000;
const GROUPS_MAX: usize = 5;
const FILTERS_PER_GROUP_MAX: usize = 6;
const FILTERS_MAX: usize = 18;
/// Properties a free-text `query` looks in.
const QUERY_PROPERTIES: [&str; 7] = ["email", "firstname", "lastname", "phone", "mobilephone", "company", "website"];

/// The search endpoints' own per-token limit: a one-second window.
#[derive(Debug, Default)]
pub(crate) struct SearchLimiter {
    windows: HashMap<String, VecDeque<Instant>>,
}

impl SearchLimiter {
    /// Whether one more search of `token` at `now` is allowed (and counts it when it is).
    pub fn allow(&mut self, token: &str, now: Instant) -> bool {
        let window = self.windows.entry(token.to_string()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            window.pop_front();
        }
        if window.len() >= SEARCH_PER_SECOND {
            return false;
        }
        window.push_back(now);
        true
    }
}

/// HubSpot's answer to a sixth search within a second.
pub(crate) fn secondly_limited() -> ApiError {
    let mut body = Map::new();
    body.insert("status".into(), json!("error"));
    body.insert("message".into(), json!("You have reached your secondly limit."));
    body.insert("errorType".into(), json!("RATE_LIMIT"));
    body.insert("correlationId".into(), json!(correlation_id()));
    body.insert("policyName".into(), json!("SECONDLY"));
    ApiError { status: StatusCode::TOO_MANY_REQUESTS, body, headers: Vec::new() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "EQ" => Operator::Eq,
            "NEQ" => Operator::Neq,
            "LT" => Operator::Lt,
            "LTE" => Operator::Lte,
            "GT" => Operator::Gt,
            "GTE" => Operator::Gte,
            "BETWEEN" => Operator::Between,
            "IN" => Operator::In,
            "NOT_IN" => Operator::NotIn,
            "HAS_PROPERTY" => Operator::HasProperty,
            "NOT_HAS_PROPERTY" => Operator::NotHasProperty,
            "CONTAINS_TOKEN" => Operator::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Operator::NotContainsToken,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Filter {
    property: String,
    operator: Operator,
    value: Option<String>,
    high_value: Option<String>,
    values: Vec<String>,
}

/// A filter value as text: HubSpot takes strings, numbers and booleans.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Equal values compare case-insensitively; numbers (and dates in milliseconds) numerically.
fn compare(stored: &str, wanted: &str) -> Ordering {
    match (stored.parse::<f64>(), wanted.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => stored.to_lowercase().cmp(&wanted.to_lowercase()),
    }
}

fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.').filter(|t| !t.is_empty()).map(str::to_lowercase)
}

impl Filter {
    fn parse(v: &Value) -> Result<Filter, ApiError> {
        let property = v
            .get("propertyName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::validation("Every filter needs a propertyName"))?
            .to_string();
        let operator = v.get("operator").and_then(Value::as_str).unwrap_or("EQ");
        let operator = Operator::parse(operator)
            .ok_or_else(|| ApiError::validation(format!("Unknown filter operator `{operator}`")))?;
        let value = v.get("value").and_then(scalar);
        let high_value = v.get("highValue").and_then(scalar);
        let values: Vec<String> = v
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(scalar).collect())
            .unwrap_or_default();
        let needs_value =
            !matches!(operator, Operator::HasProperty | Operator::NotHasProperty | Operator::In | Operator::NotIn);
        if needs_value && value.is_none() {
            return Err(ApiError::validation(format!("The filter on `{property}` needs a value")));
        }
        if operator == Operator::Between && high_value.is_none() {
            return Err(ApiError::validation(format!("The BETWEEN filter on `{property}` needs a highValue")));
        }
        if matches!(operator, Operator::In | Operator::NotIn) && values.is_empty() {
            return Err(ApiError::validation(format!("The IN filter on `{property}` needs values")));
        }
        Ok(Filter { property, operator, value, high_value, values })
    }

    fn matches(&self, c: &Contact) -> bool {
        let stored = match self.property.as_str() {
            "hs_object_id" => Some(c.id.to_string()),
            "createdate" => Some(c.created_ms.to_string()),
            "lastmodifieddate" => Some(c.updated_ms.to_string()),
            name => c.props.get(name).cloned(),
        };
        let wanted = self.value.as_deref().unwrap_or_default();
        let Some(stored) = stored else {
            return matches!(self.operator, Operator::NotHasProperty | Operator::Neq | Operator::NotIn)
                || (self.operator == Operator::NotContainsToken);
        };
        match self.operator {
            Operator::Eq => compare(&stored, wanted).is_eq(),
            Operator::Neq => !compare(&stored, wanted).is_eq(),
            Operator::Lt => compare(&stored, wanted).is_lt(),
            Operator::Lte => compare(&stored, wanted).is_le(),
            Operator::Gt => compare(&stored, wanted).is_gt(),
            Operator::Gte => compare(&stored, wanted).is_ge(),
            Operator::Between => {
                compare(&stored, wanted).is_ge()
                    && compare(&stored, self.high_value.as_deref().unwrap_or_default()).is_le()
            }
            Operator::In => self.values.iter().any(|v| compare(&stored, v).is_eq()),
            Operator::NotIn => !self.values.iter().any(|v| compare(&stored, v).is_eq()),
            Operator::HasProperty => true,
            Operator::NotHasProperty => false,
            Operator::ContainsToken => contains_token(&stored, wanted),
            Operator::NotContainsToken => !contains_token(&stored, wanted),
        }
    }
}

/// `*` at either end of the token is a wildcard, as in HubSpot.
fn contains_token(stored: &str, wanted: &str) -> bool {
    let w = wanted.to_lowercase();
    let (starts, ends) = (w.starts_with('*'), w.ends_with('*') && w.len() > 1);
    let core = w.trim_matches('*');
    tokens(stored).any(|t| match (starts, ends) {
        (true, true) => t.contains(core),
        (true, false) => t.ends_with(core),
        (false, true) => t.starts_with(core),
        (false, false) => t == core,
    })
}

struct SearchRequest {
    /// OR of ANDs; empty matches everything.
    groups: Vec<Vec<Filter>>,
    query: Option<String>,
    sort: Option<(String, bool)>,
    selection: Selection,
    limit: u64,
    after: u64,
}

fn parse_request(body: &[u8]) -> Result<SearchRequest, ApiError> {
    let v = parse_object(body)?;
    let mut groups = Vec::new();
    if let Some(g) = v.get("filterGroups") {
        let g = g.as_array().ok_or_else(|| ApiError::invalid_json("filterGroups must be an array"))?;
        if g.len() > GROUPS_MAX {
            return Err(ApiError::validation(format!("At most {GROUPS_MAX} filterGroups are allowed")));
        }
        for group in g {
            let filters = group.get("filters").and_then(Value::as_array).cloned().unwrap_or_default();
            if filters.len() > FILTERS_PER_GROUP_MAX {
                return Err(ApiError::validation(format!(
                    "At most {FILTERS_PER_GROUP_MAX} filters are allowed in a filterGroup"
                )));
            }
            groups.push(filters.iter().map(Filter::parse).collect::<Result<Vec<_>, _>>()?);
        }
    }
    if groups.iter().map(Vec::len).sum::<usize>() > FILTERS_MAX {
        return Err(ApiError::validation(format!("At most {FILTERS_MAX} filters are allowed in a search")));
    }
    let query = v.get("query").and_then(Value::as_str).map(str::trim).filter(|q| !q.is_empty()).map(String::from);
    let sort = v.get("sorts").and_then(Value::as_array).and_then(|s| s.first()).and_then(|s| match s {
        Value::String(name) => Some((name.trim_start_matches('-').to_string(), name.starts_with('-'))),
        Value::Object(o) => o.get("propertyName").and_then(Value::as_str).map(|p| {
            (
                p.to_string(),
                o.get("direction").and_then(Value::as_str).is_some_and(|d| d.eq_ignore_ascii_case("DESCENDING")),
            )
        }),
        _ => None,
    });
    let selection = match v.get("properties").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => {
            Selection::Named(names.iter().filter_map(Value::as_str).map(String::from).collect())
        }
        _ => Selection::Default,
    };
    let number = |key: &str, default: u64| -> Result<u64, ApiError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| ApiError::validation(format!("{key} must be ≥ 0"))),
            Some(Value::String(s)) => s.parse().map_err(|_| ApiError::validation(format!("{key} must be a number"))),
            Some(_) => Err(ApiError::invalid_json(format!("{key} must be a number"))),
        }
    };
    let limit = number("limit", 10)?;
    if limit > PAGE_MAX {
        return Err(ApiError::validation(format!("limit must be at most {PAGE_MAX}")));
    }
    let after = number("after", 0)?;
    if after + limit > DEPTH_MAX {
        return Err(ApiError::validation(format!("Search pages go no deeper than {DEPTH_MAX} results")));
    }
    Ok(SearchRequest { groups, query, sort, selection, limit, after })
}

impl SearchRequest {
    fn matches(&self, c: &Contact) -> bool {
        let filtered = self.groups.is_empty() || self.groups.iter().any(|g| g.iter().all(|f| f.matches(c)));
        let queried = self.query.as_deref().is_none_or(|q| {
            let q = q.to_lowercase();
            QUERY_PROPERTIES.iter().filter_map(|p| c.props.get(*p)).any(|v| v.to_lowercase().contains(&q))
        });
        filtered && queried
    }
}

/// The contacts as the search index has them at `visible_ms`: each contact's newest version written by then,
/// deleted ones left out.
fn indexed(conn: &rusqlite::Connection, visible_ms: i64) -> rusqlite::Result<Vec<Contact>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.contact_id, s.properties, s.created_ms, s.updated_ms FROM search_index s \
         WHERE s.seq = (SELECT MAX(t.seq) FROM search_index t WHERE t.contact_id = s.contact_id AND t.indexed_ms <= ?1) \
           AND s.properties IS NOT NULL ORDER BY s.contact_id",
    )?;
    let rows = stmt.query_map(params![visible_ms], |r| {
        let props: String = r.get(1)?;
        Ok(Contact {
            id: r.get::<_, i64>(0)? as u64,
            props: serde_json::from_str::<BTreeMap<String, String>>(&props).unwrap_or_default(),
            created_ms: r.get(2)?,
            updated_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// `POST …/contacts/search` → `{total, results, paging?}`.
pub(crate) async fn search(State(sb): State<Sandbox>, body: Bytes) -> Result<Response, ApiError> {
    let request = parse_request(&body)?;
    let visible_ms = now_ms() - i64::try_from(sb.faults().search_lag_ms).unwrap_or(i64::MAX / 2);
    let (total, results) = sb
        .with_store(move |st| {
            let mut found: Vec<Contact> =
                indexed(st.conn(), visible_ms)?.into_iter().filter(|c| request.matches(c)).collect();
            if let Some((property, descending)) = &request.sort {
                found.sort_by(|a, b| {
                    let key = |c: &Contact| match property.as_str() {
                        "createdate" => Some(c.created_ms.to_string()),
                        "lastmodifieddate" => Some(c.updated_ms.to_string()),
                        "hs_object_id" => Some(c.id.to_string()),
                        p => c.props.get(p).cloned(),
                    };
                    let order = match (key(a), key(b)) {
                        (Some(x), Some(y)) => compare(&x, &y),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => Ordering::Equal,
                    };
                    let order = if *descending { order.reverse() } else { order };
                    order.then(a.id.cmp(&b.id))
                });
            }
            let total = found.len() as u64;
            let page: Vec<Value> = found
                .iter()
                .skip(request.after as usize)
                .take(request.limit as usize)
                .map(|c| render(c, &request.selection, st))
                .collect();
            let next = (request.after + request.limit < total).then_some(request.after + request.limit);
            Ok((total, (page, next)))
        })
        .await?;
    let (page, next) = results;
    let mut out = json!({"total": total, "results": page});
    if let Some(after) = next {
        out["paging"] = json!({"next": {"after": after.to_string(), "link": Value::Null}});
    }
    Ok((StatusCode::OK, Json(out)).into_response())
}
