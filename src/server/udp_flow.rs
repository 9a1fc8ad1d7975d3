//! One UDP flow of a session's service (see [`super::udp`]), from its first
//! datagram to its end: a data link (a mux stream when the session has a
//! multiplexed link, else a pooled link) is offered the flow with `Start`
//! and the first datagrams, which are kept until the client's `Accept` so a
//! dead link costs none of them (PROTOCOL.md section 16); then the flow's
//! queue goes out as datagram records and records coming back go to the
//! visitor, until `udp_idle_timeout` passes with no datagram either way, the
//! port closes or the link ends. The link is closed at the end, never reused.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::debug;

use super::dispatch::{self, Refused};
use super::metrics::Reason;
use super::proxied;
use super::registry::Service;
use super::session::Session;
use super::udp::{Flow, Public};
use crate::mux;
use crate::protocol::Frame;
use crate::relay::datagrams::{CLOSE_LIMIT, Inbox, Outbox, Read};
use crate::runtime;
use crate::transport::Transport;
use crate::wire::with_timeout;

/// Datagram bytes kept per flow until its link's `Accept`; later ones wait
/// in the flow's queue. As `dispatch::MAX_REPLAY_LEN` for TCP visitors.
const MAX_REPLAY_LEN: usize = 64 * 1024;

impl<T: Transport> Session<T> {
    /// A datagram from a new source of `service`: opens its flow, served
    /// on this worker (a pooled link) or a mux link's. Returns whether it
    /// opened (a limit refused it, counted, if not) and `max_udp_flows`.
    pub(super) fn open_flow(
        self: &Arc<Self>,
        service: &Arc<Service<T>>,
        flow: Arc<Flow>,
        visitor: SocketAddr,
        public: Weak<Public>,
    ) -> (bool, usize) {
        let (max_flows, refusal) = self.admit_flow(service);
        if let Some(reason) = refusal {
            self.shared.counters.refused(reason);
            let log = &self.shared.visitor_log;
            if log.note("UDP flow refused at a limit", visitor.ip()) {
                debug!(
                    "UDP flow {visitor} of {} refused: {reason:?}",
                    service.name()
                );
            }
            return (false, max_flows);
        }
        let name = service.name();
        let (worker, stream) = match self.muxes.open(&name, who(visitor), true) {
            Some((stream, worker)) => (worker, Some(stream)),
            None => (runtime::this_or_next_worker(), None),
        };
        let guard = FlowGuard::new(service.clone(), flow);
        let session = self.clone();
        self.visitors.spawn_at(worker, async move {
            let open = guard.service.traffic.open();
            let ends = Ends { visitor, public };
            let served = Box::pin(session.serve_flow(&name, &guard, &ends, stream)).await;
            match served {
                Ok(why) => debug!("UDP flow {visitor} of {name} ended: {why}"),
                Err(e) => {
                    open.failed();
                    debug!("UDP flow {visitor} of {name} failed: {e}");
                }
            }
        });
        (true, max_flows)
    }

    /// Takes a flow slot of `service` unless a limit says no: its own
    /// `max_udp_flows` first (exact, lock-free), then the session's
    /// visitors. Returns `max_udp_flows` too.
    fn admit_flow(&self, service: &Service<T>) -> (usize, Option<Reason>) {
        let settings = self.shared.settings();
        let (max_flows, max_visitors) = (settings.max_udp_flows, settings.max_visitors_per_client);
        drop(settings);
        if !reserve(&service.flows, max_flows) {
            return (max_flows, Some(Reason::UdpFlowLimit));
        }
        if self.visitors.len() >= max_visitors {
            service.flows.fetch_sub(1, Ordering::Relaxed);
            return (max_flows, Some(Reason::VisitorLimit));
        }
        (max_flows, None)
    }

    /// Finds the flow a link that accepts it, then relays on that link.
    /// The search is boxed: its state is freed before the long-lived relay,
    /// so an idle flow holds little more than the relay itself.
    async fn serve_flow(
        &self,
        name: &str,
        guard: &FlowGuard<T>,
        ends: &Ends,
        stream: Option<mux::Stream>,
    ) -> io::Result<&'static str> {
        let link = Box::pin(self.flow_link(name, guard, ends, stream)).await?;
        match link {
            None => Ok("port closed"),
            Some(Link::Muxed(stream)) => self.relay_flow(stream, guard, ends).await,
            Some(Link::Pooled(link)) => self.relay_flow(link, guard, ends).await,
        }
    }

    /// A link that accepted the flow; `None` if the flow closed first.
    async fn flow_link(
        &self,
        name: &str,
        guard: &FlowGuard<T>,
        ends: &Ends,
        mut stream: Option<mux::Stream>,
    ) -> io::Result<Option<Link<T::Stream>>> {
        let deadline = Instant::now() + self.shared.settings().visitor_timeout;
        let limit = self.shared.settings().handshake_timeout;
        let mut replay = Outbox::new();
        let start = crate::protocol::to_bytes(&Frame::Start {
            service: name.to_owned(),
            visitor: ends.visitor,
            public: None,
            udp: true,
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        loop {
            if Instant::now() >= deadline {
                self.shared.counters.refused(Reason::NoDataLink);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no data link accepted the flow in time",
                ));
            }
            if !keep_replay(guard, &mut replay) {
                return Ok(None);
            }
            if let Some(mut s) = stream.take() {
                match offer(&mut s, &[], &replay, limit).await {
                    Ok(()) => return Ok(Some(Link::Muxed(s))),
                    Err(Refused::Visitor(e)) => return Err(e),
                    Err(Refused::LinkLost(e)) => self.note_lost_link(&e),
                }
                stream = self
                    .muxes
                    .open(name, who(ends.visitor), true)
                    .map(|(s, _)| s);
                continue;
            }
            let link = self.take_link(deadline).await;
            let mut link =
                link.inspect_err(|_| self.shared.counters.refused(Reason::NoDataLink))?;
            match offer(&mut link, &start, &replay, limit).await {
                Ok(()) => return Ok(Some(Link::Pooled(link))),
                Err(Refused::Visitor(e)) => return Err(e),
                Err(Refused::LinkLost(e)) => self.note_lost_link(&e),
            }
        }
    }

    /// The flow on a link that accepted it: records both ways until it
    /// ends. Returns why it ended cleanly.
    async fn relay_flow<L: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut link: L,
        guard: &FlowGuard<T>,
        ends: &Ends,
    ) -> io::Result<&'static str> {
        self.shared.counters.link_wait.observe(guard.born.elapsed());
        let idle = self.shared.settings().udp_idle_timeout;
        let mut relay = FlowRelay {
            link: &mut link,
            flow: &guard.flow,
            service: &guard.service,
            ends,
            counters: &self.shared.counters,
            sending: Outbox::new(),
            inbox: Inbox::new(),
            idle,
            last: Instant::now(),
            timer: runtime::sleep(idle),
        };
        let why = poll_fn(|cx| relay.poll(cx)).await?;
        // A clean end the client reads as one: FIN, a TLS close_notify, a
        // mux `Fin` (bounded: a stalled link is simply dropped).
        let _ = runtime::timeout(CLOSE_LIMIT, link.close()).await;
        Ok(why)
    }
}

/// A flow's visitor as a `Start` names it: a UDP service never asks for
/// the public address (the client refuses PROXY headers on it).
fn who(addr: SocketAddr) -> proxied::Visitor {
    proxied::Visitor { addr, public: None }
}

/// The link a flow was accepted on.
enum Link<S> {
    Muxed(mux::Stream),
    Pooled(S),
}

/// The flow's own addresses.
struct Ends {
    visitor: SocketAddr,
    /// The public socket it arrived at (replies leave from it); gone once
    /// the port closes.
    public: Weak<Public>,
}

/// A flow's task holds this: when the task ends (or is cancelled with its
/// session) the flow is closed and no longer counts against the limit.
struct FlowGuard<T: Transport> {
    service: Arc<Service<T>>,
    flow: Arc<Flow>,
    born: Instant,
}

/// Takes one of `max` flow slots, exactly even when workers race.
fn reserve(flows: &AtomicUsize, max: usize) -> bool {
    let more = |n: usize| (n < max).then_some(n + 1);
    flows
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, more)
        .is_ok()
}

impl<T: Transport> FlowGuard<T> {
    /// For a flow whose slot is reserved; gives the slot back on drop.
    fn new(service: Arc<Service<T>>, flow: Arc<Flow>) -> Self {
        FlowGuard {
            service,
            flow,
            born: Instant::now(),
        }
    }
}

impl<T: Transport> Drop for FlowGuard<T> {
    fn drop(&mut self) {
        self.flow.close();
        self.service.flows.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Moves queued datagrams into `replay` if they fit in [`MAX_REPLAY_LEN`]
/// (they go out with the next offer and are kept until `Accept`; the rest
/// wait in the queue). `false`: the flow closed.
fn keep_replay<T: Transport>(guard: &FlowGuard<T>, replay: &mut Outbox) -> bool {
    let room = MAX_REPLAY_LEN.saturating_sub(replay.len());
    match guard.flow.take_within(replay, room) {
        None => false,
        Some(bytes) => {
            guard.service.traffic.meter().a_to_b().add(bytes);
            true
        }
    }
}

/// Sends `start` and the records kept so far, then waits (at most `limit`)
/// for the client's `Accept`, skipping its idle-link `Probe`s.
async fn offer<L: AsyncRead + AsyncWrite + Unpin>(
    link: &mut L,
    start: &[u8],
    replay: &Outbox,
    limit: Duration,
) -> Result<(), Refused> {
    let mut first = Vec::with_capacity(start.len() + replay.len());
    first.extend_from_slice(start);
    replay.copy_to(&mut first);
    if !first.is_empty() {
        let sent = async {
            link.write_all(&first).await?;
            link.flush().await
        };
        sent.await.map_err(Refused::LinkLost)?;
    }
    let accepted = async {
        let mut header = dispatch::Header::default();
        loop {
            let read = link.read(header.rest()).await;
            if header.read(read)? {
                return Ok(());
            }
        }
    };
    let waited = with_timeout(
        limit,
        "waiting for the client to accept a UDP flow",
        async { Ok(accepted.await) },
    );
    waited.await.unwrap_or_else(|e| Err(Refused::LinkLost(e)))
}

/// The relay of an accepted flow, polled by its task alone.
struct FlowRelay<'a, L, T: Transport> {
    link: &'a mut L,
    flow: &'a Flow,
    service: &'a Service<T>,
    ends: &'a Ends,
    counters: &'a super::metrics::Counters,
    /// Records taken from the flow's queue, being written.
    sending: Outbox,
    inbox: Inbox,
    idle: Duration,
    /// The last datagram either way.
    last: Instant,
    timer: runtime::Sleep,
}

impl<L: AsyncRead + AsyncWrite + Unpin, T: Transport> FlowRelay<'_, L, T> {
    /// One turn: the queue toward the link, the link toward the visitor,
    /// the idle timer. A direction with more to do wakes the task again
    /// rather than looping, so other tasks of the worker get their turn.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&'static str>> {
        let mut moved = false;
        if self.sending.is_empty() {
            match self.flow.take(&mut self.sending, cx) {
                None => return Poll::Ready(Ok("port closed or session ended")),
                Some(bytes) => self.service.traffic.meter().a_to_b().add(bytes),
            }
        }
        if self.sending.wants_send() {
            match self.sending.poll_send(cx, self.link) {
                Poll::Ready(Ok(n)) => moved |= n > 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        let (public, visitor, counters) =
            (self.ends.public.upgrade(), self.ends.visitor, self.counters);
        let mut bytes = 0u64;
        let read = self.inbox.poll_read(cx, self.link, |d| {
            bytes += d.len() as u64;
            match &public {
                Some(public) => public.send_to(d, visitor, counters),
                None => counters.dropped(super::metrics::Dropped::ToVisitor),
            }
        });
        drop(public);
        self.service.traffic.meter().b_to_a().add(bytes);
        match read {
            Poll::Ready(Ok(Read::Bytes(_))) => moved = true,
            Poll::Ready(Ok(Read::Eof)) => return Poll::Ready(Ok("the client closed the link")),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if moved {
            self.last = Instant::now();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.poll_idle(cx)
    }

    /// Ends the flow once `idle` passed since its last datagram; the timer
    /// is re-armed only when it fires, not per datagram.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&'static str>> {
        while Pin::new(&mut self.timer).poll(cx).is_ready() {
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(Ok("idle"));
            }
            self.timer = runtime::sleep_until(due);
        }
        Poll::Pending
    }
}
