//! Batch endpoints: upsert by email (all-or-nothing, results in input order) and read (200 / 207).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::contacts::{find, parse_object, render, target, Selection, BATCH_MAX};
use super::error::{ApiError, PropIssue};
use super::routes::Dialect;
use super::rules::{self, ValidationRule};
use super::store;
use super::validate::{coerce_properties, is_email, iso_ms, now_ms, validate_all};
use super::Sandbox;

/// The `inputs` array of a batch body (≤ 100).
fn batch_inputs(v: &Value) -> Result<&Vec<Value>, ApiError> {
    let Some(inputs) = v.get("inputs").and_then(Value::as_array) else {
        return Err(ApiError::invalid_json(
            "Cannot build BatchInput, some of required attributes are not set [inputs]",
        ));
    };
    if inputs.len() > BATCH_MAX {
        return Err(ApiError::validation(format!(
            "Batch input contains {} inputs; the limit is {BATCH_MAX}",
            inputs.len()
        )));
    }
    Ok(inputs)
}

/// An input's `id`: a string, or a number taken as its decimal string.
fn input_id(input: &Value) -> Option<String> {
    match input.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

struct UpsertInput {
    id: String,
    email: String,
    pairs: Vec<(String, String)>,
    trace_id: Option<String>,
}

fn parse_upsert_inputs(v: &Value) -> Result<Vec<UpsertInput>, ApiError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut dups = Vec::new();
    for input in batch_inputs(v)? {
        let Some(id) = input_id(input) else {
            return Err(ApiError::invalid_json(
                "Cannot build SimplePublicObjectBatchInputUpsert, some of required attributes are not set [id]",
            ));
        };
        match input.get("idProperty").and_then(Value::as_str) {
            Some("email") => {}
            other => {
                return Err(ApiError::validation(format!(
                    "idProperty must be a unique value property; the sandbox upserts contacts by email, got {}",
                    other.map_or("nothing".to_string(), |o| format!("'{o}'"))
                )))
            }
        }
        let pairs = coerce_properties(input.get("properties"))?;
        let email = id.to_lowercase();
        if !seen.insert(email.clone()) {
            dups.push(id.clone());
        }
        let trace_id = input.get("objectWriteTraceId").and_then(Value::as_str).map(String::from);
        out.push(UpsertInput { id, email, pairs, trace_id });
    }
    if !dups.is_empty() {
        return Err(ApiError::validation(format!(
            "Duplicate IDs found in batch input: [{}]. IDs must be unique",
            dups.join(", ")
        ))
        .with("context", json!({"ids": dups})));
    }
    Ok(out)
}

/// Why one input of a batch upsert was refused.
enum Refusal {
    /// Bad property values (a whole-batch answer lists every input's).
    Issues(Vec<PropIssue>),
    /// Anything else: the answer as it is.
    Error(ApiError),
}

impl Refusal {
    fn into_error(self) -> ApiError {
        match self {
            Refusal::Issues(issues) => ApiError::properties(&issues),
            Refusal::Error(e) => e,
        }
    }
}

/// One input's validated values, or why it was refused (portal rules last, against the record after the write).
fn check_input(
    input: &UpsertInput,
    st: &store::Store,
    rules: &[ValidationRule],
) -> Result<BTreeMap<String, String>, Refusal> {
    if !is_email(&input.id) {
        return Err(Refusal::Issues(vec![PropIssue {
            code: "INVALID_EMAIL",
            name: "email".into(),
            message: format!("Email address {} is invalid", input.id),
        }]));
    }
    let mut values = validate_all(&input.pairs, |n| st.property(n)).map_err(Refusal::Issues)?;
    if let Some(e) = values.get("email").filter(|e| **e != input.email) {
        let message = format!("Property email \"{e}\" differs from the upsert id \"{}\"", input.id);
        return Err(Refusal::Error(ApiError::validation(message)));
    }
    values.insert("email".into(), input.email.clone());
    if !rules.is_empty() {
        let existing = store::by_email(st.conn(), &input.email).map_err(|e| Refusal::Error(e.into()))?;
        let creating = existing.is_none();
        let mut after = existing.map(|c| c.props).unwrap_or_default();
        for (k, v) in &values {
            after.insert(k.clone(), v.clone());
        }
        rules::check(rules, &after, creating).map_err(Refusal::Error)?;
    }
    Ok(values)
}

/// `POST …/objects/…/contacts/batch/upsert` by email, results in input order. When every input carries an
/// `objectWriteTraceId`, refused inputs are answered in a 207's `errors` (each naming its trace id) and the
/// others are stored; otherwise one refused input fails the whole batch (HubSpot's email-keyed behaviour).
pub(crate) async fn batch_upsert(
    State(sb): State<Sandbox>,
    Extension(dialect): Extension<Dialect>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = now_ms();
    let v = parse_object(&body)?;
    let inputs = parse_upsert_inputs(&v)?;
    let multi_status = !inputs.is_empty() && inputs.iter().all(|i| i.trace_id.is_some());
    let rules = if dialect.enforces_rules { sb.validation_rules() } else { Vec::new() };
    let (results, errors) = sb
        .with_store(move |st| {
            let mut writes = Vec::with_capacity(inputs.len());
            let mut errors = Vec::new();
            let mut issues: Vec<PropIssue> = Vec::new();
            for input in &inputs {
                match check_input(input, st, &rules) {
                    Ok(values) => writes.push((input, values)),
                    Err(refusal) if multi_status => {
                        // HubSpot's StandardError: `status`, `category`, `message`, `context`, `links` and
                        // `errors` are all required (an empty list when no property is at fault).
                        let mut body = refusal.into_error().body;
                        body.insert("context".into(), json!({"objectWriteTraceId": [input.trace_id]}));
                        body.insert("links".into(), json!({}));
                        body.entry("errors").or_insert_with(|| json!([]));
                        body.remove("correlationId");
                        errors.push(Value::Object(body));
                    }
                    Err(Refusal::Issues(mut more)) => issues.append(&mut more),
                    Err(Refusal::Error(e)) => return Err(e),
                }
            }
            if !issues.is_empty() {
                return Err(ApiError::properties(&issues));
            }
            let now = now_ms();
            let written = st.write(|conn| {
                let mut out = Vec::with_capacity(writes.len());
                for (input, values) in &writes {
                    let written = match store::by_email(conn, &input.email)? {
                        Some(mut c) => {
                            c.merge(values);
                            c.updated_ms = now;
                            store::update(conn, &c)?;
                            (c, false, input.trace_id.clone())
                        }
                        None => {
                            let mut props = BTreeMap::new();
                            for (k, v) in values.iter().filter(|(_, v)| !v.is_empty()) {
                                props.insert(k.clone(), v.clone());
                            }
                            (store::insert(conn, props, now)?, true, input.trace_id.clone())
                        }
                    };
                    store::journal(conn, written.0.id, values.get(store::WRITE_MARKER).map(String::as_str))?;
                    out.push(written);
                }
                Ok(out)
            })?;
            let results = written
                .iter()
                .map(|(c, new, trace)| {
                    let mut r = render(c, &Selection::Stored, st);
                    r["new"] = json!(new);
                    if let Some(t) = trace {
                        r["objectWriteTraceId"] = json!(t);
                    }
                    r
                })
                .collect::<Vec<_>>();
            Ok((results, errors))
        })
        .await?;
    let mut out = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso_ms(started),
        "completedAt": iso_ms(now_ms()),
    });
    if errors.is_empty() {
        return Ok(Json(out).into_response());
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    out["links"] = json!({});
    Ok((StatusCode::MULTI_STATUS, Json(out)).into_response())
}

/// `POST /crm/v3/objects/contacts/batch/read`: 200, or 207 listing the ids not found.
pub(crate) async fn batch_read(State(sb): State<Sandbox>, body: Bytes) -> Result<Response, ApiError> {
    let started = now_ms();
    let v = parse_object(&body)?;
    let id_property = v.get("idProperty").and_then(Value::as_str).map(String::from);
    let mut targets = Vec::new();
    for input in batch_inputs(&v)? {
        let id = input_id(input).ok_or_else(|| {
            ApiError::invalid_json("Cannot build SimplePublicObjectId, some of required attributes are not set [id]")
        })?;
        targets.push((target(&id, id_property.as_deref())?, id));
    }
    let sel = match v.get("properties").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => {
            Selection::Named(names.iter().filter_map(Value::as_str).map(String::from).collect())
        }
        _ => Selection::Default,
    };
    let (results, missing) = sb
        .with_store(move |st| {
            let mut results = Vec::new();
            let mut seen = BTreeSet::new();
            let mut missing = Vec::new();
            for (t, raw) in &targets {
                match find(st.conn(), t)? {
                    Some(c) if seen.insert(c.id) => results.push(render(&c, &sel, st)),
                    Some(_) => {}
                    None => missing.push(raw.clone()),
                }
            }
            Ok((results, missing))
        })
        .await?;
    let mut out = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso_ms(started),
        "completedAt": iso_ms(now_ms()),
    });
    if missing.is_empty() {
        return Ok(Json(out).into_response());
    }
    out["numErrors"] = json!(1);
    // A StandardError: `links` and `errors` are required beside the rest.
    out["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        "context": {"ids": missing},
        "links": {},
        "errors": [],
    }]);
    Ok((StatusCode::MULTI_STATUS, Json(out)).into_response())
}
