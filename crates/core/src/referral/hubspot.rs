//! HubSpot → us: workflow "Send a webhook" bodies and app webhook batches.
//!
//! Workflow bodies come in three shapes, all accepted:
//! - "all properties": the object as HubSpot's object APIs return it. Contact workflows send the legacy contact
//!   record (`vid`, `properties: {email: {value, versions...}}`), deal workflows the legacy deal
//!   (`dealId`, `properties: {dealstage: {value, timestamp, source...}}`, `associations.associatedVids`); the v3
//!   form (`id`, `properties: {email: "..."}`) is read the same way: a property is its `value` or its plain value;
//! - a custom body of flat key/values (`{"email": ..., "advocate_code": ...}` or a deal's `dealstage`, ...);
//! - Extole's own recipe body (`{"event_name": ..., "data": {...}}`) pointed at us instead of Extole.
//!
//! A body is a deal when it has a `dealstage` (or a top-level `dealId`), otherwise a contact.
//! App webhooks are a JSON array of events (`subscriptionType` or `eventType`, `objectId`, ...), each its own trigger.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{normalise_email, ContactSignup, DealStage, ReferralConfig, ReferralError, ReferralTrigger};

/// More events than HubSpot ever batches (it sends under 100): anything larger is not HubSpot.
const MAX_BATCH: usize = 1000;

/// Parses a HubSpot webhook body: an array is an app webhook batch (one trigger per event), an object a
/// workflow webhook (one trigger).
pub fn parse_hubspot(body: &[u8], config: &ReferralConfig) -> Result<Vec<ReferralTrigger>, ReferralError> {
    match super::parse_json(body)? {
        Value::Array(events) => {
            if events.is_empty() || events.len() > MAX_BATCH {
                return Err(ReferralError::payload(format!("a batch holds 1 to {MAX_BATCH} events")));
            }
            events.iter().enumerate().map(|(i, e)| app_event(i, e, config)).collect()
        }
        Value::Object(obj) => Ok(vec![workflow(&obj, config)?]),
        _ => Err(ReferralError::payload("expected a JSON object (workflow) or array (app webhook batch)")),
    }
}

/// A property value as text: scalars as written, `{"value": ...}` unwrapped; null, empty, lists and other
/// objects are absent.
fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) => return o.get("value").and_then(text),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn flatten(obj: &Map<String, Value>) -> BTreeMap<String, String> {
    obj.iter().filter_map(|(k, v)| text(v).map(|t| (k.clone(), t))).collect()
}

fn first<'a>(props: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a String> {
    keys.iter().find_map(|k| props.get(*k))
}

/// An object id: digits (HubSpot ids are numeric), from a number or a string.
fn object_id(field: &str, v: &str) -> Result<String, ReferralError> {
    if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_owned())
    } else {
        Err(ReferralError::invalid(field, format!("`{v}` is not a HubSpot object id")))
    }
}

/// A contact workflow body's contact: its id and, when the body says, when it last changed. `None` for a deal,
/// an app-webhook batch, or a body without a usable contact id.
pub fn workflow_contact(body: &[u8]) -> Option<(String, Option<OffsetDateTime>)> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else { return None };
    let props = workflow_properties(&obj).ok()?;
    if props.contains_key("dealstage") || obj.contains_key("dealId") {
        return None;
    }
    let id = first(&props, &["hs_object_id", "contact_id", "vid"]).filter(|v| object_id("", v).is_ok())?;
    let changed = first(&props, &["lastmodifieddate", "hs_lastmodifieddate"]).and_then(|d| parse_time(d));
    Some((id.clone(), changed))
}

/// A workflow body's properties, flat, with the ids HubSpot puts beside `properties` as `hs_object_id`.
fn workflow_properties(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, ReferralError> {
    let top = flatten(obj);
    let mut props = match (obj.get("properties"), obj.get("data")) {
        (Some(Value::Object(p)), _) => flatten(p),
        (_, Some(Value::Object(d))) if obj.contains_key("event_name") => flatten(d),
        (Some(_), _) => return Err(ReferralError::invalid("properties", "must be an object")),
        _ => top.clone(),
    };
    // Ids HubSpot puts beside `properties` in the all-properties shapes.
    if !props.contains_key("hs_object_id") {
        if let Some(id) = first(&top, &["dealId", "vid", "canonical-vid", "objectId", "id"]) {
            props.insert("hs_object_id".into(), id.clone());
        }
    }
    Ok(props)
}

fn workflow(obj: &Map<String, Value>, config: &ReferralConfig) -> Result<ReferralTrigger, ReferralError> {
    let top = flatten(obj);
    let props = workflow_properties(obj)?;
    if props.contains_key("dealstage") || top.contains_key("dealId") {
        deal(obj, props, config)
    } else {
        contact(props, config)
    }
}

fn contact(props: BTreeMap<String, String>, config: &ReferralConfig) -> Result<ReferralTrigger, ReferralError> {
    let contact_id = first(&props, &["hs_object_id", "contact_id", "vid"]).map(|v| object_id("hs_object_id", v));
    let contact_id = contact_id.transpose()?;
    let email = props.get("email").map(|e| normalise_email("email", e)).transpose()?;
    if email.is_none() && contact_id.is_none() {
        return Err(ReferralError::missing("email", "a contact webhook needs `email` (or the contact's id)"));
    }
    let code_keys = [config.advocate_code_property.as_str(), "advocate_code"];
    let Some(advocate_code) = first(&props, &code_keys).cloned() else {
        return Ok(ReferralTrigger::Ignored {
            reason: format!("contact has no `{}`: not a referral", config.advocate_code_property),
        });
    };
    let occurred_at = first(&props, &["event_date", "date", "lastmodifieddate"]).and_then(|d| parse_time(d));
    Ok(ReferralTrigger::ContactSignup(ContactSignup {
        contact_id,
        email,
        advocate_code: Some(advocate_code),
        first_name: first(&props, &["firstname", "first_name"]).cloned(),
        last_name: first(&props, &["lastname", "last_name"]).cloned(),
        company: props.get("company").cloned(),
        occurred_at,
    }))
}

fn deal(
    obj: &Map<String, Value>,
    props: BTreeMap<String, String>,
    config: &ReferralConfig,
) -> Result<ReferralTrigger, ReferralError> {
    let Some(raw_id) = first(&props, &["hs_object_id", "deal_id"]) else {
        return Err(ReferralError::missing("hs_object_id", "a deal webhook needs the deal id (`hs_object_id`)"));
    };
    let deal_id = object_id("hs_object_id", raw_id)?;
    let Some(stage) = props.get("dealstage").cloned() else {
        return Err(ReferralError::missing("dealstage", "a deal webhook needs `dealstage`"));
    };
    if !config.is_conversion_stage(&stage) {
        return Ok(ReferralTrigger::Ignored { reason: format!("deal stage `{stage}` is not a conversion stage") });
    }
    let contact_email = props.get("email").map(|e| normalise_email("email", e)).transpose()?;
    let associated = obj.get("associations").and_then(|a| a.get("associatedVids")).and_then(Value::as_array);
    let contact_id = associated
        .and_then(|vids| vids.first())
        .and_then(text)
        .or_else(|| props.get("contact_id").cloned())
        .map(|id| object_id("contact_id", &id))
        .transpose()?;
    let occurred_at = first(&props, &["lastmodifieddate", "hs_lastmodifieddate"]).and_then(|d| parse_time(d));
    Ok(ReferralTrigger::DealStage(DealStage {
        deal_id,
        stage,
        occurred_at,
        properties: props,
        contact_email,
        contact_id,
        partial: false,
    }))
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    crate::dates::parse_lead_date(s).ok().map(|d| d.instant)
}

/// `contact.merge`: `primaryObjectId`, `mergedObjectIds`, and `newObjectId` when the survivor got a new id
/// (then the primary's old id is merged away too).
fn merge_event(i: usize, obj: &Map<String, Value>) -> Result<ReferralTrigger, ReferralError> {
    let field = |name: &str| format!("[{i}].{name}");
    let id = |name: &str| -> Result<Option<String>, ReferralError> {
        obj.get(name).and_then(text).map(|v| object_id(&field(name), &v)).transpose()
    };
    let primary = id("primaryObjectId")?.or(id("objectId")?).ok_or_else(|| {
        ReferralError::missing(&field("primaryObjectId"), "a contact.merge event needs `primaryObjectId`")
    })?;
    let survivor = id("newObjectId")?.unwrap_or_else(|| primary.clone());
    let mut merged = Vec::new();
    for v in obj.get("mergedObjectIds").and_then(Value::as_array).into_iter().flatten() {
        let raw = text(v).unwrap_or_default();
        merged.push(object_id(&field("mergedObjectIds"), &raw)?);
    }
    if primary != survivor {
        merged.push(primary);
    }
    merged.retain(|m| *m != survivor);
    merged.dedup();
    if merged.is_empty() {
        return Err(ReferralError::missing(&field("mergedObjectIds"), "a contact.merge event needs `mergedObjectIds`"));
    }
    Ok(ReferralTrigger::ContactMerge { survivor, merged })
}

fn app_event(i: usize, event: &Value, config: &ReferralConfig) -> Result<ReferralTrigger, ReferralError> {
    let field = |name: &str| format!("[{i}].{name}");
    let obj = event.as_object().ok_or_else(|| ReferralError::payload(format!("event [{i}] is not an object")))?;
    let kind = ["subscriptionType", "eventType"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .ok_or_else(|| ReferralError::missing(&field("subscriptionType"), "every event needs `subscriptionType`"))?;
    if kind == "contact.merge" {
        return merge_event(i, obj);
    }
    let id_text = obj
        .get("objectId")
        .and_then(text)
        .ok_or_else(|| ReferralError::missing(&field("objectId"), format!("event [{i}] ({kind}) has no `objectId`")))?;
    let object_id = object_id(&field("objectId"), &id_text)?;
    let occurred_at = match obj.get("occurredAt") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
                .ok_or_else(|| ReferralError::invalid(&field("occurredAt"), "must be epoch milliseconds"))?,
        ),
    };
    let property = obj.get("propertyName").and_then(Value::as_str).unwrap_or_default();
    let value = obj.get("propertyValue").and_then(text);
    // Generic webhooks (`object.propertyChange`) name the object type by id: 0-1 contacts, 0-3 deals.
    let kind = match (kind, obj.get("objectTypeId").and_then(Value::as_str)) {
        (k, Some("0-1")) if k.starts_with("object.") => k.replacen("object.", "contact.", 1),
        (k, Some("0-3")) if k.starts_with("object.") => k.replacen("object.", "deal.", 1),
        (k, _) => k.to_owned(),
    };
    let ignored = |reason: String| Ok(ReferralTrigger::Ignored { reason });
    match kind.as_str() {
        "contact.creation" => Ok(ReferralTrigger::ContactSignup(ContactSignup {
            contact_id: Some(object_id),
            occurred_at,
            ..ContactSignup::default()
        })),
        "contact.propertyChange" if property == config.advocate_code_property => match value {
            Some(code) => Ok(ReferralTrigger::ContactSignup(ContactSignup {
                contact_id: Some(object_id),
                advocate_code: Some(code),
                occurred_at,
                ..ContactSignup::default()
            })),
            None => ignored(format!("`{property}` was cleared")),
        },
        "deal.propertyChange" if property == "dealstage" => match value {
            Some(stage) if config.is_conversion_stage(&stage) => Ok(ReferralTrigger::DealStage(DealStage {
                deal_id: object_id,
                properties: BTreeMap::from([("dealstage".to_owned(), stage.clone())]),
                stage,
                occurred_at,
                partial: true,
                ..DealStage::default()
            })),
            Some(stage) => ignored(format!("deal stage `{stage}` is not a conversion stage")),
            None => ignored("deal stage was cleared".into()),
        },
        "contact.propertyChange" | "deal.propertyChange" => ignored(format!("`{property}` is not a referral property")),
        "contact.privacyDeletion" => Ok(ReferralTrigger::PrivacyDeletion { contact_id: object_id }),
        // A merge also deletes the merged-away records; `contact.merge` carries what the links need.
        "contact.deletion" => ignored(format!(
            "contact {object_id} deleted: nothing to relay (later updates for it are parked contact_not_found)"
        )),
        other => ignored(format!("`{other}` events are not referral triggers")),
    }
}
