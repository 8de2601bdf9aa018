//! The webhook server: axum routes over hyper, TLS by rustls (ring), HTTP/2 and HTTP/1.1 by
//! ALPN. Evaluation lives in [`crate::admission`]; this module is transport only.

pub mod audit_page;
pub mod certs;
pub mod client_auth;
mod connection;
pub mod limits;
pub mod metrics;

use crate::admission::{self, Decoded, Reviewed};
use crate::config::Config;
use crate::engine::{Endpoint, Evaluator, NotDenied};
use crate::rules::Action;
use crate::vocabulary::Kind;
use audit_page::AuditPage;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use certs::{CertError, SwappableCert};
use client_auth::{ClientAuth, load_client_ca};
use connection::Deadlines;
use http_body_util::BodyExt;
use limits::{ConnectionLimits, MemoryBudget, RefusalLog, Reservation, evaluation_cost};
use metrics::{EndpointLabels, KindLabels, Metrics, RequestLabels, RuleLabels, kind_label};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Everything `serve` needs, resolved from flags.
#[derive(Clone)]
pub struct ServerOptions {
    pub addr: SocketAddr,
    /// Also serve `/healthz`, `/readyz`, `/metrics` and `/audit` here, over TLS without client
    /// authentication (`--admin-addr`): with `--client-ca` the kubelet's probes and Prometheus
    /// have no client certificate to get past the webhook port's handshake.
    pub admin_addr: Option<SocketAddr>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub body_limit: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections from one address not yet served a request (handshake, first request).
    pub max_pending_connections_per_client: usize,
    /// Bytes request bodies and their evaluation may hold at once, across all requests.
    pub memory_budget: usize,
    pub drain_timeout: Duration,
    pub cert_reload_interval: Duration,
    /// Mutual TLS: client certificates must chain to this CA bundle (`--client-ca`).
    pub client_ca: Option<PathBuf>,
    /// ...and name one of these identities, CN or DNS name (`--client-name`; none: any).
    pub client_names: Vec<String>,
}

/// What one request may spend: its body size and time, and memory from the shared budget.
pub struct RequestLimits {
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub memory_budget: usize,
}

impl ServerOptions {
    fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            memory_budget: self.memory_budget,
        }
    }
}

/// Bodies up to this size are evaluated on the async workers; larger ones on a thread that may
/// block, so that a large review never holds up the others.
const INLINE_EVALUATION_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Cert(#[from] CertError),
    #[error("--client-ca {0}")]
    ClientCa(CertError),
    #[error("--addr {addr}: cannot bind: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--admin-addr {addr}: cannot bind: {source}")]
    AdminBind {
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
    budget: MemoryBudget,
    refusals: RefusalLog,
    audit: Arc<AuditPage>,
}

/// The routes, without transport: the webhook port's (`/validate`, `/mutate`, and the admin
/// routes) and the admin port's (`/healthz`, `/readyz`, `/metrics`, `/audit`), over one state.
pub struct Routes {
    pub webhook: Router,
    pub admin: Router,
}

pub fn routes(
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    limits: RequestLimits,
    audit: Arc<AuditPage>,
) -> Routes {
    let state = Arc::new(AppState {
        audit,
        inventory,
        config,
        refusals: RefusalLog::new(metrics.clone()),
        metrics,
        ready,
        body_limit: limits.body_limit,
        request_timeout: limits.request_timeout,
        budget: MemoryBudget::new(limits.memory_budget),
    });
    let admin = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route(
            "/audit",
            get(
                |State(state): State<Arc<AppState>>, headers: HeaderMap| async move {
                    let gzip = headers
                        .get_all(header::ACCEPT_ENCODING)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
                    state.audit.response(gzip)
                },
            ),
        );
    let webhook = Router::new()
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
        .merge(admin.clone())
        .with_state(state.clone());
    Routes {
        webhook,
        admin: admin.with_state(state),
    }
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
    let mut reservation = state.budget.empty();
    let bytes = match tokio::time::timeout(
        state.request_timeout,
        read_body(body, &state, declared, &mut reservation),
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
        Ok(Err(refusal)) => {
            state.metrics.bad_requests.get_or_create(&label).inc();
            return refusal.response(&state);
        }
        Ok(Ok(bytes)) => bytes,
    };
    let cost = evaluation_cost(&bytes);
    if cost > state.budget.total() {
        let _ = state.refusals.refused("too_large_to_evaluate", None);
        return too_large_to_evaluate(&bytes, cost, &state, endpoint);
    }
    // The decoded tree and its evaluation stay within the budget too; waiting for memory that
    // other requests give back counts against this request's own time.
    if tokio::time::timeout(
        state.request_timeout,
        state.budget.grow(&mut reservation, cost),
    )
    .await
    .is_err()
    {
        let _ = state.refusals.refused("memory_budget", None);
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "server busy: its memory budget for requests is in use; retry".into(),
        );
    }
    let evaluate = async {
        match admission::decode(&bytes, endpoint)? {
            Decoded::Evaluate(request, summary) => {
                let decision = state.inventory.decide_review(&request, &state.config).await;
                admission::encode(summary, decision.in_mode(state.config.mode))
            }
            Decoded::Answered(reviewed) => Ok(*reviewed),
        }
    };
    let runtime = tokio::runtime::Handle::current();
    // block_in_place needs a multi-threaded runtime (`serve` has one; an embedding may not).
    let reviewed = if bytes.len() > INLINE_EVALUATION_BYTES
        && runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(|| runtime.block_on(evaluate))
    } else {
        evaluate.await
    };
    drop(reservation);
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

/// Why a request body was not read.
enum BodyRefusal {
    TooLarge,
    Budget,
    Unreadable(String),
}

impl BodyRefusal {
    fn response(self, state: &AppState) -> Response {
        match self {
            BodyRefusal::TooLarge => plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds the {} byte limit", state.body_limit),
            ),
            BodyRefusal::Budget => {
                let _ = state.refusals.refused("memory_budget", None);
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy: its memory budget for request bodies is in use; retry".into(),
                )
            }
            BodyRefusal::Unreadable(err) => {
                plain(StatusCode::BAD_REQUEST, format!("cannot read body: {err}"))
            }
        }
    }
}

/// Reads the body within the size limit, holding its bytes under the shared memory budget as
/// they arrive (a declared length up front), so that stalled uploads cannot add up past it.
async fn read_body(
    mut body: Body,
    state: &AppState,
    declared: Option<u64>,
    reservation: &mut Reservation,
) -> Result<axum::body::Bytes, BodyRefusal> {
    if let Some(length) = declared
        && !state.budget.try_grow(reservation, length as usize)
    {
        return Err(BodyRefusal::Budget);
    }
    // A declared length is already reserved: allocate it once rather than grow (and copy)
    // towards it; the pages are only touched as bytes arrive.
    let mut buffer: Vec<u8> =
        Vec::with_capacity(declared.map_or(0, |length| (length as usize).min(state.body_limit)));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyRefusal::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let length = buffer.len() + data.len();
        if length > state.body_limit {
            return Err(BodyRefusal::TooLarge);
        }
        if !state.budget.try_grow(reservation, length) {
            return Err(BodyRefusal::Budget);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.into())
}

/// A readable review that would cost more to evaluate than the whole budget: answered, not
/// evaluated, with a denial that says why and which flag decides.
fn too_large_to_evaluate(
    body: &[u8],
    cost: usize,
    state: &AppState,
    endpoint: Endpoint,
) -> Response {
    const MIB: usize = 1024 * 1024;
    let message = format!(
        "sts-guard did not evaluate this request: it would take about {} MiB of memory, more than the {} MiB the server gives all requests together (--memory-budget). Raise --memory-budget and the pod's memory limit to admit objects this large.",
        cost.div_ceil(MIB),
        state.budget.total() / MIB
    );
    match admission::refuse_unevaluated(body, &message) {
        Ok(review) => {
            tracing::warn!(
                endpoint = endpoint.as_str(),
                cost,
                "request too large to evaluate"
            );
            ([(header::CONTENT_TYPE, "application/json")], review).into_response()
        }
        Err(bad) => plain(StatusCode::BAD_REQUEST, bad.0),
    }
}

/// One log line and the counters for a decision. The log names the HTTP version: kube-apiserver
/// calls a Service-backed webhook over HTTP/1.1 and a loopback URL over HTTP/2.
fn record(metrics: &Metrics, endpoint: Endpoint, version: Version, r: &Reviewed<'_>) {
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
            kind: kind_label(&r.summary.kind),
            operation: r.summary.operation.as_str(),
            decision,
        })
        .inc();
    for v in &d.violations {
        metrics
            .violations
            .get_or_create(&RuleLabels {
                rule: v.rule.as_str(),
                action: match (v.action, v.not_denied) {
                    (Action::Deny, _) => "deny",
                    (_, Some(NotDenied::Monitor)) => "monitor",
                    _ => "warn",
                },
            })
            .inc();
    }
    metrics.lookup_errors.inc_by(d.lookups_failed as u64);
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let s = &r.summary;
    let rules = d.rule_ids();
    let http = http_version(version);
    let line = crate::log_writer::DecisionLine {
        target: module_path!(),
        uid: &s.uid,
        endpoint: endpoint.as_str(),
        kind: &s.kind,
        operation: s.operation.as_str(),
        namespace: &s.namespace,
        name: &s.name,
        user: &s.user,
        decision,
        rules: &rules,
        http,
    };
    if !crate::log_writer::write_decision(&line) {
        tracing::info!(
            uid = %s.uid,
            endpoint = endpoint.as_str(),
            kind = %s.kind,
            operation = s.operation.as_str(),
            object = %format_args!("{}/{}", s.namespace, s.name),
            user = %s.user,
            decision,
            rules = %rules.join(","),
            http,
            "admission decision"
        );
    }
}

/// The HTTP version as the decision log names it.
fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// A running server: its address, readiness flag and a handle to stop it.
pub struct Running {
    pub local_addr: SocketAddr,
    /// Where the admin routes are served apart, with `--admin-addr`.
    pub admin_addr: Option<SocketAddr>,
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

fn tls_config(
    resolver: Arc<SwappableCert>,
    client_auth: Option<Arc<ClientAuth>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let mut config = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Validates the certificates, binds and serves the webhook routes in the background, with
/// no background audit (`/audit` answers 503).
pub async fn start(
    options: ServerOptions,
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
) -> Result<Running, ServeError> {
    let audit = Arc::new(AuditPage::unavailable(
        "this server runs no background audit",
    ));
    start_with_audit(options, inventory, config, metrics, audit).await
}

/// [`start`], with `/audit` showing what a background audit publishes to `audit`.
pub async fn start_with_audit(
    options: ServerOptions,
    inventory: Arc<dyn Evaluator>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    audit: Arc<AuditPage>,
) -> Result<Running, ServeError> {
    let ready = Arc::new(AtomicBool::new(true));
    let routes = routes(
        inventory,
        config,
        metrics.clone(),
        ready.clone(),
        options.request_limits(),
        audit,
    );
    start_router(options, routes.webhook, Some(routes.admin), metrics, ready).await
}

/// Serves any router on the webhook's TLS stack (benchmarks use it for a floor measurement),
/// and `admin` on `--admin-addr` when both are given.
pub async fn start_router(
    options: ServerOptions,
    app: Router,
    admin: Option<Router>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<Running, ServeError> {
    let provider = rustls::crypto::ring::default_provider();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Checked before binding: a bad pair fails at start, not at the first handshake.
    let loaded = certs::load_pair(&options.cert_path, &options.key_path, &provider)?;
    metrics.cert_expiry.set(loaded.not_after);
    let resolver = Arc::new(SwappableCert::new(loaded.key.clone()));
    let client_auth = match &options.client_ca {
        Some(path) => {
            let ca = load_client_ca(path, &provider).map_err(ServeError::ClientCa)?;
            let auth = Arc::new(ClientAuth::new(ca.verifier, options.client_names.clone()));
            let (path, swapped) = (path.clone(), auth.clone());
            let provider = provider.clone();
            tokio::spawn(reload_on_change(
                "client CA",
                vec![path.clone()],
                options.cert_reload_interval,
                vec![ca.fingerprint],
                metrics.clone(),
                shutdown_rx.clone(),
                move || {
                    swapped.swap(load_client_ca(&path, &provider)?.verifier);
                    Ok(())
                },
            ));
            Some(auth)
        }
        None => None,
    };
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(resolver.clone(), client_auth)?));
    let admin = match (admin, options.admin_addr) {
        (Some(router), Some(addr)) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::AdminBind { addr, source })?;
            let acceptor = TlsAcceptor::from(Arc::new(tls_config(resolver.clone(), None)?));
            Some((listener, acceptor, router))
        }
        _ => None,
    };
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
    let metrics_for_refusals = metrics.clone();
    let (cert_path, key_path) = (options.cert_path.clone(), options.key_path.clone());
    let expiry = metrics.clone();
    tokio::spawn(reload_on_change(
        "serving certificate",
        vec![cert_path.clone(), key_path.clone()],
        options.cert_reload_interval,
        vec![loaded.fingerprint.0, loaded.fingerprint.1],
        metrics,
        shutdown_rx.clone(),
        move || {
            let loaded = certs::load_pair(&cert_path, &key_path, &provider)?;
            resolver.swap(loaded.key);
            expiry.cert_expiry.set(loaded.not_after);
            Ok(())
        },
    ));
    let refusals = Arc::new(RefusalLog::new(metrics_for_refusals));
    let admin_addr = match &admin {
        Some((listener, _, _)) => {
            Some(
                listener
                    .local_addr()
                    .map_err(|source| ServeError::AdminBind {
                        addr: options.admin_addr.unwrap_or(options.addr),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let admin_task = admin.map(|(listener, acceptor, router)| {
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            router,
            options.clone(),
            ready.clone(),
            refusals.clone(),
            shutdown_rx.clone(),
        ))
    });
    let webhook_task = tokio::spawn(accept_loop(
        listener,
        acceptor,
        app,
        options,
        ready.clone(),
        refusals,
        shutdown_rx,
    ));
    let task = tokio::spawn(async move {
        let _ = webhook_task.await;
        if let Some(admin) = admin_task {
            let _ = admin.await;
        }
    });
    Ok(Running {
        local_addr,
        admin_addr,
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
    refusals: Arc<RefusalLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = ConnectionLimits::new(
        options.max_connections,
        options.max_pending_connections_per_client,
    );
    let deadlines = Deadlines {
        headers: options.header_timeout,
        first_request: options.header_timeout,
        idle: options.idle_timeout,
    };
    let mut connections = tokio::task::JoinSet::new();
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
        // Reap finished connections so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                let _ = refusals.refused(reason, Some(peer.ip()));
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let refusals = refusals.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(deadlines.headers, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    if client_auth::refused_client_certificate(&err) {
                        let _ = refusals.refused("client_certificate", Some(peer.ip()));
                    }
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            connection::serve(tls, app, deadlines, peer, slot, shutdown).await;
        });
    }
    drop(listener);
    ready.store(false, Ordering::Release);
    tracing::info!(deadline = ?options.drain_timeout, "draining in-flight requests");
    let drained = async { while connections.join_next().await.is_some() {} };
    match tokio::time::timeout(options.drain_timeout, drained).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!("drain deadline passed; closing remaining connections");
            connections.abort_all();
        }
    }
}

/// Re-reads `paths` every `interval` by content (not inode: the kubelet swaps a `..data`
/// symlink) and calls `reload` when any changed. A failed reload is counted and logged once per
/// bad content; whatever `reload` swaps in stays as it was, so the last good one is kept.
async fn reload_on_change(
    what: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    mut seen: Vec<Vec<u8>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    mut reload: impl FnMut() -> Result<(), CertError>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(contents) = paths
            .iter()
            .map(std::fs::read)
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        if contents == seen {
            continue;
        }
        // Remembered either way, so that bad contents are logged once, not every poll.
        seen = contents;
        match reload() {
            Ok(()) => tracing::info!(file = %paths[0].display(), "{what} reloaded"),
            Err(err) => {
                metrics.cert_reload_failures.inc();
                tracing::error!(%err, "{what} reload failed; keeping the last good one");
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one (as Go programs do at start): every
/// connection is a file descriptor, and a soft limit of 1,024 — common outside containers —
/// would refuse kube-apiserver's connections long before `--max-connections`. Returns the
/// limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Publishes inventory sizes./// Publishes inventory sizes.
pub fn set_inventory_sizes(metrics: &Metrics, services: usize, statefulsets: usize, nodes: usize) {
    for (kind, n) in [
        (Kind::Service, services),
        (Kind::StatefulSet, statefulsets),
        (Kind::Node, nodes),
    ] {
        metrics
            .inventory_objects
            .get_or_create(&KindLabels {
                kind: Kind::metric_label(Some(kind)),
            })
            .set(n as i64);
    }
}
