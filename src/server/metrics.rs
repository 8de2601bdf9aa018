//! Prometheus metrics. Labels are bounded: endpoint, a fixed set of kinds, operation,
//! decision, rule id and action, an audit run's result — never a namespace or an object name.

use crate::vocabulary::{Effect, Kind, RULES};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Latency buckets in seconds, up to the longest webhook timeout kube-apiserver allows (30 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub violations: Family<RuleLabels, Counter>,
    pub latency: Family<EndpointLabels, Histogram>,
    pub bad_requests: Family<EndpointLabels, Counter>,
    pub cert_expiry: Gauge,
    pub cert_reload_failures: Counter,
    pub inventory_objects: Family<KindLabels, Gauge>,
    pub lookup_errors: Counter,
    pub watch_errors: Counter,
    pub refused: Family<RefusalLabels, Counter>,
    /// Findings of the last completed background audit, by rule and action.
    pub audit_findings: Family<RuleLabels, Gauge>,
    pub audit_last_run: Gauge,
    pub audit_duration: Gauge<f64, AtomicU64>,
    pub audit_runs: Family<ResultLabels, Counter>,
}

/// The `rule` label of objects an audit could not read (as `audit`'s summary counts them).
pub const INVALID_OBJECT: &str = "invalid-object";

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sts_guard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered",
            requests.clone(),
        );
        let violations = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_violations",
            "Rule findings by rule id and action",
            violations.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS.iter().copied())
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review",
            latency.clone(),
        );
        let bad_requests = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "Bodies that were not a readable AdmissionReview",
            bad_requests.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry of the serving certificate, seconds since the epoch",
            cert_expiry.clone(),
        );
        let cert_reload_failures = Counter::default();
        registry.register(
            "certificate_reload_failures",
            "Certificate reloads that failed (the last good pair stays in use)",
            cert_reload_failures.clone(),
        );
        let inventory_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "inventory_objects",
            "Objects in the inventory by kind",
            inventory_objects.clone(),
        );
        let lookup_errors = Counter::default();
        registry.register(
            "lookup_errors",
            "Inventory lookups that could not be answered (onLookupError decided)",
            lookup_errors.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "watch_errors",
            "Inventory watch failures (each is retried with backoff)",
            watch_errors.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refused",
            "Connections and requests refused by a limit (reason: connection_limit, per_client_connection_limit, memory_budget, too_large_to_evaluate)",
            refused.clone(),
        );
        let audit_findings = Family::<RuleLabels, Gauge>::default();
        registry.register(
            "audit_findings",
            "Findings of the last completed background audit by rule id and action (deny, warn); objects that cannot be read count as rule invalid-object",
            audit_findings.clone(),
        );
        let audit_last_run = Gauge::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last completed background audit began to read the cluster, seconds since the epoch",
            audit_last_run.clone(),
        );
        let audit_duration = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "audit_last_run_duration_seconds",
            "How long the last completed background audit took",
            audit_duration.clone(),
        );
        let audit_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "audit_runs",
            "Background audits run, by result (ok, error: the cluster could not be read)",
            audit_runs.clone(),
        );
        Metrics {
            audit_findings,
            audit_last_run,
            audit_duration,
            audit_runs,
            refused,
            watch_errors,
            registry,
            requests,
            violations,
            latency,
            bad_requests,
            cert_expiry,
            cert_reload_failures,
            inventory_objects,
            lookup_errors,
        }
    }
}

impl Metrics {
    /// Sets the audit gauges from one run's counts by (rule id, action): every validating rule
    /// and action it may take, and `invalid-object`, gets a value, zero when nothing was found,
    /// so a finding that was fixed goes to 0 instead of keeping its last value.
    pub fn set_audit_findings(&self, counts: &std::collections::HashMap<(&str, &str), usize>) {
        let mut labels: Vec<(&'static str, &'static str)> = vec![(INVALID_OBJECT, "deny")];
        for rule in RULES {
            if let Effect::Validating { choices, .. } = rule.effect {
                labels.extend(
                    choices
                        .iter()
                        .map(|a| a.as_str())
                        .filter(|a| *a != "off")
                        .map(|a| (rule.id, a)),
                );
            }
        }
        for (rule, action) in labels {
            let n = counts.get(&(rule, action)).copied().unwrap_or(0);
            self.audit_findings
                .get_or_create(&RuleLabels { rule, action })
                .set(n as i64);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Maps a request kind onto the bounded label set: the kinds sts-guard knows, else `other`.
pub fn kind_label(kind: &str) -> &'static str {
    Kind::metric_label(Kind::from_name(kind))
}

pub fn operation_label(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}
