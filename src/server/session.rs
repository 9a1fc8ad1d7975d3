//! One authenticated client: its control link, its services, its data-link pool
//! and its visitors.
//!
//! The control link is read by the session's own loop (every read under the
//! heartbeat timeout, so a half-open link is noticed within it) and written by a
//! writer task fed through a bounded channel, so a visitor asking for a data link
//! never blocks on a slow control socket.

use crate::runtime::{self, TcpStream};
use futures_lite::FutureExt;
use futures_lite::io::split;
use smol::channel::{Receiver, Sender, bounded};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::{debug, info, warn};

use super::Shared;
use super::dispatch;
use super::muxed::MuxLinks;
use super::pool::{Pool, Take};
use crate::protocol::chunk::Role;
use crate::protocol::{ClientId, ErrorCode, Frame, MAX_NAME_LEN, SessionId, clamp_message};
use crate::relay;
use crate::shutdown;
use crate::tasks::{TaskSet, lock};
use crate::transport::Transport;
use crate::wire::short_id;
use crate::wire::{read_frame, with_timeout};

/// Frames queued for the control writer. Heartbeats and link requests are tiny
/// and rare; a full queue means the client stopped reading, and the heartbeat
/// timeout will end the session.
const CONTROL_QUEUE_LEN: usize = 256;

pub(crate) struct Session<T: Transport> {
    pub id: SessionId,
    pub client_id: ClientId,
    peer: SocketAddr,
    shared: Arc<Shared<T>>,
    control: Sender<Frame>,
    pool: Pool<T::Stream>,
    /// Multiplexed data links; visitors prefer them when there are any.
    muxes: MuxLinks,
    /// Relays of this session's visitors; cancelled when the session ends.
    visitors: TaskSet,
    /// Names of the services this session registered.
    services: Mutex<Vec<String>>,
    /// Ends the session from outside (see [`Session::supersede`]).
    kill: shutdown::Trigger,
}

/// How a session ended.
enum End {
    /// The client said goodbye: release its ports now.
    Goodbye,
    /// Server shutdown: goodbye sent, release everything.
    Shutdown,
    /// Link lost or protocol error: keep its ports for the grace period.
    Lost(io::Error),
}

impl<T: Transport> Session<T> {
    /// Runs an authenticated control link until it ends, then cleans up.
    pub async fn run(
        shared: Arc<Shared<T>>,
        link: T::Stream,
        peer: SocketAddr,
        id: SessionId,
        client_id: ClientId,
    ) {
        let (tx, rx) = bounded(CONTROL_QUEUE_LEN);
        let (kill, killed) = shutdown::channel();
        let session = Arc::new(Session {
            id,
            client_id,
            peer,
            shared: shared.clone(),
            control: tx,
            pool: Pool::new(runtime::workers(), shared.settings.max_waiting_visitors),
            muxes: MuxLinks::new(shared.settings.max_streams_per_link),
            visitors: TaskSet::new(),
            services: Mutex::new(Vec::new()),
            kill,
        });
        // A client that reconnects before we noticed its old link die takes over
        // the old session's ports instead of finding them "in use".
        shared
            .registry
            .add_session(&session, shared.settings.reconnect_grace);
        let (mut reader, writer) = split(link);
        let writer = smol::spawn(crate::wire::write_frames(writer, rx));
        let heartbeat = smol::spawn(crate::wire::heartbeats(
            session.control.clone(),
            shared.settings.heartbeat_interval,
        ));
        let shutdown = shared.shutdown.clone();
        let end = session
            .read_loop(&mut reader)
            .or(async {
                shutdown.wait().await;
                End::Shutdown
            })
            .or(async {
                killed.wait().await;
                End::Lost(io::Error::other(
                    "superseded by a new connection of the same client",
                ))
            })
            .await;
        drop(heartbeat);
        session.finish(end, writer).await;
    }

    /// Says goodbye if due, flushes the control link (bounded), closes the pool
    /// and the visitors, and releases or parks the services.
    async fn finish(&self, end: End, writer: smol::Task<()>) {
        let (peer, id) = (self.peer, short_id(&self.id));
        let graceful = match &end {
            End::Goodbye => {
                info!("client {peer} said goodbye (session {id})");
                true
            }
            End::Shutdown => {
                let _ = self.control.try_send(Frame::Goodbye);
                true
            }
            End::Lost(e) => {
                info!("client {peer} gone (session {id}): {e}");
                false
            }
        };
        self.control.close();
        // Half the server's shutdown grace, so that a server shutdown (which
        // waits SHUTDOWN_GRACE for sessions) always sees this cleanup finish.
        let _ = with_timeout(super::SHUTDOWN_GRACE / 2, "flushing control link", async {
            writer.await;
            Ok(())
        })
        .await;
        self.pool.close();
        self.muxes.go_away();
        self.visitors.cancel_all();
        let grace = self.shared.settings.reconnect_grace;
        self.shared.registry.end_session(self, graceful, grace);
    }

    /// Ends this session as lost (a newer connection of the same client).
    pub fn supersede(&self) {
        self.kill.fire();
    }

    async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
        self: &Arc<Self>,
        reader: &mut R,
    ) -> End {
        let timeout = self.shared.settings.heartbeat_timeout;
        loop {
            let frame = match with_timeout(timeout, "heartbeat", read_frame(reader)).await {
                Ok(frame) => frame,
                Err(e) => return End::Lost(e),
            };
            match frame {
                Frame::Heartbeat => {}
                Frame::Register { name, remote_port } => {
                    let reply = self.register(&name, remote_port).await;
                    // Bounded: a client that floods requests and never reads
                    // must not wedge this loop past its heartbeat timeout.
                    let sent = with_timeout(timeout, "queueing a reply", async {
                        self.control.send(reply).await.map_err(io::Error::other)
                    });
                    if let Err(e) = sent.await {
                        return End::Lost(e);
                    }
                }
                Frame::Goodbye => return End::Goodbye,
                Frame::Error { code, message } => {
                    return End::Lost(io::Error::other(format!(
                        "client reported {code:?}: {message}"
                    )));
                }
                other => {
                    let msg = format!("unexpected frame on control link: {other:?}");
                    let _ = self.control.try_send(Frame::Error {
                        code: ErrorCode::ProtocolViolation,
                        message: clamp_message(&msg),
                    });
                    return End::Lost(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
            }
        }
    }

    async fn register(self: &Arc<Self>, name: &str, port: u16) -> Frame {
        match self.try_register(name, port).await {
            Ok(port) => {
                info!(
                    "client {}: service {name} registered at port {port}",
                    self.peer
                );
                Frame::Registered {
                    name: name.to_owned(),
                    port,
                }
            }
            Err((code, message)) => {
                warn!("client {}: service {name} refused: {message}", self.peer);
                Frame::RegisterFailed {
                    name: name.to_owned(),
                    code,
                    message: clamp_message(&message),
                }
            }
        }
    }

    async fn try_register(
        self: &Arc<Self>,
        name: &str,
        port: u16,
    ) -> Result<u16, (ErrorCode, String)> {
        let settings = &self.shared.settings;
        if !valid_name(name) {
            return Err((
                ErrorCode::BadService,
                format!("invalid service name {name:?}"),
            ));
        }
        {
            let services = lock(&self.services);
            if services.iter().any(|s| s == name) {
                return Err((
                    ErrorCode::BadService,
                    format!("service {name:?} is already registered"),
                ));
            }
            if services.len() >= settings.max_services_per_client {
                let max = settings.max_services_per_client;
                return Err((
                    ErrorCode::TooManyServices,
                    format!("at most {max} services per client"),
                ));
            }
        }
        if port != 0 && !settings.port_allowed(port) {
            let ranges: Vec<String> = settings
                .allow_ports
                .iter()
                .map(|r| format!("{}-{}", r.start(), r.end()))
                .collect();
            return Err((
                ErrorCode::PortNotAllowed,
                format!(
                    "port {port} is outside the server's allow_ports ({})",
                    ranges.join(", ")
                ),
            ));
        }
        let allowed = |p: u16| settings.port_allowed(p);
        let service = self
            .shared
            .registry
            .register(self, name, port, &allowed)
            .await
            .map_err(|r| (r.code, r.message))?;
        lock(&self.services).push(name.to_owned());
        Ok(service.port)
    }

    /// A data link authenticated for this session, registered with `worker`
    /// (its shard of the pool).
    pub fn add_link(&self, worker: usize, link: T::Stream) {
        self.pool.add(worker, link);
    }

    /// A multiplexed data link authenticated for this session.
    pub fn add_mux(&self, link: T::Stream) {
        self.muxes.add::<T>(link);
    }

    /// A visitor arrived at one of this session's public ports; it is served
    /// on the worker that accepted it.
    pub fn visit(self: &Arc<Self>, service: String, visitor: TcpStream, addr: SocketAddr) {
        let max = self.shared.settings.max_visitors_per_client;
        if self.visitors.len() >= max {
            // Refused, not left waiting: reset, as a port that refuses does.
            debug!(
                "visitor {addr} of {service} refused: client {} has {max} visitors (max_visitors_per_client)",
                self.peer
            );
            visitor.abort();
            return;
        }
        if let Some((stream, worker)) = self.muxes.open(&service, addr) {
            // A stream on a multiplexed link: no connection, no handshake; the
            // relay runs on the link driver's worker.
            let session = self.clone();
            self.visitors.spawn_at(worker, async move {
                let result = session.serve_muxed(&service, visitor, addr, stream).await;
                log_visitor_end(&service, addr, result);
            });
            return;
        }
        let session = self.clone();
        let here = runtime::this_or_next_worker();
        self.visitors.spawn_at(here, async move {
            let result = session.serve_visitor(&service, visitor, addr).await;
            log_visitor_end(&service, addr, result);
        });
    }

    /// Takes a link for the visitor, starts it there and relays. Until the
    /// relay has it, a visitor let go — no link came in time, the session ended
    /// while it waited — is reset: it was never served, and a clean close would
    /// look like a service that said nothing.
    async fn serve_visitor(
        &self,
        service: &str,
        mut visitor: TcpStream,
        addr: SocketAddr,
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
        let link = Box::pin(self.start_visitor(service, &visitor, addr, replay)).await?;
        waiting.disarm();
        self.relay_visitor(visitor, link).await
    }

    /// [`Session::serve_visitor`] for a visitor given a stream on a mux link:
    /// offered there (see [`dispatch`]); if the link dies before the client
    /// accepted, offered on another mux link, else on a pooled link, with its
    /// first bytes.
    async fn serve_muxed(
        &self,
        service: &str,
        mut visitor: TcpStream,
        addr: SocketAddr,
        mut stream: crate::mux::Stream,
    ) -> io::Result<relay::Moved> {
        if let Err(e) = visitor.rehome() {
            visitor.abort();
            return Err(e);
        }
        let waiting = visitor.abort_guard();
        let limit = self.shared.settings.handshake_timeout;
        let deadline = Instant::now() + self.shared.settings.visitor_timeout;
        let mut replay = dispatch::Replay::default();
        let raw = (&[][..], dispatch::Framing::Raw);
        loop {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no multiplexed link accepted the visitor in time",
                ));
            }
            match Box::pin(dispatch::offer(
                &mut stream,
                raw,
                &visitor,
                &mut replay,
                limit,
            ))
            .await
            {
                Ok(()) => break,
                Err(dispatch::Refused::Visitor(e)) => return Err(e),
                Err(dispatch::Refused::LinkLost(e)) => self.note_lost_link(&e),
            }
            match self.muxes.open(service, addr) {
                Some((next, _)) => stream = next,
                None => {
                    let link = self.start_visitor(service, &visitor, addr, replay);
                    let link = Box::pin(link).await?;
                    waiting.disarm();
                    return self.relay_visitor(visitor, link).await;
                }
            }
        }
        waiting.disarm();
        relay::relay_socket(&visitor, stream).await
    }

    /// Takes a link for the visitor and offers it there (see [`dispatch`]);
    /// a link that fails before the client accepted is closed and the visitor
    /// offered to the next, its first bytes replayed, until the visitor's
    /// deadline.
    async fn start_visitor(
        &self,
        service: &str,
        visitor: &TcpStream,
        addr: SocketAddr,
        mut replay: dispatch::Replay,
    ) -> io::Result<T::Stream> {
        let start = Frame::Start {
            service: service.to_owned(),
            visitor: addr,
        };
        let start = crate::protocol::to_bytes(&start)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let deadline = Instant::now() + self.shared.settings.visitor_timeout;
        let limit = self.shared.settings.handshake_timeout;
        let start = (&start[..], dispatch::Framing::Chunks);
        loop {
            let mut link = self.take_link(deadline).await.inspect_err(|e| {
                // Anyone can send visitors, so a burst is folded.
                let log = &self.shared.visitor_log;
                if log.note("dropped: no data link", addr.ip()) {
                    warn!("visitor {addr} of {service} dropped: {e}");
                }
            })?;
            match dispatch::offer(&mut link, start, visitor, &mut replay, limit).await {
                Ok(()) => return Ok(link),
                Err(dispatch::Refused::Visitor(e)) => return Err(e),
                Err(dispatch::Refused::LinkLost(e)) => self.note_lost_link(&e),
            }
        }
    }

    /// A link (or mux stream) failed before the client accepted a visitor,
    /// which goes to another: worth a (folded) warning, as links should not
    /// die while idle.
    fn note_lost_link(&self, e: &io::Error) {
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
        visitor: TcpStream,
        mut link: T::Stream,
    ) -> io::Result<relay::Moved> {
        let mut finished =
            relay::relay_chunked::<T>(&visitor, &mut link, Role::Server, None).await?;
        // The client's `Idle` usually came with its `End`; if not, it is due
        // as soon as our `End` arrives there.
        let limit = self.shared.settings.handshake_timeout;
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
    async fn take_link(&self, deadline: Instant) -> io::Result<T::Stream> {
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
        // Ask for one more link per waiting visitor; the client also refills on
        // its own, so a lost request only costs latency.
        let _ = self.control.try_send(Frame::OpenData { count: 1 });
        let left = deadline.saturating_duration_since(Instant::now());
        let got = with_timeout(left, "waiting for a data link", async {
            rx.recv()
                .await
                .map_err(|_| io::Error::other("session ended"))
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

/// Service names: 1..=64 bytes of `[A-Za-z0-9_.-]` (the config checks the same).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn log_visitor_end(service: &str, addr: SocketAddr, result: io::Result<relay::Moved>) {
    match result {
        Ok(moved) => debug!("visitor {addr} of {service} done: {moved:?}"),
        Err(e) => debug!("visitor {addr} of {service} ended: {e}"),
    }
}
