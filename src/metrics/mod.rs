//! Counters for the admin endpoint's `/metrics`, cheap enough for the data
//! path.
//!
//! Every counter lives in a [`Sharded`] block: one cache-line-aligned slot per
//! runtime loop (each worker and the control loop) plus one for every other
//! thread (smol's executor, tests). A task adds to the slot of the loop it runs
//! on, so a relay moving a chunk or a worker accepting a visitor writes only a
//! line its own thread owns: no lock, no line bouncing between cores. A scrape
//! sums the slots (it may read a count a few increments old, never a torn one).
//!
//! A block groups what one owner counts together ([`Traffic`] for a service or
//! a mode, [`Histogram`] for waits), so a service's counters cost one block, not
//! one block per counter. Gauges that are cheaper to read than to count (live
//! sessions, registered services, idle links) are not counted at all: the
//! owner reads them from its own state at scrape time.
//!
//! [`Exposition`] writes the Prometheus text format (version 0.0.4);
//! [`process`] adds the `process_*` metrics the Prometheus client libraries
//! export.

pub mod process;
pub mod text;

pub use text::{Exposition, Family, Kind};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The alignment of a slot: two 64-byte lines, since x86 prefetches lines in
/// pairs and a neighbour's writes would otherwise still bounce.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// One `T` per runtime loop and one for other threads; see the module docs.
#[derive(Debug)]
pub struct Sharded<T> {
    slots: Box<[Padded<T>]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded {
            slots: (0..crate::runtime::slots())
                .map(|_| Padded::default())
                .collect(),
        }
    }
}

impl<T: Default> Sharded<T> {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T> Sharded<T> {
    /// The calling thread's slot.
    pub fn local(&self) -> &T {
        let i = crate::runtime::slot() % self.slots.len();
        &self.slots[i].0
    }

    /// Every slot, for a scrape to sum.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }

    /// The sum of one counter over every slot.
    pub fn sum(&self, field: impl Fn(&T) -> &AtomicU64) -> u64 {
        self.all()
            .fold(0u64, |n, t| n.wrapping_add(field(t).load(Relaxed)))
    }

    /// The sum of one gauge over every slot (a gauge may rise on one thread
    /// and fall on another, so a slot alone can be negative; the sum cannot,
    /// except for a scrape racing both).
    pub fn sum_gauge(&self, field: impl Fn(&T) -> &AtomicI64) -> u64 {
        let n = self
            .all()
            .fold(0i64, |n, t| n.wrapping_add(field(t).load(Relaxed)));
        u64::try_from(n).unwrap_or(0)
    }
}

/// Adds `n` to a counter of the calling thread's slot.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Visitors (or connections) and their bytes, for one service or one mode.
/// "Received" is what porthole read from the party it serves there (the
/// visitor, the local service, the proxy's client); "sent" what it wrote to it.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Connections started.
    pub total: AtomicU64,
    /// Connections open now (a gauge; see [`Sharded::sum_gauge`]).
    pub active: AtomicI64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Connections that ended in an error.
    pub failed: AtomicU64,
}

/// The totals of a [`Traffic`] block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficTotals {
    pub total: u64,
    pub active: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub failed: u64,
}

/// Adds another block's totals (several services of one name, several
/// forward rules), wrapping as the sums of [`Sharded::sum`] do.
impl std::ops::AddAssign for TrafficTotals {
    fn add_assign(&mut self, other: TrafficTotals) {
        self.total = self.total.wrapping_add(other.total);
        self.active = self.active.wrapping_add(other.active);
        self.received_bytes = self.received_bytes.wrapping_add(other.received_bytes);
        self.sent_bytes = self.sent_bytes.wrapping_add(other.sent_bytes);
        self.failed = self.failed.wrapping_add(other.failed);
    }
}

impl Sharded<Traffic> {
    /// Counts a connection open until the guard drops.
    pub fn open(&self) -> Open<'_> {
        let slot = self.local();
        add(&slot.total, 1);
        slot.active.fetch_add(1, Relaxed);
        Open(self)
    }

    pub fn totals(&self) -> TrafficTotals {
        TrafficTotals {
            total: self.sum(|t| &t.total),
            active: self.sum_gauge(|t| &t.active),
            received_bytes: self.sum(|t| &t.received),
            sent_bytes: self.sum(|t| &t.sent),
            failed: self.sum(|t| &t.failed),
        }
    }

    /// Where a relay counts bytes for this block.
    pub fn meter(&self) -> Meter<'_> {
        Meter(Some(self))
    }
}

/// An open connection of a [`Traffic`] block; dropping it (also when its
/// task is cancelled) counts it closed, on the slot of the thread that drops it.
#[derive(Debug)]
pub struct Open<'a>(&'a Sharded<Traffic>);

impl Open<'_> {
    /// Counts the connection as failed (it stays open until dropped).
    pub fn failed(&self) {
        add(&self.0.local().failed, 1);
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.local().active.fetch_sub(1, Relaxed);
    }
}

/// Where a relay adds the bytes it moves, as they move: its first stream is
/// the party of the [`Traffic`] block, so `a → b` is received and `b → a`
/// sent. [`Meter::NONE`] counts nothing.
#[derive(Clone, Copy, Debug)]
pub struct Meter<'a>(Option<&'a Sharded<Traffic>>);

impl<'a> Meter<'a> {
    pub const NONE: Meter<'static> = Meter(None);

    /// The counter of the first stream's bytes (a → b).
    pub fn a_to_b(self) -> Tally<'a> {
        Tally(self.0, true)
    }

    /// The counter of the second stream's bytes (b → a).
    pub fn b_to_a(self) -> Tally<'a> {
        Tally(self.0, false)
    }
}

/// One direction of a [`Meter`].
#[derive(Clone, Copy, Debug)]
pub struct Tally<'a>(Option<&'a Sharded<Traffic>>, bool);

impl Tally<'_> {
    pub fn add(self, n: u64) {
        if let Some(traffic) = self.0 {
            let slot = traffic.local();
            add(if self.1 { &slot.received } else { &slot.sent }, n);
        }
    }
}

/// Upper bounds (seconds) of [`Histogram`] buckets: a data link taken from
/// the pool waits microseconds; one dialled on demand a round trip or a few;
/// a visitor near `visitor_timeout` seconds.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Durations by bucket of [`WAIT_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative; the exposition adds up).
    buckets: [AtomicU64; WAIT_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// The totals of a [`Histogram`] block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramTotals {
    /// Cumulative counts per bound of [`WAIT_BUCKETS`].
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Sharded<Histogram> {
    pub fn observe(&self, d: Duration) {
        let slot = self.local();
        let secs = d.as_secs_f64();
        if let Some(i) = WAIT_BUCKETS.iter().position(|&b| secs <= b) {
            add(&slot.buckets[i], 1);
        }
        add(&slot.count, 1);
        add(
            &slot.sum_nanos,
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    pub fn totals(&self) -> HistogramTotals {
        let mut running = 0u64;
        let cumulative = (0..WAIT_BUCKETS.len())
            .map(|i| {
                running = running.wrapping_add(self.sum(|h| &h.buckets[i]));
                running
            })
            .collect();
        HistogramTotals {
            cumulative,
            count: self.sum(|h| &h.count),
            sum_seconds: Duration::from_nanos(self.sum(|h| &h.sum_nanos)).as_secs_f64(),
        }
    }
}

/// Counters indexed by a small closed set of labels (a result, a reason).
#[derive(Debug)]
pub struct ByLabel<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for ByLabel<N> {
    fn default() -> Self {
        ByLabel(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Sharded<ByLabel<N>> {
    pub fn bump(&self, index: usize) {
        if let Some(c) = self.local().0.get(index) {
            add(c, 1);
        }
    }

    pub fn get(&self, index: usize) -> u64 {
        self.sum(|b| &b.0[index.min(N - 1)])
    }
}

#[cfg(test)]
mod tests;
