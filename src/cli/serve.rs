//! `sts-guard serve`: flags to a running server, signals to a drain.

use super::{
    InputLimitArgs, load_config, load_inventory, namespace_name, positive_count, positive_seconds,
};
use crate::audit::BackgroundOptions;
use crate::engine::Evaluator;
use crate::inventory::ClusterInventory;
use crate::server::audit_page::AuditPage;
use crate::server::certs::{self, CA_CERT, TLS_CERT, TLS_KEY};
use crate::server::metrics::Metrics;
use crate::server::{self, ServerOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8443", env = "STS_GUARD_ADDR")]
    pub addr: std::net::SocketAddr,
    /// Also serve /healthz, /readyz, /metrics and /audit at this address, over TLS without
    /// client authentication: with --client-ca the kubelet's probes and Prometheus present no
    /// client certificate, so point them here.
    #[arg(long, env = "STS_GUARD_ADMIN_ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Serving certificate (PEM, leaf first, intermediates allowed). Without it and --tls-key a
    /// development CA and certificate are created (or reused) in --certs-dir.
    #[arg(long, env = "STS_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "STS_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only clients with a certificate that chains to this CA bundle (PEM;
    /// re-read like the serving pair). kube-apiserver presents one when its admission control
    /// config names a kubeconfig user for the webhook's host.
    #[arg(long, env = "STS_GUARD_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: accept only a client certificate that names this identity as its
    /// common name or a DNS name (repeatable; without it any certificate from the CA).
    #[arg(long = "client-name", value_name = "NAME", requires = "client_ca")]
    pub client_names: Vec<String>,
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
    #[arg(long, default_value = "default", value_parser = namespace_name)]
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
    /// Most connections served at once; more are closed on accept. kube-apiserver opens one
    /// HTTP/1.1 connection per concurrent call, and large clusters run 1,000+ concurrent
    /// requests per apiserver.
    #[arg(long, default_value_t = 4096, value_parser = positive_count)]
    pub max_connections: usize,
    /// Most connections from one client address that have not been served a request yet (in
    /// the TLS handshake or before their first request): any pod can reach the webhook port,
    /// and this keeps one that sends nothing from taking every slot. Served connections do
    /// not count, so a client that keeps sending requests gets up to --max-connections.
    #[arg(long, default_value_t = 1024, value_parser = positive_count)]
    pub max_pending_connections_per_client: usize,
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
    /// Seconds between background audits of the cluster (the first runs once the inventory
    /// has synced); results on /audit and the sts_guard_audit_* metrics. 0 turns it off.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = audit_interval,
          env = "STS_GUARD_AUDIT_INTERVAL")]
    pub audit_interval: f64,
}

/// `--audit-interval`: seconds, 0 for none.
fn audit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds (0 turns the background audit off)"
        )),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> ExitCode {
    crate::allocator::keep_resident_memory_low();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sts-guard serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(args));
    crate::log_writer::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sts-guard serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(crate::log_writer::BatchedStderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Decision lines, one per request, are written directly in the same format.
    crate::log_writer::write_decisions_as(match format {
        LogFormat::Json => crate::log_writer::LineFormat::Json,
        LogFormat::Text => crate::log_writer::LineFormat::Text,
    });
}

/// Development certificates in `dir`: reused while they load and stay valid for a day,
/// created otherwise.
fn dev_certificates(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join(TLS_CERT), dir.join(TLS_KEY));
    let provider = rustls::crypto::ring::default_provider();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let reusable =
        certs::load_pair(&cert, &key, &provider).is_ok_and(|c| c.not_after > now + 86_400);
    if !reusable {
        let names = [
            "localhost",
            "127.0.0.1",
            "::1",
            "sts-guard",
            "sts-guard.sts-guard.svc",
        ]
        .map(String::from);
        let generated = certs::generate(&names, 90).map_err(|e| e.to_string())?;
        certs::write_dir(dir, &generated, true).map_err(|e| e.to_string())?;
        tracing::info!(dir = %dir.display(), "created a development CA and serving certificate");
    }
    crate::log_writer::flush();
    eprintln!(
        "sts-guard serve: development certificates in {}; CA bundle: {}",
        dir.display(),
        dir.join(CA_CERT).display()
    );
    Ok((cert, key))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = Arc::new(load_config(args.config.as_ref())?);
    match server::raise_open_file_limit() {
        // The connections, plus the watches, the log and the certificate files.
        Ok(files) if files < args.max_connections as u64 + 64 => tracing::warn!(
            files,
            max_connections = args.max_connections,
            "the open file limit is below --max-connections: connections beyond it are refused"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(%err, "cannot read or raise the open file limit"),
    }
    let metrics = Arc::new(Metrics::default());
    let (inventory, audit_page): (Arc<dyn Evaluator>, Arc<AuditPage>) = if args.manifests.is_empty()
    {
        let (client, client_config) = cluster_client().await?;
        let cluster = Arc::new(ClusterInventory::start(
            client,
            &args.watch_namespaces,
            Duration::from_secs_f64(args.lookup_timeout),
        ));
        tokio::spawn(export_cluster_metrics(cluster.clone(), metrics.clone()));
        tracing::info!(namespaces = ?args.watch_namespaces, "watching the cluster; ready once every watch has listed");
        let page = if args.audit_interval > 0.0 {
            let page = Arc::new(AuditPage::waiting());
            start_background_audit(
                client_config,
                cluster.clone(),
                config.clone(),
                &args,
                page.clone(),
                metrics.clone(),
            )?;
            page
        } else {
            Arc::new(AuditPage::unavailable(
                "the background audit is off (--audit-interval 0); run sts-guard audit",
            ))
        };
        (cluster, page)
    } else {
        let inventory = load_inventory(&args.manifests, &args.namespace, &args.limits.limits())?;
        let (services, statefulsets, nodes) = inventory.sizes();
        server::set_inventory_sizes(&metrics, services, statefulsets, nodes);
        tracing::info!(services, statefulsets, nodes, "inventory from manifests");
        let page = AuditPage::unavailable(
            "serve --manifests reads no cluster, so it runs no background audit",
        );
        (Arc::new(inventory), Arc::new(page))
    };
    let (cert_path, key_path) = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => dev_certificates(&args.certs_dir)?,
    };
    let options = ServerOptions {
        addr: args.addr,
        admin_addr: args.admin_addr,
        cert_path,
        key_path,
        body_limit: args.body_limit,
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        max_connections: args.max_connections,
        max_pending_connections_per_client: args.max_pending_connections_per_client,
        memory_budget: args.memory_budget,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        cert_reload_interval: Duration::from_secs_f64(args.cert_reload_interval),
        client_ca: args.client_ca,
        client_names: args.client_names,
    };
    let running = server::start_with_audit(options, inventory, config, metrics, audit_page)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(addr = %running.local_addr, admin = ?running.admin_addr, "serving");
    crate::log_writer::flush();
    eprintln!(
        "sts-guard serve: listening on https://{}",
        running.local_addr
    );
    if let Some(admin) = running.admin_addr {
        eprintln!(
            "sts-guard serve: /healthz, /readyz, /metrics and /audit also on https://{admin}"
        );
    }
    shutdown_signal().await;
    tracing::info!("shutdown signal received");
    // A second signal aborts the drain.
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second shutdown signal: exiting without draining");
        crate::log_writer::flush();
        std::process::exit(130);
    });
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A client from the in-cluster service account or KUBECONFIG, with a hint when neither
/// exists, and the config it was made from (the background audit makes its own client).
async fn cluster_client() -> Result<(kube::Client, kube::Config), String> {
    let hint = "run inside a cluster with a service account, set KUBECONFIG, or pass --manifests DIR|FILE to answer lookups from manifest files";
    let config = crate::inventory::client_config(None)
        .await
        .map_err(|e| format!("{e}; {hint}"))?;
    let client = kube::Client::try_from(config.clone())
        .map_err(|e| format!("cannot create a Kubernetes client ({e}); {hint}"))?;
    Ok((client, config))
}

/// The background audit (`--audit-interval`), publishing to `/audit` and the metrics.
fn start_background_audit(
    mut client_config: kube::Config,
    cluster: Arc<ClusterInventory>,
    config: Arc<crate::config::Config>,
    args: &ServeArgs,
    page: Arc<AuditPage>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    // As `sts-guard audit`: throttled requests are retried by the audit itself, a bounded
    // number of times, and a list page may take a while on a loaded API server.
    client_config.default_retry = false;
    client_config.read_timeout = Some(Duration::from_secs(60));
    let options = BackgroundOptions {
        every: Duration::from_secs_f64(args.audit_interval),
        namespaces: args.watch_namespaces.clone(),
    };
    let scope = super::audit::scope(&args.watch_namespaces);
    crate::audit::spawn_background(
        client_config,
        cluster,
        config,
        options,
        move |outcome, took| {
            page.publish(&metrics, outcome, took, &scope);
            std::ops::ControlFlow::Continue(())
        },
    )
    .map(|_| ())
    .map_err(|e| format!("cannot start the background audit's thread: {e}"))
}

/// Publishes cache sizes and watch/lookup counters every few seconds.
async fn export_cluster_metrics(cluster: Arc<ClusterInventory>, metrics: Arc<Metrics>) {
    use std::sync::atomic::Ordering;
    let mut reported_errors = 0;
    loop {
        let (services, statefulsets, nodes) = cluster.sizes();
        server::set_inventory_sizes(&metrics, services, statefulsets, nodes);
        let errors = cluster.stats.watch_errors.load(Ordering::Relaxed);
        metrics.watch_errors.inc_by(errors - reported_errors);
        reported_errors = errors;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
