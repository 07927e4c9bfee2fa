//! Client-side rate limiting that matches HubSpot's `TEN_SECONDLY_ROLLING` policy: at most `limit` calls
//! in any rolling 10-second window, so the worker spends its budget on deliveries instead of earning 429s.
//!
//! A call holds a slot from the moment it is sent until one window after its answer arrived (HubSpot
//! counts a request when it receives it, which is somewhere in between; counting from the answer is the
//! safe side). Waiters are served first come, first served. What HubSpot reports is honoured too:
//! `X-HubSpot-RateLimit-Max` lowers the limit when the portal's tier is below the configured one, and
//! `X-HubSpot-RateLimit-Remaining` reveals calls we did not make (another integration on the same app
//! token), which then count as if made just now.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// HubSpot's `TEN_SECONDLY_ROLLING` window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// A rolling-window limiter shared by every client of one HubSpot app token.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    /// Held while waiting for a slot, so waiters go in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// Signalled when a slot's clock starts (a call finished) or the limit changed.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    limit: u32,
    window: Duration,
    /// The limit HubSpot last reported (`X-HubSpot-RateLimit-Max`).
    reported_max: Option<u32>,
    slots: Vec<Slot>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    /// `None` while the call is in flight; afterwards the end of its window.
    frees_at: Option<Instant>,
}

/// What one answer said about the budget (`X-HubSpot-RateLimit-*` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub max: Option<u32>,
    pub remaining: Option<u32>,
    pub interval: Option<Duration>,
}

impl State {
    fn effective_limit(&self) -> u32 {
        self.reported_max.map_or(self.limit, |m| m.min(self.limit)).max(1)
    }

    fn prune(&mut self, now: Instant) {
        self.slots.retain(|s| s.frees_at.is_none_or(|t| t > now));
    }

    fn used(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// When the next slot frees, if one is on the clock.
    fn next_free(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.frees_at).min()
    }
}

impl RateLimiter {
    /// At most `limit` calls per rolling 10 s.
    pub fn new(limit: u32) -> Arc<RateLimiter> {
        Self::with_window(limit, WINDOW)
    }

    pub fn with_window(limit: u32, window: Duration) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            state: Mutex::new(State { limit: limit.max(1), window, reported_max: None, slots: Vec::new(), next_id: 0 }),
            turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured limit, lowered to what HubSpot reported if that is less.
    pub fn limit(&self) -> u32 {
        self.lock().effective_limit()
    }

    /// Calls counted in the current window (in flight included).
    pub fn in_window(&self) -> u32 {
        let mut s = self.lock();
        s.prune(Instant::now());
        s.used()
    }

    /// Waits for a slot. Hold the permit while the call is in flight; dropping it starts the slot's clock.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let _turn = self.turn.lock().await;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_free = {
                let mut s = self.lock();
                let now = Instant::now();
                s.prune(now);
                if s.used() < s.effective_limit() {
                    let id = s.next_id;
                    s.next_id += 1;
                    s.slots.push(Slot { id, frees_at: None });
                    return Permit { limiter: self.clone(), id, quota: None };
                }
                s.next_free()
            };
            match next_free {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut changed => {}
                    }
                }
                // Every slot is in flight: the first to finish starts a clock.
                None => changed.await,
            }
        }
    }

    /// [`RateLimiter::acquire`], giving up after `max_wait`.
    pub async fn try_acquire_for(self: &Arc<Self>, max_wait: Duration) -> Option<Permit> {
        tokio::time::timeout(max_wait, self.acquire()).await.ok()
    }

    fn release(&self, id: u64, quota: Option<Quota>) {
        let now = Instant::now();
        {
            let mut s = self.lock();
            let window = s.window;
            if let Some(slot) = s.slots.iter_mut().find(|s| s.id == id) {
                slot.frees_at = Some(now + window);
            }
            if let Some(q) = quota {
                s.observe(q, now);
            }
        }
        self.changed.notify_waiters();
    }
}

impl State {
    /// Fold HubSpot's view of the budget into ours.
    fn observe(&mut self, q: Quota, now: Instant) {
        if let Some(max) = q.max.filter(|m| *m > 0) {
            self.reported_max = Some(max);
        }
        if let (Some(max), Some(remaining)) = (q.max, q.remaining) {
            self.prune(now);
            let theirs = max.saturating_sub(remaining).min(self.effective_limit());
            let window = q.interval.filter(|d| !d.is_zero()).unwrap_or(self.window);
            // Calls HubSpot counted that we did not make: count them too, from now (the safe side).
            for _ in self.used()..theirs {
                let id = self.next_id;
                self.next_id += 1;
                self.slots.push(Slot { id, frees_at: Some(now + window) });
            }
        }
    }
}

/// A slot for one call. Dropping it starts the slot's 10-second clock.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<RateLimiter>,
    id: u64,
    quota: Option<Quota>,
}

impl Permit {
    /// Record what the answer's rate-limit headers said; applied when the permit drops.
    pub fn observe(&mut self, quota: Quota) {
        self.quota = Some(quota);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.id, self.quota.take());
    }
}

/// Read the `X-HubSpot-RateLimit-*` headers.
pub fn quota_from_headers(headers: &reqwest::header::HeaderMap) -> Quota {
    let num = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    Quota {
        max: num("x-hubspot-ratelimit-max").and_then(|v| u32::try_from(v).ok()),
        remaining: num("x-hubspot-ratelimit-remaining").and_then(|v| u32::try_from(v).ok()),
        interval: num("x-hubspot-ratelimit-interval-milliseconds").map(Duration::from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Take `n` slots and finish each call at once; returns when the last was granted.
    async fn calls(rl: &Arc<RateLimiter>, n: u32) {
        for _ in 0..n {
            drop(rl.acquire().await);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_ten_seconds() {
        let rl = RateLimiter::new(100);
        let start = Instant::now();
        let mut granted = Vec::new();
        for _ in 0..350 {
            let p = rl.acquire().await;
            granted.push(Instant::now() - start);
            tokio::time::sleep(Duration::from_millis(20)).await; // the call takes 20 ms
            drop(p);
        }
        // Any 100 + 1 consecutive grants span at least the window (counted from the first one's answer).
        for w in granted.windows(101) {
            assert!(w[100] - w[0] >= WINDOW, "{:?} .. {:?}", w[0], w[100]);
        }
        // ...and the limiter does not wait more than it must: call 301 goes right after three windows.
        assert!(granted[300] < Duration::from_secs(31), "{:?}", granted[300]);
        let total = *granted.last().unwrap();
        assert!(total >= Duration::from_secs(30), "{total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_waits_until_the_oldest_call_is_ten_seconds_old() {
        let rl = RateLimiter::new(3);
        let t0 = Instant::now();
        calls(&rl, 3).await;
        assert_eq!(Instant::now(), t0, "the first three go at once");
        assert_eq!(rl.in_window(), 3);
        let p = rl.acquire().await;
        assert_eq!(Instant::now() - t0, WINDOW);
        drop(p);
        // In-flight calls hold their slot until they finish, then ten more seconds.
        let rl = RateLimiter::new(1);
        let t0 = Instant::now();
        let p = rl.acquire().await;
        let rl2 = rl.clone();
        let waiter = tokio::spawn(async move {
            drop(rl2.acquire().await);
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(p);
        assert_eq!(waiter.await.unwrap() - t0, Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_gives_up_after_max_wait() {
        let rl = RateLimiter::new(1);
        calls(&rl, 1).await;
        let t0 = Instant::now();
        assert!(rl.try_acquire_for(Duration::from_secs(1)).await.is_none());
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
        assert!(rl.try_acquire_for(Duration::from_secs(10)).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let rl = RateLimiter::new(1);
        calls(&rl, 1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (rl, order) = (rl.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                drop(rl.acquire().await);
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn hubspot_headers_lower_the_limit_and_count_other_callers() {
        let rl = RateLimiter::new(190);
        // The portal is on the 100 tier, and 40 calls were made by someone else.
        let mut p = rl.acquire().await;
        p.observe(Quota { max: Some(100), remaining: Some(59), interval: Some(WINDOW) });
        drop(p);
        assert_eq!(rl.limit(), 100);
        assert_eq!(rl.in_window(), 41);
        let t0 = Instant::now();
        calls(&rl, 59).await;
        assert_eq!(Instant::now(), t0);
        drop(rl.acquire().await);
        assert_eq!(Instant::now() - t0, WINDOW, "the 101st call waits for the window");
        // A higher reported max never raises the configured limit.
        let rl = RateLimiter::new(100);
        let mut p = rl.acquire().await;
        p.observe(Quota { max: Some(190), remaining: Some(189), interval: None });
        drop(p);
        assert_eq!(rl.limit(), 100);
        assert_eq!(rl.in_window(), 1);
    }

    #[test]
    fn reads_the_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-hubspot-ratelimit-max", "190".parse().unwrap());
        h.insert("x-hubspot-ratelimit-remaining", "12".parse().unwrap());
        h.insert("x-hubspot-ratelimit-interval-milliseconds", "10000".parse().unwrap());
        assert_eq!(
            quota_from_headers(&h),
            Quota { max: Some(190), remaining: Some(12), interval: Some(Duration::from_secs(10)) }
        );
        assert_eq!(quota_from_headers(&reqwest::header::HeaderMap::new()), Quota::default());
    }
}
