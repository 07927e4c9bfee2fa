//! Contact endpoints: create, read, update, list, batch upsert (by email) and batch read.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::routes::Dialect;
use super::rules;
use super::store::{self, Contact, Store};
use super::validate::{coerce_properties, iso_ms, now_ms, validate_all};
use super::Sandbox;

/// Most inputs a batch call takes.
pub(crate) const BATCH_MAX: usize = 100;
/// What a read returns when no `properties` are asked for.
const DEFAULT_PROPS: [&str; 6] = ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"];
/// Always returned.
const SYSTEM_PROPS: [&str; 3] = ["createdate", "hs_object_id", "lastmodifieddate"];

/// Which properties a contact is rendered with.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// [`DEFAULT_PROPS`] (reads without `properties`).
    Default,
    /// The named ones that exist, plus the system ones; unset ones are `null`.
    Named(Vec<String>),
    /// Every set property plus the system ones (answers to writes).
    Stored,
}

fn value_of(c: &Contact, name: &str) -> Option<String> {
    match name {
        "hs_object_id" => Some(c.id.to_string()),
        "createdate" => Some(iso_ms(c.created_ms)),
        "lastmodifieddate" => Some(iso_ms(c.updated_ms)),
        _ => c.props.get(name).cloned(),
    }
}

pub(crate) fn render(c: &Contact, sel: &Selection, st: &Store) -> Value {
    let mut props = Map::new();
    let mut put = |name: &str| {
        props.insert(name.to_string(), value_of(c, name).map_or(Value::Null, Value::String));
    };
    match sel {
        Selection::Default => DEFAULT_PROPS.iter().for_each(|n| put(n)),
        Selection::Named(names) => {
            SYSTEM_PROPS.iter().for_each(|n| put(n));
            names.iter().filter(|n| st.property(n).is_some()).for_each(|n| put(n));
        }
        Selection::Stored => {
            SYSTEM_PROPS.iter().for_each(|n| put(n));
            c.props.keys().for_each(|n| put(n));
        }
    }
    json!({
        "id": c.id.to_string(),
        "properties": props,
        "createdAt": iso_ms(c.created_ms),
        "updatedAt": iso_ms(c.updated_ms),
        "archived": false,
    })
}

/// A parsed query string (repeated keys kept).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<String>) -> Result<Query, ApiError> {
        let raw = raw.unwrap_or_default();
        serde_urlencoded::from_str(&raw)
            .map(Query)
            .map_err(|e| ApiError::validation(format!("Invalid query string: {e}")))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key=a,b` and/or `key=a&key=b`.
    pub fn names(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// `properties=a,b` and/or `properties=a&properties=b`.
    pub fn selection(&self) -> Selection {
        let names = self.names("properties");
        if names.is_empty() {
            Selection::Default
        } else {
            Selection::Named(names)
        }
    }
}

/// Parses a request body as a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::from_json_error(&e))?;
    if !v.is_object() {
        return Err(ApiError::invalid_json("expected a JSON object"));
    }
    Ok(v)
}

/// How a path addresses a contact.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Id(Option<u64>),
    Email(String),
}

pub(crate) fn target(raw: &str, id_property: Option<&str>) -> Result<Target, ApiError> {
    match id_property {
        None | Some("hs_object_id") => Ok(Target::Id(raw.parse().ok())),
        Some("email") => Ok(Target::Email(raw.to_lowercase())),
        Some(other) => Err(ApiError::validation(format!(
            "idProperty '{other}' is not a unique identifier for contacts (the sandbox supports email and \
             hs_object_id)"
        ))),
    }
}

pub(crate) fn find(conn: &Connection, t: &Target) -> rusqlite::Result<Option<Contact>> {
    match t {
        Target::Id(Some(id)) => store::by_id(conn, *id),
        Target::Id(None) => Ok(None),
        Target::Email(e) => store::by_email(conn, e),
    }
}

/// Path parameters; a path axum cannot decode (bad percent-encoding) is a HubSpot-shaped 400.
pub(crate) type PathParams = Result<Path<HashMap<String, String>>, PathRejection>;

pub(crate) fn path_param(params: PathParams, key: &str) -> Result<String, ApiError> {
    let Path(params) = params.map_err(|e| ApiError::validation(format!("Invalid path: {e}")))?;
    Ok(params.get(key).cloned().unwrap_or_default())
}

/// Validates property pairs against the store's definitions: one 400 listing every bad property.
fn validated(st: &Store, pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, ApiError> {
    validate_all(pairs, |n| st.property(n)).map_err(|issues| ApiError::properties(&issues))
}

/// `POST /crm/v3/objects/contacts` → 201, or 409 when the email exists.
pub(crate) async fn create(
    State(sb): State<Sandbox>,
    Extension(dialect): Extension<Dialect>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse_object(&body)?;
    let pairs = coerce_properties(v.get("properties"))?;
    let rules = if dialect.enforces_rules { sb.validation_rules() } else { Vec::new() };
    let out = sb
        .with_store(move |st| {
            let values = validated(st, &pairs)?;
            rules::check(&rules, &values, true)?;
            let c = st.write(|conn| {
                let mut props = BTreeMap::new();
                for (k, v) in values.into_iter().filter(|(_, v)| !v.is_empty()) {
                    props.insert(k, v);
                }
                if let Some(email) = props.get("email") {
                    if let Some(existing) = store::by_email(conn, email)? {
                        return Err(ApiError::conflict(existing.id));
                    }
                }
                Ok(store::insert(conn, props, now_ms())?)
            })?;
            Ok(render(&c, &Selection::Stored, st))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /crm/v3/objects/contacts/{id}` (`?idProperty=email`, `?properties=a,b`).
pub(crate) async fn get(
    State(sb): State<Sandbox>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(query)?;
    let raw = path_param(params, "id")?;
    let t = target(&raw, q.get("idProperty"))?;
    let sel = q.selection();
    if q.get("archived").is_some_and(|a| a.eq_ignore_ascii_case("true")) {
        // Only archived contacts, by id (HubSpot reads archived records by id).
        let Target::Id(Some(id)) = t else { return Err(ApiError::contact_not_found(&raw)) };
        let out = sb
            .with_store(move |st| {
                let (c, archived_ms) =
                    store::archived_by_id(st.conn(), id, now_ms())?.ok_or_else(|| ApiError::contact_not_found(&raw))?;
                let mut out = render(&c, &sel, st);
                out["archived"] = json!(true);
                out["archivedAt"] = json!(iso_ms(archived_ms));
                Ok(out)
            })
            .await?;
        return Ok(Json(out));
    }
    let out = sb
        .with_store(move |st| {
            // A merged-away id reads as its survivor (which has its own id), as on HubSpot.
            let c = match find(st.conn(), &t)? {
                Some(c) => Some(c),
                None => match &t {
                    Target::Id(Some(id)) => match super::merge::survivor_of(st.conn(), *id)? {
                        Some(survivor) => store::by_id(st.conn(), survivor)?,
                        None => None,
                    },
                    _ => None,
                },
            };
            let c = c.ok_or_else(|| ApiError::contact_not_found(&raw))?;
            Ok(render(&c, &sel, st))
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /crm/v3/objects/contacts/{id}` → 204: the contact archived (readable with `?archived=true`); 404 when
/// there is none.
pub(crate) async fn archive(State(sb): State<Sandbox>, params: PathParams) -> Result<StatusCode, ApiError> {
    let raw = path_param(params, "id")?;
    let Target::Id(Some(id)) = target(&raw, None)? else { return Err(ApiError::contact_not_found(&raw)) };
    let archived = sb.with_store(move |st| st.write(|conn| Ok(store::archive(conn, id, now_ms())?))).await?;
    match archived {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::contact_not_found(&raw)),
    }
}

/// `PATCH /crm/v3/objects/contacts/{id}` (`?idProperty=email`): merge properties; 404; 409 on an email taken.
pub(crate) async fn patch(
    State(sb): State<Sandbox>,
    Extension(dialect): Extension<Dialect>,
    params: PathParams,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(query)?;
    let raw = path_param(params, "id")?;
    let t = target(&raw, q.get("idProperty"))?;
    let v = parse_object(&body)?;
    let pairs = coerce_properties(v.get("properties"))?;
    let rules = if dialect.enforces_rules { sb.validation_rules() } else { Vec::new() };
    let out = sb
        .with_store(move |st| {
            let values = validated(st, &pairs)?;
            let c = st.write(|conn| {
                let mut c = find(conn, &t)?.ok_or_else(|| ApiError::contact_not_found(&raw))?;
                c.merge(&values);
                rules::check(&rules, &c.props, false)?;
                if let Some(email) = c.email() {
                    if let Some(other) = store::by_email(conn, email)?.filter(|o| o.id != c.id) {
                        return Err(ApiError::conflict(other.id));
                    }
                }
                c.updated_ms = now_ms();
                store::update(conn, &c)?;
                Ok(c)
            })?;
            Ok(render(&c, &Selection::Stored, st))
        })
        .await?;
    Ok(Json(out))
}

/// `GET /crm/v3/objects/contacts?limit=N&after=CURSOR` (limit 1..=100, default 10).
pub(crate) async fn list(State(sb): State<Sandbox>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(query)?;
    let limit = match q.get("limit") {
        None | Some("") => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=BATCH_MAX) => n,
            _ => return Err(ApiError::validation(format!("limit must be a number from 1 to 100, got '{l}'"))),
        },
    };
    let after = match q.get("after") {
        None | Some("") => 0,
        Some(a) => {
            a.parse::<u64>().map_err(|_| ApiError::validation(format!("after '{a}' is not a valid paging cursor")))?
        }
    };
    let sel = q.selection();
    let out = sb
        .with_store(move |st| {
            let mut page = st.list(after, limit + 1)?;
            let next = if page.len() > limit { page.pop().map(|c| c.id) } else { None };
            let results: Vec<Value> = page.iter().map(|c| render(c, &sel, st)).collect();
            let mut out = json!({ "results": results });
            if let Some(next) = next {
                out["paging"] = json!({"next": {
                    "after": next.to_string(),
                    "link": format!("/crm/v3/objects/contacts?limit={limit}&after={next}"),
                }});
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out))
}

/// `POST /crm/v3/objects/contacts/gdpr-delete` `{"objectId", "idProperty"?}` → 204: the contact is deleted for
/// good, with its engagement and deal associations and its write journal rows (HubSpot then notifies apps with
/// `contact.privacyDeletion`, which the sandbox does not send). 404 when there is no such contact.
pub(crate) async fn gdpr_delete(State(sb): State<Sandbox>, body: Bytes) -> Result<StatusCode, ApiError> {
    let v = parse_object(&body)?;
    let raw = v.get("objectId").and_then(|id| match id {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let raw = raw.ok_or_else(|| {
        ApiError::invalid_json("Cannot build PublicGdprDeleteInput, some of required attributes are not set [objectId]")
    })?;
    let t = target(&raw, v.get("idProperty").and_then(Value::as_str))?;
    sb.with_store(move |st| {
        st.write(|conn| {
            let c = find(conn, &t)?.ok_or_else(|| ApiError::contact_not_found(&raw))?;
            let id = c.id as i64;
            conn.execute("DELETE FROM engagement_contacts WHERE contact_id = ?1", [id])?;
            conn.execute("DELETE FROM deal_contacts WHERE contact_id = ?1", [id])?;
            conn.execute("DELETE FROM write_journal WHERE contact_id = ?1", [id])?;
            conn.execute("DELETE FROM contacts WHERE id = ?1", [id])?;
            Ok(())
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
