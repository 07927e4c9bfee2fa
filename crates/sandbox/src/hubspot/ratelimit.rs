//! HubSpot's private-app limits: a rolling 10-second window per token and a daily budget per account
//! (reset at midnight UTC; HubSpot resets in the portal's time zone).
//!
//! Requests refused with 429 do **not** consume the window or the daily budget. HubSpot does not document
//! whether they do; not counting them means a client that backs off for one window (what HubSpot's own
//! Node client does on `TEN_SECONDLY_ROLLING`) always gets through afterwards, and a client hammering the
//! sandbox cannot lock itself out for longer than one window.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::error::Policy;

pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// What the `X-HubSpot-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub max: u32,
    pub remaining: u32,
    pub daily: u32,
    pub daily_remaining: u32,
}

#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    /// Accepted requests of the last window, per token, oldest first.
    windows: HashMap<String, VecDeque<Instant>>,
    /// UTC day number `daily_used` belongs to.
    day: i64,
    daily_used: u32,
}

impl RateLimiter {
    /// Accounts one request of `token` at `now` (on UTC day `day`): the quota left, and the policy that
    /// refuses it, if any.
    pub fn check(&mut self, token: &str, max: u32, daily: u32, now: Instant, day: i64) -> (Quota, Option<Policy>) {
        if day != self.day {
            self.day = day;
            self.daily_used = 0;
        }
        if self.windows.len() > 1024 {
            self.windows.retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let window = self.windows.entry(token.to_string()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        let used = u32::try_from(window.len()).unwrap_or(u32::MAX);
        let mut quota = Quota {
            max,
            remaining: max.saturating_sub(used),
            daily,
            daily_remaining: daily.saturating_sub(self.daily_used),
        };
        if self.daily_used >= daily {
            return (quota, Some(Policy::Daily));
        }
        if used >= max {
            return (quota, Some(Policy::TenSecondly));
        }
        window.push_back(now);
        self.daily_used += 1;
        quota.remaining = max - used - 1;
        quota.daily_remaining = daily - self.daily_used;
        (quota, None)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn window_rolls_and_refusals_do_not_count() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..3u32 {
            let (q, refused) = rl.check("tok", 3, 100, t0 + Duration::from_millis(u64::from(i)), 0);
            assert_eq!(refused, None);
            assert_eq!(q.remaining, 2 - i);
        }
        // Refused ones, even many, do not push the window out.
        for _ in 0..10 {
            let (q, refused) = rl.check("tok", 3, 100, t0 + Duration::from_secs(5), 0);
            assert_eq!(refused, Some(Policy::TenSecondly));
            assert_eq!(q.remaining, 0);
        }
        // Another token has its own window.
        assert_eq!(rl.check("other", 3, 100, t0 + Duration::from_secs(5), 0).1, None);
        // 10 s after the first request, its slot frees up.
        let (q, refused) = rl.check("tok", 3, 100, t0 + WINDOW, 0);
        assert_eq!(refused, None);
        assert_eq!(q.remaining, 0);
        assert_eq!(q.daily_remaining, 100 - 5);
    }

    #[test]
    fn daily_budget_and_reset() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        assert_eq!(rl.check("a", 10, 2, t0, 7).1, None);
        assert_eq!(rl.check("b", 10, 2, t0, 7).1, None);
        let (q, refused) = rl.check("c", 10, 2, t0, 7);
        assert_eq!(refused, Some(Policy::Daily));
        assert_eq!(q.daily_remaining, 0);
        // A new UTC day starts over.
        assert_eq!(rl.check("c", 10, 2, t0, 8).1, None);
    }
}
