//! What a deployment counts: events by outcome (per function and tenant), and HubSpot calls by answer with
//! their latency (per tenant). Plain counters in memory; `serve` renders them as Prometheus text at
//! `GET /metrics`, and a Lambda writes what changed as CloudWatch Embedded Metric Format after each invocation.
//!
//! Each outcome is counted where it is decided: the intake (first attempt), the retry worker (every later
//! attempt, and the first one after a redrive), and the HubSpot client (every call it sends).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{FunctionName, DEFAULT_TENANT};

/// Where an accepted event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventOutcome {
    /// Written (or settled without a write) by HubSpot or a partner.
    Delivered,
    /// Put (back) on the retry queue with a next attempt time.
    Queued,
    /// Refused as it stands (bad data, a missing property, a revoked token…): to the dead-letter queue at once.
    Parked,
    /// To the dead-letter queue because its retry schedule ran out.
    DeadLettered,
    /// Not written: a newer lead for the same contact was applied first.
    Superseded,
    /// Taken from the dead-letter queue by a redrive and attempted again (counted at that attempt).
    Redriven,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 6] = [
        EventOutcome::Delivered,
        EventOutcome::Queued,
        EventOutcome::Parked,
        EventOutcome::DeadLettered,
        EventOutcome::Superseded,
        EventOutcome::Redriven,
    ];

    /// The Prometheus label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Delivered => "delivered",
            EventOutcome::Queued => "queued",
            EventOutcome::Parked => "parked",
            EventOutcome::DeadLettered => "dead_lettered",
            EventOutcome::Superseded => "superseded",
            EventOutcome::Redriven => "redriven",
        }
    }

    /// The CloudWatch metric name.
    pub fn metric_name(self) -> &'static str {
        match self {
            EventOutcome::Delivered => "Delivered",
            EventOutcome::Queued => "Queued",
            EventOutcome::Parked => "Parked",
            EventOutcome::DeadLettered => "DeadLettered",
            EventOutcome::Superseded => "Superseded",
            EventOutcome::Redriven => "Redriven",
        }
    }
}

/// How HubSpot answered one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallAnswer {
    Success,
    /// 429: a rate limit (HubSpot's ten-secondly or daily one).
    RateLimited,
    /// Any other 4xx.
    ClientError,
    ServerError,
    /// No answer: the network failed or the call timed out.
    NoAnswer,
}

impl CallAnswer {
    pub const ALL: [CallAnswer; 5] = [
        CallAnswer::Success,
        CallAnswer::RateLimited,
        CallAnswer::ClientError,
        CallAnswer::ServerError,
        CallAnswer::NoAnswer,
    ];

    pub fn from_status(status: Option<u16>) -> CallAnswer {
        match status {
            None => CallAnswer::NoAnswer,
            Some(429) => CallAnswer::RateLimited,
            Some(s) if s < 400 => CallAnswer::Success,
            Some(s) if s < 500 => CallAnswer::ClientError,
            Some(_) => CallAnswer::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallAnswer::Success => "success",
            CallAnswer::RateLimited => "rate_limited",
            CallAnswer::ClientError => "client_error",
            CallAnswer::ServerError => "server_error",
            CallAnswer::NoAnswer => "no_answer",
        }
    }
}

/// Upper bounds (ms) of the latency histogram's buckets; a last `+Inf` bucket is implied.
pub const LATENCY_BUCKETS_MS: [f64; 11] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// The most latency samples kept between two [`Metrics::take_samples`] (a Lambda drains them after each
/// invocation; past this the histogram still counts them).
const MAX_SAMPLES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub tenant: String,
    pub function: FunctionName,
    pub outcome: EventOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub tenant: String,
    pub answer: CallAnswer,
}

/// Cumulative latency of a tenant's HubSpot calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Calls at or under each bound of [`LATENCY_BUCKETS_MS`] (not cumulative: one count per bucket).
    pub buckets: [u64; LATENCY_BUCKETS_MS.len()],
    pub count: u64,
    pub sum_ms: f64,
}

impl Histogram {
    fn observe(&mut self, ms: f64) {
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|bound| ms <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ms += ms;
    }
}

/// Everything counted since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    pub events: BTreeMap<EventKey, u64>,
    pub calls: BTreeMap<CallKey, u64>,
    /// By tenant.
    pub latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
struct Registry {
    tallies: Mutex<Tallies>,
    /// Each call's latency (tenant, ms) until taken, when the process reports them one by one (EMF).
    samples: Option<Mutex<Vec<(String, f64)>>>,
}

/// A handle on the process's counters, scoped to one tenant; cheap to clone. The default handle counts
/// nothing (tests and one-off commands).
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Option<Arc<Registry>>,
    tenant: Option<Arc<str>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("counting", &self.registry.is_some()).field("tenant", &self.tenant()).finish()
    }
}

impl Metrics {
    /// Counters for a process that renders totals (`serve`).
    pub fn new() -> Metrics {
        Metrics { registry: Some(Arc::new(Registry::default())), tenant: None }
    }

    /// Counters that also keep each call's latency until [`Metrics::take_samples`] (a Lambda's EMF lines).
    pub fn with_samples() -> Metrics {
        let registry = Registry { samples: Some(Mutex::new(Vec::new())), ..Registry::default() };
        Metrics { registry: Some(Arc::new(registry)), tenant: None }
    }

    /// The same counters, counting for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Metrics {
        Metrics { registry: self.registry.clone(), tenant: Some(Arc::from(tenant)) }
    }

    /// The tenant counted for (the deployment's own portal is [`DEFAULT_TENANT`]).
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(DEFAULT_TENANT)
    }

    /// One event of `function` went to `outcome`.
    pub fn event(&self, function: FunctionName, outcome: EventOutcome) {
        self.events(function, outcome, 1);
    }

    /// `count` events of `function` went to `outcome`.
    pub fn events(&self, function: FunctionName, outcome: EventOutcome, count: u64) {
        let Some(registry) = &self.registry else { return };
        if count == 0 {
            return;
        }
        let key = EventKey { tenant: self.tenant().to_string(), function, outcome };
        *lock(&registry.tallies).events.entry(key).or_default() += count;
    }

    /// One HubSpot call answered with `status` (`None`: no answer) after `elapsed`.
    pub fn hubspot_call(&self, status: Option<u16>, elapsed: Duration) {
        let Some(registry) = &self.registry else { return };
        let ms = elapsed.as_secs_f64() * 1000.0;
        let tenant = self.tenant().to_string();
        {
            let mut tallies = lock(&registry.tallies);
            let key = CallKey { tenant: tenant.clone(), answer: CallAnswer::from_status(status) };
            *tallies.calls.entry(key).or_default() += 1;
            tallies.latency.entry(tenant.clone()).or_default().observe(ms);
        }
        if let Some(samples) = &registry.samples {
            let mut samples = lock(samples);
            if samples.len() < MAX_SAMPLES {
                samples.push((tenant, ms));
            }
        }
    }

    /// A copy of every count so far.
    pub fn snapshot(&self) -> Tallies {
        self.registry.as_ref().map(|r| lock(&r.tallies).clone()).unwrap_or_default()
    }

    /// The latencies (tenant, ms) kept since the last call (none unless made [`Metrics::with_samples`]).
    pub fn take_samples(&self) -> Vec<(String, f64)> {
        match self.registry.as_ref().and_then(|r| r.samples.as_ref()) {
            Some(samples) => std::mem::take(&mut *lock(samples)),
            None => Vec::new(),
        }
    }
}

/// Counters stay usable after a panic elsewhere: a poisoned lock still holds valid counts.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_tenant_function_and_outcome() {
        let metrics = Metrics::new();
        let acme = metrics.for_tenant("acme");
        metrics.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        acme.events(FunctionName::LeadCaptured, EventOutcome::Delivered, 2);
        acme.event(FunctionName::Activity, EventOutcome::Parked);
        acme.events(FunctionName::Activity, EventOutcome::Queued, 0);
        let t = metrics.snapshot();
        let count = |tenant: &str, function, outcome| {
            t.events.get(&EventKey { tenant: tenant.into(), function, outcome }).copied().unwrap_or(0)
        };
        assert_eq!(count("default", FunctionName::LeadCaptured, EventOutcome::Delivered), 1);
        assert_eq!(count("acme", FunctionName::LeadCaptured, EventOutcome::Delivered), 2);
        assert_eq!(count("acme", FunctionName::Activity, EventOutcome::Parked), 1);
        assert_eq!(t.events.len(), 3, "a zero count adds no series");
    }

    #[test]
    fn calls_are_counted_by_answer_with_their_latency() {
        let metrics = Metrics::with_samples().for_tenant("acme");
        metrics.hubspot_call(Some(200), Duration::from_millis(40));
        metrics.hubspot_call(Some(429), Duration::from_millis(7));
        metrics.hubspot_call(None, Duration::from_secs(20));
        let t = metrics.snapshot();
        let calls = |answer| t.calls[&CallKey { tenant: "acme".into(), answer }];
        assert_eq!(
            (calls(CallAnswer::Success), calls(CallAnswer::RateLimited), calls(CallAnswer::NoAnswer)),
            (1, 1, 1)
        );
        let h = &t.latency["acme"];
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[1], 1, "7 ms is in the 10 ms bucket");
        assert_eq!(h.buckets[3], 1, "40 ms is in the 50 ms bucket");
        assert_eq!(h.buckets.iter().sum::<u64>(), 2, "20 s is only in +Inf");
        assert!((h.sum_ms - 20047.0).abs() < 1e-6);
        assert_eq!(metrics.take_samples().len(), 3);
        assert!(metrics.take_samples().is_empty(), "taken once");
    }

    #[test]
    fn the_default_handle_counts_nothing_and_samples_are_kept_only_when_asked() {
        let none = Metrics::default();
        none.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        none.hubspot_call(Some(200), Duration::from_millis(1));
        assert_eq!(none.snapshot(), Tallies::default());
        let totals = Metrics::new();
        totals.hubspot_call(Some(200), Duration::from_millis(1));
        assert!(totals.take_samples().is_empty());
    }

    #[test]
    fn answers_from_statuses() {
        let answers: Vec<_> =
            [Some(207), Some(404), Some(429), Some(502), None].into_iter().map(CallAnswer::from_status).collect();
        assert_eq!(
            answers,
            [
                CallAnswer::Success,
                CallAnswer::ClientError,
                CallAnswer::RateLimited,
                CallAnswer::ServerError,
                CallAnswer::NoAnswer
            ]
        );
    }
}
