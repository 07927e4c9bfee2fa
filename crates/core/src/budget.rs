//! One HubSpot call budget shared by processes that cannot share memory — the Lambdas of one stack — so that
//! together they stay inside the portal's `TEN_SECONDLY_ROLLING` limit instead of each earning 429s.
//!
//! The budget is cut into short slots ([`SlotPlan`]): each slot admits at most `cap` calls, chosen so that any
//! rolling 10-second window, which overlaps at most `10 s / slot + 1` slots, stays at or under the limit. A slot
//! is one atomic counter in a shared store (DynamoDB in AWS: one conditional `UpdateItem` per call). The inline
//! path (a sender is waiting) may use only part of each slot and is refused at once when it is spent — the event
//! is then queued, and the worker sends it in a batch of up to 100; the worker may use the whole slot and waits
//! for the next one. `hubrelay serve` is one process and uses the in-memory limiter instead.

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// HubSpot's rolling window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Who is asking: the inline path answers a waiting sender, the worker drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Inline,
    Worker,
}

/// No call now. `retry_in`: when the next slot opens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BudgetRefused {
    pub retry_in: Duration,
    pub reason: String,
}

#[async_trait]
pub trait CallBudget: Send + Sync + std::fmt::Debug {
    /// One call for `lane`, now, or why not.
    async fn take(&self, lane: Lane) -> Result<(), BudgetRefused>;
    /// HubSpot answered that the window is spent (a 429, or no calls remaining): no one calls for `pause`.
    async fn spent(&self, pause: Duration);
}

/// How a limit per 10 s is cut into slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPlan {
    pub slot: Duration,
    /// Calls per slot, all lanes together.
    pub cap: u32,
    /// Of those, what the inline path may use.
    pub inline_cap: u32,
}

impl SlotPlan {
    /// Slots for `limit` calls per rolling 10 s (`limit` below 2 is taken as 2). A window of 10 s overlaps at
    /// most `ceil(10 s / slot) + 1` slots, so `n = limit / cap` slots of `10 s / (n - 1)` each keep every window
    /// at or under the limit. `cap` is about a eleventh of the limit, which makes slots of about a second (one
    /// counter write per call, and an instance that found a slot full asks again only in the next one); it
    /// sustains `cap * (n - 1)` calls per 10 s: 90 of HubSpot's 100. The inline path gets half of each slot
    /// (rounded down), or every other slot when a slot holds one call, like `serve`'s inline share.
    pub fn for_limit(limit: u32) -> SlotPlan {
        let limit = limit.max(2);
        let cap = (limit / 11).max(1);
        let slots = u64::from(limit / cap);
        let window_ms = WINDOW.as_millis() as u64;
        let slot = Duration::from_millis(window_ms.div_ceil(slots - 1));
        SlotPlan { slot, cap, inline_cap: cap / 2 }
    }

    /// What `lane` may use of `slot`.
    pub fn cap_for(&self, lane: Lane, slot: u64) -> u32 {
        match lane {
            Lane::Worker => self.cap,
            Lane::Inline if self.inline_cap > 0 => self.inline_cap,
            Lane::Inline => u32::from(slot.is_multiple_of(2)),
        }
    }

    /// Calls per 10 s this plan sustains.
    pub fn sustained(&self) -> u32 {
        (self.cap as u64 * (WINDOW.as_millis() as u64) / self.slot_ms()) as u32
    }

    /// The slot `now_ms` (Unix milliseconds) falls in.
    pub fn slot_of(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms()
    }

    /// From `now_ms` until `slot` ends.
    pub fn until_end_of(&self, slot: u64, now_ms: u64) -> Duration {
        Duration::from_millis(((slot + 1) * self.slot_ms()).saturating_sub(now_ms))
    }

    fn slot_ms(&self) -> u64 {
        (self.slot.as_millis() as u64).max(1)
    }

    /// The most calls any rolling 10 s can see under this plan.
    pub fn worst_window(&self) -> u32 {
        let slots = (WINDOW.as_millis() as u64).div_ceil(self.slot_ms()) + 1;
        self.cap * slots as u32
    }
}

/// The shared budget's name for a HubSpot token: HubSpot counts per app and portal, so every function using one
/// token shares one budget. A hash, so the store never holds the token.
pub fn budget_key(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    format!("budget:{}", hex::encode(&digest[..8]))
}

/// A portal's own cap on HubSpot calls per day (a tenant's `daily_budget`), below HubSpot's daily limit: the day
/// is the portal's (days since the epoch at its UTC offset), as HubSpot's own daily limit resets at its midnight.
#[async_trait]
pub trait DailyCalls: Send + Sync + std::fmt::Debug {
    /// One call of `day`, or `false` when that day's are spent. `Err`: the count could not be kept.
    async fn take(&self, day: i64) -> Result<bool, String>;
    /// The calls taken on `day` so far (nothing taken: 0), without taking one.
    async fn taken(&self, day: i64) -> Result<u32, String>;
    fn limit(&self) -> u32;
}

/// [`DailyCalls`] of one process (`hubrelay serve`: a tenant's inline path and worker share it; kept across the
/// tenant's rebuilds, forgotten on restart).
#[derive(Debug)]
pub struct MemoryDailyCalls {
    limit: std::sync::atomic::AtomicU32,
    /// (day, calls taken that day)
    taken: std::sync::Mutex<(i64, u32)>,
}

impl MemoryDailyCalls {
    pub fn new(limit: u32) -> Self {
        MemoryDailyCalls { limit: std::sync::atomic::AtomicU32::new(limit), taken: std::sync::Mutex::new((0, 0)) }
    }

    /// A new limit (the tenant was updated); what the day used counts against it.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl DailyCalls for MemoryDailyCalls {
    async fn take(&self, day: i64) -> Result<bool, String> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.0 != day {
            *taken = (day, 0);
        }
        if taken.1 >= self.limit() {
            return Ok(false);
        }
        taken.1 += 1;
        Ok(true)
    }

    async fn taken(&self, day: i64) -> Result<u32, String> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        Ok(if taken.0 == day { taken.1 } else { 0 })
    }

    fn limit(&self) -> u32 {
        self.limit.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_day_admits_its_limit_and_the_next_day_starts_again() {
        let daily = MemoryDailyCalls::new(2);
        assert!(daily.take(20_000).await.unwrap());
        assert!(daily.take(20_000).await.unwrap());
        assert!(!daily.take(20_000).await.unwrap());
        assert!(daily.take(20_001).await.unwrap());
        daily.set_limit(1);
        assert!(!daily.take(20_001).await.unwrap(), "the day's calls count against a lowered limit");
        assert_eq!((daily.taken(20_001).await.unwrap(), daily.taken(20_000).await.unwrap()), (1, 0));
    }

    #[test]
    fn no_window_sees_more_than_the_limit_and_most_of_it_is_used() {
        for limit in 0..=400 {
            let plan = SlotPlan::for_limit(limit);
            assert!(plan.worst_window() <= limit.max(2), "{limit}: {plan:?} allows {}", plan.worst_window());
            assert!(plan.inline_cap < plan.cap || plan.cap == 1, "{limit}: {plan:?}");
            if limit >= 10 {
                assert!(plan.sustained() * 100 >= limit * 80, "{limit}: {plan:?} sustains {}", plan.sustained());
            }
        }
        let hubspot = SlotPlan::for_limit(100);
        assert_eq!(hubspot, SlotPlan { slot: Duration::from_secs(1), cap: 9, inline_cap: 4 }, "HubSpot's 100 per 10 s");
        assert_eq!((hubspot.sustained(), hubspot.worst_window()), (90, 99));
        assert_eq!(SlotPlan::for_limit(190).cap, 17);
        assert_eq!(SlotPlan::for_limit(10), SlotPlan { slot: Duration::from_millis(1112), cap: 1, inline_cap: 0 });
    }

    #[test]
    fn every_window_of_a_simulated_full_run_stays_within_the_limit() {
        // Every call granted as early as the plan allows, for 60 s: count each 10 s window, sliding by 1 ms.
        for limit in [2, 5, 10, 11, 20, 100, 190] {
            let plan = SlotPlan::for_limit(limit);
            let mut granted = Vec::new();
            let mut used = std::collections::HashMap::<u64, u32>::new();
            for ms in 0..60_000u64 {
                let n = used.entry(plan.slot_of(ms)).or_default();
                while *n < plan.cap {
                    *n += 1;
                    granted.push(ms);
                }
            }
            let window = WINDOW.as_millis() as u64;
            let (mut lo, mut worst) = (0, 0);
            for hi in 0..granted.len() {
                while granted[hi] - granted[lo] >= window {
                    lo += 1;
                }
                worst = worst.max(hi - lo + 1);
            }
            assert!(worst as u32 <= limit, "{limit}: {worst} calls in one window under {plan:?}");
        }
    }

    #[test]
    fn the_next_slot_opens_when_this_one_ends() {
        let plan = SlotPlan::for_limit(100);
        assert_eq!(plan.slot_of(12_345), 12);
        assert_eq!(plan.until_end_of(12, 12_345), Duration::from_millis(655));
        assert_eq!((plan.cap_for(Lane::Inline, 12), plan.cap_for(Lane::Worker, 12)), (4, 9));
        // One call per slot: the inline path gets every other slot.
        let small = SlotPlan::for_limit(10);
        assert_eq!((small.cap_for(Lane::Inline, 6), small.cap_for(Lane::Inline, 7)), (1, 0));
        assert_eq!((small.cap_for(Lane::Worker, 6), small.cap_for(Lane::Worker, 7)), (1, 1));
    }

    #[test]
    fn the_key_names_the_token_without_holding_it() {
        let key = budget_key("pat-na1-secret");
        assert!(key.starts_with("budget:") && key.len() == "budget:".len() + 16, "{key}");
        assert!(!key.contains("secret"));
        assert_eq!(key, budget_key("pat-na1-secret"));
        assert_ne!(key, budget_key("pat-na1-other"));
    }
}
