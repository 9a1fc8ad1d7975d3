//! A UDP service's public port: one socket per worker (see
//! [`super::registry`]), each read by one task that sorts datagrams into
//! *flows*, one per visitor source address.
//!
//! The receiving task never waits on a flow: it appends each datagram to its
//! flow's bounded queue ([`Flow::push`]) and wakes the flow's task (at most
//! once per batch), which carries the queue over the flow's data link
//! ([`super::udp_flow`]). A full queue drops the datagram, counted, so one
//! flooded flow stalls neither the socket nor another flow. A datagram from
//! a new source opens a flow, unless the service holds `max_udp_flows`
//! already or the client is gone (both refused and counted).
//!
//! Ownership: the receiving task owns the socket and its flow table; each
//! flow's task is owned by the client's session (and ends with it). When the
//! port closes (the task is dropped) every flow of the table is told to end.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::Duration;
use tracing::debug;

use super::metrics::{Counters, Dropped, Reason};
use super::registry::{Claim, Service};
use crate::protocol::datagram::MAX_DATAGRAM_LEN;
use crate::relay::datagrams::{Outbox, with_scratch};
use crate::runtime::{self, Socket};
use crate::tasks::lock;
use crate::transport::Transport;

/// Datagrams read per turn before the socket's task lets the worker's other
/// tasks (the flows it just fed) run.
const DATAGRAMS_PER_TURN: usize = 64;
/// Pause after a receive error other than "nothing to read" (none is
/// expected on an unconnected socket), so a persistent one cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A public UDP socket and the claim on its port: fields drop in order, so
/// the port is released only once the socket is closed.
pub(super) struct Public {
    pub socket: Socket<std::net::UdpSocket>,
    _claim: Arc<Claim>,
}

impl Public {
    /// Sends one datagram to a visitor, never waiting: a full socket buffer
    /// drops it (counted).
    pub fn send_to(&self, payload: &[u8], visitor: SocketAddr, counters: &Counters) {
        if let Err(e) = self.socket.get_ref().send_to(payload, visitor) {
            counters.dropped(Dropped::ToVisitor);
            if e.kind() != io::ErrorKind::WouldBlock {
                debug!("datagram to visitor {visitor} dropped: {e}");
            }
        }
    }
}

/// What became of a datagram given to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Push {
    Queued,
    /// Its queue is full: dropped.
    Full,
    /// The flow ended: the next datagram from its source opens a new one.
    Closed,
}

/// One visitor source's queue toward its data link.
#[derive(Default)]
pub(super) struct Flow {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    records: Outbox,
    /// Payload bytes in `records` (the visitor's bytes, for the meter).
    bytes: u64,
    /// The flow's task, waiting for records.
    waker: Option<Waker>,
    closed: bool,
}

impl Flow {
    pub fn push(&self, payload: &[u8]) -> Push {
        let mut q = lock(&self.queue);
        if q.closed {
            return Push::Closed;
        }
        if !q.records.push(payload) {
            return Push::Full;
        }
        q.bytes += payload.len() as u64;
        let waker = q.waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
        Push::Queued
    }

    /// Moves the queued records into `into` (which must be empty) and
    /// returns their payload bytes; when there are none, the task is woken
    /// by the next. `None`: the flow was closed.
    pub fn take(&self, into: &mut Outbox, cx: &Context<'_>) -> Option<u64> {
        let mut q = lock(&self.queue);
        if q.closed {
            return None;
        }
        if q.records.is_empty() {
            match &mut q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        } else {
            std::mem::swap(&mut q.records, into);
        }
        Some(std::mem::take(&mut q.bytes))
    }

    /// Moves the queued records into `into` if they fit in `room` bytes,
    /// returning their payload bytes (0 when none moved), without waking
    /// anyone later: while its link is sought the flow's task waits on the
    /// link, and looks at the queue before each offer. `None`: closed.
    pub fn take_within(&self, into: &mut Outbox, room: usize) -> Option<u64> {
        let mut q = lock(&self.queue);
        if q.closed {
            return None;
        }
        if q.records.is_empty() || q.records.len() > room {
            return Some(0);
        }
        into.extend_from(&q.records);
        q.records = Outbox::new();
        Some(std::mem::take(&mut q.bytes))
    }

    /// Ends the flow: its task stops at its next poll, which this causes.
    pub fn close(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        q.records = Outbox::new();
        let waker = q.waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }
}

/// One socket's flows by source. Dropped with the socket's task: every
/// flow is told to end.
struct Flows {
    by_source: HashMap<SocketAddr, Arc<Flow>>,
    /// Flows added since ended ones were last swept out.
    added: usize,
    /// `max_udp_flows` as the last flow opened or refused saw it: while the
    /// service holds that many, a new source is refused here, without a
    /// lock (a spray of new sources costs one atomic load each).
    limit: usize,
    /// Refusals on that fast path; every [`RECHECK_LIMIT`]th takes the slow
    /// path, which reads the limit again (a reload may have raised it).
    fast_refusals: u32,
}

/// See [`Flows::fast_refusals`].
const RECHECK_LIMIT: u32 = 1024;

impl Flows {
    fn new() -> Flows {
        Flows {
            by_source: HashMap::new(),
            added: 0,
            limit: usize::MAX,
            fast_refusals: 0,
        }
    }

    /// Whether a new source is refused without asking the session.
    fn full<T: Transport>(&mut self, service: &Service<T>) -> bool {
        if service.flows.load(Ordering::Relaxed) < self.limit {
            return false;
        }
        self.fast_refusals = self.fast_refusals.wrapping_add(1);
        self.fast_refusals % RECHECK_LIMIT != 0
    }

    /// Sweeps out ended flows once as many were added as the table holds
    /// (amortised O(1) per flow; the table stays within twice the live
    /// flows plus a constant).
    fn insert(&mut self, source: SocketAddr, flow: Arc<Flow>) {
        self.added += 1;
        if self.added > self.by_source.len() / 2 + 64 {
            self.by_source.retain(|_, f| !f.is_closed());
            self.added = 0;
        }
        self.by_source.insert(source, flow);
    }
}

impl Drop for Flows {
    fn drop(&mut self) {
        for flow in self.by_source.values() {
            flow.close();
        }
    }
}

/// Reads this worker's socket of a UDP service until the port closes (the
/// task is dropped).
pub(super) async fn receive<T: Transport>(
    socket: std::net::UdpSocket,
    service: Weak<Service<T>>,
    claim: Arc<Claim>,
    counters: Arc<Counters>,
) {
    let public = match Socket::new(socket) {
        Ok(socket) => Arc::new(Public {
            socket,
            _claim: claim,
        }),
        Err(e) => return debug!("public UDP socket not registered: {e}"),
    };
    let mut flows = Flows::new();
    loop {
        let turn = public.socket.read_with(|s| {
            with_scratch(|buf| {
                for _ in 0..DATAGRAMS_PER_TURN {
                    // `WouldBlock` parks the task until the next datagram.
                    let (n, source) = s.recv_from(buf)?;
                    arrive(&buf[..n], source, &mut flows, &service, &public, &counters);
                }
                Ok(())
            })
        });
        match turn.await {
            Ok(()) => futures_lite::future::yield_now().await,
            Err(e) => {
                debug!("public UDP receive failed: {e}");
                runtime::sleep(ERROR_PAUSE).await;
            }
        }
        if service.strong_count() == 0 {
            return;
        }
    }
}

/// Gives one datagram to its flow, opening the flow if it is new.
fn arrive<T: Transport>(
    payload: &[u8],
    source: SocketAddr,
    flows: &mut Flows,
    service: &Weak<Service<T>>,
    public: &Arc<Public>,
    counters: &Counters,
) {
    if payload.len() > MAX_DATAGRAM_LEN {
        // Longer than any datagram over IPv4 (only IPv6 carries such, and
        // the scratch buffer cut it): not carried.
        return counters.dropped(Dropped::ToClient);
    }
    if let Some(flow) = flows.by_source.get(&source) {
        match flow.push(payload) {
            Push::Queued => return,
            Push::Full => return counters.dropped(Dropped::ToClient),
            Push::Closed => {}
        }
    }
    let Some(service) = service.upgrade() else {
        return;
    };
    if flows.full(&service) {
        return counters.refused(Reason::UdpFlowLimit);
    }
    let Some(session) = service.owner() else {
        // Its client is gone (the port lingers for its return).
        return counters.refused(Reason::NoClient);
    };
    let flow = Arc::new(Flow::default());
    flow.push(payload);
    let (opened, limit) = session.open_flow(&service, flow.clone(), source, Arc::downgrade(public));
    flows.limit = limit;
    if opened {
        flows.insert(source, flow);
    }
}
