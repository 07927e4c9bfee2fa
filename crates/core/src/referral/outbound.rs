//! HubSpot contacts and deals → what the partners receive: Extole `signed_up` / `converted` events (the data keys
//! of Extole's HubSpot guide) and impact.com conversions (the impact.com Advocate guide's mapping, email hashed). Every id is
//! deterministic, so mapping the same trigger twice sends the same conversion twice, which the partners drop.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::{normalise_email, ContactSignup, DealStage, ReferralConfig, ReferralError};
use crate::partners::{
    impact_order_id, partner_conversion_id, sha256_hex_email, signup_conversion_id, ExtoleEvent, ImpactConversion,
    InvalidConversion,
};

/// Extole's `extole_app_type` for events that come from HubSpot (used in Extole's reporting).
const APP_TYPE: &str = "hubspot";

/// A HubSpot date or datetime (ISO-8601 or 13-digit epoch milliseconds) as RFC 3339 UTC, e.g.
/// `2026-03-01T10:00:00Z`; `None` when it is neither.
pub fn iso_datetime(value: &str) -> Option<String> {
    let instant = crate::dates::parse_lead_date(value).ok()?.instant;
    instant.to_offset(UtcOffset::UTC).format(&Rfc3339).ok()
}

fn iso(instant: OffsetDateTime) -> String {
    instant.to_offset(UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

/// A date property as RFC 3339, `invalid_field` when present but unreadable.
fn date_property(deal: &DealStage, name: &str) -> Result<Option<String>, ReferralError> {
    match deal.properties.get(name) {
        None => Ok(None),
        Some(v) => iso_datetime(v).map(Some).ok_or_else(|| {
            ReferralError::invalid(name, format!("`{v}` is not an ISO-8601 date or epoch milliseconds"))
        }),
    }
}

/// `signed_up` for a contact with an advocate code. `received_at` dates the event when the webhook did not:
/// pass the time the event was first accepted (stored with it), so every retry sends the same date.
pub fn extole_signup(
    signup: &ContactSignup,
    config: &ReferralConfig,
    received_at: OffsetDateTime,
) -> Result<ExtoleEvent, ReferralError> {
    let email = signup.email.as_deref().ok_or_else(|| ReferralError::missing("email", "the contact has no email"))?;
    let email = normalise_email("email", email)?;
    let code = signup.advocate_code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let code = code.ok_or_else(|| ReferralError::missing("advocate_code", "the contact has no advocate code"))?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(ExtoleEvent::new(&config.signup_event)
        .with("email", &email)
        .with("advocate_code", code)
        .with("first_name", opt(&signup.first_name))
        .with("last_name", opt(&signup.last_name))
        .with("event_date", iso(signup.occurred_at.unwrap_or(received_at)))
        .with("partner_conversion_id", signup_conversion_id(&email))
        .with("company", opt(&signup.company))
        .with("extole_app_type", APP_TYPE))
}

/// The deal's event date: `lastmodifieddate` (the impact.com Advocate guide's `EventDate`), else when the stage changed, else
/// `received_at`.
fn event_date(deal: &DealStage, received_at: OffsetDateTime) -> Result<String, ReferralError> {
    Ok(date_property(deal, "lastmodifieddate")?.unwrap_or_else(|| iso(deal.occurred_at.unwrap_or(received_at))))
}

/// `converted` for a deal that reached a conversion stage, for the contact `email` (the deal's associated
/// contact): `product` and `amount` added to the sign-up keys.
pub fn extole_converted(
    deal: &DealStage,
    email: &str,
    config: &ReferralConfig,
    received_at: OffsetDateTime,
) -> Result<ExtoleEvent, ReferralError> {
    let email = normalise_email("email", email)?;
    let prop = |k: &str| deal.properties.get(k).cloned().unwrap_or_default();
    Ok(ExtoleEvent::new(&config.converted_event)
        .with("email", &email)
        .with("event_date", event_date(deal, received_at)?)
        .with("partner_conversion_id", partner_conversion_id(&deal.deal_id, &deal.stage))
        .with("product", prop(&config.product_property))
        .with("amount", prop("amount"))
        .with("extole_app_type", APP_TYPE))
}

fn conversion_error(e: InvalidConversion) -> ReferralError {
    ReferralError::invalid(&e.field, e.message)
}

/// The impact.com conversion for a deal (the impact.com Advocate guide): `EventDate ← lastmodifieddate`, `CustomerId ← hs_object_id`,
/// `CustomerEmail ← sha256(email)`, `OrderId ← deal_[stage]_id`, `EventTypeCode ← deal_[deal stage]`,
/// `OrderSubTotal ← amount` (with `deal_currency_code` or the configured currency), `Date3 ← closedate`,
/// `Text2 ← hs_deal_stage_probability`.
pub fn impact_conversion(
    deal: &DealStage,
    email: &str,
    config: &ReferralConfig,
    received_at: OffsetDateTime,
) -> Result<ImpactConversion, ReferralError> {
    let campaign = config.impact_campaign_id.as_deref().ok_or_else(|| ReferralError {
        code: "not_configured",
        message: "impact.com conversions need a campaign id".into(),
        field: Some("impact_campaign_id".into()),
    })?;
    let email = normalise_email("email", email)?;
    let customer_id = deal.properties.get("hs_object_id").unwrap_or(&deal.deal_id);
    let mut c = ImpactConversion::new(
        campaign,
        &event_date(deal, received_at)?,
        &impact_order_id(&deal.deal_id, &deal.stage),
        &config.event_type_code(&deal.stage),
        customer_id,
    )
    .map_err(conversion_error)?
    .with_customer_email_hash(&sha256_hex_email(&email))
    .map_err(conversion_error)?;
    if let Some(amount) = deal.properties.get("amount") {
        let currency = deal.properties.get("deal_currency_code").unwrap_or(&config.currency_code);
        c = c.with_subtotal(amount, currency).map_err(|e| {
            let field = if e.field == "OrderSubTotal" { "amount" } else { "deal_currency_code" };
            ReferralError::invalid(field, e.message)
        })?;
    }
    if let Some(close) = date_property(deal, "closedate")? {
        c = c.with_date3(&close).map_err(conversion_error)?;
    }
    if let Some(probability) = deal.properties.get("hs_deal_stage_probability") {
        c = c.with_text2(probability);
    }
    Ok(c)
}
