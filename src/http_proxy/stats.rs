//! Proxy counters, read as a snapshot for the periodic log line and SIGUSR1,
//! and as Prometheus families for the admin endpoint ([`Stats::write_metrics`]).
//!
//! Every counter lives in a [`Sharded`] block (see [`crate::metrics`]): a
//! connection bumps the slot of the worker it runs on, so no request writes a
//! cache line another worker writes. Bytes of forwarded requests are added per
//! exchange; bytes of a CONNECT tunnel (or an upgraded connection) by the
//! relay's meter as they move, so a long tunnel shows in a scrape while it
//! lasts. "Received" is what the proxy read from its clients, "sent" what it
//! wrote to them.
//!
//! One shared atomic remains: the open-connection count behind the
//! `max_connections` admission cap and [`Stats::wait_idle`]. It is a limit,
//! read on every accept and needing an exact answer, not a metric; the
//! exported gauge is the sharded one.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::metrics::{ByLabel, Exposition, Kind, Meter, Open, Sharded, Traffic, add};
use crate::tasks::lock;

/// Statuses counted one by one; anything else lands in "other" (the last
/// index of the error block). A closed set, so the `status` label is bounded.
const COUNTED: [u16; 12] = [400, 403, 405, 407, 408, 414, 431, 501, 502, 503, 504, 500];
/// Error counters: one per [`COUNTED`] status, then "other".
const ERROR_LABELS: usize = COUNTED.len() + 1;

/// Exchanges of one worker.
#[derive(Debug, Default)]
struct Exchanges {
    /// Forwarded (absolute-form) requests answered.
    requests: AtomicU64,
    /// CONNECT tunnels established.
    connects: AtomicU64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Stats {
    traffic: Sharded<Traffic>,
    exchanges: Sharded<Exchanges>,
    errors: Sharded<ByLabel<ERROR_LABELS>>,
    /// Connections open now, for the admission cap and `wait_idle` only.
    open: AtomicU64,
    /// Woken (by dropping the senders) when `open` drops to zero.
    idle_waiters: Mutex<Vec<smol::channel::Sender<()>>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Forwarded (absolute-form) requests answered by an origin.
    pub requests: u64,
    /// CONNECT tunnels established.
    pub connects: u64,
    /// Bytes from clients to origins (bodies and tunnels).
    pub bytes_in: u64,
    /// Bytes from origins to clients.
    pub bytes_out: u64,
    /// Client connections open now.
    pub active: u64,
    /// Error responses the proxy generated, by status (only non-zero ones).
    pub errors: Vec<(u16, u64)>,
}

impl Stats {
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats::default())
    }

    pub fn request(&self) {
        add(&self.exchanges.local().requests, 1);
    }

    pub fn connect(&self) {
        add(&self.exchanges.local().connects, 1);
    }

    /// Bytes read from a client (`inbound`) and written to it (`outbound`).
    pub fn bytes(&self, inbound: u64, outbound: u64) {
        let slot = self.traffic.local();
        add(&slot.received, inbound);
        add(&slot.sent, outbound);
    }

    /// Where a relay between a client (its first stream) and an origin counts
    /// the bytes it moves.
    pub fn meter(&self) -> Meter<'_> {
        self.traffic.meter()
    }

    pub fn error(&self, status: u16) {
        let index = COUNTED.iter().position(|&s| s == status);
        self.errors.bump(index.unwrap_or(COUNTED.len()));
    }

    /// Counts one open connection until the guard is dropped (also when its
    /// task is cancelled).
    pub fn open(&self) -> ActiveGuard<'_> {
        self.open.fetch_add(1, SeqCst);
        ActiveGuard {
            stats: self,
            counted: Some(self.traffic.open()),
        }
    }

    /// Completes once no connection is open, with every counter of the
    /// connections that were already final (a connection's counts are added
    /// before its guard drops). For graceful shutdown and for tests.
    pub async fn wait_idle(&self) {
        let (tx, rx) = smol::channel::bounded::<()>(1);
        lock(&self.idle_waiters).push(tx);
        // Checked after registering, so a drop to zero in between is not missed.
        if self.open.load(SeqCst) == 0 {
            return;
        }
        let _ = rx.recv().await;
    }

    /// Connections open now, exactly (for the admission cap).
    pub fn active(&self) -> u64 {
        self.open.load(SeqCst)
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut errors: Vec<(u16, u64)> = COUNTED
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, self.errors.get(i)))
            .filter(|&(_, n)| n > 0)
            .collect();
        errors.sort_unstable();
        let other = self.errors.get(COUNTED.len());
        if other > 0 {
            errors.push((0, other));
        }
        let traffic = self.traffic.totals();
        Snapshot {
            requests: self.exchanges.sum(|e| &e.requests),
            connects: self.exchanges.sum(|e| &e.connects),
            bytes_in: traffic.received_bytes,
            bytes_out: traffic.sent_bytes,
            active: traffic.active,
            errors,
        }
    }

    /// Connections and their bytes, for `/status`.
    pub fn traffic(&self) -> crate::metrics::TrafficTotals {
        self.traffic.totals()
    }

    /// Writes the `porthole_http_proxy_*` families (also for a tunnel client
    /// that embeds a proxy).
    pub fn write_metrics(&self, out: &mut Exposition) {
        let traffic = self.traffic.totals();
        let counters = [
            (
                "porthole_http_proxy_connections_total",
                "Client connections accepted.",
                traffic.total,
            ),
            (
                "porthole_http_proxy_requests_total",
                "Forwarded (absolute-form) requests answered.",
                self.exchanges.sum(|e| &e.requests),
            ),
            (
                "porthole_http_proxy_connects_total",
                "CONNECT tunnels established.",
                self.exchanges.sum(|e| &e.connects),
            ),
            (
                "porthole_http_proxy_received_bytes_total",
                "Bytes from clients on to origins (request heads as forwarded, bodies, tunnels).",
                traffic.received_bytes,
            ),
            (
                "porthole_http_proxy_sent_bytes_total",
                "Bytes from origins on to clients (response heads as forwarded, bodies, tunnels).",
                traffic.sent_bytes,
            ),
        ];
        for (name, help, value) in counters {
            out.single(name, Kind::Counter, help, value);
        }
        out.single(
            "porthole_http_proxy_connections_active",
            Kind::Gauge,
            "Client connections open now.",
            traffic.active,
        );
        // The counted statuses, then "other" (the last index of the block).
        let statuses: Vec<String> = COUNTED.iter().map(u16::to_string).collect();
        let labels: Vec<&str> = statuses
            .iter()
            .map(String::as_str)
            .chain(["other"])
            .collect();
        let errors = (
            "porthole_http_proxy_errors_total",
            Kind::Counter,
            "Error responses the proxy generated, by status.",
        );
        out.indexed(errors, "status", &labels, |i| self.errors.get(i));
    }
}

/// Counts the connection as open until dropped; see [`Stats::open`].
#[derive(Debug)]
pub struct ActiveGuard<'a> {
    stats: &'a Stats,
    /// Always `Some` until drop, which closes it before the cap count falls.
    counted: Option<Open<'a>>,
}

impl ActiveGuard<'_> {
    /// Counts the connection as failed (a cut tunnel, a reset client).
    pub fn failed(&self) {
        if let Some(open) = &self.counted {
            open.failed();
        }
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        // The gauge first: whoever `wait_idle` wakes must see it at zero.
        drop(self.counted.take());
        if self.stats.open.fetch_sub(1, SeqCst) == 1 {
            lock(&self.stats.idle_waiters).clear();
        }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} connects={} bytes_in={} bytes_out={} active={} errors=",
            self.requests, self.connects, self.bytes_in, self.bytes_out, self.active
        )?;
        if self.errors.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(s, n)| match s {
                0 => format!("other:{n}"),
                s => format!("{s}:{n}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_formats() {
        let stats = Stats::new();
        let guard = stats.open();
        stats.request();
        stats.connect();
        stats.bytes(10, 20);
        stats.error(502);
        stats.error(502);
        stats.error(418);
        assert_eq!(stats.active(), 1);
        assert_eq!(stats.snapshot().active, 1);
        drop(guard);
        let line = stats.snapshot().to_string();
        assert_eq!(
            line,
            "requests=1 connects=1 bytes_in=10 bytes_out=20 active=0 errors=502:2,other:1"
        );
    }

    #[test]
    fn exports_every_family() {
        let stats = Stats::new();
        let guard = stats.open();
        stats.meter().a_to_b().add(7);
        stats.meter().b_to_a().add(9);
        stats.error(403);
        stats.error(999);
        let mut out = Exposition::new();
        stats.write_metrics(&mut out);
        let text = out.finish();
        for line in [
            "porthole_http_proxy_connections_total 1\n",
            "porthole_http_proxy_connections_active 1\n",
            "porthole_http_proxy_requests_total 0\n",
            "porthole_http_proxy_connects_total 0\n",
            "porthole_http_proxy_received_bytes_total 7\n",
            "porthole_http_proxy_sent_bytes_total 9\n",
            "porthole_http_proxy_errors_total{status=\"403\"} 1\n",
            "porthole_http_proxy_errors_total{status=\"502\"} 0\n",
            "porthole_http_proxy_errors_total{status=\"other\"} 1\n",
            "# TYPE porthole_http_proxy_connections_active gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        drop(guard);
        assert_eq!(stats.traffic().active, 0);
    }
}
