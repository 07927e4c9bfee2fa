//! Deals, enough for referral conversions: create (with inline associations to contacts, deal → contact type
//! id 3), read by id with `?properties=` and `?associations=contacts` (the v3 answer shape,
//! `associations.contacts.results[].id`), and update (`PATCH`, e.g. moving `dealstage`).
//!
//! `dealname` and `dealstage` are required on create, `amount` must be a number and `closedate` a datetime
//! (Unix ms or ISO-8601, stored as ISO-8601 UTC with milliseconds); other properties are kept as given.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use super::contacts::{parse_object, path_param, PathParams, Query};
use super::error::{ApiError, PropIssue};
use super::store;
use super::validate::{check_datetime, coerce_properties, is_decimal, iso_ms, now_ms};
use super::Sandbox;

/// HubSpot-defined association type: deal → contact.
const DEAL_TO_CONTACT: u64 = 3;
const REQUIRED: [&str; 2] = ["dealname", "dealstage"];

struct Deal {
    id: u64,
    props: BTreeMap<String, String>,
    contacts: Vec<u64>,
    created_ms: i64,
    updated_ms: i64,
}

fn issue(code: &'static str, name: &str, message: String) -> PropIssue {
    PropIssue { code, name: name.to_string(), message }
}

/// Checks and normalises values (`""` kept: it clears on update).
fn validate(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, ApiError> {
    let (out, issues) = check(pairs);
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::properties(&issues))
    }
}

fn check(pairs: Vec<(String, String)>) -> (BTreeMap<String, String>, Vec<PropIssue>) {
    let mut out = BTreeMap::new();
    let mut issues = Vec::new();
    for (name, value) in pairs {
        let checked = match name.as_str() {
            _ if value.is_empty() => Ok(value),
            "amount" | "hs_deal_stage_probability" if !is_decimal(&value) => Err(issue(
                "INVALID_DECIMAL",
                &name,
                format!("{value} was not a valid number. Property {name} requires a decimal."),
            )),
            "closedate" => check_datetime(&value).ok_or_else(|| {
                issue("INVALID_DATE", &name, format!("{value} was not a valid datetime for property {name}"))
            }),
            _ => Ok(value),
        };
        match checked {
            Ok(v) => {
                out.insert(name, v);
            }
            Err(i) => issues.push(i),
        }
    }
    (out, issues)
}

/// The contact ids of inline `associations` (each `to.id` with HUBSPOT_DEFINED type 3).
fn parse_associations(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(items) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let items = items.as_array().ok_or_else(|| ApiError::invalid_json("associations must be an array"))?;
    let mut ids = Vec::new();
    for a in items {
        let id = match a.pointer("/to/id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ApiError::invalid_json("each association needs to.id")),
        };
        let types = a.get("types").and_then(Value::as_array).cloned().unwrap_or_default();
        let valid = !types.is_empty()
            && types.iter().all(|t| {
                t.get("associationCategory").and_then(Value::as_str) == Some("HUBSPOT_DEFINED")
                    && t.get("associationTypeId").and_then(Value::as_u64) == Some(DEAL_TO_CONTACT)
            });
        if !valid {
            return Err(ApiError::validation(format!(
                "association types are not valid from deals to contacts; use HUBSPOT_DEFINED {DEAL_TO_CONTACT}"
            ))
            .with("subCategory", json!("crm.associations.INVALID_ASSOCIATION_TYPE")));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn render(d: &Deal, names: Option<&[String]>, with_contacts: bool) -> Value {
    let mut props = Map::new();
    let system = [
        ("hs_object_id", d.id.to_string()),
        ("createdate", iso_ms(d.created_ms)),
        ("lastmodifieddate", iso_ms(d.updated_ms)),
        ("hs_lastmodifieddate", iso_ms(d.updated_ms)),
    ];
    for (k, v) in &system {
        props.insert(k.to_string(), json!(v));
    }
    match names {
        Some(names) => {
            for n in names.iter().filter(|n| !system.iter().any(|(k, _)| k == *n)) {
                props.insert(n.clone(), d.props.get(n).map_or(Value::Null, |v| json!(v)));
            }
        }
        None => d.props.iter().for_each(|(k, v)| {
            props.insert(k.clone(), json!(v));
        }),
    }
    let mut out = json!({"id": d.id.to_string(), "properties": props, "createdAt": iso_ms(d.created_ms),
        "updatedAt": iso_ms(d.updated_ms), "archived": false});
    if with_contacts && !d.contacts.is_empty() {
        let results: Vec<Value> =
            d.contacts.iter().map(|c| json!({"id": c.to_string(), "type": "deal_to_contact"})).collect();
        out["associations"] = json!({"contacts": {"results": results}});
    }
    out
}

fn by_id(conn: &Connection, raw: &str) -> rusqlite::Result<Option<Deal>> {
    let Ok(id) = raw.parse::<i64>() else { return Ok(None) };
    let row = conn
        .query_row("SELECT properties, created_ms, updated_ms FROM deals WHERE id = ?1", params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .optional()?;
    let Some((props, created_ms, updated_ms)) = row else { return Ok(None) };
    let mut stmt = conn.prepare("SELECT contact_id FROM deal_contacts WHERE deal_id = ?1 ORDER BY contact_id")?;
    let contacts = stmt.query_map(params![id], |r| r.get::<_, i64>(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(Some(Deal {
        id: id as u64,
        props: serde_json::from_str(&props).unwrap_or_default(),
        contacts: contacts.into_iter().map(|c| c as u64).collect(),
        created_ms,
        updated_ms,
    }))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::not_found(format!("Object not found.  objectId are usually numeric. ({raw})"))
        .with("context", json!({"id": [raw]}))
}

/// `POST /crm/v3/objects/deals` → 201.
pub(crate) async fn create(State(sb): State<Sandbox>, body: Bytes) -> Result<Response, ApiError> {
    let v = parse_object(&body)?;
    let (props, mut issues) = check(coerce_properties(v.get("properties"))?);
    let missing = REQUIRED.iter().filter(|n| props.get(**n).is_none_or(String::is_empty));
    issues.extend(missing.map(|n| issue("REQUIRED_PROPERTY", n, format!("Property {n} is required"))));
    if !issues.is_empty() {
        return Err(ApiError::properties(&issues));
    }
    let contacts = parse_associations(v.get("associations"))?;
    let out = sb
        .with_store(move |st| {
            let deal = st.write(|conn| {
                let mut ids = Vec::new();
                for raw in &contacts {
                    match raw.parse::<u64>().ok().map(|id| store::by_id(conn, id)).transpose()?.flatten() {
                        Some(c) => ids.push(c.id),
                        None => {
                            return Err(ApiError::validation(format!(
                                "Could not create associations: contact ids [{raw}] were not found"
                            ))
                            .with("subCategory", json!("crm.associations.INVALID_OBJECT_IDS")))
                        }
                    }
                }
                let now = now_ms();
                let clean: BTreeMap<_, _> = props.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                let json = serde_json::to_string(&clean).unwrap_or_else(|_| "{}".into());
                conn.execute(
                    "INSERT INTO deals (properties, created_ms, updated_ms) VALUES (?1, ?2, ?2)",
                    params![json, now],
                )?;
                let id = conn.last_insert_rowid();
                for c in &ids {
                    conn.execute(
                        "INSERT OR IGNORE INTO deal_contacts (deal_id, contact_id) VALUES (?1, ?2)",
                        params![id, *c as i64],
                    )?;
                }
                Ok(Deal { id: id as u64, props: clean, contacts: ids, created_ms: now, updated_ms: now })
            })?;
            // A create answers HubSpot's SimplePublicObject, which has no `associations`.
            Ok(render(&deal, None, false))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /crm/v3/objects/deals/{id}?properties=a,b&associations=contacts`.
pub(crate) async fn get(
    State(sb): State<Sandbox>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(query)?;
    let raw = path_param(params, "id")?;
    let names = q.names("properties");
    let with_contacts = q.names("associations").iter().any(|a| a == "contacts" || a == "contact");
    let out = sb
        .with_store(move |st| {
            let deal = by_id(st.conn(), &raw)?.ok_or_else(|| not_found(&raw))?;
            let names =
                if names.is_empty() { vec!["dealname".into(), "amount".into(), "dealstage".into()] } else { names };
            Ok(render(&deal, Some(&names), with_contacts))
        })
        .await?;
    Ok(Json(out))
}

/// `PATCH /crm/v3/objects/deals/{id}`: merge properties (`""` clears).
pub(crate) async fn patch(State(sb): State<Sandbox>, params: PathParams, body: Bytes) -> Result<Json<Value>, ApiError> {
    let raw = path_param(params, "id")?;
    let v = parse_object(&body)?;
    let values = validate(coerce_properties(v.get("properties"))?)?;
    let out = sb
        .with_store(move |st| {
            let deal = st.write(|conn| {
                let mut deal = by_id(conn, &raw)?.ok_or_else(|| not_found(&raw))?;
                for (k, v) in values {
                    if v.is_empty() {
                        deal.props.remove(&k);
                    } else {
                        deal.props.insert(k, v);
                    }
                }
                deal.updated_ms = now_ms();
                let json = serde_json::to_string(&deal.props).unwrap_or_else(|_| "{}".into());
                conn.execute(
                    "UPDATE deals SET properties = ?1, updated_ms = ?2 WHERE id = ?3",
                    params![json, deal.updated_ms, deal.id as i64],
                )?;
                Ok(deal)
            })?;
            Ok(render(&deal, None, false))
        })
        .await?;
    Ok(Json(out))
}
