//! `sts-guard audit`: flags to one read of the cluster, the report to stdout, progress to
//! stderr, and `check`'s exit codes.

use super::{EXIT_UNREADABLE, load_config, positive_seconds, print_verdict};
use crate::audit::{self, AuditOptions, Progress};
use crate::report::{self, PolicyReportFormat};
use crate::report::{AuditReport, Listed};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Audit only this namespace (repeatable). Default: every namespace.
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespaces: Vec<String>,
    /// Audit every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Kubeconfig context to use (default: the current context; without a kubeconfig, the
    /// in-cluster service account).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format: `policyreport` and `openreports` print a List of reports for `kubectl
    /// apply -f` (wgpolicyk8s.io/v1alpha2 PolicyReports, openreports.io/v1alpha1 Reports).
    #[arg(short, long, value_enum, default_value_t = AuditOutput::Text)]
    pub output: AuditOutput,
    /// Config file (rule actions, excluded namespaces, ...).
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Objects per list request (lists are paged, so memory stays bounded).
    #[arg(long, default_value_t = crate::audit::DEFAULT_PAGE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,
    /// Seconds each API request may take.
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
    pub request_timeout: f64,
    /// No progress lines on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// What `audit` prints: `check`'s formats, and the ecosystem's policy reports.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutput {
    Text,
    Json,
    Sarif,
    /// wgpolicyk8s.io/v1alpha2 PolicyReports and a ClusterPolicyReport.
    Policyreport,
    /// openreports.io/v1alpha1 Reports and a ClusterReport.
    Openreports,
}

pub fn run(args: AuditArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("sts-guard audit: {message}");
        ExitCode::from(EXIT_UNREADABLE)
    };
    init_logging();
    let config = match load_config(args.config.as_ref()) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let options = AuditOptions {
        namespaces: args.namespaces.clone(),
        page_size: args.page_size,
        ..AuditOptions::default()
    };
    let mut progress = StderrProgress::new(args.quiet);
    let result = runtime.block_on(async {
        let mut client_config = crate::inventory::client_config(args.context.as_deref())
            .await
            .map_err(|e| {
                format!("{e}; run it inside a cluster with a service account, set KUBECONFIG, or pass --context")
            })?;
        let timeout = Duration::from_secs_f64(args.request_timeout);
        client_config.connect_timeout = Some(timeout.min(Duration::from_secs(10)));
        client_config.read_timeout = Some(timeout);
        // The audit retries throttled requests itself, a bounded number of times.
        client_config.default_retry = false;
        let server = client_config.cluster_url.to_string();
        let client = kube::Client::try_from(client_config)
            .map_err(|e| format!("cannot create a Kubernetes client for {server} ({e})"))?;
        audit::run(client, &options, &config, &mut progress)
            .await
            .map_err(|e| format!("{e} (API server {server})"))
    });
    progress.clear();
    let audited = match result {
        Ok(audited) => audited,
        Err(message) => return fail(message),
    };
    let scope = scope(&args.namespaces);
    let rendered = render(&audited, args.output, &scope);
    print_verdict("audit", &rendered, audited.report.denied())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// What the audit covered, in words: `all namespaces`, `namespaces a, b`.
pub fn scope(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        "all namespaces".to_string()
    } else {
        format!("namespaces {}", namespaces.join(", "))
    }
}

fn render(audited: &AuditReport, output: AuditOutput, scope: &str) -> String {
    let report = &audited.report;
    let counts = report::by_namespace_and_rule(report);
    match output {
        AuditOutput::Text => {
            let mut out = report::findings_text(report);
            if !out.is_empty() {
                out.push('\n');
            }
            if counts.is_empty() {
                out.push_str("No findings.\n");
            } else {
                out.push_str("Findings by namespace and rule:\n");
                out.push_str(&report::summary_table(&counts));
            }
            out.push_str(&format!("{} ({scope}).\n", read_line(&audited.listed)));
            out.push_str(&report::summary_line(report));
            out
        }
        AuditOutput::Json => {
            let json = report::AuditJson { audited, scope };
            // Serializing a report to a String cannot fail.
            serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
        }
        AuditOutput::Sarif => format!("{:#}\n", report::sarif(report)),
        AuditOutput::Policyreport => format!(
            "{:#}\n",
            report::policy_reports(audited, PolicyReportFormat::WgPolicy)
        ),
        AuditOutput::Openreports => format!(
            "{:#}\n",
            report::policy_reports(audited, PolicyReportFormat::OpenReports)
        ),
    }
}

fn read_line(listed: &Listed) -> String {
    format!(
        "Read {} Nodes, {} Services, {} StatefulSets, {} StatefulSet pods and {} PersistentVolumeClaims",
        listed.nodes, listed.services, listed.statefulsets, listed.pods, listed.claims
    )
}

/// Progress on stderr: on a terminal one line rewritten per page; otherwise a line per kind
/// listed, and one every `LINE_EVERY` objects of a long list.
struct StderrProgress {
    quiet: bool,
    terminal: bool,
    /// Objects counted when the last line was printed (not on a terminal).
    last_line_at: usize,
    pending: bool,
}

const LINE_EVERY: usize = 10_000;

impl StderrProgress {
    fn new(quiet: bool) -> Self {
        StderrProgress {
            quiet,
            terminal: std::io::stderr().is_terminal(),
            last_line_at: 0,
            pending: false,
        }
    }

    /// Ends a rewritten line before anything else is printed.
    fn clear(&mut self) {
        if self.pending {
            eprint!("\r\x1b[K");
            self.pending = false;
        }
    }
}

impl Progress for StderrProgress {
    fn page(&mut self, kind: &'static str, so_far: usize) {
        if self.quiet {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[Ksts-guard audit: listing {kind}: {so_far}");
            self.pending = true;
        } else if so_far >= self.last_line_at + LINE_EVERY {
            eprintln!("sts-guard audit: listing {kind}: {so_far} so far");
            self.last_line_at = so_far;
        }
    }

    fn done(&mut self, kind: &'static str, total: usize) {
        self.last_line_at = 0;
        if self.quiet {
            return;
        }
        self.clear();
        eprintln!("sts-guard audit: listed {total} {kind}");
    }
}
