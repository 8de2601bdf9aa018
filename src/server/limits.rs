//! What one client, one request and all requests together can make the server spend:
//! connections (in total, and those not yet served per client address) and memory (request bodies and their
//! evaluation, under one budget). Refusals are counted, and logged at most once a period.

use super::metrics::{Metrics, RefusalLabels};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a flood of refusals may write a log line.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Counts refusals and logs them at most once per period, so a flood of refused connections
/// or requests costs a counter increment each, not a log line each.
pub struct RefusalLog {
    metrics: Arc<Metrics>,
    state: Mutex<RefusalState>,
}

struct RefusalState {
    last_logged: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    pub fn new(metrics: Arc<Metrics>) -> RefusalLog {
        RefusalLog {
            metrics,
            state: Mutex::new(RefusalState {
                last_logged: None,
                since_last: 0,
            }),
        }
    }

    /// Counts a refusal; returns whether it wrote a log line.
    pub fn refused(&self, reason: &'static str, peer: Option<IpAddr>) -> bool {
        self.metrics
            .refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.since_last += 1;
        let now = Instant::now();
        if state
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_PERIOD)
        {
            tracing::warn!(
                reason,
                peer = ?peer,
                refused = state.since_last,
                "refusing connections or requests (count since the last such line; see sts_guard_refused_total)"
            );
            state.last_logged = Some(now);
            state.since_last = 0;
            return true;
        }
        false
    }
}

/// The connection caps: `total` at once, and at most `pending_per_client` from one address
/// that have not yet been served a request (still in the TLS handshake or before their first
/// request). So one client that opens connections and sends nothing (any pod can reach the
/// webhook port) cannot take every slot from kube-apiserver, while a client that keeps sending
/// requests — kube-apiserver opens one HTTP/1.1 connection per concurrent call — is served up
/// to `total`. Served connections that go quiet are closed by the idle timeout.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    pending_per_client: usize,
    pending_by_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place under the caps; given back when dropped.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
    /// Counted against its client's pending connections until its first request.
    pending: bool,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionLimits {
    pub fn new(total: usize, pending_per_client: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(total)),
            pending_per_client,
            pending_by_client: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `client`, or the reason it is refused.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionSlot, &'static str> {
        let mut pending = self.pending();
        let held = pending.get(&client).copied().unwrap_or(0);
        if held >= self.pending_per_client {
            return Err("per_client_pending_connection_limit");
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "connection_limit")?;
        pending.insert(client, held + 1);
        Ok(ConnectionSlot {
            limits: self.clone(),
            client,
            pending: true,
            _permit: permit,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.pending_by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl ConnectionSlot {
    /// The connection has been served a request: it no longer counts as pending.
    pub fn served(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.limits.release_pending(self.client);
        }
    }
}

impl ConnectionLimits {
    fn release_pending(&self, client: IpAddr) {
        let mut pending = self.pending();
        if let Some(held) = pending.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                pending.remove(&client);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.served();
    }
}

/// Bytes of memory that request bodies and their evaluation may hold at once, across every
/// request and HTTP/2 stream.
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Memory reserved under the budget; given back when dropped.
pub struct Reservation {
    permits: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.permits.as_ref().map_or(0, |p| p.num_permits())
    }
}

impl MemoryBudget {
    pub fn new(total: usize) -> MemoryBudget {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn empty(&self) -> Reservation {
        Reservation { permits: None }
    }

    /// Grows `reservation` to at least `bytes`, now or not at all.
    pub fn try_grow(&self, reservation: &mut Reservation, bytes: usize) -> bool {
        let Some(more) = self.more_needed(reservation, bytes) else {
            return true;
        };
        match self.bytes.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                merge(reservation, permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Grows `reservation` to at least `bytes`, waiting for other requests to give memory back.
    pub async fn grow(&self, reservation: &mut Reservation, bytes: usize) {
        let Some(more) = self.more_needed(reservation, bytes) else {
            return;
        };
        if let Ok(permit) = self.bytes.clone().acquire_many_owned(more).await {
            merge(reservation, permit);
        }
    }

    fn more_needed(&self, reservation: &Reservation, bytes: usize) -> Option<u32> {
        let wanted = bytes.min(self.total);
        let held = reservation.bytes();
        (wanted > held).then(|| u32::try_from(wanted - held).unwrap_or(u32::MAX))
    }
}

fn merge(reservation: &mut Reservation, permit: OwnedSemaphorePermit) {
    match reservation.permits.as_mut() {
        Some(held) => held.merge(permit),
        None => reservation.permits = Some(permit),
    }
}

/// Bytes evaluating this AdmissionReview body may take: the body itself, the parts of the
/// objects the handler decodes, and the response. Counted as the measured worst case of the
/// whole tree — a few hundred bytes per object or array on top of the text (a pod of thousands
/// of one-line containers: about 1 KiB per object) — which the shaped decoding stays well
/// under. Brackets inside strings count too: that only overstates the cost, and lets the scan
/// run over 255-byte lanes the compiler vectorizes (a string-aware scan byte by byte was a
/// tenth of the server's CPU).
pub fn evaluation_cost(body: &[u8]) -> usize {
    const PER_CONTAINER: usize = 1024;
    let containers: usize = body
        .chunks(255)
        .map(|lane| {
            let in_lane: u8 = lane.iter().map(|&b| u8::from(b == b'{' || b == b'[')).sum();
            usize::from(in_lane)
        })
        .sum();
    body.len()
        .saturating_mul(3)
        .saturating_add(containers.saturating_mul(PER_CONTAINER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_cost_counts_every_object_and_list() {
        let nested = br#"{"a":[{},{}]}"#;
        assert_eq!(evaluation_cost(nested), nested.len() * 3 + 4 * 1024);
        // Inside strings too: an overestimate, never an underestimate.
        let quoted = br#"{"a":"{[\"{"}"#;
        assert_eq!(evaluation_cost(quoted), quoted.len() * 3 + 4 * 1024);
        // Across lanes: one bracket every 7 bytes over 10 KB.
        let long: Vec<u8> = (0..10_000)
            .map(|i| if i % 7 == 0 { b'[' } else { b' ' })
            .collect();
        assert_eq!(
            evaluation_cost(&long),
            long.len() * 3 + 10_000usize.div_ceil(7) * 1024
        );
    }

    #[test]
    fn a_client_cannot_take_every_connection_with_connections_that_send_nothing() {
        let limits = ConnectionLimits::new(4, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert_eq!(
            limits.admit(a).err(),
            Some("per_client_pending_connection_limit")
        );
        // Served, a connection no longer counts against its client: a busy client gets more.
        first.served();
        let _third = limits.admit(a).unwrap();
        let _other = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some("connection_limit"));
        drop(first);
        assert!(
            limits.admit(b).is_ok(),
            "a closed connection gives its slot back"
        );
        assert_eq!(
            limits.admit(a).err(),
            Some("per_client_pending_connection_limit"),
            "a's two pending connections still count"
        );
    }

    #[test]
    fn a_flood_of_refusals_is_counted_each_and_logged_once_a_period() {
        let metrics = Arc::new(Metrics::default());
        let log = RefusalLog::new(metrics.clone());
        let peer = Some("10.0.0.9".parse().unwrap());
        let logged = (0..10_000)
            .filter(|_| log.refused("connection_limit", peer))
            .count();
        assert_eq!(logged, 1);
        assert!(
            metrics
                .encode()
                .contains("sts_guard_refused_total{reason=\"connection_limit\"} 10000"),
            "{}",
            metrics.encode()
        );
    }

    #[tokio::test]
    async fn reservations_grow_within_the_budget_and_are_given_back() {
        let budget = MemoryBudget::new(100);
        let mut one = budget.empty();
        assert!(budget.try_grow(&mut one, 60));
        let mut two = budget.empty();
        assert!(!budget.try_grow(&mut two, 50), "only 40 left");
        assert!(budget.try_grow(&mut two, 40));
        drop(one);
        budget.grow(&mut two, 90).await;
        assert_eq!(two.bytes(), 90);
    }
}
