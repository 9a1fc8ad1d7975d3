//! A visitor at one of a session's public ports, from arrival to the end of
//! its relay: on a mux stream when the session has a multiplexed link with
//! room, else on a pooled link; offered there until the client accepts it
//! (see [`super::dispatch`]), then relayed. A visitor never served is reset.

use futures_lite::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

use super::dispatch;
use super::metrics::Reason;
use super::pool::Take;
use super::proxied;
use super::registry::Service;
use super::session::Session;
use crate::metrics::Open;
use crate::protocol::Frame;
use crate::protocol::chunk::Role;
use crate::relay;
use crate::runtime::{self, TcpStream};
use crate::transport::Transport;
use crate::wire::with_timeout;
use smol::channel::Receiver;

/// How soon a visitor waiting for a data link asks again when its request
/// found the control queue full.
const LINK_REQUEST_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// Every this many retries (2 s) a waiting visitor asks again even though
/// its request went out: the client may have failed to dial it. Links take
/// a round trip or three, so this rarely dials a link too many.
const LINK_REQUEST_REPEAT: u32 = 8;

impl<T: Transport> Session<T> {
    /// A visitor arrived at one of this session's public ports; it is served
    /// on the worker that accepted it. One from a balancer that
    /// `accept_proxy_protocol` trusts first gives its PROXY header (see
    /// [`proxied`]), whose source is the visitor from then on.
    pub fn visit(self: &Arc<Self>, service: Arc<Service<T>>, visitor: TcpStream, addr: SocketAddr) {
        let accepted = Instant::now();
        let settings = self.shared.settings();
        let max = settings.max_visitors_per_client;
        if self.visitors.len() >= max {
            self.shared.counters.refused(Reason::VisitorLimit);
            // Refused, not left waiting: reset, as a port that refuses does.
            debug!(
                "visitor {addr} of {} refused: client {} has {max} visitors (max_visitors_per_client)",
                service.name(),
                self.peer
            );
            visitor.abort();
            return;
        }
        let trusted = match &settings.accept_proxy_protocol {
            Some(trust) if trust.trusts(addr.ip()) => Some((trust.max_header_len, trust.timeout)),
            _ => None,
        };
        drop(settings);
        let Some((max_len, timeout)) = trusted else {
            let who = proxied::Visitor { addr, public: None };
            return self.admit(service, visitor, who, accepted);
        };
        let session = self.clone();
        let here = runtime::this_or_next_worker();
        self.visitors.spawn_at(here, async move {
            match proxied::read_header(&visitor, addr, max_len, timeout).await {
                Ok(who) => session.admit(service, visitor, who, accepted),
                Err(e) => {
                    session.shared.counters.refused(Reason::ProxyHeader);
                    // Anyone who reaches the balancer can make this happen.
                    let log = &session.shared.visitor_log;
                    if log.note("no valid PROXY header", addr.ip()) {
                        warn!(
                            "connection from {addr} to port {} closed: no valid PROXY header from a trusted balancer: {e}",
                            service.port
                        );
                    }
                    visitor.abort();
                }
            }
        });
    }

    /// Serves a visitor known by its address: on a mux stream's worker when
    /// a multiplexed link has room, else on this worker with a pooled link.
    fn admit(
        self: &Arc<Self>,
        service: Arc<Service<T>>,
        visitor: TcpStream,
        mut who: proxied::Visitor,
        accepted: Instant,
    ) {
        // Only a service that asked gets it: an older client refuses a
        // `Start` with more than it knows.
        who.public = match service.wants_public_address() {
            true => who.public.or_else(|| visitor.local_addr().ok()),
            false => None,
        };
        let name = service.name();
        // A stream on a multiplexed link (no connection, no handshake) is
        // relayed on the link driver's worker; a pooled link is taken here.
        let (worker, stream) = match self.muxes.open(&name, who, false) {
            Some((stream, worker)) => (worker, Some(stream)),
            None => (runtime::this_or_next_worker(), None),
        };
        let session = self.clone();
        self.visitors.spawn_at(worker, async move {
            let open = service.traffic.open();
            let visit = Visit {
                name: &name,
                service: &service,
                who,
                accepted,
            };
            // Boxed: the task of an idle pooled visitor (the common case)
            // is then no larger than its own path needs.
            let result = match stream {
                Some(stream) => Box::pin(session.serve_muxed(&visit, visitor, stream)).await,
                None => session.serve_visitor(&visit, visitor).await,
            };
            log_visitor_end(&visit, &open, result);
        });
    }

    /// Takes a link for the visitor, starts it there and relays. Until the
    /// relay has it, a visitor let go — no link came in time, the session ended
    /// while it waited — is reset: it was never served, and a clean close would
    /// look like a service that said nothing.
    async fn serve_visitor(
        &self,
        visit: &Visit<'_, T>,
        mut visitor: TcpStream,
    ) -> io::Result<relay::Moved> {
        if let Err(e) = visitor.rehome() {
            visitor.abort();
            return Err(e);
        }
        let waiting = visitor.abort_guard();
        // The set-up is boxed so its state is freed before the long-lived
        // relay starts: an idle tunneled connection costs little more than
        // the relay itself.
        let replay = dispatch::Replay::default();
        let link = Box::pin(self.start_visitor(visit, &visitor, replay)).await?;
        waiting.disarm();
        self.relay_visitor(visit, visitor, link).await
    }

    /// [`Session::serve_visitor`] for a visitor given a stream on a mux link:
    /// offered there (see [`dispatch`]); if the link dies before the client
    /// accepted, offered on another mux link, else on a pooled link, with its
    /// first bytes.
    async fn serve_muxed(
        &self,
        visit: &Visit<'_, T>,
        mut visitor: TcpStream,
        mut stream: crate::mux::Stream,
    ) -> io::Result<relay::Moved> {
        if let Err(e) = visitor.rehome() {
            visitor.abort();
            return Err(e);
        }
        let waiting = visitor.abort_guard();
        let limit = self.shared.settings().handshake_timeout;
        let deadline = Instant::now() + self.shared.settings().visitor_timeout;
        let mut replay = dispatch::Replay::default();
        let raw = (&[][..], dispatch::Framing::Raw);
        loop {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no multiplexed link accepted the visitor in time",
                ));
            }
            match dispatch::offer(&mut stream, raw, &visitor, &mut replay, limit).await {
                Ok(()) => break,
                Err(dispatch::Refused::Visitor(e)) => return Err(e),
                Err(dispatch::Refused::LinkLost(e)) => self.note_lost_link(&e),
            }
            match self.muxes.open(visit.name, visit.who, false) {
                Some((next, _)) => stream = next,
                None => {
                    let link = self.start_visitor(visit, &visitor, replay);
                    let link = Box::pin(link).await?;
                    waiting.disarm();
                    return self.relay_visitor(visit, visitor, link).await;
                }
            }
        }
        self.served(visit, &replay);
        // Freed before the long-lived relay: an idle visitor keeps no replay.
        drop(replay);
        waiting.disarm();
        relay::relay_socket(&visitor, stream, visit.service.traffic.meter()).await
    }

    /// Takes a link for the visitor and offers it there (see [`dispatch`]);
    /// a link that fails before the client accepted is closed and the visitor
    /// offered to the next, its first bytes replayed, until the visitor's
    /// deadline.
    async fn start_visitor(
        &self,
        visit: &Visit<'_, T>,
        visitor: &TcpStream,
        mut replay: dispatch::Replay,
    ) -> io::Result<T::Stream> {
        let (service, addr) = (visit.name, visit.who.addr);
        let start = Frame::Start {
            service: service.to_owned(),
            visitor: addr,
            public: visit.who.public,
            udp: false,
        };
        let start = crate::protocol::to_bytes(&start)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let deadline = Instant::now() + self.shared.settings().visitor_timeout;
        let limit = self.shared.settings().handshake_timeout;
        let start = (&start[..], dispatch::Framing::Chunks);
        loop {
            let mut link = self.take_link(deadline).await.inspect_err(|e| {
                self.shared.counters.refused(Reason::NoDataLink);
                // Anyone can send visitors, so a burst is folded.
                let log = &self.shared.visitor_log;
                if log.note("dropped: no data link", addr.ip()) {
                    warn!("visitor {addr} of {service} dropped: {e}");
                }
            })?;
            match dispatch::offer(&mut link, start, visitor, &mut replay, limit).await {
                Ok(()) => {
                    self.served(visit, &replay);
                    return Ok(link);
                }
                Err(dispatch::Refused::Visitor(e)) => return Err(e),
                Err(dispatch::Refused::LinkLost(e)) => self.note_lost_link(&e),
            }
        }
    }

    /// A link (or stream) accepted the visitor: the wait is over, and the
    /// bytes it sent meanwhile went out (the relay counts the rest).
    fn served(&self, visit: &Visit<'_, T>, replay: &dispatch::Replay) {
        self.shared
            .counters
            .link_wait
            .observe(visit.accepted.elapsed());
        let meter = visit.service.traffic.meter();
        meter.a_to_b().add(replay.len() as u64);
    }

    /// A link (or mux stream) failed before the client accepted a visitor,
    /// which goes to another: worth a (folded) warning, as links should not
    /// die while idle.
    pub(super) fn note_lost_link(&self, e: &io::Error) {
        let cause =
            "data link lost before the client accepted a visitor; visitor moved to another link";
        if self.shared.visitor_log.note(cause, self.peer.ip()) {
            warn!("client {}: {cause}: {e}", self.peer);
        }
    }

    /// Relays a visitor over its link; after a clean end (both directions ended
    /// exactly and the client said `Idle`) the link goes back to the pool —
    /// before the visitor's connection is closed, so a visitor that sees its end
    /// and connects again finds the link idle. Any error closes the link and
    /// resets the visitor (see [`relay::relay_chunked`]).
    async fn relay_visitor(
        &self,
        visit: &Visit<'_, T>,
        visitor: TcpStream,
        mut link: T::Stream,
    ) -> io::Result<relay::Moved> {
        let mut finished = relay::relay_chunked::<T>(
            &visitor,
            &mut link,
            Role::Server,
            None,
            relay::Accepted::Sent,
            visit.service.traffic.meter(),
        )
        .await?;
        // The client's `Idle` usually came with its `End`; if not, it is due
        // as soon as our `End` arrives there.
        let limit = self.shared.settings().handshake_timeout;
        let idle = relay::read_idle(&mut link, &mut finished.decoder);
        match with_timeout(limit, "waiting for the data link to go idle", idle).await {
            Ok(()) => self.pool.add(runtime::this_or_next_worker(), link),
            // The visitor was served in full; only the link is gone (the client
            // retires links at the end of a visitor by closing them).
            Err(e) => debug!("client {}: data link retired: {e}", self.peer),
        }
        drop(visitor);
        Ok(finished.moved)
    }

    /// An idle data link for a visitor, waiting (bounded) for one if needed.
    /// Links found dead are closed and skipped, never given to the visitor.
    pub(super) async fn take_link(&self, deadline: Instant) -> io::Result<T::Stream> {
        loop {
            let mut link = self.next_link(deadline).await?;
            if !T::is_dead(&link) {
                // A no-op unless the link was stolen from another worker's
                // shard or handshaken on the control plane.
                T::rehome(&mut link)?;
                return Ok(link);
            }
            debug!("client {}: skipped a dead idle data link", self.peer);
        }
    }

    async fn next_link(&self, deadline: Instant) -> io::Result<T::Stream> {
        let worker = runtime::this_or_next_worker();
        let rx: Receiver<T::Stream> = match self.pool.take(worker) {
            Take::Ready(link) => return Ok(link),
            Take::Wait(rx) => rx,
            Take::Refused => {
                return Err(io::Error::other(
                    "too many visitors waiting for a data link",
                ));
            }
        };
        // Ask for one more link per waiting visitor. In a burst a request
        // can find the control queue full, and the client replaces only
        // links that close, so a request lost that way is made again at the
        // next `LINK_REQUEST_RETRY`; one that went out is repeated only
        // every `LINK_REQUEST_REPEAT` retries (its dial may have failed).
        let ask = || self.control.try_send(Frame::OpenData { count: 1 }).is_ok();
        let mut asked = ask();
        let left = deadline.saturating_duration_since(Instant::now());
        let got = with_timeout(left, "waiting for a data link", async {
            for tick in 1u32.. {
                let retry = async {
                    // ok-sleep: the period of a best-effort request, not a wait for an event
                    runtime::sleep(LINK_REQUEST_RETRY).await;
                    None
                };
                match async { Some(rx.recv().await) }.or(retry).await {
                    Some(got) => return got.map_err(|_| io::Error::other("session ended")),
                    None if !asked || tick % LINK_REQUEST_REPEAT == 0 => asked = ask(),
                    None => {}
                }
            }
            Err(io::Error::other("waited for a data link too long"))
        })
        .await;
        if got.is_err() {
            // A link handed over just as the deadline hit goes back to the
            // pool; closing first means none can arrive after the check.
            rx.close();
            if let Ok(link) = rx.try_recv() {
                self.pool.add(worker, link);
            }
        }
        got
    }
}

/// One visitor of one service, as its task sees it.
struct Visit<'a, T: Transport> {
    name: &'a str,
    /// Its counters ([`Service::traffic`]).
    service: &'a Service<T>,
    who: proxied::Visitor,
    /// When its public port accepted it: the start of its wait for a link.
    accepted: Instant,
}

fn log_visitor_end<T: Transport>(
    visit: &Visit<'_, T>,
    open: &Open<'_>,
    result: io::Result<relay::Moved>,
) {
    let (service, addr) = (visit.name, visit.who.addr);
    match result {
        Ok(moved) => debug!("visitor {addr} of {service} done: {moved:?}"),
        Err(e) => {
            open.failed();
            debug!("visitor {addr} of {service} ended: {e}");
        }
    }
}
