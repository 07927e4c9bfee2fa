//! A `DAILY` 429 from a portal outside UTC: the client reads the portal's time zone once and says when the
//! budget resets, at the portal's midnight.

use std::time::Duration;

use hubrelay_clients::HubSpotClient;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_sandbox::hubspot::{spawn, SandboxOptions};

#[tokio::test]
async fn a_daily_429_resets_at_the_portals_midnight() {
    // A US/Eastern portal (UTC-5) whose daily budget is spent after one call.
    let options = SandboxOptions {
        token: Some("daily".into()),
        daily_limit: 1,
        time_zone: "US/Eastern".into(),
        utc_offset_minutes: -300,
        ..SandboxOptions::default()
    };
    let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = HubSpotClient::new(&handle.url(), "daily", Duration::from_secs(5)).unwrap();
    let portal = client.portal().await.unwrap(); // the one call of the day
    assert_eq!((portal.portal_id, portal.time_zone.as_str()), (62_515, "US/Eastern"));
    let e = client.list_properties().await.unwrap_err();
    assert_eq!((e.status, e.policy.as_deref()), (Some(429), Some("DAILY")));
    let now = time::OffsetDateTime::now_utc();
    let eastern = now.to_offset(time::UtcOffset::from_hms(-5, 0, 0).unwrap());
    let midnight = (eastern.date() + time::Duration::days(1)).midnight().assume_offset(eastern.offset());
    let expected = (midnight - now).whole_seconds() as u64;
    let got = e.resets_in_secs.expect("the reset time");
    assert!(got.abs_diff(expected) <= 2, "resets in {got} s, the portal's midnight is {expected} s away");
    handle.shutdown().await;
}
