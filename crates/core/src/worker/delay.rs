//! How long to wait before the next attempt: the schedule's step, stretched for HubSpot's rate limits
//! and `Retry-After` (clamped as Svix does), with ±20 % jitter so retries of one outage do not stampede.

use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use crate::delivery::Failure;
use crate::domain::RetrySchedule;

use super::MAX_DELAY;

/// Codes of inline attempts that never reached HubSpot because hubrelay held them back: the lead is
/// queued due at once, for the worker's next batch (which waits for the rate limit itself).
pub const NOT_SENT: [&str; 2] = ["client_rate_limited", "contact_busy"];

/// The wait after failed attempt `attempt` (1-based, counted in the current run of the schedule).
/// - not sent at all ([`NOT_SENT`]): no wait;
/// - `TEN_SECONDLY_ROLLING` / `SECONDLY` 429: at least 10 s, so the rolling window has moved on;
/// - `DAILY` 429, or the portal's own daily budget spent (`DAILY`, not sent): until the budget resets at the
///   portal's midnight (in its time zone, as the client reports; UTC midnight when it could not tell);
/// - `Retry-After`: honoured but clamped to [scheduled, 2 × scheduled].
pub fn retry_delay(schedule: &RetrySchedule, attempt: u32, e: &Failure, now: OffsetDateTime) -> Duration {
    if e.status.is_none() && NOT_SENT.contains(&e.code.as_str()) {
        return Duration::ZERO;
    }
    let scheduled = schedule.delay_after(attempt).unwrap_or(Duration::ZERO);
    let mut delay = scheduled;
    // A `DAILY` policy without a status is the portal's own daily budget (not sent): the same wait.
    if e.status == Some(429) || e.policy.as_deref() == Some("DAILY") {
        match e.policy.as_deref() {
            Some("DAILY") => {
                let reset = match e.resets_in_secs {
                    Some(secs) => Duration::from_secs(secs),
                    None => {
                        let midnight = (now.date() + time::Duration::days(1)).midnight().assume_utc();
                        (midnight - now).try_into().unwrap_or(Duration::ZERO)
                    }
                };
                delay = delay.max(reset);
            }
            _ => delay = delay.max(Duration::from_secs(10)),
        }
    }
    if let Some(secs) = e.retry_after_secs {
        let wanted = Duration::from_secs(secs);
        delay = delay.max(wanted.clamp(scheduled, scheduled * 2));
    }
    delay.min(MAX_DELAY)
}

/// Random spread applied to each delay: `fraction` 0.2 means ±20 %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub fraction: f64,
}

impl Jitter {
    pub const STANDARD: Jitter = Jitter { fraction: 0.2 };
    pub const NONE: Jitter = Jitter { fraction: 0.0 };

    /// The spread for a failure's delay: a `DAILY` 429's wait for the budget reset only ever grows (by up to
    /// 5 minutes, so queued events do not all return at the reset), every other delay spreads both ways.
    pub fn apply_for(&self, d: Duration, e: &Failure) -> Duration {
        if e.policy.as_deref() == Some("DAILY") {
            if self.fraction <= 0.0 || d.is_zero() {
                return d;
            }
            let most = d.mul_f64(self.fraction).min(Duration::from_secs(300));
            return d + most.mul_f64(rand::rng().random_range(0.0..=1.0));
        }
        // What HubSpot asked for stays a floor after the spread: a rolling-window 429 waits 10 s, a `Retry-After`
        // its seconds (never more than the delay itself).
        let mut floor = Duration::ZERO;
        if e.status == Some(429) {
            floor = Duration::from_secs(10);
        }
        if let Some(secs) = e.retry_after_secs {
            floor = floor.max(Duration::from_secs(secs));
        }
        self.apply(d).max(floor.min(d))
    }

    pub fn apply(&self, d: Duration) -> Duration {
        if self.fraction <= 0.0 || d.is_zero() {
            return d;
        }
        let factor = rand::rng().random_range((1.0 - self.fraction)..=(1.0 + self.fraction));
        d.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn err(status: u16, policy: Option<&str>, retry_after: Option<u64>) -> Failure {
        Failure::from(crate::hubspot::HubSpotError {
            status: Some(status),
            code: "x".into(),
            message: "m".into(),
            category: None,
            correlation_id: None,
            policy: policy.map(String::from),
            retry_after_secs: retry_after,
            resets_in_secs: None,
        })
    }

    #[test]
    fn a_rolling_window_429_never_comes_back_within_10_s() {
        let rolling = err(429, Some("TEN_SECONDLY_ROLLING"), None);
        let s = RetrySchedule::default();
        let now = datetime!(2026-11-24 18:00 UTC);
        for _ in 0..200 {
            let d = Jitter::STANDARD.apply_for(retry_delay(&s, 1, &rolling, now), &rolling);
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(12), "{d:?}");
        }
    }

    #[test]
    fn a_daily_wait_never_shrinks_under_jitter() {
        let daily = err(429, Some("DAILY"), None);
        let wait = Duration::from_secs(11 * 3600);
        for _ in 0..200 {
            let d = Jitter::STANDARD.apply_for(wait, &daily);
            assert!(d >= wait && d <= wait + Duration::from_secs(300), "{d:?}");
        }
    }

    #[test]
    fn rate_limits_and_retry_after_stretch_the_schedule() {
        let s = RetrySchedule::default();
        let now = datetime!(2026-11-24 18:00 UTC);
        assert_eq!(retry_delay(&s, 1, &err(503, None, None), now), Duration::from_secs(5));
        assert_eq!(retry_delay(&s, 1, &err(429, Some("TEN_SECONDLY_ROLLING"), None), now), Duration::from_secs(10));
        assert_eq!(retry_delay(&s, 2, &err(429, Some("TEN_SECONDLY_ROLLING"), None), now), Duration::from_secs(300));
        assert_eq!(retry_delay(&s, 1, &err(429, Some("DAILY"), None), now), Duration::from_secs(6 * 3600));
        // A US/Eastern portal (UTC-5) resets at 05:00 UTC: 11 h after 18:00 UTC, not 6.
        let mut eastern = err(429, Some("DAILY"), None);
        eastern.resets_in_secs = Some(11 * 3600);
        assert_eq!(retry_delay(&s, 1, &eastern, now), Duration::from_secs(11 * 3600));
        // Retry-After clamped to [scheduled, 2 × scheduled]
        assert_eq!(retry_delay(&s, 1, &err(477, None, Some(60)), now), Duration::from_secs(10));
        assert_eq!(retry_delay(&s, 2, &err(477, None, Some(1)), now), Duration::from_secs(300));
        assert_eq!(retry_delay(&s, 2, &err(477, None, Some(400)), now), Duration::from_secs(400));
        // Held back by hubrelay itself: due at once.
        let mut held = err(0, None, None);
        held.status = None;
        for code in NOT_SENT {
            held.code = code.into();
            assert_eq!(retry_delay(&s, 1, &held, now), Duration::ZERO);
        }
        held.code = "hubspot_timeout".into();
        assert_eq!(retry_delay(&s, 1, &held, now), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = Jitter::STANDARD.apply(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120), "{d:?}");
        }
        assert_eq!(Jitter::NONE.apply(Duration::from_secs(5)), Duration::from_secs(5));
    }
}
