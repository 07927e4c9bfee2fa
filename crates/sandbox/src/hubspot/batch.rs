//! Batch endpoints: upsert by email (all-or-nothing, results in input order) and read (200 / 207).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::contacts::{find, parse_object, render, target, Selection, BATCH_MAX};
use super::error::{ApiError, PropIssue};
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
        out.push(UpsertInput { id, email, pairs });
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

/// `POST /crm/v3/objects/contacts/batch/upsert` by email: all-or-nothing, results in input order.
pub(crate) async fn batch_upsert(State(sb): State<Sandbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let started = now_ms();
    let v = parse_object(&body)?;
    let inputs = parse_upsert_inputs(&v)?;
    let results = sb
        .with_store(move |st| {
            let mut issues: Vec<PropIssue> = Vec::new();
            let mut writes = Vec::with_capacity(inputs.len());
            for input in &inputs {
                if !is_email(&input.id) {
                    issues.push(PropIssue {
                        code: "INVALID_EMAIL",
                        name: "email".into(),
                        message: format!("Email address {} is invalid", input.id),
                    });
                    continue;
                }
                match validate_all(&input.pairs, |n| st.property(n)) {
                    Ok(mut values) => {
                        if let Some(e) = values.get("email").filter(|e| **e != input.email) {
                            return Err(ApiError::validation(format!(
                                "Property email \"{e}\" differs from the upsert id \"{}\"",
                                input.id
                            )));
                        }
                        values.insert("email".into(), input.email.clone());
                        writes.push((input.email.clone(), values));
                    }
                    Err(mut more) => issues.append(&mut more),
                }
            }
            if !issues.is_empty() {
                return Err(ApiError::properties(&issues));
            }
            let now = now_ms();
            let written = st.write(|conn| {
                let mut out = Vec::with_capacity(writes.len());
                for (email, values) in &writes {
                    match store::by_email(conn, email)? {
                        Some(mut c) => {
                            c.merge(values);
                            c.updated_ms = now;
                            store::update(conn, &c)?;
                            out.push((c, false));
                        }
                        None => {
                            let mut props = BTreeMap::new();
                            for (k, v) in values.iter().filter(|(_, v)| !v.is_empty()) {
                                props.insert(k.clone(), v.clone());
                            }
                            out.push((store::insert(conn, props, now)?, true));
                        }
                    }
                }
                Ok(out)
            })?;
            Ok(written
                .iter()
                .map(|(c, new)| {
                    let mut r = render(c, &Selection::Stored, st);
                    r["new"] = json!(new);
                    r
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso_ms(started),
        "completedAt": iso_ms(now_ms()),
    })))
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
    out["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        "context": {"ids": missing},
    }]);
    Ok((StatusCode::MULTI_STATUS, Json(out)).into_response())
}
