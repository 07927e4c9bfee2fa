//! HubSpot → impact.com Advocate participant sync (the Advocate guide's data sharing rules):
//! - a contact created → a participant created (switchable: `IMPACT_ADVOCATE_CREATE_PARTICIPANTS`);
//! - a contact updated (email or name) → its participant updated when mapped, created when not (same switch);
//! - a contact deleted → its participant deleted (a deletion that is a merge keeps it: the contact lives on);
//! - a contact workflow's webhook (HubSpot's other way to say a contact was created or changed) → as an update.
//!
//! A participant hubrelay creates has the contact id as its user and account id; its referral code and share link,
//! and those ids, are written back onto the contact (`advocate_*` properties), which maps it. One action per
//! contact per webhook batch, delivered by the retry worker (`ReferralDelivery`).

use serde_json::Value;

use super::actions::ReferralAction;
use crate::hubspot::app_event_target;

/// The contact properties whose change is sent to the participant.
pub const SYNCED_PROPERTIES: [&str; 3] = ["email", "firstname", "lastname"];

/// The participant actions of an app-webhook batch.
pub fn participant_actions(events: &[Value]) -> Vec<ReferralAction> {
    let mut out: Vec<ReferralAction> = Vec::new();
    for event in events {
        let Some((kind, object_id)) = app_event_target(event) else { continue };
        let occurred_at = event.get("occurredAt").and_then(Value::as_i64).unwrap_or_default();
        let action = match kind.as_str() {
            "contact.creation" => ReferralAction::SyncParticipant { object_id, created: true, occurred_at },
            "contact.propertyChange"
                if event
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .is_some_and(|p| SYNCED_PROPERTIES.contains(&p)) =>
            {
                ReferralAction::SyncParticipant { object_id, created: false, occurred_at }
            }
            "contact.deletion" if event.get("changeFlag").and_then(Value::as_str) != Some("MERGED") => {
                ReferralAction::DeleteParticipant { object_id }
            }
            _ => continue,
        };
        // One sync per contact per batch (the newest), one delete.
        match (&action, out.iter_mut().find(|a| same_contact(a, &action))) {
            (
                ReferralAction::SyncParticipant { created, occurred_at, .. },
                Some(ReferralAction::SyncParticipant { created: c, occurred_at: at, .. }),
            ) => {
                *c |= *created;
                *at = (*at).max(*occurred_at);
            }
            (_, Some(_)) => {}
            (_, None) => out.push(action),
        }
    }
    out
}

/// The participant action of a contact workflow's "Send a webhook" (any body shape naming the contact's id): its
/// participant updated when mapped, created when not (the same switch as an update). Dated by the body's
/// `lastmodifieddate`, else by `received`: a later run of the workflow for the same contact is another sync.
pub fn workflow_participant_action(body: &[u8], received: time::OffsetDateTime) -> Option<ReferralAction> {
    let (object_id, changed) = super::workflow_contact(body)?;
    let at = changed.unwrap_or(received);
    let occurred_at = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
    Some(ReferralAction::SyncParticipant { object_id, created: false, occurred_at })
}

fn same_contact(a: &ReferralAction, b: &ReferralAction) -> bool {
    match (a, b) {
        (
            ReferralAction::SyncParticipant { object_id: x, .. },
            ReferralAction::SyncParticipant { object_id: y, .. },
        ) => x == y,
        (ReferralAction::DeleteParticipant { object_id: x }, ReferralAction::DeleteParticipant { object_id: y }) => {
            x == y
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_name_changes_and_deletions_make_one_action_per_contact() {
        let events = serde_json::json!([
            {"subscriptionType": "contact.creation", "objectId": 1, "occurredAt": 10},
            {"subscriptionType": "contact.propertyChange", "objectId": 1, "occurredAt": 11, "propertyName": "firstname", "propertyValue": "A"},
            {"subscriptionType": "contact.propertyChange", "objectId": 2, "occurredAt": 12, "propertyName": "phone", "propertyValue": "1"},
            {"subscriptionType": "contact.propertyChange", "objectId": 3, "occurredAt": 13, "propertyName": "email", "propertyValue": "c@x.co"},
            {"subscriptionType": "contact.deletion", "objectId": 4, "occurredAt": 14},
            {"subscriptionType": "contact.deletion", "objectId": 5, "occurredAt": 15, "changeFlag": "MERGED"}
        ]);
        let actions = participant_actions(events.as_array().unwrap());
        assert_eq!(
            actions,
            vec![
                ReferralAction::SyncParticipant { object_id: "1".into(), created: true, occurred_at: 11 },
                ReferralAction::SyncParticipant { object_id: "3".into(), created: false, occurred_at: 13 },
                ReferralAction::DeleteParticipant { object_id: "4".into() },
            ]
        );
    }

    #[test]
    fn a_contact_workflows_webhook_syncs_its_participant_in_every_body_shape() {
        let received = time::OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let sync = |body: serde_json::Value| workflow_participant_action(body.to_string().as_bytes(), received);
        let expect = |id: &str, at: i64| {
            Some(ReferralAction::SyncParticipant { object_id: id.into(), created: false, occurred_at: at })
        };
        // "All properties", legacy: `vid` and `{value}` properties, dated by lastmodifieddate (epoch ms).
        let legacy = serde_json::json!({"vid": 101, "canonical-vid": 101, "properties": {
            "email": {"value": "ada@example.com"}, "lastmodifieddate": {"value": "1796000123000"}}});
        assert_eq!(sync(legacy), expect("101", 1_796_000_123_000));
        // The v3 shape, and a custom body naming hs_object_id: dated when received.
        assert_eq!(
            sync(serde_json::json!({"id": "102", "properties": {"email": "b@example.com"}})),
            expect("102", 1_796_000_000_000)
        );
        assert_eq!(
            sync(serde_json::json!({"hs_object_id": "103", "email": "c@example.com"})),
            expect("103", 1_796_000_000_000)
        );
        // Not a contact's: a deal, no id, an id that is not HubSpot's, a batch.
        assert_eq!(sync(serde_json::json!({"dealId": 7, "properties": {"dealstage": {"value": "closedwon"}}})), None);
        assert_eq!(sync(serde_json::json!({"email": "d@example.com"})), None);
        assert_eq!(sync(serde_json::json!({"hs_object_id": "abc", "email": "e@example.com"})), None);
        assert_eq!(sync(serde_json::json!([{"subscriptionType": "contact.creation", "objectId": 1}])), None);
    }
}
