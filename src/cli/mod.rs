//! The `sts-guard` command line (clap). Each subcommand is a thin shell over the library.

mod audit;
mod serve;

use crate::check::{check_objects, load_inventory_paths, load_paths};
use crate::config::Config;
use crate::manifest::InputLimits;
use crate::report;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sts-guard",
    version,
    about = "Keeps StatefulSets honest: an admission webhook and an offline checker."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check manifests against the validating rules (for CI). Exit 0: no denial; 1: denials;
    /// 2: unreadable input or config.
    Check(CheckArgs),
    /// Serve the admission webhook over TLS (POST /validate, /mutate; GET /healthz, /readyz,
    /// /metrics).
    Serve(ServeArgs),
    /// Read a live cluster once and list the StatefulSets, Services and StatefulSet pods that
    /// break the rules. Exit 0: no denial; 1: denials; 2: the cluster could not be read.
    Audit(AuditArgs),
    /// Evaluate one AdmissionReview exactly as the server would and print the response.
    Review(ReviewArgs),
    /// Write a CA and a serving certificate for bootstrapping.
    Certs(CertsArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8443", env = "STS_GUARD_ADDR")]
    pub addr: std::net::SocketAddr,
    /// Serving certificate (PEM, leaf first, intermediates allowed). Without it and --tls-key a
    /// development CA and certificate are created (or reused) in --certs-dir.
    #[arg(long, env = "STS_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "STS_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where development certificates are kept when --tls-cert/--tls-key are not given.
    #[arg(long, default_value = "certs", env = "STS_GUARD_CERTS_DIR")]
    pub certs_dir: PathBuf,
    /// Config file.
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Answer lookups from these manifest files or directories instead of a cluster. Without
    /// it the server watches the cluster (in-cluster service account or KUBECONFIG).
    #[arg(long, value_name = "DIR|FILE")]
    pub manifests: Vec<String>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// Watch Services and StatefulSets only in these namespaces (repeatable; default: all).
    #[arg(long = "watch-namespace", value_name = "NAMESPACE")]
    pub watch_namespaces: Vec<String>,
    /// Seconds a live lookup (confirming a cache miss before a denial) may take.
    #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
    pub lookup_timeout: f64,
    /// Namespace of manifest objects that do not name one.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 8 * 1024 * 1024, env = "STS_GUARD_BODY_LIMIT")]
    pub body_limit: usize,
    /// Seconds allowed for the TLS handshake, for the first request after it, and for the
    /// headers of each request.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub header_timeout: f64,
    /// Seconds a connection may stay open with no request in flight (above the 90 s after
    /// which kube-apiserver closes its own idle connections).
    #[arg(long, default_value_t = 120.0, value_parser = positive_seconds)]
    pub idle_timeout: f64,
    /// Seconds allowed for receiving a request body.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub request_timeout: f64,
    /// Most connections served at once; more are closed on accept.
    #[arg(long, default_value_t = 1024, value_parser = positive_count)]
    pub max_connections: usize,
    /// Most connections from one client address (kube-apiserver opens one per concurrent
    /// review, so leave it room; any pod can reach the webhook port).
    #[arg(long, default_value_t = 256, value_parser = positive_count)]
    pub max_connections_per_client: usize,
    /// Bytes of memory that request bodies and their evaluation may hold at once, across all
    /// requests; a review that alone would need more is answered without being evaluated.
    #[arg(long, default_value_t = 48 * 1024 * 1024, env = "STS_GUARD_MEMORY_BUDGET")]
    pub memory_budget: usize,
    /// Seconds SIGTERM waits for in-flight requests (keep it below the pod's grace period).
    #[arg(long, default_value_t = 20.0, value_parser = positive_seconds, env = "STS_GUARD_DRAIN_TIMEOUT")]
    pub drain_timeout: f64,
    /// Seconds between checks of the certificate files for changes.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub cert_reload_interval: f64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "STS_GUARD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a whole number above 0")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// AdmissionReview JSON file, or - for stdin.
    #[arg(default_value = "-")]
    pub file: String,
    /// Which webhook endpoint to answer as.
    #[arg(long, value_enum, default_value_t = EndpointArg::Validate)]
    pub endpoint: EndpointArg,
    /// Manifest files or directories that form the inventory.
    #[arg(long, value_name = "DIR|FILE")]
    pub manifests: Vec<String>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// Namespace of manifest objects that do not name one.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Config file.
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointArg {
    Validate,
    Mutate,
}

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// DNS names (or IP addresses) for the serving certificate, e.g.
    /// sts-guard.sts-guard.svc.
    #[arg(long, required = true, num_args = 1..)]
    pub dns: Vec<String>,
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Validity of the serving certificate in days (the CA gets twice as long).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Files, directories (recursive: .yaml, .yml, .json) or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Namespace of objects that do not name one.
    #[arg(short, long, default_value = "default", env = "STS_GUARD_NAMESPACE")]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Config file (rule actions, excluded namespaces, ...).
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
}

/// Bounds on manifest input (`check` paths, `--manifests`): more is an error naming the file.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct InputLimitArgs {
    /// Largest manifest file (or stdin) read, in bytes or with a Ki, Mi or Gi suffix.
    #[arg(long, value_name = "BYTES", default_value = "64Mi", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Largest total of all manifest input read, in bytes or with a Ki, Mi or Gi suffix.
    #[arg(long, value_name = "BYTES", default_value = "256Mi", value_parser = parse_size)]
    pub max_total_size: u64,
}

impl InputLimitArgs {
    pub fn limits(&self) -> InputLimits {
        InputLimits {
            max_file_bytes: self.max_file_size,
            max_total_bytes: self.max_total_size,
        }
    }
}

/// A size in bytes: `1048576`, `1024Ki`, `64Mi`, `1Gi`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => {
            return Err(format!(
                "{s:?}: expected bytes, or a number with Ki, Mi or Gi"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?}: expected a positive size"))
}

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
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Sarif,
}

/// Exit status of `check` and `audit`.
pub const EXIT_DENIED: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Serve(args) => serve::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Review(args) => run_review(&args),
        Command::Certs(args) => run_certs(&args),
    }
}

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path).map_err(|e| format!("invalid config: {e}")),
        None => Ok(Config::default()),
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sts-guard check: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let loaded = load_paths(&args.paths, &args.limits.limits(), &args.namespace);
    let (objects, inventory) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in &errors {
                eprintln!("sts-guard check: {e}");
            }
            eprintln!(
                "sts-guard check: {} input error(s); nothing was checked.",
                errors.len()
            );
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let report = check_objects(objects, &inventory, &config);
    let rendered = match args.output {
        OutputFormat::Text => report::text(&report),
        OutputFormat::Json => format!("{:#}\n", report::json(&report)),
        OutputFormat::Sarif => format!("{:#}\n", report::sarif(&report)),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(rendered.as_bytes())
        .and_then(|_| stdout.flush())
    {
        // A closed pipe (`| head`) is not a policy verdict; report it and fail loudly.
        eprintln!("sts-guard check: cannot write output: {e}");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    if report.denied() > 0 {
        ExitCode::from(EXIT_DENIED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Builds the static inventory from manifest paths (empty when none are given).
pub(crate) fn load_inventory(
    paths: &[String],
    namespace: &str,
    limits: &InputLimits,
) -> Result<crate::inventory::StaticInventory, String> {
    if paths.is_empty() {
        return Ok(crate::inventory::StaticInventory::new());
    }
    load_inventory_paths(paths, limits, namespace).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("--manifests: {e}")).collect();
        lines.join("\n")
    })
}

fn run_review(args: &ReviewArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("sts-guard review: {message}");
        ExitCode::from(EXIT_UNREADABLE)
    };
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let inventory = match load_inventory(&args.manifests, &args.namespace, &args.limits.limits()) {
        Ok(inv) => inv,
        Err(e) => return fail(e),
    };
    let body = if args.file == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(&args.file)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: cannot read: {e}", args.file)),
    };
    let endpoint = match args.endpoint {
        EndpointArg::Validate => crate::engine::Endpoint::Validate,
        EndpointArg::Mutate => crate::engine::Endpoint::Mutate,
    };
    match crate::admission::review(&body, &inventory, &config, endpoint) {
        Ok(reviewed) => {
            let pretty: serde_json::Value =
                serde_json::from_slice(&reviewed.body).unwrap_or(serde_json::Value::Null);
            println!("{pretty:#}");
            ExitCode::SUCCESS
        }
        Err(bad) => fail(format!("{}: {bad}", args.file)),
    }
}

fn run_certs(args: &CertsArgs) -> ExitCode {
    let result = crate::server::certs::generate(&args.dns, args.days)
        .and_then(|certs| crate::server::certs::write_dir(&args.out, &certs, args.force));
    match result {
        Ok(()) => {
            println!(
                "wrote {0}/ca.crt, {0}/ca.key, {0}/tls.crt, {0}/tls.key (serving certificate for {1}, valid {2} days)",
                args.out.display(),
                args.dns.join(", "),
                args.days
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sts-guard certs: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_limit_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["sts-guard", "check", "-"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.limits.limits(), InputLimits::default());
        let cli = Cli::try_parse_from(["sts-guard", "serve", "--max-file-size", "1Ki"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.limits.max_file_size, 1024);
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("17"), Ok(17));
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("2Gi"), Ok(2 << 30));
        for bad in ["", "0", "1M", "1.5Mi", "-1", "99999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
