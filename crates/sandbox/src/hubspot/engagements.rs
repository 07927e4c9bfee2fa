//! Engagement objects (timeline activities): notes, calls, emails, meetings, tasks and communications,
//! created with inline associations to contacts, read back by id, and listed from a contact.
//!
//! Validation follows HubSpot's engagements API: `hs_timestamp` is required (Unix ms or
//! ISO-8601) and stored as ISO-8601 UTC with milliseconds; each object type has its own property list
//! (anything else is `PROPERTY_DOESNT_EXIST`); enumerations answer `INVALID_OPTION`; an association must name
//! an existing contact and the object's HubSpot-defined type id (note 202, call 194, email 198, meeting 200,
//! task 204, communication 81).
//!
//! Reading a contact's engagements (`associations.rs`) answers HubSpot's
//! **v4** association shape, seen from the contact, so the type ids are the reverse ones (contact → note 201,
//! call 193, email 197, meeting 199, task 203, communication 82):
//! `{"results":[{"toObjectId":123,"associationTypes":[{"category":"HUBSPOT_DEFINED","typeId":201,"label":null}]}]}`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::contacts::{parse_object, path_param, PathParams};
use super::error::{ApiError, PropIssue};
use super::store;
use super::validate::{check_datetime, coerce_properties, is_decimal, iso_ms, now_ms};
use super::Sandbox;

/// The engagement object types the sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object {
    Note,
    Call,
    Email,
    Meeting,
    Task,
    Communication,
}

/// How a property's value is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Free text, at most this many characters.
    Text(usize),
    Enum(&'static [&'static str]),
    Number,
    Datetime,
}

const TEXT: Kind = Kind::Text(65_536);

const CALL_STATUS: &[&str] = &[
    "BUSY",
    "CALLING_CRM_USER",
    "CANCELED",
    "COMPLETED",
    "CONNECTING",
    "FAILED",
    "IN_PROGRESS",
    "MISSED",
    "NO_ANSWER",
    "QUEUED",
    "RINGING",
];
const EMAIL_STATUS: &[&str] = &["BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"];
const MEETING_OUTCOME: &[&str] = &["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"];
const TASK_STATUS: &[&str] = &["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"];

impl Object {
    pub const ALL: [Object; 6] =
        [Object::Note, Object::Call, Object::Email, Object::Meeting, Object::Task, Object::Communication];

    /// The path segment and stored type name: `notes`, `calls`, ...
    pub fn path(self) -> &'static str {
        match self {
            Object::Note => "notes",
            Object::Call => "calls",
            Object::Email => "emails",
            Object::Meeting => "meetings",
            Object::Task => "tasks",
            Object::Communication => "communications",
        }
    }

    /// HUBSPOT_DEFINED association type id, this object → contact.
    pub fn type_id_to_contact(self) -> u32 {
        match self {
            Object::Note => 202,
            Object::Call => 194,
            Object::Email => 198,
            Object::Meeting => 200,
            Object::Task => 204,
            Object::Communication => 81,
        }
    }

    /// HUBSPOT_DEFINED association type id, contact → this object.
    pub fn contact_to_type_id(self) -> u32 {
        match self {
            Object::Note => 201,
            Object::Call => 193,
            Object::Email => 197,
            Object::Meeting => 199,
            Object::Task => 203,
            Object::Communication => 82,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Object::Email => &["hs_timestamp", "hs_email_direction"],
            _ => &["hs_timestamp"],
        }
    }

    /// The settable properties of the object (besides `hs_timestamp`).
    fn properties(self) -> &'static [(&'static str, Kind)] {
        match self {
            Object::Note => &[("hs_note_body", TEXT)],
            Object::Call => &[
                ("hs_call_body", TEXT),
                ("hs_call_title", TEXT),
                ("hs_call_direction", Kind::Enum(&["INBOUND", "OUTBOUND"])),
                ("hs_call_status", Kind::Enum(CALL_STATUS)),
                ("hs_call_duration", Kind::Number),
            ],
            Object::Email => &[
                ("hs_email_direction", Kind::Enum(&["EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"])),
                ("hs_email_subject", TEXT),
                ("hs_email_text", TEXT),
                ("hs_email_status", Kind::Enum(EMAIL_STATUS)),
            ],
            Object::Meeting => &[
                ("hs_meeting_title", TEXT),
                ("hs_meeting_body", TEXT),
                ("hs_meeting_start_time", Kind::Datetime),
                ("hs_meeting_end_time", Kind::Datetime),
                ("hs_meeting_outcome", Kind::Enum(MEETING_OUTCOME)),
            ],
            Object::Task => &[
                ("hs_task_subject", TEXT),
                ("hs_task_body", TEXT),
                ("hs_task_status", Kind::Enum(TASK_STATUS)),
                ("hs_task_priority", Kind::Enum(&["LOW", "MEDIUM", "HIGH"])),
                ("hs_task_type", Kind::Enum(&["EMAIL", "CALL", "TODO"])),
            ],
            Object::Communication => &[
                ("hs_communication_channel_type", Kind::Enum(&["SMS", "WHATS_APP", "LINKEDIN_MESSAGE"])),
                ("hs_communication_body", TEXT),
                ("hs_communication_logged_from", Kind::Enum(&["CRM"])),
            ],
        }
    }

    fn kind_of(self, name: &str) -> Option<Kind> {
        if name == "hs_timestamp" {
            return Some(Kind::Datetime);
        }
        self.properties().iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}

fn issue(code: &'static str, name: &str, message: String) -> PropIssue {
    PropIssue { code, name: name.into(), message }
}

/// Validates and normalises the properties of a new engagement; every problem is reported.
pub(crate) fn validate(object: Object, pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let mut issues = Vec::new();
    for (name, value) in pairs {
        let Some(kind) = object.kind_of(name) else {
            issues.push(issue("PROPERTY_DOESNT_EXIST", name, format!("Property \"{name}\" does not exist")));
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let checked = match kind {
            Kind::Text(max) if value.chars().count() > max => Err(issue(
                "INVALID_STRING_LENGTH",
                name,
                format!("{name} is {} characters long; at most {max} are allowed", value.chars().count()),
            )),
            Kind::Text(_) => Ok(value.clone()),
            Kind::Enum(options) if options.contains(&value.as_str()) => Ok(value.clone()),
            Kind::Enum(options) => Err(issue(
                "INVALID_OPTION",
                name,
                format!("{value} was not one of the allowed options: [{}]", options.join(", ")),
            )),
            Kind::Number if is_decimal(value) => Ok(value.clone()),
            Kind::Number => Err(issue("INVALID_INTEGER", name, format!("{value} was not a valid number."))),
            Kind::Datetime => check_datetime(value).ok_or_else(|| {
                issue(
                    "INVALID_DATETIME",
                    name,
                    format!("{value} is not a valid datetime; use epoch milliseconds or ISO-8601"),
                )
            }),
        };
        match checked {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(i) => issues.push(i),
        }
    }
    for required in object.required() {
        if !out.contains_key(*required) && !issues.iter().any(|i| i.name == *required) {
            issues.push(issue(
                "MISSING_REQUIRED_PROPERTY",
                required,
                format!("Property \"{required}\" is required for {}", object.path()),
            ));
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::properties(&issues))
    }
}

/// Reads the inline `associations` of a create: the contact ids, each checked for the object's type id.
fn parse_associations(object: Object, v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid_json("associations must be an array")),
    };
    let expected = object.type_id_to_contact();
    let mut ids = Vec::new();
    for a in items {
        let id = match a.pointer("/to/id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ApiError::invalid_json("each association needs to.id")),
        };
        let types = a
            .get("types")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::invalid_json("each association needs a non-empty types array"))?;
        for t in types {
            let category = t.get("associationCategory").and_then(Value::as_str).unwrap_or_default();
            let type_id = t.get("associationTypeId").and_then(Value::as_u64);
            if category != "HUBSPOT_DEFINED" || type_id != Some(u64::from(expected)) {
                let shown = type_id.map_or_else(|| "missing".to_string(), |t| t.to_string());
                return Err(ApiError::validation(format!(
                    "{category} association type {shown} is not valid from {} to contacts; use HUBSPOT_DEFINED \
                     {expected}",
                    object.path()
                ))
                .with("subCategory", json!("crm.associations.INVALID_ASSOCIATION_TYPE"))
                .with("context", json!({"associationTypeId": [shown]})));
            }
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// One stored engagement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Engagement {
    pub id: u64,
    pub object: Object,
    pub props: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn render(e: &Engagement) -> Value {
    let mut props = serde_json::Map::new();
    for (k, v) in &e.props {
        props.insert(k.clone(), json!(v));
    }
    props.insert("hs_object_id".into(), json!(e.id.to_string()));
    props.insert("hs_createdate".into(), json!(iso_ms(e.created_ms)));
    props.insert("hs_lastmodifieddate".into(), json!(iso_ms(e.updated_ms)));
    json!({
        "id": e.id.to_string(),
        "properties": props,
        "createdAt": iso_ms(e.created_ms),
        "updatedAt": iso_ms(e.updated_ms),
        "archived": false,
    })
}

fn insert(
    conn: &Connection,
    object: Object,
    props: BTreeMap<String, String>,
    contacts: &[u64],
) -> rusqlite::Result<Engagement> {
    let now = now_ms();
    let json = serde_json::to_string(&props).unwrap_or_else(|_| "{}".into());
    conn.execute(
        "INSERT INTO engagements (object, properties, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
        params![object.path(), json, now],
    )?;
    let id = conn.last_insert_rowid();
    for c in contacts {
        conn.execute(
            "INSERT OR IGNORE INTO engagement_contacts (engagement_id, contact_id, type_id) VALUES (?1, ?2, ?3)",
            params![id, *c as i64, object.type_id_to_contact()],
        )?;
    }
    Ok(Engagement { id: id as u64, object, props, created_ms: now, updated_ms: now })
}

fn by_id(conn: &Connection, object: Object, id: &str) -> rusqlite::Result<Option<Engagement>> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT properties, created_ms, updated_ms FROM engagements WHERE id = ?1 AND object = ?2",
        params![id, object.path()],
        |r| {
            let props: String = r.get(0)?;
            Ok(Engagement {
                id: id as u64,
                object,
                props: serde_json::from_str(&props).unwrap_or_default(),
                created_ms: r.get(1)?,
                updated_ms: r.get(2)?,
            })
        },
    )
    .optional()
}

/// `POST /crm/v3/objects/{notes|calls|...}` → 201.
pub(crate) async fn create(sb: Sandbox, object: Object, body: Bytes) -> Result<Response, ApiError> {
    let v = parse_object(&body)?;
    let pairs = coerce_properties(v.get("properties"))?;
    let props = validate(object, &pairs)?;
    let contacts = parse_associations(object, v.get("associations"))?;
    let out = sb
        .with_store(move |st| {
            let e = st.write(|conn| {
                let mut ids = Vec::with_capacity(contacts.len());
                let mut missing = Vec::new();
                for raw in &contacts {
                    match raw.parse::<u64>().ok().map(|id| store::by_id(conn, id)).transpose()?.flatten() {
                        Some(c) => ids.push(c.id),
                        None => missing.push(raw.clone()),
                    }
                }
                if !missing.is_empty() {
                    return Err(ApiError::validation(format!(
                        "Could not create associations: contact ids [{}] were not found",
                        missing.join(", ")
                    ))
                    .with("subCategory", json!("crm.associations.INVALID_OBJECT_IDS"))
                    .with("context", json!({"toObjectId": missing})));
                }
                Ok(insert(conn, object, props, &ids)?)
            })?;
            Ok(render(&e))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /crm/v3/objects/{notes|calls|...}/{id}`
pub(crate) async fn get(
    sb: Sandbox,
    object: Object,
    params: PathParams,
    query: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let raw = path_param(params, "id")?;
    let wanted = super::contacts::Query::parse(query)?.names("associations");
    let out = sb
        .with_store(move |st| {
            let e = by_id(st.conn(), object, &raw)?.ok_or_else(|| {
                ApiError::not_found(format!("Object not found.  objectId are usually numeric. ({raw})"))
                    .with("context", json!({"id": [raw]}))
            })?;
            let mut out = render(&e);
            let associations = super::associations::inline(st.conn(), object, e.id, &wanted)?;
            if associations.as_object().is_some_and(|a| !a.is_empty()) {
                out["associations"] = associations;
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out))
}
