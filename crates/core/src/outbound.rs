//! Outbound contact sync (the aXcelerate guide keeps contacts in step both ways): HubSpot's app webhooks
//! `contact.creation` and `contact.propertyChange` become signed webhooks (Standard Webhooks) to the operator's
//! endpoint, carrying the changed properties. Each change is a `send_contact_change` referral action, so it is
//! retried on the schedule, parked and redriven like any event, and queued once however often HubSpot delivers
//! it (its id is a hash of HubSpot's own dedupe tuple, also the `webhook-id`, so receivers can drop repeats).
//!
//! Loops: a change whose `sourceId` is one of hubrelay's own (`HUBRELAY_OUTBOUND_OWN_SOURCE_IDS`: the app's id,
//! as HubSpot reports it on the writes hubrelay makes) is not sent back, nor is a change of hubrelay's
//! bookkeeping property `hubrelay_write_id`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::delivery::Failure;
use crate::hubspot::app_event_target;

/// One contact's changes from one app-webhook batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChange {
    /// The HubSpot contact id (`objectId`).
    pub object_id: String,
    /// The portal (`portalId`), when the batch says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<u64>,
    /// `true` for `contact.creation` (the contact's properties are read from HubSpot when sent).
    pub created: bool,
    /// Changed property → its new value (`""`: cleared).
    pub properties: BTreeMap<String, String>,
    /// The latest `occurredAt` of the changes, epoch ms.
    pub occurred_at: i64,
    /// HubSpot's `changeSource` of the last change (`CRM_UI`, `INTEGRATION`, `IMPORT`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<String>,
    /// Unique per set of HubSpot events: the hash of their (subscriptionId, objectId, occurredAt, propertyName,
    /// propertyValue) tuples. The action's dedupe key and the outbound `webhook-id`.
    pub change_id: String,
}

/// hubrelay's bookkeeping property: never sent.
const OWN_PROPERTIES: [&str; 1] = [crate::hubspot::WRITE_MARKER_PROPERTY];

/// The contact changes of an app-webhook batch (other events, and hubrelay's own writes, left out), one per
/// contact; `why_not` lists what was left out and why.
pub fn contact_changes(events: &[Value], own_source_ids: &[String], why_not: &mut Vec<String>) -> Vec<ContactChange> {
    let mut by_contact: BTreeMap<String, (ContactChange, Vec<String>)> = BTreeMap::new();
    for event in events {
        let Some((kind, object_id)) = app_event_target(event) else { continue };
        if kind != "contact.creation" && kind != "contact.propertyChange" {
            continue;
        }
        let source_id = event
            .get("sourceId")
            .and_then(|v| v.as_str().map(String::from).or_else(|| v.as_u64().map(|n| n.to_string())));
        if source_id.as_ref().is_some_and(|s| own_source_ids.iter().any(|o| o == s)) {
            why_not.push(format!(
                "contact {object_id}: a change hubrelay wrote (sourceId {}) is not sent back",
                source_id.unwrap_or_default()
            ));
            continue;
        }
        let property = event.get("propertyName").and_then(Value::as_str);
        if property.is_some_and(|p| OWN_PROPERTIES.contains(&p)) {
            continue;
        }
        let value = match event.get("propertyValue") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let occurred_at = event.get("occurredAt").and_then(Value::as_i64).unwrap_or_default();
        let tuple = format!(
            "{}|{object_id}|{occurred_at}|{}|{value}",
            event.get("subscriptionId").map(Value::to_string).unwrap_or_default(),
            property.unwrap_or(&kind)
        );
        let (change, tuples) = by_contact.entry(object_id.clone()).or_insert_with(|| {
            let change = ContactChange {
                object_id: object_id.clone(),
                portal_id: event.get("portalId").and_then(Value::as_u64),
                created: false,
                properties: BTreeMap::new(),
                occurred_at,
                change_source: None,
                change_id: String::new(),
            };
            (change, Vec::new())
        });
        tuples.push(tuple);
        if kind == "contact.creation" {
            change.created = true;
        }
        if let Some(p) = property {
            change.properties.insert(p.to_string(), value);
        }
        if occurred_at >= change.occurred_at {
            change.occurred_at = occurred_at;
            change.change_source = event.get("changeSource").and_then(Value::as_str).map(String::from);
        }
    }
    by_contact
        .into_values()
        .map(|(mut change, mut tuples)| {
            tuples.sort();
            let digest = Sha256::digest(tuples.join("\n").as_bytes());
            change.change_id = format!("chg_{}", hex::encode(&digest[..16]));
            change
        })
        .collect()
}

impl ContactChange {
    /// The outbound webhook's body: the tenant, the contact and its changed (or, when created, read) properties.
    pub fn body(&self, tenant: &str, properties: &BTreeMap<String, String>) -> Value {
        json!({
            "type": if self.created { "contact.created" } else { "contact.changed" },
            "id": self.change_id,
            "tenant": tenant,
            "portal_id": self.portal_id,
            "contact_id": self.object_id,
            "occurred_at": self.occurred_at,
            "change_source": self.change_source,
            "properties": properties,
        })
    }
}

/// Where outbound changes go: one signed `POST` per change.
#[async_trait]
pub trait OutboundSender: Send + Sync {
    /// Sends `body` with `webhook_id`. `Err`: retried (429, 5xx, no answer) or parked (another 4xx).
    async fn send(&self, webhook_id: &str, body: &Value) -> Result<(), Failure>;
    /// The properties a created contact is sent with.
    fn properties(&self) -> &[String];
    /// The tenant named in the bodies.
    fn tenant(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_becomes_one_change_per_contact_without_hubrelays_own_writes() {
        let events = serde_json::json!([
            {"subscriptionId": 1, "portalId": 62515, "objectId": 101, "occurredAt": 1000, "subscriptionType": "contact.propertyChange",
             "propertyName": "firstname", "propertyValue": "Ann", "changeSource": "CRM_UI"},
            {"subscriptionId": 1, "portalId": 62515, "objectId": 101, "occurredAt": 1001, "subscriptionType": "contact.propertyChange",
             "propertyName": "phone", "propertyValue": "", "changeSource": "CRM_UI"},
            {"subscriptionId": 2, "portalId": 62515, "objectId": 102, "occurredAt": 1002, "subscriptionType": "contact.creation"},
            {"subscriptionId": 1, "portalId": 62515, "objectId": 103, "occurredAt": 1003, "subscriptionType": "contact.propertyChange",
             "propertyName": "firstname", "propertyValue": "Bot", "changeSource": "INTEGRATION", "sourceId": "777"},
            {"subscriptionId": 1, "portalId": 62515, "objectId": 104, "occurredAt": 1004, "subscriptionType": "contact.propertyChange",
             "propertyName": "hubrelay_write_id", "propertyValue": "evt_1"},
            {"subscriptionId": 3, "portalId": 62515, "objectId": 9, "occurredAt": 1005, "subscriptionType": "deal.propertyChange",
             "propertyName": "dealstage", "propertyValue": "closedwon"}
        ]);
        let mut why_not = Vec::new();
        let changes = contact_changes(events.as_array().unwrap(), &["777".to_string()], &mut why_not);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].object_id, "101");
        assert_eq!(
            changes[0].properties,
            BTreeMap::from([("firstname".into(), "Ann".into()), ("phone".into(), String::new())])
        );
        assert_eq!((changes[0].occurred_at, changes[0].change_source.as_deref()), (1001, Some("CRM_UI")));
        assert!(changes[1].created && changes[1].properties.is_empty());
        assert!(why_not[0].contains("103"), "{why_not:?}");
        // The same events again make the same id; another value, another id.
        let again = contact_changes(events.as_array().unwrap(), &["777".to_string()], &mut Vec::new());
        assert_eq!(again[0].change_id, changes[0].change_id);
        let mut other = events.clone();
        other[0]["propertyValue"] = "Anne".into();
        assert_ne!(contact_changes(other.as_array().unwrap(), &[], &mut Vec::new())[0].change_id, changes[0].change_id);
    }
}
