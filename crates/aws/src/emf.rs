//! The process's counters ([`hubrelay_core::metrics`]) as CloudWatch Embedded Metric Format: after each
//! invocation, one JSON line per tenant and function for what changed, written to stdout, which Lambda sends to
//! CloudWatch Logs; CloudWatch makes the metrics from it (no `PutMetricData` call, no permission).
//!
//! - Events, by the event's function (`lead-captured`, `status-update`, `activity`, `referral-event`,
//!   `lead-follow-up`):
//!   `Delivered`, `Queued`, `Parked`, `DeadLettered`, `Superseded`, `Redriven` (Count).
//! - HubSpot calls, by the Lambda that made them: `HubSpotRequests`, `HubSpot429` (Count) and `HubSpotLatency`
//!   (Milliseconds, every call's value, so CloudWatch's percentiles are exact).
//!
//! Dimensions: `Function`, and `Function` + `Tenant` when [`METRICS_BY_TENANT`] is on — each tenant then adds its
//! own metrics to the bill, so it is off by default. Every line carries `Tenant` either way, for Logs Insights.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use hubrelay_core::domain::FunctionName;
use hubrelay_core::metrics::{CallAnswer, EventOutcome, Metrics, Tallies};
use serde_json::{json, Map, Value};

/// The environment variable naming the CloudWatch namespace (the template sets `hubrelay/<stack name>`).
pub const METRICS_NAMESPACE: &str = "HUBRELAY_METRICS_NAMESPACE";

/// The environment variable that adds the `Tenant` dimension (`true`).
pub const METRICS_BY_TENANT: &str = "HUBRELAY_METRICS_BY_TENANT";

/// The namespace when [`METRICS_NAMESPACE`] is unset.
pub const DEFAULT_NAMESPACE: &str = "hubrelay";

/// The spec's limit on values in one metric's array.
const MAX_VALUES: usize = 100;

/// Writes what changed in a process's counters as EMF lines.
pub struct Emf {
    metrics: Metrics,
    /// The Lambda (`lead-captured`, `retry-worker`, …): the `Function` of its HubSpot calls.
    lambda: &'static str,
    namespace: String,
    by_tenant: bool,
    /// The counts already written.
    written: Mutex<Tallies>,
    /// Only a function in Lambda writes its lines (an app built in a test process keeps its stdout clean).
    to_stdout: bool,
}

impl Emf {
    pub fn new(metrics: Metrics, lambda: &'static str, namespace: &str, by_tenant: bool) -> Emf {
        Emf {
            metrics,
            lambda,
            namespace: namespace.to_string(),
            by_tenant,
            written: Mutex::new(Tallies::default()),
            to_stdout: true,
        }
    }

    /// The counters it writes.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Namespace and dimensions from the environment ([`METRICS_NAMESPACE`], [`METRICS_BY_TENANT`]); lines are
    /// written only in Lambda (`AWS_LAMBDA_FUNCTION_NAME` set).
    pub fn from_env(metrics: Metrics, lambda: &'static str) -> Emf {
        let namespace = std::env::var(METRICS_NAMESPACE).ok().filter(|n| !n.trim().is_empty());
        let by_tenant = std::env::var(METRICS_BY_TENANT).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let emf = Emf::new(metrics, lambda, namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE), by_tenant);
        Emf { to_stdout: std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(), ..emf }
    }

    /// Write the lines of what changed since the last call to stdout (one `write` each, so no log line
    /// lands inside one).
    pub fn flush(&self) {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let documents = self.documents(now_ms);
        if !self.to_stdout {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        for document in documents {
            let _ = stdout.write_all(format!("{document}\n").as_bytes());
        }
        let _ = stdout.flush();
    }

    /// The documents of what changed since the last call, stamped `now_ms`.
    pub fn documents(&self, now_ms: i64) -> Vec<Value> {
        let now = self.metrics.snapshot();
        let samples = self.metrics.take_samples();
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();

        // Events: one document per (tenant, function) with a change.
        let mut events: BTreeMap<(&str, FunctionName), Map<String, Value>> = BTreeMap::new();
        for (key, total) in &now.events {
            let delta = total - written.events.get(key).copied().unwrap_or(0);
            if delta > 0 {
                let values = events.entry((key.tenant.as_str(), key.function)).or_default();
                values.insert(key.outcome.metric_name().into(), delta.into());
            }
        }
        for ((tenant, function), values) in events {
            let names: Vec<&str> =
                EventOutcome::ALL.iter().map(|o| o.metric_name()).filter(|n| values.contains_key(*n)).collect();
            let definitions = names.iter().map(|n| json!({"Name": n, "Unit": "Count"})).collect();
            out.push(self.document(now_ms, function.as_str(), tenant, definitions, values));
        }

        // HubSpot calls: one document per tenant with a change, latency values in chunks of the spec's limit.
        let mut calls: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (key, total) in &now.calls {
            let delta = total - written.calls.get(key).copied().unwrap_or(0);
            if delta > 0 {
                let (requests, throttled) = calls.entry(key.tenant.as_str()).or_default();
                *requests += delta;
                if key.answer == CallAnswer::RateLimited {
                    *throttled += delta;
                }
            }
        }
        let mut latency: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (tenant, ms) in &samples {
            latency.entry(tenant.as_str()).or_default().push((ms * 1000.0).round() / 1000.0);
        }
        for (tenant, (requests, throttled)) in calls {
            let mut chunks = latency.remove(tenant).unwrap_or_default();
            let mut values = Map::new();
            values.insert("HubSpotRequests".into(), requests.into());
            values.insert("HubSpot429".into(), throttled.into());
            let mut definitions = vec![
                json!({"Name": "HubSpotRequests", "Unit": "Count"}),
                json!({"Name": "HubSpot429", "Unit": "Count"}),
            ];
            let rest = chunks.split_off(chunks.len().min(MAX_VALUES));
            if !chunks.is_empty() {
                values.insert("HubSpotLatency".into(), json!(chunks));
                definitions.push(json!({"Name": "HubSpotLatency", "Unit": "Milliseconds"}));
            }
            out.push(self.document(now_ms, self.lambda, tenant, definitions, values));
            for chunk in rest.chunks(MAX_VALUES) {
                let values = Map::from_iter([("HubSpotLatency".to_string(), json!(chunk))]);
                let definitions = vec![json!({"Name": "HubSpotLatency", "Unit": "Milliseconds"})];
                out.push(self.document(now_ms, self.lambda, tenant, definitions, values));
            }
        }
        *written = now;
        out
    }

    fn document(
        &self,
        now_ms: i64,
        function: &str,
        tenant: &str,
        definitions: Vec<Value>,
        values: Map<String, Value>,
    ) -> Value {
        let dimensions =
            if self.by_tenant { json!([["Function"], ["Function", "Tenant"]]) } else { json!([["Function"]]) };
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": dimensions, "Metrics": definitions}],
            }),
        );
        root.insert("Function".into(), function.into());
        root.insert("Tenant".into(), tenant.into());
        root.extend(values);
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn writes_only_what_changed_by_tenant_and_function() {
        let metrics = Metrics::with_samples();
        let emf = Emf::new(metrics.clone(), "retry-worker", "hubrelay/test", false);
        assert!(emf.documents(1).is_empty(), "nothing counted, nothing written");
        metrics.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        metrics.for_tenant("acme").events(FunctionName::Activity, EventOutcome::Parked, 2);
        let docs = emf.documents(1_700_000_000_000);
        assert_eq!(docs.len(), 2, "{docs:?}");
        let activity = docs.iter().find(|d| d["Function"] == "activity").unwrap();
        assert_eq!(activity["Tenant"], "acme");
        assert_eq!(activity["Parked"], 2);
        assert_eq!(activity["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(activity["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
        assert_eq!(activity["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "Parked", "Unit": "Count"}]));
        metrics.event(FunctionName::LeadCaptured, EventOutcome::Delivered);
        let docs = emf.documents(2);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["Delivered"], 1, "the change since the last line, not the total");
    }

    /// Every metric the functions write, by name.
    fn written_metrics() -> std::collections::BTreeSet<String> {
        let events = EventOutcome::ALL.iter().map(|o| o.metric_name().to_string());
        events.chain(["HubSpotRequests", "HubSpot429", "HubSpotLatency"].map(String::from)).collect()
    }

    #[test]
    fn the_dashboard_shows_every_metric_written_and_no_other_of_ours() {
        let template = include_str!("../../../template.yaml");
        // The body is the `!Sub |` block under `DashboardBody:`, up to the next line indented less.
        let start = template.find("DashboardBody: !Sub |\n").expect("a DashboardBody in template.yaml");
        let body: String = template[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("        "))
            .collect::<Vec<_>>()
            .join("\n");
        // `${…}` are CloudFormation's substitutions; what is left must be JSON.
        let mut plain = String::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("${") {
            plain.push_str(&rest[..i]);
            plain.push('X');
            rest = &rest[i + rest[i..].find('}').expect("a closed substitution") + 1..];
        }
        plain.push_str(rest);
        let dashboard: Value = serde_json::from_str(&plain).expect("the dashboard body is JSON");
        let mut shown = std::collections::BTreeSet::new();
        for widget in dashboard["widgets"].as_array().expect("widgets") {
            for key in ["type", "x", "y", "width", "height", "properties"] {
                assert!(widget.get(key).is_some(), "a widget without {key}: {widget}");
            }
            for metric in widget["properties"]["metrics"].as_array().into_iter().flatten() {
                let Some(expression) = metric[0]["expression"].as_str() else { continue };
                assert!(expression.contains("{\"hubrelay/X\","), "not our namespace: {expression}");
                let name = expression.split("MetricName=\"").nth(1).and_then(|r| r.split('"').next());
                shown.insert(name.expect("a MetricName in the search").to_string());
            }
        }
        assert_eq!(shown, written_metrics());
        assert!(template.contains("HUBRELAY_METRICS_NAMESPACE: !Sub hubrelay/${AWS::StackName}"));
    }

    #[test]
    fn calls_by_the_lambda_with_latency_in_chunks_of_100() {
        let metrics = Metrics::with_samples();
        let emf = Emf::new(metrics.clone(), "lead-captured", "hubrelay/test", true);
        let acme = metrics.for_tenant("acme");
        for i in 0..250 {
            acme.hubspot_call(Some(if i == 0 { 429 } else { 200 }), Duration::from_micros(1500));
        }
        let docs = emf.documents(3);
        assert_eq!(docs.len(), 3, "250 values: 100 + 100 + 50");
        assert_eq!(docs[0]["Function"], "lead-captured");
        assert_eq!(docs[0]["HubSpotRequests"], 250);
        assert_eq!(docs[0]["HubSpot429"], 1);
        assert_eq!(docs[0]["HubSpotLatency"].as_array().unwrap().len(), 100);
        assert_eq!(docs[0]["HubSpotLatency"][0], 1.5);
        assert_eq!(docs[2]["HubSpotLatency"].as_array().unwrap().len(), 50);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Function", "Tenant"]])
        );
        assert!(emf.documents(4).is_empty());
    }
}
