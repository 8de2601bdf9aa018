//! The webhook server: axum routes over hyper, TLS by rustls (ring), HTTP/2 and HTTP/1.1 by
//! ALPN. Evaluation lives in [`crate::admission`]; this module is transport only.

pub mod certs;
pub mod metrics;

use crate::admission::{self, Reviewed};
use crate::config::Config;
use crate::engine::Endpoint;
use crate::inventory::Evaluator;
use crate::rules::Action;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use certs::{CertError, SwappableCert};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use metrics::{
    EndpointLabels, KindLabels, Metrics, RequestLabels, RuleLabels, kind_label, operation_label,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// Everything `serve` needs, resolved from flags.
pub struct ServerOptions {
    pub addr: SocketAddr,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub body_limit: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub cert_reload_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Cert(#[from] CertError),
    #[error("--addr {addr}: cannot bind: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

struct AppState {
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    body_limit: usize,
    request_timeout: Duration,
}

/// The routes, without transport: `/validate`, `/mutate`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    body_limit: usize,
    request_timeout: Duration,
) -> Router {
    let state = Arc::new(AppState {
        inventory,
        config,
        metrics,
        ready,
        body_limit,
        request_timeout,
    });
    Router::new()
        .route(
            "/validate",
            post(
                |s: State<Arc<AppState>>, v: Version, h: HeaderMap, b: Body| {
                    handle(s, v, h, b, Endpoint::Validate)
                },
            ),
        )
        .route(
            "/mutate",
            post(
                |s: State<Arc<AppState>>, v: Version, h: HeaderMap, b: Body| {
                    handle(s, v, h, b, Endpoint::Mutate)
                },
            ),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
            .into_response()
    } else if !state.inventory.synced() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: inventory not synced\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<AppState>>,
    version: Version,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let started = Instant::now();
    let label = EndpointLabels {
        endpoint: endpoint.as_str(),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.body_limit as u64) {
        state.metrics.bad_requests.get_or_create(&label).inc();
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body exceeds the {} byte limit", state.body_limit),
        );
    }
    let bytes = match tokio::time::timeout(
        state.request_timeout,
        axum::body::to_bytes(body, state.body_limit),
    )
    .await
    {
        Err(_) => {
            state.metrics.bad_requests.get_or_create(&label).inc();
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time".into(),
            );
        }
        Ok(Err(err)) => {
            state.metrics.bad_requests.get_or_create(&label).inc();
            let too_large = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            return if too_large {
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body exceeds the {} byte limit", state.body_limit),
                )
            } else {
                plain(StatusCode::BAD_REQUEST, format!("cannot read body: {err}"))
            };
        }
        Ok(Ok(bytes)) => bytes,
    };
    let reviewed = match admission::decode(&bytes) {
        Ok(request) => {
            let decision = state
                .inventory
                .decide(&request, &state.config, endpoint)
                .await;
            admission::encode(&request, decision)
        }
        Err(bad) => Err(bad),
    };
    match reviewed {
        Err(bad) => {
            state.metrics.bad_requests.get_or_create(&label).inc();
            tracing::warn!(endpoint = endpoint.as_str(), reason = %bad, "bad admission request");
            plain(StatusCode::BAD_REQUEST, bad.0)
        }
        Ok(reviewed) => {
            record(&state.metrics, endpoint, version, &reviewed);
            state
                .metrics
                .latency
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
    }
}

/// One log line and the counters for a decision. The log names the HTTP version: kube-apiserver
/// calls a Service-backed webhook over HTTP/1.1 and a loopback URL over HTTP/2.
fn record(metrics: &Metrics, endpoint: Endpoint, version: Version, r: &Reviewed) {
    let d = &r.decision;
    let decision = if !d.allowed() {
        "deny"
    } else if d.patch.is_some() {
        "patch"
    } else if d.has_warnings() {
        "warn"
    } else {
        "allow"
    };
    metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.as_str(),
            kind: kind_label(&r.kind),
            operation: operation_label(&r.operation),
            decision,
        })
        .inc();
    for v in &d.violations {
        metrics
            .violations
            .get_or_create(&RuleLabels {
                rule: v.rule.as_str(),
                action: if v.action == Action::Deny {
                    "deny"
                } else {
                    "warn"
                },
            })
            .inc();
    }
    metrics.lookup_errors.inc_by(d.lookups_failed as u64);
    tracing::info!(
        uid = %r.uid,
        endpoint = endpoint.as_str(),
        kind = %r.kind,
        operation = %r.operation,
        object = %format!("{}/{}", r.namespace, r.name),
        user = %r.user,
        decision,
        rules = %d.rule_ids().join(","),
        http = ?version,
        "admission decision"
    );
}

/// A running server: its address, readiness flag and a handle to stop it.
pub struct Running {
    pub local_addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (up to the drain deadline) and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn tls_config(resolver: Arc<SwappableCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Validates the certificates, binds and serves the webhook routes in the background.
pub async fn start(
    options: ServerOptions,
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
) -> Result<Running, ServeError> {
    let ready = Arc::new(AtomicBool::new(true));
    let app = router(
        inventory,
        config,
        metrics.clone(),
        ready.clone(),
        options.body_limit,
        options.request_timeout,
    );
    start_router(options, app, metrics, ready).await
}

/// Serves any router on the webhook's TLS stack (benchmarks use it for a floor measurement).
pub async fn start_router(
    options: ServerOptions,
    app: Router,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<Running, ServeError> {
    let provider = rustls::crypto::ring::default_provider();
    // Checked before binding: a bad pair fails at start, not at the first handshake.
    let loaded = certs::load_pair(&options.cert_path, &options.key_path, &provider)?;
    metrics.cert_expiry.set(loaded.not_after);
    let resolver = Arc::new(SwappableCert::new(loaded.key.clone()));
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(resolver.clone())?));
    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: options.addr,
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(reload_certificates(
        options.cert_path.clone(),
        options.key_path.clone(),
        options.cert_reload_interval,
        loaded.fingerprint,
        resolver,
        metrics,
        shutdown_rx.clone(),
    ));
    let task = tokio::spawn(accept_loop(
        listener,
        acceptor,
        app,
        options,
        ready.clone(),
        shutdown_rx,
    ));
    Ok(Running {
        local_addr,
        ready,
        shutdown: shutdown_tx,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    options: ServerOptions,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = options.max_connections, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .keep_alive_interval(Some(Duration::from_secs(30)));
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    ready.store(false, Ordering::Release);
    tracing::info!(deadline = ?options.drain_timeout, "draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(options.drain_timeout) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}

/// Polls the files' contents (not inodes: kubelet swaps a `..data` symlink) and swaps in a new
/// pair when it changed and validates; a failed reload keeps the last good pair.
async fn reload_certificates(
    cert_path: PathBuf,
    key_path: PathBuf,
    interval: Duration,
    mut fingerprint: (Vec<u8>, Vec<u8>),
    resolver: Arc<SwappableCert>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let provider = rustls::crypto::ring::default_provider();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let (Ok(cert), Ok(key)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) else {
            continue;
        };
        if (&cert, &key) == (&fingerprint.0, &fingerprint.1) {
            continue;
        }
        match certs::load_pair(&cert_path, &key_path, &provider) {
            Ok(loaded) => {
                resolver.swap(loaded.key);
                metrics.cert_expiry.set(loaded.not_after);
                fingerprint = loaded.fingerprint;
                tracing::info!(cert = %cert_path.display(), "serving certificate reloaded");
            }
            Err(err) => {
                // Remember the bad contents so the failure is logged once, not every poll.
                fingerprint = (cert, key);
                metrics.cert_reload_failures.inc();
                tracing::error!(%err, "certificate reload failed; keeping the last good certificate");
            }
        }
    }
}

/// Publishes inventory sizes.
pub fn set_inventory_sizes(metrics: &Metrics, services: usize, statefulsets: usize, nodes: usize) {
    for (kind, n) in [
        ("Service", services),
        ("StatefulSet", statefulsets),
        ("Node", nodes),
    ] {
        metrics
            .inventory_objects
            .get_or_create(&KindLabels { kind })
            .set(n as i64);
    }
}
