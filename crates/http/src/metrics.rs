//! `GET /metrics`: the process's counters ([`hubrelay_core::metrics`]) in the Prometheus text exposition
//! format (version 0.0.4). Counts only: no event, email or token is ever a label.

use std::collections::BTreeSet;
use std::fmt::Write;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hubrelay_core::domain::{FunctionName, DEFAULT_TENANT};
use hubrelay_core::metrics::{CallAnswer, CallKey, EventKey, EventOutcome, Metrics, Tallies, LATENCY_BUCKETS_MS};

/// The exposition format's media type.
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics` over `metrics`.
pub fn metrics_routes(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&metrics.snapshot());
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS)], text).into_response() }
        })
        .fallback(crate::method_not_allowed),
    )
}

/// The text of `tallies`. Every tenant seen (and the default one) has every series, zeros included, so a
/// rate over a counter that has not moved yet is 0 rather than absent.
pub fn render(tallies: &Tallies) -> String {
    let mut tenants: BTreeSet<&str> = BTreeSet::from([DEFAULT_TENANT]);
    tenants.extend(tallies.events.keys().map(|k| k.tenant.as_str()));
    tenants.extend(tallies.calls.keys().map(|k| k.tenant.as_str()));
    let mut out = String::new();

    header(&mut out, "hubrelay_events_total", "counter", "Accepted events by where they went.");
    for tenant in &tenants {
        for function in FunctionName::ALL {
            for outcome in EventOutcome::ALL {
                let key = EventKey { tenant: tenant.to_string(), function, outcome };
                let n = tallies.events.get(&key).copied().unwrap_or(0);
                let (t, f, o) = (label(tenant), function.as_str(), outcome.as_str());
                let _ = writeln!(out, "hubrelay_events_total{{tenant=\"{t}\",function=\"{f}\",outcome=\"{o}\"}} {n}");
            }
        }
    }

    header(&mut out, "hubrelay_hubspot_requests_total", "counter", "HubSpot calls sent, by answer.");
    for tenant in &tenants {
        for answer in CallAnswer::ALL {
            let n = tallies.calls.get(&CallKey { tenant: tenant.to_string(), answer }).copied().unwrap_or(0);
            let (t, a) = (label(tenant), answer.as_str());
            let _ = writeln!(out, "hubrelay_hubspot_requests_total{{tenant=\"{t}\",answer=\"{a}\"}} {n}");
        }
    }

    let name = "hubrelay_hubspot_request_duration_seconds";
    header(&mut out, name, "histogram", "How long HubSpot took to answer a call (no answer: until it failed).");
    for tenant in &tenants {
        let histogram = tallies.latency.get(*tenant).cloned().unwrap_or_default();
        let t = label(tenant);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(histogram.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{tenant=\"{t}\",le=\"{}\"}} {cumulative}", bound / 1000.0);
        }
        let _ = writeln!(out, "{name}_bucket{{tenant=\"{t}\",le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "{name}_sum{{tenant=\"{t}\"}} {}", histogram.sum_ms / 1000.0);
        let _ = writeln!(out, "{name}_count{{tenant=\"{t}\"}} {}", histogram.count);
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as the format asks (tenant ids are slugs, but the format is kept whatever they hold).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_every_series_with_cumulative_buckets() {
        let metrics = Metrics::new();
        let acme = metrics.for_tenant("acme");
        acme.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        acme.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        metrics.event(FunctionName::Activity, EventOutcome::Parked);
        acme.hubspot_call(Some(200), Duration::from_millis(30));
        acme.hubspot_call(Some(429), Duration::from_millis(3));
        let text = render(&metrics.snapshot());
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        has("# TYPE hubrelay_events_total counter");
        has(r#"hubrelay_events_total{tenant="acme",function="lead-captured",outcome="delivered"} 2"#);
        has(r#"hubrelay_events_total{tenant="default",function="activity",outcome="parked"} 1"#);
        has(r#"hubrelay_events_total{tenant="default",function="referral-event",outcome="redriven"} 0"#);
        has(r#"hubrelay_hubspot_requests_total{tenant="acme",answer="rate_limited"} 1"#);
        has(r#"hubrelay_hubspot_requests_total{tenant="default",answer="success"} 0"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_bucket{tenant="acme",le="0.005"} 1"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_bucket{tenant="acme",le="0.025"} 1"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_bucket{tenant="acme",le="0.05"} 2"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_bucket{tenant="acme",le="+Inf"} 2"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_count{tenant="acme"} 2"#);
        has(r#"hubrelay_hubspot_request_duration_seconds_sum{tenant="acme"} 0.033"#);
        let series = text.lines().filter(|l| l.starts_with("hubrelay_events_total{")).count();
        assert_eq!(series, 2 * FunctionName::ALL.len() * 6, "two tenants × every function × six outcomes");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
