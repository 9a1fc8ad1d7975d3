//! One authenticated client: its control link, its services, its data-link pool
//! and its visitors (served in `super::visitor`).
//!
//! The control link is read by the session's own loop (every read under the
//! heartbeat timeout, so a half-open link is noticed within it) and written by a
//! writer task fed through a bounded channel, so a visitor asking for a data link
//! never blocks on a slow control socket.

use crate::runtime;
use futures_lite::FutureExt;
use futures_lite::io::split;
use smol::channel::{Sender, bounded};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};

use super::Shared;
use super::credentials::{self, Credential, who};
use super::metrics::Reason;
use super::muxed::MuxLinks;
use super::pool::Pool;
use super::refusal::Refusal;
use super::registry::{Wanted, port_name};
use crate::config::Protocol;
use crate::protocol::{
    ClientId, ErrorCode, Farewell, Frame, MAX_NAME_LEN, SessionId, clamp_message,
};
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
    /// Whose credentials it proved; its limits follow them.
    pub(crate) credential: Credential,
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared<T>>,
    pub(super) control: Sender<Frame>,
    pub(super) pool: Pool<T::Stream>,
    /// Multiplexed data links; visitors prefer them when there are any.
    pub(super) muxes: MuxLinks,
    /// Relays of this session's visitors; cancelled when the session ends.
    pub(super) visitors: TaskSet,
    /// Names of the services this session registered.
    services: Mutex<Vec<String>>,
    /// Ends the session from outside (see [`Session::supersede`]).
    kill: shutdown::Trigger,
    /// When the client authenticated.
    pub(super) connected: std::time::Instant,
}

/// How a session ended.
enum End {
    /// The client said goodbye: release its ports now; its visitors in
    /// flight finish (it drains them) within our `drain_timeout`.
    Goodbye,
    /// Server drain: goodbye sent; visitors in flight finish until the
    /// drain deadline.
    Drain,
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
        credential: Credential,
        greeting: Frame,
    ) {
        let (tx, rx) = bounded(CONTROL_QUEUE_LEN);
        let (kill, killed) = shutdown::channel();
        let session = Arc::new(Session {
            id,
            client_id,
            credential,
            peer,
            shared: shared.clone(),
            control: tx,
            pool: Pool::new(runtime::workers(), shared.settings().max_waiting_visitors),
            muxes: MuxLinks::new(shared.settings().max_streams_per_link),
            visitors: TaskSet::new(),
            services: Mutex::new(Vec::new()),
            kill,
            connected: std::time::Instant::now(),
        });
        // A client that reconnects before we noticed its old link die takes over
        // the old session's ports instead of finding them "in use".
        shared
            .registry
            .add_session(&session, shared.settings().reconnect_grace);
        credentials::recheck(&shared, &session).await;
        // The first frame on the control link (the `AuthOk`), queued only now
        // that the session can be found; a fresh queue always has room.
        let _ = session.control.try_send(greeting);
        let (mut reader, writer) = split(link);
        let writer = smol::spawn(crate::wire::write_frames(writer, rx));
        let heartbeat = smol::spawn(crate::wire::heartbeats(
            session.control.clone(),
            shared.settings().heartbeat_interval,
        ));
        let draining = shared.draining.clone();
        let end = session
            .read_loop(&mut reader)
            .or(async {
                draining.wait().await;
                End::Drain
            })
            .or(async {
                killed.wait().await;
                End::Lost(io::Error::other(session.credential.kill_reason()))
            })
            .await;
        drop(heartbeat);
        session.finish(end, writer).await;
    }

    /// Says goodbye if due, flushes the control link (bounded), releases or
    /// parks the services, and closes the idle links; then, after a goodbye
    /// either way, lets the visitors in flight finish until the drain
    /// deadline, and closes whatever is left.
    async fn finish(&self, end: End, writer: smol::Task<()>) {
        let (peer, id) = (who(self), short_id(&self.id));
        let settings = Arc::clone(&self.shared.settings());
        let graceful = match &end {
            End::Goodbye => {
                info!("client {peer} said goodbye (session {id})");
                true
            }
            End::Drain => {
                let _ = self.control.try_send(Frame::Goodbye {
                    reason: Farewell::Draining,
                });
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
        // No new visitor: its ports are released (or parked) and its idle
        // links closed; mux links take no new streams.
        self.pool.close();
        self.muxes.go_away();
        self.shared
            .registry
            .end_session(self, graceful, settings.reconnect_grace);
        if graceful && !self.visitors.is_empty() {
            let deadline = match end {
                End::Drain => self.shared.drain_deadline(),
                _ => std::time::Instant::now() + settings.drain_timeout,
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.visitors.join(left).await;
        }
        self.visitors.cancel_all();
    }

    /// Ends this session as lost (a newer connection of the same client).
    pub fn supersede(&self) {
        self.kill.fire();
    }

    async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
        self: &Arc<Self>,
        reader: &mut R,
    ) -> End {
        loop {
            // Read each time: a reload may change it.
            let timeout = self.shared.settings().heartbeat_timeout;
            let frame = match with_timeout(timeout, "heartbeat", read_frame(reader)).await {
                Ok(frame) => frame,
                Err(e) => return End::Lost(e),
            };
            match frame {
                Frame::Heartbeat => {}
                Frame::Register {
                    name,
                    remote_port,
                    public_address,
                    udp,
                } => {
                    let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
                    let wanted = (name.as_str(), remote_port, public_address, protocol);
                    let reply = self.register(wanted).await;
                    if let Err(e) = self.reply(reply, timeout).await {
                        return End::Lost(e);
                    }
                }
                Frame::Goodbye { .. } => return End::Goodbye,
                Frame::Unregister { name } => {
                    self.unregister(&name).await;
                    let reply = Frame::Unregistered { name };
                    if let Err(e) = self.reply(reply, timeout).await {
                        return End::Lost(e);
                    }
                }
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

    /// Queues an answer to the client. Bounded: a client that floods
    /// requests and never reads must not wedge the read loop past its
    /// heartbeat timeout.
    async fn reply(&self, frame: Frame, timeout: std::time::Duration) -> io::Result<()> {
        with_timeout(timeout, "queueing a reply", async {
            self.control.send(frame).await.map_err(io::Error::other)
        })
        .await
    }

    async fn register(self: &Arc<Self>, wanted: Wanted<'_>) -> Frame {
        let name = wanted.0;
        match self.try_register(wanted).await {
            Ok(port) => {
                info!(
                    "client {}: service {name} registered at port {}",
                    who(self),
                    port_name(&(wanted.3, port))
                );
                Frame::Registered {
                    name: name.to_owned(),
                    port,
                }
            }
            Err(refusal) => {
                self.shared.counters.refused(Reason::of(&refusal));
                warn!("client {}: service {name} refused: {refusal}", who(self));
                Frame::RegisterFailed {
                    name: name.to_owned(),
                    code: refusal.code(),
                    message: clamp_message(&refusal.to_string()),
                }
            }
        }
    }

    async fn try_register(self: &Arc<Self>, wanted: Wanted<'_>) -> Result<u16, Refusal> {
        let (name, port, ..) = wanted;
        let settings = Arc::clone(&self.shared.settings());
        // This session's principal's limits, as the settings say now.
        let limits = credentials::limits(&settings, &self.credential.principal);
        if !valid_name(name) {
            let name = name.to_owned();
            return Err(Refusal::BadName { name });
        }
        {
            let services = lock(&self.services);
            if services.iter().any(|s| s == name) {
                // The same service asking for PROXY headers, or no longer:
                // updated in place (PROTOCOL.md section 7).
                if let Some(port) = self.shared.registry.update(self, wanted) {
                    return Ok(port);
                }
                let name = name.to_owned();
                return Err(Refusal::AlreadyRegistered { name });
            }
            let max = limits.max_services;
            if services.len() >= max {
                return Err(Refusal::TooManyServices { max });
            }
        }
        if port != 0 && !limits.port_allowed(port) {
            let allowed = limits.allow_ports.to_vec();
            return Err(Refusal::PortNotAllowed { port, allowed });
        }
        let allowed = |p: u16| limits.port_allowed(p);
        let service = self
            .shared
            .registry
            .register(self, wanted, &allowed)
            .await?;
        lock(&self.services).push(name.to_owned());
        Ok(service.port)
    }

    /// Stops exposing `name`: its port closes now; visitors in flight go on.
    async fn unregister(&self, name: &str) {
        let removed = {
            let mut services = lock(&self.services);
            let before = services.len();
            services.retain(|s| s != name);
            services.len() != before
        };
        if !removed {
            return debug!(
                "client {}: unregister of unknown service {name:?}",
                self.peer
            );
        }
        match self.shared.registry.release(self, name).await {
            Some(port) => info!("client {}: service {name} on port {port} closed", self.peer),
            None => info!("client {}: service {name} closed", self.peer),
        }
    }

    /// The names of the services this session registered.
    pub fn service_names(&self) -> Vec<String> {
        lock(&self.services).clone()
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
}

/// Service names: 1..=64 bytes of `[A-Za-z0-9_.-]` (the config checks the same).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
