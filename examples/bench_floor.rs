//! The floor for `bench/webhook.sh`: the webhook's own TLS stack (rustls, hyper, axum, the same
//! accept loop and limits) with a trivial handler that reads the body and returns a fixed
//! AdmissionReview. The webhook's figures are reported as ratios of this one.
//!
//!     cargo run --release --example bench_floor -- ADDR CERT KEY

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use sts_guard::server::metrics::Metrics;
use sts_guard::server::{ServerOptions, start_router};

// The same allocator as the `sts-guard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true,"status":{}}}"#;

async fn trivial(body: Body) -> ([(&'static str, &'static str); 1], &'static str) {
    let _ = axum::body::to_bytes(body, 8 << 20).await;
    ([("content-type", "application/json")], ANSWER)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key] = args.as_slice() else {
        eprintln!("usage: bench_floor ADDR CERT KEY");
        std::process::exit(2);
    };
    let options = ServerOptions {
        addr: addr.parse().expect("ADDR"),
        admin_addr: None,
        cert_path: cert.into(),
        key_path: key.into(),
        body_limit: 8 << 20,
        header_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        max_connections: 1024,
        idle_timeout: Duration::from_secs(120),
        max_pending_connections_per_client: 1024,
        memory_budget: 48 << 20,
        drain_timeout: Duration::from_secs(1),
        cert_reload_interval: Duration::from_secs(10),
        client_ca: None,
        client_names: Vec::new(),
    };
    let app = Router::new()
        .route("/validate", post(trivial))
        .route("/mutate", post(trivial));
    let running = start_router(
        options,
        app,
        None,
        Arc::new(Metrics::default()),
        Arc::new(AtomicBool::new(true)),
    )
    .await
    .expect("start");
    eprintln!("bench_floor: listening on https://{}", running.local_addr);
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
}
