//! Proxy counters: lock-free atomics bumped on the data path, read as a
//! snapshot for the periodic log line and SIGUSR1.
//!
//! Bytes of a CONNECT tunnel are added when the tunnel ends (the splice relay
//! reports them then); bytes of forwarded requests as they stream.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::tasks::lock;

/// Statuses counted one by one; anything else lands in "other".
const COUNTED: [u16; 12] = [400, 403, 405, 407, 408, 414, 431, 501, 502, 503, 504, 500];

/// See the module docs.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    connects: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active: AtomicU64,
    errors: [AtomicU64; COUNTED.len()],
    other_errors: AtomicU64,
    /// Woken (by dropping the senders) when `active` drops to zero.
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
        self.requests.fetch_add(1, Relaxed);
    }

    pub fn connect(&self) {
        self.connects.fetch_add(1, Relaxed);
    }

    pub fn bytes(&self, inbound: u64, outbound: u64) {
        self.bytes_in.fetch_add(inbound, Relaxed);
        self.bytes_out.fetch_add(outbound, Relaxed);
    }

    pub fn error(&self, status: u16) {
        match COUNTED.iter().position(|&s| s == status) {
            Some(i) => self.errors[i].fetch_add(1, Relaxed),
            None => self.other_errors.fetch_add(1, Relaxed),
        };
    }

    /// Counts one open connection until the guard is dropped (also when its
    /// task is cancelled).
    pub fn open(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, SeqCst);
        ActiveGuard(self.clone())
    }

    /// Completes once no connection is open, with every counter of the
    /// connections that were already final (a connection's counts are added
    /// before its guard drops). For graceful shutdown and for tests.
    pub async fn wait_idle(&self) {
        let (tx, rx) = smol::channel::bounded::<()>(1);
        lock(&self.idle_waiters).push(tx);
        // Checked after registering, so a drop to zero in between is not missed.
        if self.active.load(SeqCst) == 0 {
            return;
        }
        let _ = rx.recv().await;
    }

    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut errors: Vec<(u16, u64)> = COUNTED
            .iter()
            .zip(&self.errors)
            .map(|(&s, n)| (s, n.load(Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect();
        errors.sort_unstable();
        let other = self.other_errors.load(Relaxed);
        if other > 0 {
            errors.push((0, other));
        }
        Snapshot {
            requests: self.requests.load(Relaxed),
            connects: self.connects.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            active: self.active(),
            errors,
        }
    }
}

/// Decrements the active count on drop.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Stats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, SeqCst) == 1 {
            lock(&self.0.idle_waiters).clear();
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
        drop(guard);
        let line = stats.snapshot().to_string();
        assert_eq!(
            line,
            "requests=1 connects=1 bytes_in=10 bytes_out=20 active=0 errors=502:2,other:1"
        );
    }
}
