//! `GET /audit`: the last completed background audit, as `sts-guard audit -o json` prints it,
//! and its metrics. The audit itself runs in [`crate::audit::spawn_background`]; this module
//! only keeps and serves what it found.
//!
//! The page is kept gzip-compressed: a large cluster's findings are tens of MiB of JSON made of
//! the same few messages, which compress about twentyfold, and the page is held from one run
//! to the next. A client that accepts gzip gets it as it is; another gets it inflated.

use super::metrics::{Metrics, ResultLabels};
use crate::audit::AuditError;
use crate::report;
use crate::report::AuditReport;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::RwLock;
use std::time::Duration;

/// What `GET /audit` answers.
pub struct AuditPage {
    state: RwLock<PageState>,
}

struct PageState {
    /// The JSON of the last completed audit, gzip-compressed.
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

    /// Bytes the page holds: its compressed JSON (0 before the first completed audit).
    pub fn held_bytes(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.json.as_ref().map_or(0, |json| json.len())
    }

    pub(super) fn response(&self, accepts_gzip: bool) -> Response {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match &state.json {
            Some(gzipped) if accepts_gzip => (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                gzipped.clone(),
            )
                .into_response(),
            Some(gzipped) => {
                let mut json = Vec::with_capacity(gzipped.len() * 8);
                match GzDecoder::new(&gzipped[..]).read_to_end(&mut json) {
                    Ok(_) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                    Err(err) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot inflate the audit page: {err}\n"),
                    )
                        .into_response(),
                }
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
                let json = match gzipped_json(&audited, scope) {
                    Ok(json) => json,
                    Err(err) => {
                        tracing::error!(%err, "cannot write the audit page");
                        return;
                    }
                };
                tracing::info!(
                    seconds = took.as_secs_f64(),
                    denied = audited.report.denied(),
                    warned = audited.report.warned(),
                    "background audit completed"
                );
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                state.json = Some(json);
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

/// `sts-guard audit -o json`'s text of `audited`, gzip-compressed as it is written.
fn gzipped_json(audited: &AuditReport, scope: &str) -> std::io::Result<Bytes> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    serde_json::to_writer_pretty(&mut gz, &report::AuditJson { audited, scope })?;
    gz.write_all(b"\n")?;
    Ok(Bytes::from(gz.finish()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckReport, Listed};

    async fn body(response: Response) -> (StatusCode, Option<String>, Vec<u8>) {
        let status = response.status();
        let encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, encoding, bytes.to_vec())
    }

    #[tokio::test]
    async fn the_page_is_kept_compressed_and_served_as_the_client_accepts() {
        let page = AuditPage::waiting();
        let (status, _, text) = body(page.response(false)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            String::from_utf8(text)
                .unwrap()
                .starts_with("no audit to show: the first background audit has not completed yet")
        );

        let audited = AuditReport {
            report: CheckReport {
                objects: Vec::new(),
                unlisted_ok: 7,
                unlisted_skipped: 0,
            },
            listed: Listed::default(),
            at: "2025-06-01T12:00:00Z".parse().unwrap(),
            namespaces: Default::default(),
        };
        let expected = serde_json::to_string_pretty(&report::AuditJson {
            audited: &audited,
            scope: "all namespaces",
        })
        .unwrap()
            + "\n";
        let metrics = Metrics::default();
        page.publish(
            &metrics,
            Ok(audited),
            Duration::from_millis(1500),
            "all namespaces",
        );
        let (status, encoding, plain) = body(page.response(false)).await;
        assert_eq!((status, encoding), (StatusCode::OK, None));
        assert_eq!(String::from_utf8(plain).unwrap(), expected);
        let (_, encoding, gzipped) = body(page.response(true)).await;
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert_eq!(gzipped.len(), page.held_bytes());
        let mut inflated = String::new();
        GzDecoder::new(&gzipped[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, expected);
        assert_eq!(metrics.audit_last_run.get(), 1748779200);
        assert_eq!(metrics.audit_duration.get(), 1.5);

        // A failed run keeps the page and says nothing new there.
        let failed = AuditError {
            action: "list pods in all namespaces".into(),
            reason: "forbidden".into(),
        };
        page.publish(&metrics, Err(failed), Duration::ZERO, "all namespaces");
        let (status, _, plain) = body(page.response(false)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(String::from_utf8(plain).unwrap(), expected);
    }
}
