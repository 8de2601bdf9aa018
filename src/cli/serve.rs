//! `sts-guard serve`: flags to a running server, signals to a drain.

use crate::cli::{LogFormat, ServeArgs, load_config, load_inventory};
use crate::inventory::{ClusterInventory, Evaluator};
use crate::server::certs::{self, CA_CERT, TLS_CERT, TLS_KEY};
use crate::server::metrics::Metrics;
use crate::server::{self, ServerOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub fn run(args: ServeArgs) -> ExitCode {
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
    let metrics = Arc::new(Metrics::default());
    let inventory: Arc<dyn Evaluator> = if args.manifests.is_empty() {
        let client = cluster_client().await?;
        let cluster = Arc::new(ClusterInventory::start(
            client,
            &args.watch_namespaces,
            Duration::from_secs_f64(args.lookup_timeout),
        ));
        tokio::spawn(export_cluster_metrics(cluster.clone(), metrics.clone()));
        tracing::info!(namespaces = ?args.watch_namespaces, "watching the cluster; ready once every watch has listed");
        cluster
    } else {
        let inventory = load_inventory(&args.manifests, &args.namespace, &args.limits.limits())?;
        let (services, statefulsets, nodes) = inventory.sizes();
        server::set_inventory_sizes(&metrics, services, statefulsets, nodes);
        tracing::info!(services, statefulsets, nodes, "inventory from manifests");
        Arc::new(inventory)
    };
    let (cert_path, key_path) = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => dev_certificates(&args.certs_dir)?,
    };
    let options = ServerOptions {
        addr: args.addr,
        cert_path,
        key_path,
        body_limit: args.body_limit,
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        max_connections: args.max_connections,
        max_connections_per_client: args.max_connections_per_client,
        memory_budget: args.memory_budget,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        cert_reload_interval: Duration::from_secs_f64(args.cert_reload_interval),
    };
    let running = server::start(options, inventory, config, metrics)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(addr = %running.local_addr, "serving");
    crate::log_writer::flush();
    eprintln!(
        "sts-guard serve: listening on https://{}",
        running.local_addr
    );
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

/// A client from the in-cluster service account or KUBECONFIG, with a hint when neither exists.
async fn cluster_client() -> Result<kube::Client, String> {
    let hint = "run inside a cluster with a service account, set KUBECONFIG, or pass --manifests DIR|FILE to answer lookups from manifest files";
    let config = crate::inventory::client_config(None)
        .await
        .map_err(|e| format!("{e}; {hint}"))?;
    kube::Client::try_from(config)
        .map_err(|e| format!("cannot create a Kubernetes client ({e}); {hint}"))
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
