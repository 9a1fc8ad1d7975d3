//! One connection of the client to one of its servers: dial and
//! authenticate, register, then the control loop (heartbeats, link requests)
//! until the link ends. The session owns its data links (pooled, and
//! multiplexed when asked for): they end with it. Every log line names the
//! server, so the sessions of a client with several servers tell apart.

use futures_lite::io::split;
use futures_lite::{AsyncRead, FutureExt};
use smol::channel::bounded;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{debug, error, info, warn};

use super::context::{Context, Event};
use super::error::ClientError;
use super::live::Ask;
use super::pool::Pool;
use super::upstream::Upstream;
use super::{dialer, muxed};
use crate::config::{DataLinks, ServiceSettings};
use crate::handshake::HandshakeError;
use crate::logging::Rounded;
use crate::protocol::{ErrorCode, Farewell, Frame, SessionId};
use crate::shutdown::{self, Signal};
use crate::tasks::TaskSet;
use crate::transport::Transport;
use crate::wire::{read_frame, with_timeout, write_frame};

/// Control frames queued for the writer (heartbeats, goodbye).
const CONTROL_QUEUE_LEN: usize = 16;
/// The client's heartbeat timeout is at least this many server heartbeat
/// intervals, so a server with a slow heartbeat is not declared dead.
const MIN_TIMEOUT_INTERVALS: u32 = 3;

/// The fastest heartbeat the client sends, whatever the server announces.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

/// How one connection attempt ended.
pub(super) enum SessionEnd {
    /// Our shutdown signal fired; goodbye sent, visitors drained.
    Shutdown,
    /// The server is draining (restarting): reconnect; the visitors in
    /// flight finish on their links meanwhile.
    Draining,
    /// Transient: reconnect.
    Lost(io::Error),
    /// Every service was refused, a port in use among them: worth retrying
    /// for a while (the previous instance of this client may still hold it
    /// until the server notices it is gone), not for ever.
    PortInUse,
    /// Give up.
    Fatal(ClientError),
}

impl From<HandshakeError> for SessionEnd {
    /// Fatal when retrying cannot help, else lost (reconnect).
    fn from(e: HandshakeError) -> Self {
        if e.is_permanent() {
            SessionEnd::Fatal(ClientError::Handshake(e))
        } else {
            SessionEnd::Lost(e.into())
        }
    }
}

/// The data links of one session; dropping it closes them all.
pub(super) struct Links<T: Transport> {
    pool: Pool<T>,
    /// The tasks keeping multiplexed links up.
    muxed: TaskSet,
    /// Tells the multiplexed links' keepers to stop dialling.
    draining: shutdown::Trigger,
}

impl<T: Transport> Links<T> {
    /// A pool of idle links, or multiplexed links kept up (a pooled link
    /// the server asks for is opened either way, so visitors are served
    /// while no multiplexed link is up).
    fn new(ctx: &Arc<Context<T>>, server: &Arc<Upstream<T>>, session: SessionId) -> Self {
        let muxed = TaskSet::new();
        let (draining, stop_dialling) = shutdown::channel();
        let size = match ctx.settings.data_links {
            DataLinks::Pooled { size } => size,
            DataLinks::Multiplexed { links } => {
                for _ in 0..links {
                    let (ctx, server) = (ctx.clone(), server.clone());
                    let keep = muxed::keep(ctx, server, session, stop_dialling.clone());
                    muxed.spawn_worker(keep);
                }
                0
            }
        };
        let pool = Pool::new(ctx.clone(), server.clone(), session, size);
        Links {
            pool,
            muxed,
            draining,
        }
    }

    /// The server asked for `count` more links.
    fn open(&self, count: u16) {
        self.pool.open(usize::from(count));
    }

    /// No new link is dialled and idle ones close; the links carrying a
    /// visitor go on until it ends, for up to `limit`; then whatever is left
    /// is closed.
    pub async fn drain(self, limit: Duration) {
        self.draining.fire();
        self.pool.drain();
        let deadline = std::time::Instant::now() + limit;
        self.pool.join(limit).await;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.muxed.join(left).await;
    }
}

/// Connects to `server`, authenticates, registers and serves until the link
/// ends. When the server drains, the links carrying visitors go on in
/// `retiring` while the next session starts.
pub(crate) async fn run_once<T: Transport>(
    ctx: &Arc<Context<T>>,
    server: &Arc<Upstream<T>>,
    shutdown: &Signal,
    retiring: &TaskSet,
) -> SessionEnd {
    match connect(ctx, server).or(stopped(shutdown)).await {
        Ok(up) => serve(ctx, server, up, shutdown, retiring).await,
        Err(end) => end,
    }
}

/// A control link that is authenticated and registered, with its data links,
/// the heartbeat interval the server asked for, and the services (name,
/// remote port) it asked for.
struct Up<T: Transport> {
    link: T::Stream,
    links: Links<T>,
    interval: Duration,
    asked: Vec<Ask>,
}

async fn connect<T: Transport>(
    ctx: &Arc<Context<T>>,
    server: &Arc<Upstream<T>>,
) -> Result<Up<T>, SessionEnd> {
    let services = ctx.live().services.clone();
    let (mut link, accepted) = dialer::control(ctx, server).await?;
    if !accepted.authenticated {
        warn!("{server} runs with --insecure-no-auth; accepted as asked");
    }
    info!(
        "connected to {server} (session {})",
        crate::wire::short_id(&accepted.session)
    );
    server.session_up(&accepted.session);
    let address = server.address.clone();
    ctx.emit(server, Event::Connected { server: address });
    // A (hostile or misconfigured) tiny interval must not make us spin.
    let interval = accepted.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL);
    // The pool fills while we register: a visitor may arrive at the first
    // registered port before the last service is answered.
    let links = Links::new(ctx, server, accepted.session);
    register(ctx, server, &mut link, &links, &services).await?;
    Ok(Up {
        link,
        links,
        interval,
        asked: services.iter().map(Ask::of).collect(),
    })
}

/// The control loop, with the heartbeats and the writer, until the link
/// ends or `shutdown` fires (then `Goodbye` is sent and the visitors in
/// flight drained).
async fn serve<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
    up: Up<T>,
    shutdown: &Signal,
    retiring: &TaskSet,
) -> SessionEnd {
    let timeout = ctx
        .settings
        .heartbeat_timeout
        .max(up.interval * MIN_TIMEOUT_INTERVALS);
    let (reader, writer) = split(up.link);
    let (tx, rx) = bounded(CONTROL_QUEUE_LEN);
    let writer = smol::spawn(crate::wire::write_frames(writer, rx));
    let heartbeat = smol::spawn(crate::wire::heartbeats(tx.clone(), up.interval));
    let links = up.links;
    let end = async {
        ctx.attach(server, tx.clone(), up.asked).await;
        control_loop(ctx, server, reader, &links, timeout).await
    }
    .or(async {
        shutdown.wait().await;
        SessionEnd::Shutdown
    })
    .await;
    ctx.detach(server).await;
    drop(heartbeat);
    if matches!(end, SessionEnd::Shutdown) {
        let _ = tx.try_send(Frame::Goodbye {
            reason: Farewell::Leaving,
        });
    }
    tx.close();
    let _ = with_timeout(Duration::from_secs(1), "flushing control link", async {
        writer.await;
        Ok(())
    })
    .await;
    let drain = ctx.live().drain_timeout;
    match end {
        SessionEnd::Shutdown => {
            // Said once for the client: the count is over every server.
            if !ctx.drain_announced.swap(true, Ordering::Relaxed) {
                let busy = ctx.counters.active();
                info!(
                    "draining: {busy} visitors in flight get up to {} to finish",
                    Rounded(drain)
                );
            }
            links.drain(drain).await;
        }
        SessionEnd::Draining => retiring.spawn(links.drain(drain)),
        _ => {}
    }
    end
}

async fn stopped<T>(shutdown: &Signal) -> Result<T, SessionEnd> {
    shutdown.wait().await;
    Err(SessionEnd::Shutdown)
}

/// A frame the server should not have sent now; its `Error` keeps its meaning.
fn unexpected(frame: Frame) -> SessionEnd {
    match frame {
        Frame::Error { code, message } => HandshakeError::from_wire(code, message).into(),
        other => SessionEnd::Lost(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected frame from server: {other:?}"),
        )),
    }
}

/// Registers every service and waits for every answer.
async fn register<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
    link: &mut T::Stream,
    links: &Links<T>,
    services: &[ServiceSettings],
) -> Result<(), SessionEnd> {
    let lost = |e: io::Error| SessionEnd::Lost(e);
    for service in services {
        write_frame(link, &Ask::of(service).register())
            .await
            .map_err(lost)?;
    }
    let mut tally = Tally::default();
    let limit = ctx.settings.handshake_timeout;
    while tally.answered < services.len() {
        let frame = with_timeout(limit, "registration", read_frame(link)).await;
        match frame.map_err(lost)? {
            Frame::Heartbeat => {}
            Frame::OpenData { count } => links.open(count),
            frame => tally.answer(ctx, server, frame)?,
        }
    }
    tally.verdict()
}

/// The server's answers to our `Register`s so far.
#[derive(Default)]
struct Tally {
    answered: usize,
    registered: usize,
    port_in_use: bool,
}

impl Tally {
    /// Counts (and reports) one answer; any other frame ends the session.
    fn answer<T: Transport>(
        &mut self,
        ctx: &Context<T>,
        server: &Upstream<T>,
        frame: Frame,
    ) -> Result<(), SessionEnd> {
        match answered(ctx, server, frame)? {
            Answer::Registered => self.registered += 1,
            Answer::Refused(code) => self.port_in_use |= code == ErrorCode::PortInUse,
            Answer::Unregistered => return Ok(()),
        }
        self.answered += 1;
        Ok(())
    }

    /// Whether the session goes on once every service is answered.
    fn verdict(&self) -> Result<(), SessionEnd> {
        match (self.registered, self.port_in_use) {
            // A port held by our own previous, not yet reaped session (a
            // restart right after a crash) frees up soon: retry for a while.
            (0, true) => Err(SessionEnd::PortInUse),
            (0, false) => Err(SessionEnd::Fatal(ClientError::EveryServiceRefused)),
            _ => Ok(()),
        }
    }
}

/// What the server said about one of our services.
enum Answer {
    Registered,
    Refused(ErrorCode),
    Unregistered,
}

/// Reports (logs, events) the server's answer about a service; any other
/// frame ends the session.
fn answered<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
    frame: Frame,
) -> Result<Answer, SessionEnd> {
    let address = server.address.clone();
    match frame {
        Frame::Registered { name, port } => {
            let public = format!("{}:{port}", server.host());
            let local = ctx.local_of(&name).unwrap_or_else(|| "?".to_owned());
            let udp = if super::udp::is_udp(ctx, &name) {
                " (UDP)"
            } else {
                ""
            };
            info!("service {name} is public at {public}{udp} -> {local} (server {server})");
            let event = Event::Registered {
                server: address,
                name,
                port,
                public,
            };
            ctx.emit(server, event);
            Ok(Answer::Registered)
        }
        Frame::RegisterFailed {
            name,
            code,
            message,
        } => {
            error!(
                "service {name} refused by {server}: {message}; {}",
                refusal_fix(code)
            );
            let event = Event::Refused {
                server: address,
                name,
                message,
            };
            ctx.emit(server, event);
            Ok(Answer::Refused(code))
        }
        Frame::Unregistered { name } => {
            info!("service {name} closed at {server}");
            let event = Event::Unregistered {
                server: address,
                name,
            };
            ctx.emit(server, event);
            Ok(Answer::Unregistered)
        }
        other => Err(unexpected(other)),
    }
}

/// What the operator can do about a refused service.
fn refusal_fix(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::PortNotAllowed => {
            "choose a remote_port inside the server's allow_ports, or 0 to let the server pick"
        }
        ErrorCode::PortInUse => {
            "another client holds the port (or this client's previous run, until the server notices it is gone); choose another remote_port"
        }
        ErrorCode::TooManyServices => {
            "expose fewer services, or raise max_services_per_client on the server"
        }
        ErrorCode::BadService => {
            "give each service its own name of letters, digits, '.', '_' or '-'"
        }
        _ => "see the server's log",
    }
}

async fn control_loop<R: AsyncRead + Unpin, T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
    mut reader: R,
    links: &Links<T>,
    timeout: Duration,
) -> SessionEnd {
    loop {
        let frame = match with_timeout(timeout, "server heartbeat", read_frame(&mut reader)).await {
            Ok(frame) => frame,
            Err(e) => return SessionEnd::Lost(e),
        };
        match frame {
            Frame::Heartbeat => {}
            Frame::OpenData { count } => links.open(count),
            Frame::Goodbye {
                reason: Farewell::Draining,
            } => return SessionEnd::Draining,
            Frame::Goodbye { .. } => {
                return SessionEnd::Lost(io::Error::other("the server is shutting down"));
            }
            // Answers to what a reload asked for (see `super::live`).
            frame @ (Frame::Registered { .. }
            | Frame::RegisterFailed { .. }
            | Frame::Unregistered { .. }) => {
                if let Err(end) = answered(ctx, server, frame) {
                    return end;
                }
            }
            other => {
                debug!("control link to {server}: {other:?}");
                return unexpected(other);
            }
        }
    }
}
