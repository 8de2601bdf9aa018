//! One client connection, from the end of its TLS handshake to its close.
//!
//! The protocol is the one ALPN chose (no sniffing of the first bytes, which would wait
//! unbounded). A connection that has not sent a whole request within `first_request` of its
//! handshake, or has had no request in flight for `idle` (an HTTP/1.1 keep-alive connection
//! between requests, an HTTP/2 connection that only answers PINGs), is shut down gracefully;
//! if the peer then does not let it close, it is dropped. The idle timeout is longer than the
//! 90 s after which kube-apiserver's client closes its own idle connections, so the server
//! never closes one under a request the client is about to send.

use super::limits::ConnectionSlot;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For the HTTP/1 headers of each request.
    pub headers: Duration,
    /// From the handshake to the first whole request.
    pub first_request: Duration,
    /// Without a request in flight.
    pub idle: Duration,
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicU64,
    last_ended: Mutex<Instant>,
    changed: Notify,
}

impl Activity {
    /// When the connection is to be closed if nothing changes; none while a request runs.
    fn close_at(&self, opened: Instant, deadlines: Deadlines) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            None
        } else if self.served.load(Ordering::Acquire) == 0 {
            Some(opened + deadlines.first_request)
        } else {
            Some(*self.last_ended.lock().unwrap_or_else(|e| e.into_inner()) + deadlines.idle)
        }
    }
}

/// Marks a request in flight until dropped (when its response is ready).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.served.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_one();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// The router as a hyper service that records each request's life in `Activity`.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
}

type BoxedResponse = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = BoxedResponse;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.activity);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

/// Serves one connection until the client closes it, a deadline closes it, or `shutdown`
/// (SIGTERM) asks for a graceful close once in-flight requests are answered. Its `slot` stops
/// counting against its client's pending connections once a request has come in.
pub async fn serve(
    tls: TlsStream<TcpStream>,
    app: Router,
    deadlines: Deadlines,
    peer: SocketAddr,
    mut slot: ConnectionSlot,
    mut shutdown: watch::Receiver<bool>,
) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let opened = Instant::now();
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        served: AtomicU64::new(0),
        last_ended: Mutex::new(opened),
        changed: Notify::new(),
    });
    let service = Tracked {
        inner: TowerToHyperService::new(app),
        activity: activity.clone(),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut closing = false;
    // After a close for lack of requests: when a peer that does not let go is dropped.
    let mut drop_at: Option<Instant> = None;
    loop {
        if activity.served.load(Ordering::Acquire) > 0 {
            slot.served();
        }
        let close_at = match closing {
            true => None,
            false => activity.close_at(opened, deadlines),
        };
        let idle = activity.in_flight.load(Ordering::Acquire) == 0;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                return;
            }
            _ = sleep_until(close_at) => {
                tracing::debug!(%peer, "closing a connection without requests");
                connection.as_mut().graceful_shutdown();
                closing = true;
                drop_at = Some(Instant::now() + deadlines.headers);
            }
            _ = sleep_until(drop_at.filter(|_| idle)) => {
                tracing::debug!(%peer, "dropping a connection that did not close");
                return;
            }
            // Draining: in-flight requests are answered; the drain deadline bounds the rest.
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.changed.notified() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
