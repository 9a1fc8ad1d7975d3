//! One connection of the client to the server: handshake, registration, then
//! the control loop (heartbeats, link requests) until the link ends.

use futures_lite::io::split;
use futures_lite::{AsyncRead, FutureExt};
use smol::channel::{Sender, bounded};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

use super::data::Links;
use super::{ClientError, Event, SessionEnd};
use crate::auth::{self, Key};
use crate::config::ClientSettings;
use crate::logfold::Fold;
use crate::protocol::{ClientId, ErrorCode, Frame, LinkHello, Nonce, SessionId, VERSION};
use crate::shutdown::Signal;
use crate::transport::Transport;
use crate::wire::{read_frame, with_timeout, write_frame};

/// Control frames queued for the writer (heartbeats, goodbye).
const CONTROL_QUEUE_LEN: usize = 16;
/// The client's heartbeat timeout is at least this many server heartbeat
/// intervals, so a server with a slow heartbeat is not declared dead.
const MIN_TIMEOUT_INTERVALS: u32 = 3;

/// The fastest heartbeat the client sends, whatever the server announces.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

/// What every connection attempt shares.
pub(crate) struct Context<T: Transport> {
    pub settings: ClientSettings,
    pub transport: T,
    pub key: Key,
    pub client_id: ClientId,
    /// Failed reconnects and data-link dials, folded: a long outage is a few
    /// lines, not one per attempt.
    pub log: Arc<Fold>,
    events: Option<Sender<Event>>,
}

impl<T: Transport> Context<T> {
    pub fn new(
        settings: ClientSettings,
        transport: T,
        client_id: ClientId,
        events: Option<Sender<Event>>,
    ) -> Arc<Self> {
        let key = Key::new(settings.token.expose());
        Arc::new(Context {
            settings,
            transport,
            key,
            client_id,
            log: Arc::new(Fold::new("failures")),
            events,
        })
    }

    pub fn emit(&self, event: Event) {
        if let Some(events) = &self.events {
            // Observers are optional; one that stopped listening is ignored.
            let _ = events.try_send(event);
        }
    }

    /// The host part of the server address, for printing public addresses.
    fn server_host(&self) -> &str {
        let server = &self.settings.server;
        server
            .rsplit_once(':')
            .map_or(server.as_str(), |(host, _)| host)
    }
}

/// Connects, authenticates, registers and serves until the link ends.
pub(crate) async fn run_once<T: Transport>(ctx: &Arc<Context<T>>, shutdown: &Signal) -> SessionEnd {
    let connected = async {
        let limit = ctx.settings.handshake_timeout;
        let mut link = with_timeout(
            limit,
            "connecting to the server",
            ctx.transport.connect(&ctx.settings.server),
        )
        .await
        .map_err(|e| {
            SessionEnd::Lost(io::Error::new(
                e.kind(),
                format!("cannot connect to {}: {e}", ctx.settings.server),
            ))
        })?;
        let (session_id, interval) = with_timeout(limit, "handshake", authenticate(ctx, &mut link))
            .await
            .map_err(handshake_error)?;
        ctx.emit(Event::Connected);
        // The pool fills while we register: a visitor may arrive at the first
        // registered port before the last service is answered.
        let links = Links::new(ctx.clone(), session_id, &ctx.settings.data_links);
        register(ctx, &mut link, &links).await?;
        Ok::<_, SessionEnd>((link, links, interval))
    };
    let (link, links, interval) = match connected.or(stopped(shutdown)).await {
        Ok(up) => up,
        Err(end) => return end,
    };
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

/// Hello, challenge, proof, and the server's proof back.
async fn authenticate<T: Transport>(
    ctx: &Context<T>,
    link: &mut T::Stream,
) -> io::Result<(SessionId, Duration)> {
    let client_nonce: Nonce = auth::random()?;
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Control {
            client_id: ctx.client_id,
            nonce: client_nonce,
        },
    };
    write_frame(link, &hello).await?;
    let server_nonce = match read_frame(link).await? {
        Frame::Challenge { nonce } => nonce,
        other => return Err(unexpected(other)),
    };
    let mac = ctx.key.client_proof(&client_nonce, &server_nonce);
    write_frame(link, &Frame::AuthResponse { mac }).await?;
    match read_frame(link).await? {
        Frame::AuthOk {
            session_id,
            authenticated,
            mac,
            heartbeat_interval_ms,
        } => {
            if !authenticated && !ctx.settings.insecure_no_auth {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "authentication failed: the server runs without authentication \
                     (--insecure-no-auth) and cannot prove it is the real server; \
                     pass --insecure-no-auth to the client to accept that",
                ));
            }
            if !authenticated {
                warn!("the server runs with --insecure-no-auth; accepted as asked");
            } else if !ctx
                .key
                .verify_server(&client_nonce, &server_nonce, &session_id, &mac)
            {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "authentication failed: the server could not prove it knows the token (wrong server, or a different token)",
                ));
            }
            // A (hostile or misconfigured) tiny interval must not make us spin.
            let interval =
                Duration::from_millis(u64::from(heartbeat_interval_ms)).max(MIN_HEARTBEAT_INTERVAL);
            info!(
                "connected to {} (session {})",
                ctx.settings.server,
                crate::wire::short_id(&session_id)
            );
            Ok((session_id, interval))
        }
        other => Err(unexpected(other)),
    }
}

/// Maps a handshake failure to fatal (auth, version) or transient.
fn handshake_error(e: io::Error) -> SessionEnd {
    if e.kind() == io::ErrorKind::PermissionDenied {
        return SessionEnd::Fatal(ClientError::Auth(e.to_string()));
    }
    if e.kind() == io::ErrorKind::Unsupported {
        return SessionEnd::Fatal(ClientError::Fatal(e.to_string()));
    }
    SessionEnd::Lost(e)
}

/// An unexpected frame; a server `Error` keeps its meaning.
fn unexpected(frame: Frame) -> io::Error {
    match frame {
        Frame::Error {
            code: ErrorCode::AuthFailed,
            message,
        } => io::Error::new(io::ErrorKind::PermissionDenied, message),
        Frame::Error {
            code: ErrorCode::UnsupportedVersion,
            message,
        } => io::Error::new(io::ErrorKind::Unsupported, message),
        Frame::Error { code, message } => {
            io::Error::other(format!("server error {code:?}: {message}"))
        }
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected frame from server: {other:?}"),
        ),
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
    let mut answered = 0;
    let mut registered = 0;
    let mut port_in_use = false;
    let limit = ctx.settings.handshake_timeout;
    while answered < ctx.settings.services.len() {
        match with_timeout(limit, "registration", read_frame(link))
            .await
            .map_err(lost)?
        {
            Frame::Registered { name, port } => {
                answered += 1;
                registered += 1;
                let public = format!("{}:{port}", ctx.server_host());
                let local = ctx
                    .settings
                    .services
                    .iter()
                    .find(|s| s.name == name)
                    .map_or("?", |s| s.local.as_str());
                info!("service {name} is public at {public} -> {local}");
                ctx.emit(Event::Registered { name, port, public });
            }
            Frame::RegisterFailed {
                name,
                code,
                message,
            } => {
                answered += 1;
                port_in_use |= code == ErrorCode::PortInUse;
                warn!("service {name} refused by the server: {message}");
                ctx.emit(Event::Refused { name, message });
            }
            Frame::Heartbeat => {}
            Frame::OpenData { count } => links.open(usize::from(count)),
            other => return Err(handshake_error(unexpected(other))),
        }
    }
    if registered == 0 && port_in_use {
        // A port held by our own previous, not yet reaped session (a restart
        // right after a crash) frees up soon: retry rather than give up.
        return Err(SessionEnd::Lost(io::Error::other(
            "every service was refused and a port is in use; retrying",
        )));
    }
    if registered == 0 {
        return Err(SessionEnd::Fatal(ClientError::Fatal(
            "the server refused every service".into(),
        )));
    }
    Ok(())
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
            Frame::OpenData { count } => links.open(usize::from(count)),
            Frame::Goodbye => {
                return SessionEnd::Lost(io::Error::other("the server is shutting down"));
            }
            other => {
                debug!("control link: {other:?}");
                return match handshake_error(unexpected(other)) {
                    SessionEnd::Fatal(e) => SessionEnd::Fatal(e),
                    end => end,
                };
            }
        }
    }
}
