//! impact.com conversions: `POST {base}/Advertisers/{AccountSID}/Conversions`, form-encoded, HTTP Basic
//! (AccountSID : AuthToken). Answered 200 `{"Status":"QUEUED","QueuedUri":...}` (processed later) or
//! 400 `{"Status":"ERROR","errors":[{field, level, message}]}`. `OrderId` per event type is the only dedupe lever.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{PartnerError, IMPACT_ORDER_ID_MAX};

/// Default impact.com API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.impact.com";

/// Field names set by the typed members of [`ImpactConversion`]; `extra` may not reuse them.
const FIXED: [&str; 10] = [
    "CampaignId",
    "EventDate",
    "OrderId",
    "EventTypeCode",
    "CustomerId",
    "CustomerEmail",
    "OrderSubTotal",
    "CurrencyCode",
    "Date3",
    "Text2",
];

/// A conversion that cannot be sent as built (a mapping problem: no retry will fix it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("impact conversion field {field}: {message}")]
pub struct InvalidConversion {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> InvalidConversion {
    InvalidConversion { field: field.to_owned(), message: message.into() }
}

/// One conversion, valid by construction: [`ImpactConversion::new`] checks the required fields and the
/// `with_*` methods check theirs, so [`ImpactConversion::form`] cannot fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactConversion {
    campaign_id: String,
    event_date: String,
    order_id: String,
    event_type_code: String,
    customer_id: String,
    customer_email_sha: Option<String>,
    subtotal: Option<(String, String)>,
    date3: Option<String>,
    text2: Option<String>,
    extra: BTreeMap<String, String>,
}

impl ImpactConversion {
    /// `campaign_id` digits; `event_date` RFC 3339 (sent as given); `order_id` 1..=64 characters;
    /// `event_type_code` and `customer_id` non-empty.
    pub fn new(
        campaign_id: &str,
        event_date: &str,
        order_id: &str,
        event_type_code: &str,
        customer_id: &str,
    ) -> Result<Self, InvalidConversion> {
        let campaign_id = campaign_id.trim();
        if campaign_id.is_empty() || !campaign_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("CampaignId", "must be the numeric program (campaign) id"));
        }
        let event_date = event_date.trim();
        if OffsetDateTime::parse(event_date, &Rfc3339).is_err() {
            return Err(invalid("EventDate", "must be an ISO-8601 date-time with an offset"));
        }
        let order_id = order_id.trim();
        if order_id.is_empty() || order_id.chars().count() > IMPACT_ORDER_ID_MAX {
            return Err(invalid("OrderId", format!("must have 1 to {IMPACT_ORDER_ID_MAX} characters")));
        }
        let required = [("EventTypeCode", event_type_code.trim()), ("CustomerId", customer_id.trim())];
        if let Some((field, _)) = required.iter().find(|(_, v)| v.is_empty()) {
            return Err(invalid(field, "is required"));
        }
        Ok(ImpactConversion {
            campaign_id: campaign_id.to_owned(),
            event_date: event_date.to_owned(),
            order_id: order_id.to_owned(),
            event_type_code: event_type_code.trim().to_owned(),
            customer_id: customer_id.trim().to_owned(),
            customer_email_sha: None,
            subtotal: None,
            date3: None,
            text2: None,
            extra: BTreeMap::new(),
        })
    }

    /// `CustomerEmail`: must already be a SHA-1 (40) or SHA-256 (64) hex digest; impact refuses plaintext, and
    /// refusing it here keeps an email from ever leaving unhashed.
    pub fn with_customer_email_hash(mut self, hash: &str) -> Result<Self, InvalidConversion> {
        let hash = hash.trim().to_ascii_lowercase();
        if !is_hex_digest(&hash) {
            return Err(invalid("CustomerEmail", "must be a SHA-1 or SHA-256 hex digest, never a plain email"));
        }
        self.customer_email_sha = Some(hash);
        Ok(self)
    }

    /// `OrderSubTotal` (a decimal number) with its `CurrencyCode` (ISO 4217, three letters).
    pub fn with_subtotal(mut self, amount: &str, currency: &str) -> Result<Self, InvalidConversion> {
        let amount = amount.trim();
        if amount.parse::<f64>().map_or(true, |a| !a.is_finite()) || amount.contains(['e', 'E']) {
            return Err(invalid("OrderSubTotal", format!("`{amount}` is not a decimal number")));
        }
        let currency = currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid("CurrencyCode", "must be a three-letter ISO 4217 code"));
        }
        self.subtotal = Some((amount.to_owned(), currency));
        Ok(self)
    }

    /// `Date3`: an ISO-8601 date-time.
    pub fn with_date3(mut self, date: &str) -> Result<Self, InvalidConversion> {
        let date = date.trim();
        if OffsetDateTime::parse(date, &Rfc3339).is_err() {
            return Err(invalid("Date3", "must be an ISO-8601 date-time with an offset"));
        }
        self.date3 = Some(date.to_owned());
        Ok(self)
    }

    /// `Text2`: free text (ignored when empty).
    pub fn with_text2(mut self, text: &str) -> Self {
        self.text2 = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        self
    }

    /// Any other impact field (`Text1`, `Numeric1`, `PromoCode`, ...). Names are letters and digits and may not
    /// repeat a typed field.
    pub fn with_extra(mut self, name: &str, value: &str) -> Result<Self, InvalidConversion> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) || FIXED.contains(&name) {
            return Err(invalid(name, "is not a free impact field name"));
        }
        self.extra.insert(name.to_owned(), value.trim().to_owned());
        Ok(self)
    }

    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    pub fn event_type_code(&self) -> &str {
        &self.event_type_code
    }

    /// The form pairs, typed fields first in a fixed order, then `extra` by name.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("CampaignId".to_owned(), self.campaign_id.clone()),
            ("EventDate".to_owned(), self.event_date.clone()),
            ("OrderId".to_owned(), self.order_id.clone()),
            ("EventTypeCode".to_owned(), self.event_type_code.clone()),
            ("CustomerId".to_owned(), self.customer_id.clone()),
        ];
        let mut push = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k.to_owned(), v.clone()));
            }
        };
        push("CustomerEmail", &self.customer_email_sha);
        push("OrderSubTotal", &self.subtotal.as_ref().map(|s| s.0.clone()));
        push("CurrencyCode", &self.subtotal.as_ref().map(|s| s.1.clone()));
        push("Date3", &self.date3);
        push("Text2", &self.text2);
        out.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }
}

/// 40 or 64 lowercase hex digits.
pub fn is_hex_digest(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// impact's answer to a queued conversion: where its processing result will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactAccepted {
    pub queued_uri: String,
}

#[async_trait]
pub trait Impact: Send + Sync {
    async fn send_conversion(&self, conversion: &ImpactConversion) -> Result<ImpactAccepted, PartnerError>;
}

#[cfg(test)]
#[path = "impact_tests.rs"]
mod tests;
