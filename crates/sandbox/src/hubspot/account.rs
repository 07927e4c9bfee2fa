//! `GET /account-info/{version}/details` (and `/account-info/v3/details`): the portal's id and time zone, as
//! HubSpot's account-info API answers them.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Sandbox;

pub(crate) async fn details(State(sb): State<Sandbox>) -> Json<Value> {
    let o = &sb.inner.options;
    let minutes = o.utc_offset_minutes;
    let sign = if minutes < 0 { '-' } else { '+' };
    let offset = format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60);
    Json(json!({
        "portalId": o.portal_id,
        "accountType": "STANDARD",
        "timeZone": o.time_zone,
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "utcOffset": offset,
        "utcOffsetMilliseconds": i64::from(minutes) * 60_000,
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
    }))
}
