//! `GET /audit`: the last completed background audit, as `sts-guard audit -o json` prints it,
//! and its metrics. The audit itself runs in [`crate::audit::spawn_background`]; this module
//! only keeps and serves what it found.

use super::metrics::{Metrics, ResultLabels};
use crate::audit::{AuditError, AuditReport};
use crate::report;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// What `GET /audit` answers.
pub struct AuditPage {
    state: RwLock<PageState>,
}

struct PageState {
    /// The JSON of the last completed audit.
    json: Option<Bytes>,
    /// Why there is none (yet), or why the last run failed.
    reason: String,
}

impl AuditPage {
    /// A page with nothing to show yet, saying why.
    pub fn unavailable(reason: impl Into<String>) -> AuditPage {
        AuditPage {
            state: RwLock::new(PageState {
                json: None,
                reason: reason.into(),
            }),
        }
    }

    /// Until the first run completes.
    pub fn waiting() -> AuditPage {
        AuditPage::unavailable(
            "the first background audit has not completed yet: it starts once the inventory has synced",
        )
    }

    pub(super) fn response(&self) -> Response {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match &state.json {
            Some(json) => {
                ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
            }
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no audit to show: {}\n", state.reason),
            )
                .into_response(),
        }
    }

    /// Takes one run's outcome: a completed audit replaces the page and sets the gauges; a
    /// failed one is counted and logged, and the last completed audit stays on the page.
    pub fn publish(
        &self,
        metrics: &Metrics,
        outcome: Result<AuditReport, AuditError>,
        took: Duration,
        scope: &str,
    ) {
        match outcome {
            Ok(audited) => {
                let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
                for by_rule in report::by_namespace_and_rule(&audited.report).values() {
                    for (rule, c) in by_rule {
                        *counts.entry((*rule, "deny")).or_default() += c.deny;
                        *counts.entry((*rule, "warn")).or_default() += c.warn;
                    }
                }
                metrics.set_audit_findings(&counts);
                metrics.audit_last_run.set(audited.at.as_second());
                metrics.audit_duration.set(took.as_secs_f64());
                metrics
                    .audit_runs
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                let json = format!("{:#}\n", report::audit_json(&audited, scope));
                tracing::info!(
                    seconds = took.as_secs_f64(),
                    denied = audited.report.denied(),
                    warned = audited.report.warned(),
                    "background audit completed"
                );
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                state.json = Some(Bytes::from(json));
            }
            Err(err) => {
                metrics
                    .audit_runs
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                tracing::warn!(%err, "background audit failed; the last completed one stays on /audit");
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                state.reason = format!("the background audit failed: {err}");
            }
        }
    }
}
