//! Association reads, paged by `after` like HubSpot's:
//! - dated: `POST /crm/associations/{version}/{from}/{to}/batch/read` `{"inputs":[{"id","after"?}]}` →
//!   `{"status","results":[{"from":{"id"},"to":[{"toObjectId","associationTypes":[…]}],"paging"?}],…}`, 207
//!   with `errors` for inputs that do not exist or have no associations of that type;
//! - legacy v4: `GET /crm/v4/objects/{from}/{id}/associations/{to}?limit&after` → `{"results":[…],"paging"?}`
//!   (`POST /crm/v4/associations/{from}/{to}/batch/read` answers as the dated one).
//!
//! Pairs served: contacts → engagements (notes, calls, …) and deals; deals → contacts; engagements → contacts.
//! Type ids are HubSpot's, seen from the `from` side (contact → note 201, note → contact 202, deal → contact 3,
//! contact → deal 4). Pages hold [`super::SandboxOptions::association_page_size`] ids (HubSpot: 500).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

use super::contacts::{parse_object, Query};
use super::engagements::Object;
use super::error::ApiError;
use super::validate::{iso_ms, now_ms};
use super::Sandbox;

/// A record type on either side of an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Contact,
    Deal,
    Engagement(Object),
}

fn side(name: &str) -> Option<Side> {
    match name {
        "contacts" | "contact" | "0-1" => Some(Side::Contact),
        "deals" | "deal" | "0-3" => Some(Side::Deal),
        other => Object::ALL
            .into_iter()
            .find(|o| o.path() == other || o.path().trim_end_matches('s') == other)
            .map(Side::Engagement),
    }
}

/// One association seen from its `from` record: `(to id, type id)`.
type Link = (u64, u32);

/// `(to id, type id)` of every association from one record, by to id; `None` when the record does not exist.
fn associated(conn: &Connection, from: Side, id: u64, to: Side) -> Result<Option<Vec<Link>>, ApiError> {
    let rows = |sql: &str, exists: &str, a: &dyn rusqlite::ToSql| -> Result<Option<Vec<u64>>, ApiError> {
        let found: i64 = conn.query_row(exists, params![id as i64], |r| r.get(0))?;
        if found == 0 {
            return Ok(None);
        }
        let mut stmt = conn.prepare(sql)?;
        let ids =
            stmt.query_map(params![id as i64, a], |r| r.get::<_, i64>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(ids.into_iter().map(|i| i as u64).collect()))
    };
    const CONTACT: &str = "SELECT COUNT(*) FROM contacts WHERE id = ?1";
    let out = match (from, to) {
        (Side::Contact, Side::Engagement(o)) => rows(
            "SELECT a.engagement_id FROM engagement_contacts a JOIN engagements e ON e.id = a.engagement_id \
             WHERE a.contact_id = ?1 AND e.object = ?2 ORDER BY a.engagement_id",
            CONTACT,
            &o.path(),
        )?
        .map(|ids| ids.into_iter().map(|i| (i, o.contact_to_type_id())).collect()),
        (Side::Engagement(o), Side::Contact) => rows(
            "SELECT a.contact_id FROM engagement_contacts a JOIN engagements e ON e.id = a.engagement_id \
             WHERE a.engagement_id = ?1 AND e.object = ?2 ORDER BY a.contact_id",
            "SELECT COUNT(*) FROM engagements WHERE id = ?1",
            &o.path(),
        )?
        .map(|ids| ids.into_iter().map(|i| (i, o.type_id_to_contact())).collect()),
        (Side::Deal, Side::Contact) => rows(
            "SELECT contact_id FROM deal_contacts WHERE deal_id = ?1 AND ?2 = ?2 ORDER BY contact_id",
            "SELECT COUNT(*) FROM deals WHERE id = ?1",
            &0,
        )?
        .map(|ids| ids.into_iter().map(|i| (i, 3)).collect()),
        (Side::Contact, Side::Deal) => {
            rows("SELECT deal_id FROM deal_contacts WHERE contact_id = ?1 AND ?2 = ?2 ORDER BY deal_id", CONTACT, &0)?
                .map(|ids| ids.into_iter().map(|i| (i, 4)).collect())
        }
        _ => return Err(ApiError::validation("The sandbox serves no associations between these object types")),
    };
    Ok(out)
}

fn sides(from: &str, to: &str) -> Result<(Side, Side), ApiError> {
    let known = |n: &str| side(n).ok_or_else(|| ApiError::validation(format!("Unable to infer object type from: {n}")));
    Ok((known(from)?, known(to)?))
}

/// One page after the cursor (an id: the next page starts above it).
fn page(all: Vec<Link>, after: Option<&str>, size: usize) -> Result<(Vec<Link>, Option<String>), ApiError> {
    let after = match after {
        None | Some("") => 0,
        Some(a) => {
            a.parse::<u64>().map_err(|_| ApiError::validation(format!("after '{a}' is not a valid paging cursor")))?
        }
    };
    let mut rest: Vec<Link> = all.into_iter().filter(|(id, _)| *id > after).collect();
    let next = if rest.len() > size {
        rest.truncate(size);
        rest.last().map(|(id, _)| id.to_string())
    } else {
        None
    };
    Ok((rest, next))
}

fn to_json(items: &[Link], string_ids: bool) -> Vec<Value> {
    items
        .iter()
        .map(|(id, type_id)| {
            let to = if string_ids { json!(id.to_string()) } else { json!(id) };
            json!({"toObjectId": to, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
        })
        .collect()
}

/// The dated (and v4) batch read.
pub(crate) async fn batch_read(
    State(sb): State<Sandbox>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = now_ms();
    let from_name = params.get("from").cloned().unwrap_or_default();
    let to_name = params.get("to").cloned().unwrap_or_default();
    let (from, to) = sides(&from_name, &to_name)?;
    let v = parse_object(&body)?;
    let inputs = v.get("inputs").and_then(Value::as_array).cloned().ok_or_else(|| {
        ApiError::invalid_json("Cannot build BatchInputPublicFetchAssociationsBatchRequest, some of required attributes are not set [inputs]")
    })?;
    let size = sb.inner.options.association_page_size.max(1);
    let (results, errors) = sb
        .with_store(move |st| {
            let (mut results, mut missing, mut empty) = (Vec::new(), Vec::new(), Vec::new());
            for input in &inputs {
                let raw = match input.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(ApiError::invalid_json("Cannot build PublicFetchAssociationsBatchRequest, some of required attributes are not set [id]")),
                };
                let found = match raw.parse::<u64>() {
                    Ok(id) => associated(st.conn(), from, id, to)?,
                    Err(_) => None,
                };
                match found {
                    None => missing.push(raw),
                    Some(all) if all.is_empty() => empty.push(raw),
                    Some(all) => {
                        let (items, next) = page(all, input.get("after").and_then(Value::as_str), size)?;
                        let mut r = json!({"from": {"id": raw}, "to": to_json(&items, true)});
                        if let Some(next) = next {
                            r["paging"] = json!({"next": {"after": next}});
                        }
                        results.push(r);
                    }
                }
            }
            let mut errors = Vec::new();
            if !missing.is_empty() {
                errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": format!("Could not find {from_name} with ids {}", missing.join(", ")),
                    "context": {"fromObjectId": missing}, "errors": [], "links": {}}));
            }
            if !empty.is_empty() {
                errors.push(json!({"status": "error", "category": "VALIDATION_ERROR", "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                    "message": format!("No {to_name} is associated with {from_name} {}", empty.join(", ")),
                    "context": {"fromObjectId": empty}, "errors": [], "links": {}}));
            }
            Ok((results, errors))
        })
        .await?;
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso_ms(started), "completedAt": iso_ms(now_ms())});
    if errors.is_empty() {
        return Ok(Json(out).into_response());
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    Ok((StatusCode::MULTI_STATUS, Json(out)).into_response())
}

/// `GET /crm/v4/objects/{from}/{id}/associations/{to}?limit=…&after=…` (limit 1..=500).
pub(crate) async fn list(
    State(sb): State<Sandbox>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(query)?;
    let (from, to) = sides(params.get("from").map_or("", String::as_str), params.get("to").map_or("", String::as_str))?;
    let raw = params.get("id").cloned().unwrap_or_default();
    let size = match q.get("limit") {
        None | Some("") => sb.inner.options.association_page_size,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=500) => n.min(sb.inner.options.association_page_size),
            _ => return Err(ApiError::validation(format!("limit must be a number from 1 to 500, got '{l}'"))),
        },
    }
    .max(1);
    let after = q.get("after").map(String::from);
    let out = sb
        .with_store(move |st| {
            let found = raw.parse::<u64>().ok().map(|id| associated(st.conn(), from, id, to)).transpose()?.flatten();
            let all = found.ok_or_else(|| ApiError::contact_not_found(&raw))?;
            let (items, next) = page(all, after.as_deref(), size)?;
            let mut out = json!({"results": to_json(&items, false)});
            if let Some(next) = next {
                out["paging"] = json!({"next": {"after": next, "link": null}});
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out))
}

/// `associations=contacts` on an engagement read: HubSpot's inline v3 shape, first page only.
pub(crate) fn inline(conn: &Connection, object: Object, id: u64, wanted: &[String]) -> Result<Value, ApiError> {
    let mut out = serde_json::Map::new();
    for name in wanted {
        if side(name) != Some(Side::Contact) {
            continue;
        }
        let all = associated(conn, Side::Engagement(object), id, Side::Contact)?.unwrap_or_default();
        let kind = format!("{}_to_contact", object.path().trim_end_matches('s'));
        let results: Vec<Value> = all.iter().map(|(c, _)| json!({"id": c.to_string(), "type": kind})).collect();
        if !results.is_empty() {
            out.insert("contacts".into(), json!({ "results": results }));
        }
    }
    Ok(Value::Object(out))
}
