//! impact.com Advocate (SaaSquatch) participants, for the HubSpot → Advocate participant sync (work in
//! progress, issue 16). The guide's rules: a HubSpot contact created (switchable), or an unmapped one updated,
//! creates a participant; a mapped contact updated updates its participant; a deleted contact deletes it. Contacts
//! and participants are matched by email; hubrelay creates participants with the contact id as user and account
//! id, and writes their referral code and share link back onto the contact.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PartnerError;

/// A participant as hubrelay writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub account_id: String,
    pub user_id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The `_saasquatch` cookie the contact's form captured: Advocate attributes the referral from it.
    #[serde(default)]
    pub referral_cookie: Option<String>,
}

/// What Advocate answered for an upserted participant: its program's referral code, share link and message
/// links, and the code that referred it (from the referral cookie, or given before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantAnswer {
    pub referral_code: Option<String>,
    pub share_link: Option<String>,
    pub message_links: Option<String>,
    pub referred_by_code: Option<String>,
}

#[async_trait]
pub trait AdvocateParticipants: Send + Sync {
    /// `PUT /api/v1/{tenant}/open/account/{accountId}/user/{userId}`: create or update.
    async fn upsert_participant(&self, participant: &Participant) -> Result<ParticipantAnswer, PartnerError>;
    /// Delete; `Ok(false)` when Advocate has no such participant.
    async fn delete_participant(&self, account_id: &str, user_id: &str) -> Result<bool, PartnerError>;
}

/// Message links (`{program: {medium: link}}`, or `{medium: link}`) as `MEDIUM: link` lines sorted by medium.
pub fn message_links(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, medium: &str, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() && !medium.is_empty() => {
                out.entry(medium.to_uppercase()).or_insert_with(|| s.trim().to_owned());
            }
            serde_json::Value::Object(o) => {
                o.iter().for_each(|(k, x)| walk(x, if x.is_string() { k } else { medium }, out))
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", &mut out);
    (!out.is_empty()).then(|| out.iter().map(|(m, l)| format!("{m}: {l}")).collect::<Vec<_>>().join("\n"))
}

/// The referral code and share link of a SaaSquatch user object (`referralCodes` / `shareLinks` keyed by
/// program; the first program's, as a HubSpot portal pairs with one program).
pub fn answer_of(user: &serde_json::Value) -> ParticipantAnswer {
    let first = |key: &str| {
        user.get(key).and_then(|v| v.as_object()).and_then(|m| m.values().next()).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            other => other.as_object().and_then(|o| o.values().find_map(|x| x.as_str().map(String::from))),
        })
    };
    let referred_by = user
        .get("referredBy")
        .and_then(|r| r.get("code"))
        .and_then(|c| c.as_str())
        .or_else(|| user.get("referredByCodes").and_then(|c| c.as_object()).and_then(|m| m.values().next()?.as_str()))
        .map(String::from);
    ParticipantAnswer {
        referral_code: first("referralCodes"),
        share_link: first("shareLinks"),
        message_links: user.get("messageLinks").and_then(message_links),
        referred_by_code: referred_by.filter(|c| !c.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_programs_code_and_link_are_read_from_a_user_object() {
        let user = serde_json::json!({"id": "1", "referralCodes": {"p": "ANN12"}, "shareLinks": {"p": "https://ssqt.co/mann12"}});
        let a = super::answer_of(&user);
        assert_eq!(
            (a.referral_code.as_deref(), a.share_link.as_deref()),
            (Some("ANN12"), Some("https://ssqt.co/mann12"))
        );
        let nested = serde_json::json!({"shareLinks": {"p": {"SHARE": "https://x.example/s"}},
            "messageLinks": {"p": {"SMS": "https://x.example/m2", "EMAIL": "https://x.example/m1"}},
            "referredBy": {"code": "BOB12"}});
        let a = super::answer_of(&nested);
        assert_eq!(a.share_link.as_deref(), Some("https://x.example/s"));
        assert_eq!(a.message_links.as_deref(), Some("EMAIL: https://x.example/m1\nSMS: https://x.example/m2"));
        assert_eq!(a.referred_by_code.as_deref(), Some("BOB12"));
    }
}
