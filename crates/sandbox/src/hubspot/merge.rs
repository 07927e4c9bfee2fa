//! Merging two contacts, as a portal user does in HubSpot: `POST /__sandbox/merge`
//! `{"primary":"1001","merged":"1002","new_id":true}`. The primary's values win, the merged one's fill the gaps;
//! engagements and deals move to the survivor; `hs_merged_object_ids` lists the absorbed ids. With `new_id`
//! (the default, as HubSpot now does) the survivor gets a fresh id and both old ids are merged away.
//!
//! Afterwards a read of a merged-away id answers the survivor (with its own, different id), and a write to it
//! answers 404, so a stale link shows. The answer names the survivor and the merged-away ids, like HubSpot's
//! `contact.merge` webhook (`primaryObjectId`, `mergedObjectIds`, `newObjectId`).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::error::ApiError;
use super::store::{self, Contact};
use super::validate::now_ms;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS merged_contacts (
    id INTEGER PRIMARY KEY,
    survivor INTEGER NOT NULL
);
";

/// The contact a merged-away id now is (following merges of merges); `None` for an id never merged.
pub(crate) fn survivor_of(conn: &Connection, id: u64) -> rusqlite::Result<Option<u64>> {
    let mut current = id;
    let mut moved = false;
    for _ in 0..32 {
        let next: Option<i64> = conn
            .query_row("SELECT survivor FROM merged_contacts WHERE id = ?1", [current as i64], |r| r.get(0))
            .optional()?;
        match next {
            Some(n) => {
                current = n as u64;
                moved = true;
            }
            None => break,
        }
    }
    Ok(moved.then_some(current))
}

fn id_of(body: &Value, key: &str) -> Result<u64, ApiError> {
    let raw = match body.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ApiError::validation(format!("`{key}` (a contact id) is required"))),
    };
    raw.parse().map_err(|_| ApiError::validation(format!("`{key}`: `{raw}` is not a contact id")))
}

/// Merges `merged` into `primary`; returns the webhook-shaped answer.
pub(crate) fn merge(conn: &Connection, body: &Value) -> Result<Value, ApiError> {
    let (primary_id, merged_id) = (id_of(body, "primary")?, id_of(body, "merged")?);
    let new_id = body.get("new_id").and_then(Value::as_bool).unwrap_or(true);
    if primary_id == merged_id {
        return Err(ApiError::validation("a contact cannot be merged with itself"));
    }
    let find = |id: u64| -> Result<Contact, ApiError> {
        store::by_id(conn, id)?.ok_or_else(|| ApiError::contact_not_found(&id.to_string()))
    };
    let (primary, merged) = (find(primary_id)?, find(merged_id)?);
    let mut props: BTreeMap<String, String> = merged.props.clone();
    props.extend(primary.props.clone());
    let mut absorbed: Vec<u64> = vec![merged_id];
    if new_id {
        absorbed.push(primary_id);
    }
    for earlier in [&primary, &merged] {
        if let Some(ids) = earlier.props.get("hs_merged_object_ids") {
            absorbed.extend(ids.split(';').filter_map(|i| i.parse::<u64>().ok()));
        }
    }
    absorbed.sort_unstable();
    absorbed.dedup();
    props.insert("hs_merged_object_ids".into(), absorbed.iter().map(u64::to_string).collect::<Vec<_>>().join(";"));
    if let Some(other) = merged.email().filter(|e| Some(*e) != primary.email()) {
        props.insert("hs_additional_emails".into(), other.to_string());
    }
    let now = now_ms();
    conn.execute("DELETE FROM contacts WHERE id = ?1", [merged_id as i64])?;
    let survivor = if new_id {
        conn.execute("DELETE FROM contacts WHERE id = ?1", [primary_id as i64])?;
        let mut c = store::insert(conn, props, now)?;
        c.created_ms = primary.created_ms;
        store::update(conn, &c)?;
        c
    } else {
        let mut c = Contact { props, updated_ms: now, ..primary };
        c.id = primary_id;
        store::update(conn, &c)?;
        c
    };
    for old in [merged_id, primary_id].into_iter().filter(|o| *o != survivor.id) {
        conn.execute(
            "INSERT OR REPLACE INTO merged_contacts (id, survivor) VALUES (?1, ?2)",
            params![old as i64, survivor.id as i64],
        )?;
        conn.execute(
            "UPDATE OR IGNORE engagement_contacts SET contact_id = ?2 WHERE contact_id = ?1",
            params![old as i64, survivor.id as i64],
        )?;
        conn.execute("DELETE FROM engagement_contacts WHERE contact_id = ?1", [old as i64])?;
        conn.execute(
            "UPDATE OR IGNORE deal_contacts SET contact_id = ?2 WHERE contact_id = ?1",
            params![old as i64, survivor.id as i64],
        )?;
        conn.execute("DELETE FROM deal_contacts WHERE contact_id = ?1", [old as i64])?;
    }
    let merged_away: Vec<String> =
        [merged_id, primary_id].into_iter().filter(|o| *o != survivor.id).map(|o| o.to_string()).collect();
    Ok(json!({
        "primaryObjectId": primary_id.to_string(),
        "mergedObjectIds": [merged_id.to_string()],
        "newObjectId": survivor.id.to_string(),
        "mergedAway": merged_away,
    }))
}
