//! What one accepted webhook asks for, split into actions: each is stored as its own retry message (own event
//! id), so every target retries or parks on its own and a delivered one is never sent again.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{ContactSignup, DealStage, ReferralConfig, ReferralTrigger};
use crate::domain::ContactUpsert;
use crate::partners::{impact_order_id, partner_conversion_id, signup_conversion_id};

/// One delivery to one target. Stored (JSON) as a `referral-event` message's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReferralAction {
    /// Extole `signed_up` (the configured sign-up event) for a contact with an advocate code.
    ExtoleSignup(ContactSignup),
    /// Extole `converted` for a deal that reached a conversion stage.
    ExtoleConverted(DealStage),
    /// An impact.com conversion for the same.
    ImpactConversion(DealStage),
    /// A HubSpot contact upsert by email (Extole share links, Advocate properties).
    UpsertContact(ContactUpsert),
    /// An Advocate event that names its user by id only: the contacts carrying that [`super::ADVOCATE_USER_ID`]
    /// updated (found through HubSpot's search, whose lag is waited out; never a contact created).
    UpdateAdvocateUser(super::AdvocateUpdate),
    /// Record a HubSpot merge, so links and contact ids naming the merged-away contacts lead to the survivor.
    RecordMerge { survivor: String, merged: Vec<String> },
    /// Erase what hubrelay holds of a contact HubSpot GDPR-deleted. The id is `object_id`, not `contact_id`, so
    /// the erasure does not match (and erase) its own message.
    EraseContact { object_id: String },
    /// A HubSpot contact change sent to the operator's endpoint (outbound contact sync).
    SendContactChange(crate::outbound::ContactChange),
    /// A HubSpot contact created or changed: its impact.com Advocate participant upserted ([`super::participants`]).
    SyncParticipant { object_id: String, created: bool, occurred_at: i64 },
    /// A HubSpot contact deleted: its Advocate participant deleted.
    DeleteParticipant { object_id: String },
    /// The HubSpot contact with this email synced to its participant (an import row in Advocate's own format,
    /// which names contacts by email only).
    SyncParticipantByEmail { email: String },
}

impl ReferralAction {
    /// `extole_signup`, `extole_converted`, `impact_conversion`, `upsert_contact`, `update_advocate_user`,
    /// `record_merge`, `erase_contact`, `send_contact_change`, `sync_participant`, `delete_participant`,
    /// `sync_participant_by_email`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReferralAction::ExtoleSignup(_) => "extole_signup",
            ReferralAction::ExtoleConverted(_) => "extole_converted",
            ReferralAction::ImpactConversion(_) => "impact_conversion",
            ReferralAction::UpsertContact(_) => "upsert_contact",
            ReferralAction::UpdateAdvocateUser(_) => "update_advocate_user",
            ReferralAction::RecordMerge { .. } => "record_merge",
            ReferralAction::EraseContact { .. } => "erase_contact",
            ReferralAction::SendContactChange(_) => "send_contact_change",
            ReferralAction::SyncParticipant { .. } => "sync_participant",
            ReferralAction::DeleteParticipant { .. } => "delete_participant",
            ReferralAction::SyncParticipantByEmail { .. } => "sync_participant_by_email",
        }
    }

    /// What makes two actions the same send, whatever webhook asked for them: the partner's conversion id
    /// (per deal and stage, per sign-up email), or the contact and code when the email is not known yet.
    /// `None` for contact upserts, which are idempotent by themselves.
    pub fn dedupe_key(&self) -> Option<String> {
        let key = match self {
            ReferralAction::ExtoleSignup(s) => match (&s.email, &s.contact_id) {
                (Some(email), _) => signup_conversion_id(email),
                (None, Some(id)) => format!("contact_{id}_{}", s.advocate_code.as_deref().unwrap_or("creation")),
                (None, None) => return None,
            },
            ReferralAction::ExtoleConverted(d) => partner_conversion_id(&d.deal_id, &d.stage),
            ReferralAction::ImpactConversion(d) => impact_order_id(&d.deal_id, &d.stage),
            ReferralAction::UpsertContact(_) => return None,
            ReferralAction::UpdateAdvocateUser(u) => u.webhook_id.clone(),
            ReferralAction::RecordMerge { survivor, merged } => format!("{survivor}<-{}", merged.join(",")),
            ReferralAction::EraseContact { object_id } => object_id.clone(),
            ReferralAction::SendContactChange(change) => change.change_id.clone(),
            ReferralAction::SyncParticipant { object_id, occurred_at, .. } => format!("{object_id}@{occurred_at}"),
            ReferralAction::DeleteParticipant { object_id } => object_id.clone(),
            ReferralAction::SyncParticipantByEmail { email } => crate::store::email_hash(email),
        };
        Some(format!("{}:{key}", self.kind()))
    }
}

/// The actions for HubSpot's triggers (switched-off targets left out, duplicates within one batch dropped),
/// and why the rest were ignored.
pub fn plan(triggers: Vec<ReferralTrigger>, config: &ReferralConfig) -> (Vec<ReferralAction>, Vec<String>) {
    let mut actions = Vec::new();
    let mut ignored = Vec::new();
    for trigger in triggers {
        match trigger {
            ReferralTrigger::ContactSignup(s) if config.extole_enabled => actions.push(ReferralAction::ExtoleSignup(s)),
            ReferralTrigger::ContactSignup(_) => ignored.push("Extole is switched off: sign-up not sent".to_string()),
            ReferralTrigger::DealStage(d) => {
                if !config.extole_enabled && !config.impact_enabled {
                    ignored.push("Extole and impact.com are switched off: conversion not sent".to_string());
                }
                if config.extole_enabled {
                    actions.push(ReferralAction::ExtoleConverted(d.clone()));
                }
                if config.impact_enabled {
                    actions.push(ReferralAction::ImpactConversion(d));
                }
            }
            ReferralTrigger::ContactMerge { survivor, merged } => {
                actions.push(ReferralAction::RecordMerge { survivor, merged })
            }
            ReferralTrigger::PrivacyDeletion { contact_id } => {
                actions.push(ReferralAction::EraseContact { object_id: contact_id })
            }
            ReferralTrigger::Ignored { reason } => ignored.push(reason),
        }
    }
    let mut seen = BTreeSet::new();
    actions.retain(|a| a.dedupe_key().is_none_or(|k| seen.insert(k)));
    (actions, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(id: &str) -> ReferralTrigger {
        ReferralTrigger::DealStage(DealStage { deal_id: id.into(), stage: "closedwon".into(), ..Default::default() })
    }

    #[test]
    fn a_won_deal_is_one_action_per_enabled_target_and_batches_are_deduped() {
        let config = ReferralConfig::default();
        let (actions, ignored) =
            plan(vec![deal("7"), deal("7"), ReferralTrigger::Ignored { reason: "x".into() }], &config);
        let keys: Vec<_> = actions.iter().filter_map(ReferralAction::dedupe_key).collect();
        assert_eq!(keys, ["extole_converted:deal_closedwon_7", "impact_conversion:deal_closedwon_7"]);
        assert_eq!(ignored, ["x"]);
        let off = ReferralConfig { impact_enabled: false, ..ReferralConfig::default() };
        assert_eq!(plan(vec![deal("7")], &off).0.len(), 1);
        let none = ReferralConfig { impact_enabled: false, extole_enabled: false, ..ReferralConfig::default() };
        let (actions, ignored) = plan(vec![deal("7")], &none);
        assert!(actions.is_empty() && ignored.len() == 1);
    }

    #[test]
    fn actions_round_trip_with_the_email_on_top() {
        let a = ReferralAction::ExtoleSignup(ContactSignup {
            email: Some("jane@example.com".into()),
            advocate_code: Some("ADV1".into()),
            ..Default::default()
        });
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!((v["action"].as_str(), v["email"].as_str()), (Some("extole_signup"), Some("jane@example.com")));
        assert_eq!(serde_json::from_value::<ReferralAction>(v).unwrap(), a);
        let by_id =
            ReferralAction::ExtoleSignup(ContactSignup { contact_id: Some("1001".into()), ..Default::default() });
        assert_eq!(by_id.dedupe_key().unwrap(), "extole_signup:contact_1001_creation");
    }
}
