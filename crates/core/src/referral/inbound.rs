//! Partners → us: Extole share-link webhooks and impact.com Advocate (SaaSquatch) webhooks, ending as a contact
//! upsert by email (never HubSpot's create endpoint, which answers 409 for every existing contact), or, for
//! Advocate events that name users by id only, an update of the contacts carrying that Advocate user id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{normalise_email, ReferralError};
use crate::domain::ContactUpsert;
use crate::partners::advocate::message_links;

/// HubSpot contact properties for Advocate data (the impact.com Advocate guide: referral code, share link, message
/// links, referred-by code, advocate user and account id, referral cookie), and where a referral stands.
pub const ADVOCATE_REFERRAL_CODE: &str = "advocate_referral_code";
pub const ADVOCATE_SHARE_LINK: &str = "advocate_share_link";
/// The participant's message links, one `MEDIUM: link` line each, by medium.
pub const ADVOCATE_MESSAGE_LINKS: &str = "advocate_message_links";
pub const ADVOCATE_REFERRED_BY_CODE: &str = "advocate_referred_by_code";
pub const ADVOCATE_USER_ID: &str = "advocate_user_id";
pub const ADVOCATE_ACCOUNT_ID: &str = "advocate_account_id";
/// The `_saasquatch` referral cookie a HubSpot form captured (a hidden field): sent with the participant upsert so
/// Advocate attributes the referral.
pub const ADVOCATE_REFERRAL_COOKIE: &str = "advocate_referral_cookie";
/// `started` or `converted`: the referral that brought this contact in, as the Advocate referral events report it.
pub const ADVOCATE_REFERRAL_STATUS: &str = "advocate_referral_status";

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ReferralError> {
    match super::parse_json(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(ReferralError::payload("expected a JSON object")),
    }
}

fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An Extole webhook, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExtoleInbound {
    ShareLink(ShareLink),
    Ignored { reason: String },
}

/// An advocate's share link and code, for their HubSpot contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLink {
    pub email: String,
    pub share_code: Option<String>,
    pub share_link: Option<String>,
    pub company: Option<String>,
    pub partner_user_id: Option<String>,
    /// Extole's recipe sends `extole_app_type: "hubspot"` for reporting; kept when present.
    pub extole_app_type: Option<String>,
}

impl ShareLink {
    /// The upsert by email: `share_code`, `share_link`, `company`, `extole_app_type` (the properties Extole's
    /// guide creates on HubSpot), only those present.
    pub fn to_upsert(&self) -> ContactUpsert {
        let fields = [
            ("share_code", &self.share_code),
            ("share_link", &self.share_link),
            ("company", &self.company),
            ("extole_app_type", &self.extole_app_type),
        ];
        let properties = fields.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone()))).collect();
        ContactUpsert { email: self.email.clone(), properties }
    }
}

/// Reads Extole's `created_share_link` controller body (`{"properties": {email, share_code, share_link,
/// company, ...}}`) or the generic share-link event (`{"event": "Share Link Created", "email", "partner_user_id",
/// "share_link", "share_code"?}`). Other generic events are ignored.
pub fn parse_extole(body: &[u8]) -> Result<ExtoleInbound, ReferralError> {
    let obj = parse_object(body)?;
    let fields = match (obj.get("properties"), text(&obj, "event")) {
        (Some(Value::Object(p)), _) => p.clone(),
        (Some(_), _) => return Err(ReferralError::invalid("properties", "must be an object")),
        (None, Some(event)) => {
            let lower = event.to_ascii_lowercase();
            if !(lower.contains("share") && lower.contains("link")) {
                return Ok(ExtoleInbound::Ignored { reason: format!("Extole event `{event}` is not a share link") });
            }
            obj.clone()
        }
        (None, None) => {
            return Err(ReferralError::payload("expected Extole's `properties` object or a share-link `event`"))
        }
    };
    let email = text(&fields, "email").ok_or_else(|| ReferralError::missing("email", "a share link needs `email`"))?;
    let email = normalise_email("email", &email)?;
    let share_code = text(&fields, "share_code");
    let share_link = text(&fields, "share_link");
    if share_code.is_none() && share_link.is_none() {
        return Err(ReferralError::missing("share_link", "a share link needs `share_link` or `share_code`"));
    }
    Ok(ExtoleInbound::ShareLink(ShareLink {
        email,
        share_code,
        share_link,
        company: text(&fields, "company"),
        partner_user_id: text(&fields, "partner_user_id"),
        extole_app_type: text(&fields, "extole_app_type"),
    }))
}

/// A SaaSquatch webhook, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdvocateEvent {
    Update(AdvocateUpdate),
    /// Types we do not sync (SaaSquatch adds new ones; answer 200 and log).
    Ignored {
        webhook_id: String,
        event_type: String,
        reason: String,
    },
}

/// Advocate properties for one HubSpot contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvocateUpdate {
    /// The envelope `id`: the same on every re-delivery, so an idempotency key.
    pub webhook_id: String,
    pub event_type: String,
    /// `None` for referral events, which name users by id only: find the contact by [`ADVOCATE_USER_ID`].
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    /// A referral event's referrer: their contact's referral code is the referred contact's referred-by code
    /// when the event does not carry the code used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_user_id: Option<String>,
    /// HubSpot property → value, only non-empty values ([`ADVOCATE_REFERRAL_CODE`], ...).
    pub properties: BTreeMap<String, String>,
}

impl AdvocateUpdate {
    /// The upsert by email, when the email is known.
    pub fn to_upsert(&self) -> Option<ContactUpsert> {
        let email = self.email.clone()?;
        Some(ContactUpsert { email, properties: self.properties.clone() })
    }
}

/// A user id given as a string, or as an object's `id` (`{"referredUser": "u2"}`, `{"referred": {"id": "u2"}}`).
fn user_ref(data: &Map<String, Value>, flat: &str, nested: &str) -> (Option<String>, Option<String>) {
    let account_key = flat.replace("User", "Account");
    match (data.get(flat), data.get(nested).and_then(Value::as_object)) {
        (Some(Value::String(id)), _) if !id.trim().is_empty() => (Some(id.trim().to_owned()), text(data, &account_key)),
        (Some(Value::Object(o)), _) | (_, Some(o)) => (text(o, "id"), text(o, "accountId")),
        _ => (None, None),
    }
}

/// The first non-empty string in `v`, depth-first in key order (share links are grouped by medium).
fn first_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Object(o) => o.values().find_map(first_string),
        Value::Array(a) => a.iter().find_map(first_string),
        _ => None,
    }
}

/// Reads a SaaSquatch envelope `{id, type, tenantAlias, live, created, data}`.
/// `user.created` → the user's codes and links; `referral.started` / `referral.converted` → the referred user's
/// referral status and referred-by code (the referral's users as ids: `referredUser`/`referrerUser`, or
/// `referred`/`referrer` objects); anything else → ignored.
pub fn parse_advocate(body: &[u8]) -> Result<AdvocateEvent, ReferralError> {
    let obj = parse_object(body)?;
    let webhook_id = text(&obj, "id").ok_or_else(|| ReferralError::missing("id", "the envelope needs `id`"))?;
    let event_type = text(&obj, "type").ok_or_else(|| ReferralError::missing("type", "the envelope needs `type`"))?;
    if obj.get("live").is_some_and(|l| !l.is_boolean()) {
        return Err(ReferralError::invalid("live", "must be a boolean"));
    }
    let ignored = |reason: &str| AdvocateEvent::Ignored {
        webhook_id: webhook_id.clone(),
        event_type: event_type.clone(),
        reason: reason.to_owned(),
    };
    if !matches!(event_type.as_str(), "user.created" | "referral.started" | "referral.converted") {
        return Ok(ignored("event type is not synced to HubSpot"));
    }
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d,
        _ => return Err(ReferralError::missing("data", format!("a `{event_type}` webhook needs a `data` object"))),
    };
    let mut props = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            props.insert(k.to_owned(), v);
        }
    };
    let (email, user_id, account_id, referrer_user_id) = if event_type == "user.created" {
        put(
            ADVOCATE_REFERRAL_CODE,
            text(data, "referralCode").or_else(|| data.get("referralCodes").and_then(first_string)),
        );
        let links = data.get("shareLinks");
        let clean = links.and_then(|l| l.get("cleanShareLink")).and_then(first_string);
        put(ADVOCATE_SHARE_LINK, text(data, "shareLink").or(clean).or_else(|| links.and_then(first_string)));
        let referred_by = text(data, "referredByReferralCode")
            .or_else(|| data.get("referredBy").and_then(|r| r.get("code")).and_then(first_string))
            .or_else(|| data.get("referredByCodes").and_then(first_string));
        put(ADVOCATE_REFERRED_BY_CODE, referred_by);
        put(ADVOCATE_MESSAGE_LINKS, data.get("messageLinks").and_then(message_links));
        let email = text(data, "email").map(|e| normalise_email("data.email", &e)).transpose()?;
        (email, text(data, "id"), text(data, "accountId"), None)
    } else {
        put(ADVOCATE_REFERRED_BY_CODE, text(data, "referralCodeUsed"));
        put(ADVOCATE_REFERRAL_STATUS, event_type.strip_prefix("referral.").map(String::from));
        let (user_id, account_id) = user_ref(data, "referredUser", "referred");
        (None, user_id, account_id, user_ref(data, "referrerUser", "referrer").0)
    };
    if event_type != "user.created" && user_id.is_none() {
        let message = "a referral event names its referred user (`referredUser`, or `referred.id`)";
        return Err(ReferralError::missing("data.referredUser", message));
    }
    if email.is_none() && user_id.is_none() {
        return Err(ReferralError::missing("data.email", "the webhook names no user (no email and no user id)"));
    }
    put(ADVOCATE_USER_ID, user_id.clone());
    put(ADVOCATE_ACCOUNT_ID, account_id.clone());
    Ok(AdvocateEvent::Update(AdvocateUpdate {
        webhook_id,
        event_type,
        email,
        user_id,
        account_id,
        referrer_user_id,
        properties: props,
    }))
}
