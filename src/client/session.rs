//! One connection of the client to the server: dial and authenticate,
//! register, then the control loop (heartbeats, link requests) until the link
//! ends. The session owns its data links (pooled, and multiplexed when asked
//! for): they end with it.

use futures_lite::io::split;
use futures_lite::{AsyncRead, FutureExt};
use smol::channel::bounded;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

use super::context::{Context, Event};
use super::pool::Pool;
use super::{dialer, muxed};
use crate::config::DataLinks;
use crate::handshake::HandshakeError;
use crate::protocol::{ErrorCode, Frame, SessionId};
use crate::shutdown::Signal;
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

/// Why the client gave up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Retrying cannot help: the server refused our token, could not prove
    /// it knows it, runs without authentication unasked, or speaks another
    /// protocol version ([`HandshakeError::is_permanent`]).
    Handshake(HandshakeError),
    /// The server refused every service, none of them for a port in use.
    EveryServiceRefused,
    /// The server refused every service, a port in use among them, and
    /// still did after `waited` (`port_in_use_timeout`).
    PortInUse { waited: Duration },
    /// The client could not start: `what` failed.
    Start {
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Handshake(e) => write!(f, "{e}"),
            ClientError::EveryServiceRefused => f.write_str(
                "the server refused every service (the reasons are logged above); fix the services and start again",
            ),
            ClientError::PortInUse { waited } => write!(
                f,
                "the server refused every service and a port was still in use after {}: stop what holds it (another client?) or choose another remote_port",
                crate::logging::Rounded(*waited)
            ),
            ClientError::Start { what, source } => write!(f, "cannot start {what}: {source}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Handshake(e) => Some(e),
            ClientError::Start { source, .. } => Some(source),
            ClientError::EveryServiceRefused | ClientError::PortInUse { .. } => None,
        }
    }
}

/// How one connection attempt ended.
pub(super) enum SessionEnd {
    /// Our shutdown signal fired; goodbye sent.
    Shutdown,
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
struct Links<T: Transport> {
    pool: Pool<T>,
    /// The tasks keeping multiplexed links up.
    _muxed: TaskSet,
}

impl<T: Transport> Links<T> {
    /// A pool of idle links, or multiplexed links kept up (a pooled link
    /// the server asks for is opened either way, so visitors are served
    /// while no multiplexed link is up).
    fn new(ctx: &Arc<Context<T>>, session: SessionId) -> Self {
        let muxed = TaskSet::new();
        let size = match ctx.settings.data_links {
            DataLinks::Pooled { size } => size,
            DataLinks::Multiplexed { links } => {
                for _ in 0..links {
                    muxed.spawn_worker(muxed::keep(ctx.clone(), session));
                }
                0
            }
        };
        let pool = Pool::new(ctx.clone(), session, size);
        Links {
            pool,
            _muxed: muxed,
        }
    }

    /// The server asked for `count` more links.
    fn open(&self, count: u16) {
        self.pool.open(usize::from(count));
    }
}

/// Connects, authenticates, registers and serves until the link ends.
pub(crate) async fn run_once<T: Transport>(ctx: &Arc<Context<T>>, shutdown: &Signal) -> SessionEnd {
    match connect(ctx).or(stopped(shutdown)).await {
        Ok(up) => serve(ctx, up, shutdown).await,
        Err(end) => end,
    }
}

/// A control link that is authenticated and registered, with its data links
/// and the heartbeat interval the server asked for.
type Up<T> = (<T as Transport>::Stream, Links<T>, Duration);

async fn connect<T: Transport>(ctx: &Arc<Context<T>>) -> Result<Up<T>, SessionEnd> {
    let (mut link, accepted) = dialer::control(ctx).await?;
    if !accepted.authenticated {
        warn!("the server runs with --insecure-no-auth; accepted as asked");
    }
    info!(
        "connected to {} (session {})",
        ctx.settings.server,
        crate::wire::short_id(&accepted.session)
    );
    ctx.emit(Event::Connected);
    // A (hostile or misconfigured) tiny interval must not make us spin.
    let interval = accepted.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL);
    // The pool fills while we register: a visitor may arrive at the first
    // registered port before the last service is answered.
    let links = Links::new(ctx, accepted.session);
    register(ctx, &mut link, &links).await?;
    Ok((link, links, interval))
}

/// The control loop, with the heartbeats and the writer, until the link
/// ends or `shutdown` fires (then `Goodbye` is sent).
async fn serve<T: Transport>(
    ctx: &Context<T>,
    (link, links, interval): Up<T>,
    shutdown: &Signal,
) -> SessionEnd {
    let timeout = ctx
        .settings
        .heartbeat_timeout
        .max(interval * MIN_TIMEOUT_INTERVALS);
    let (reader, writer) = split(link);
    let (tx, rx) = bounded(CONTROL_QUEUE_LEN);
    let writer = smol::spawn(crate::wire::write_frames(writer, rx));
    let heartbeat = smol::spawn(crate::wire::heartbeats(tx.clone(), interval));
    let end = control_loop(reader, &links, timeout)
        .or(async {
            shutdown.wait().await;
            SessionEnd::Shutdown
        })
        .await;
    drop(heartbeat);
    if matches!(end, SessionEnd::Shutdown) {
        let _ = tx.try_send(Frame::Goodbye);
    }
    tx.close();
    let _ = with_timeout(Duration::from_secs(1), "flushing control link", async {
        writer.await;
        Ok(())
    })
    .await;
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
    link: &mut T::Stream,
    links: &Links<T>,
) -> Result<(), SessionEnd> {
    let lost = |e: io::Error| SessionEnd::Lost(e);
    for service in &ctx.settings.services {
        let frame = Frame::Register {
            name: service.name.clone(),
            remote_port: service.remote_port,
        };
        write_frame(link, &frame).await.map_err(lost)?;
    }
    let mut tally = Tally::default();
    let limit = ctx.settings.handshake_timeout;
    while tally.answered < ctx.settings.services.len() {
        let frame = with_timeout(limit, "registration", read_frame(link)).await;
        match frame.map_err(lost)? {
            Frame::Heartbeat => {}
            Frame::OpenData { count } => links.open(count),
            frame => tally.answer(ctx, frame)?,
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
    fn answer<T: Transport>(&mut self, ctx: &Context<T>, frame: Frame) -> Result<(), SessionEnd> {
        match frame {
            Frame::Registered { name, port } => {
                self.registered += 1;
                let public = format!("{}:{port}", ctx.server_host());
                let local = ctx.local_of(&name).unwrap_or("?");
                info!("service {name} is public at {public} -> {local}");
                ctx.emit(Event::Registered { name, port, public });
            }
            Frame::RegisterFailed {
                name,
                code,
                message,
            } => {
                self.port_in_use |= code == ErrorCode::PortInUse;
                error!(
                    "service {name} refused by the server: {message}; {}",
                    refusal_fix(code)
                );
                ctx.emit(Event::Refused { name, message });
            }
            other => return Err(unexpected(other)),
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
            Frame::Goodbye => {
                return SessionEnd::Lost(io::Error::other("the server is shutting down"));
            }
            other => {
                debug!("control link: {other:?}");
                return unexpected(other);
            }
        }
    }
}
