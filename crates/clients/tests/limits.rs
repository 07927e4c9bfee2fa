//! HubSpot's limits as the client meets them: a `DAILY` 429 from a portal outside UTC resets at the portal's
//! midnight; a budget shared with other processes is taken before every call and told when HubSpot says the
//! window is spent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hubrelay_clients::HubSpotClient;
use hubrelay_core::budget::{BudgetRefused, CallBudget, Lane};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_sandbox::hubspot::{spawn, Faults, SandboxOptions};

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

/// A budget that grants `grants` calls, then refuses with `retry_in`; records what it was told.
#[derive(Debug, Default)]
struct Recording {
    grants: Mutex<u32>,
    retry_in: Duration,
    taken: Mutex<Vec<Lane>>,
    spent: Mutex<Vec<Duration>>,
}

#[async_trait]
impl CallBudget for Recording {
    async fn take(&self, lane: Lane) -> Result<(), BudgetRefused> {
        self.taken.lock().unwrap().push(lane);
        let mut grants = self.grants.lock().unwrap();
        if *grants == 0 {
            return Err(BudgetRefused { retry_in: self.retry_in, reason: "no call left in this slot".into() });
        }
        *grants -= 1;
        Ok(())
    }

    async fn spent(&self, pause: Duration) {
        self.spent.lock().unwrap().push(pause);
    }
}

async fn sandbox(limit: u32) -> hubrelay_sandbox::hubspot::SandboxHandle {
    let options = SandboxOptions { token: Some("shared".into()), ..SandboxOptions::default() };
    let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    handle.sandbox.set_faults(Faults { requests_per_10s: Some(limit), ..Faults::default() });
    handle
}

#[tokio::test]
async fn a_call_the_shared_budget_refuses_is_not_sent() {
    let handle = sandbox(100).await;
    let budget =
        Arc::new(Recording { grants: Mutex::new(1), retry_in: Duration::from_millis(300), ..Recording::default() });
    let inline = HubSpotClient::new(&handle.url(), "shared", Duration::from_secs(5)).unwrap().with_shared_budget(
        budget.clone(),
        Lane::Inline,
        Duration::ZERO,
    );
    inline.list_properties().await.expect("the granted call");
    let e = inline.list_properties().await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (None, "client_rate_limited"));
    assert!(e.message.contains("no call left in this slot"), "{}", e.message);
    assert_eq!(handle.sandbox.stats().requests, 1, "the refused call never reached HubSpot");
    assert_eq!(*budget.taken.lock().unwrap(), [Lane::Inline, Lane::Inline]);

    handle.shutdown().await;
}

/// The worker waits for the next slot (up to its limit) instead of failing. Paused time: the waits are exact, and
/// the budget refuses every call, so nothing is sent (the address is never dialled).
#[tokio::test(start_paused = true)]
async fn the_worker_waits_for_the_shared_budget_up_to_its_limit() {
    let budget = Arc::new(Recording { retry_in: Duration::from_millis(200), ..Recording::default() });
    let worker = HubSpotClient::new("http://127.0.0.1:9", "shared", Duration::from_secs(5))
        .unwrap()
        .with_shared_budget(budget.clone(), Lane::Worker, Duration::from_millis(700));
    let started = tokio::time::Instant::now();
    let e = worker.list_properties().await.unwrap_err();
    assert_eq!(e.code, "client_rate_limited");
    assert_eq!(started.elapsed(), Duration::from_millis(600), "asked at 0, 200, 400 and 600 ms, then gave up");
    assert_eq!(*budget.taken.lock().unwrap(), [Lane::Worker; 4]);
}

#[tokio::test]
async fn a_rolling_429_or_an_empty_window_tells_the_shared_budget() {
    // A portal with 2 calls per 10 s that another integration shares: our budget grants more than it has.
    let handle = sandbox(2).await;
    let budget = Arc::new(Recording { grants: Mutex::new(10), ..Recording::default() });
    let client = HubSpotClient::new(&handle.url(), "shared", Duration::from_secs(5)).unwrap().with_shared_budget(
        budget.clone(),
        Lane::Worker,
        Duration::ZERO,
    );
    client.list_properties().await.expect("1 of 2");
    assert!(budget.spent.lock().unwrap().is_empty(), "a call remains in the window");
    client.list_properties().await.expect("2 of 2");
    assert_eq!(*budget.spent.lock().unwrap(), [Duration::from_secs(10)], "remaining 0: the window is spent");
    let e = client.list_properties().await.unwrap_err();
    assert_eq!((e.status, e.policy.as_deref()), (Some(429), Some("TEN_SECONDLY_ROLLING")));
    assert_eq!(budget.spent.lock().unwrap().len(), 2, "and the 429 says so again");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_portals_own_daily_budget_sends_no_call_past_it_until_its_midnight() {
    let options = SandboxOptions { token: Some("capped".into()), ..SandboxOptions::default() };
    let handle = spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let daily = Arc::new(hubrelay_core::budget::MemoryDailyCalls::new(2));
    let client = HubSpotClient::new(&handle.url(), "capped", Duration::from_secs(5)).unwrap().with_daily_budget(daily);
    client.list_properties().await.unwrap();
    client.list_properties().await.unwrap();
    let sent = handle.sandbox.stats().requests;
    let e = client.list_properties().await.unwrap_err();
    assert_eq!((e.status, e.code.as_str(), e.policy.as_deref()), (None, "daily_budget_spent", Some("DAILY")));
    assert!(e.message.starts_with("not sent") && e.message.contains("2 calls"), "{}", e.message);
    assert!(e.resets_in_secs.is_some_and(|s| s <= 86_400));
    assert_eq!(handle.sandbox.stats().requests, sent, "nothing sent past the budget");
    // The worker waits for the reset, as for HubSpot's own daily limit.
    let failure = hubrelay_core::delivery::Failure::from(e.clone());
    let schedule = hubrelay_core::domain::RetrySchedule::default();
    let wait = hubrelay_core::worker::delay::retry_delay(&schedule, 1, &failure, time::OffsetDateTime::now_utc());
    assert!(wait.as_secs() >= e.resets_in_secs.unwrap(), "waits {wait:?}, the reset is {:?} s away", e.resets_in_secs);
    handle.shutdown().await;
}
