//! Everything that happens on a new connection before it is trusted: the
//! transport handshake, `Hello`, the challenge and the proof. Every read here has
//! the handshake deadline and the frame cap, so a silent or garbage-spewing peer
//! costs one task for at most `handshake_timeout` and nothing else.

use crate::runtime::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

use super::Shared;
use super::admission::Ticket;
use super::session::Session;
use crate::auth;
use crate::protocol::{ErrorCode, Frame, LinkHello, Mac, Nonce, SessionId, VERSION};
use crate::transport::Transport;
use crate::wire::{read_frame, with_timeout, write_frame};

/// Handles one accepted connection to the end (for a control link, to the end of
/// its session). Errors are logged here, folded per cause (anyone can cause
/// them): a bad peer only loses its own link and a few log lines at most.
pub(super) async fn serve_connection<T: Transport>(
    shared: Arc<Shared<T>>,
    conn: std::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let accepted = Instant::now();
    let shed = ticket.shed();
    // Registered here: on a worker for a data link (see `peek_data_hello`),
    // on the control plane otherwise.
    let run = async {
        match TcpStream::from_std(conn) {
            Ok(conn) => handshake(&shared, conn, ticket, peer, accepted).await,
            Err(e) => Err(e),
        }
    };
    // Shedding ends only the pending part: the ticket is gone once a control
    // link became a session, and then `shed` never completes.
    let shed = async {
        shed.wait().await;
        Err(io::Error::new(io::ErrorKind::ConnectionAborted, "shed"))
    };
    let Err(e) = futures_lite::future::or(run, shed).await else {
        return;
    };
    let cause = match e.kind() {
        // Counted where it was shed, and a clean close is no news.
        io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
            return debug!("connection from {peer} closed: {e}");
        }
        io::ErrorKind::PermissionDenied => "authentication failed",
        io::ErrorKind::TimedOut => "handshake timed out",
        io::ErrorKind::NotFound => "data link for an unknown session",
        _ => "handshake refused",
    };
    if shared.connection_log.note(cause, peer.ip()) {
        warn!("connection from {peer} refused: {e}");
    }
}

async fn handshake<T: Transport>(
    shared: &Arc<Shared<T>>,
    conn: TcpStream,
    ticket: Ticket,
    peer: SocketAddr,
    accepted: Instant,
) -> io::Result<()> {
    // One deadline for the whole pre-auth exchange, not one per step: a peer
    // that dribbles one frame per almost-timeout still goes at
    // `handshake_timeout`. The hello (after the TLS handshake, if any) is due
    // sooner: a client sends it at once, and a connection that is silent or
    // trickles its first bytes is what a flood is made of.
    let settings = &shared.settings;
    let deadline = accepted + settings.handshake_timeout;
    let hello_deadline = deadline.min(accepted + settings.hello_timeout);
    let mut link = with_timeout(
        left(hello_deadline),
        "transport handshake",
        shared.transport.handshake(conn),
    )
    .await?;
    let hello = with_timeout(
        left(hello_deadline),
        "waiting for hello",
        read_frame(&mut link),
    )
    .await;
    let hello = match hello {
        Ok(frame) => frame,
        Err(e) => return refuse(&mut link, ErrorCode::ProtocolViolation, e).await,
    };
    let (version, kind) = match hello {
        Frame::Hello { version, link } => (version, link),
        other => {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected hello, got {other:?}"),
            );
            return refuse(&mut link, ErrorCode::ProtocolViolation, e).await;
        }
    };
    if version != VERSION {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("client speaks protocol version {version}; this server speaks {VERSION}"),
        );
        return refuse(&mut link, ErrorCode::UnsupportedVersion, e).await;
    }
    let server_nonce: Nonce = auth::random()?;
    with_timeout(
        left(deadline),
        "sending challenge",
        write_frame(
            &mut link,
            &Frame::Challenge {
                nonce: server_nonce,
            },
        ),
    )
    .await?;
    let mac = match with_timeout(
        left(deadline),
        "waiting for auth response",
        read_frame(&mut link),
    )
    .await
    {
        Ok(Frame::AuthResponse { mac }) => mac,
        Ok(other) => {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected auth response, got {other:?}"),
            );
            return refuse(&mut link, ErrorCode::ProtocolViolation, e).await;
        }
        Err(e) => return refuse(&mut link, ErrorCode::ProtocolViolation, e).await,
    };
    match kind {
        LinkHello::Control { client_id, nonce } => {
            let proofs = Proofs {
                client_nonce: nonce,
                server_nonce,
                mac,
            };
            control(shared, link, peer, client_id, proofs, ticket).await
        }
        LinkHello::Data { session_id } => {
            let proof = (server_nonce, mac);
            data(shared, link, peer, session_id, proof, false).await
        }
        LinkHello::Mux { session_id } => {
            let proof = (server_nonce, mac);
            data(shared, link, peer, session_id, proof, true).await
        }
    }
}

struct Proofs {
    client_nonce: Nonce,
    server_nonce: Nonce,
    mac: Mac,
}

async fn control<T: Transport>(
    shared: &Arc<Shared<T>>,
    mut link: T::Stream,
    peer: SocketAddr,
    client_id: [u8; 16],
    p: Proofs,
    ticket: Ticket,
) -> io::Result<()> {
    if let Some(key) = &shared.key {
        if !key.verify_client(&p.client_nonce, &p.server_nonce, &p.mac) {
            let e = io::Error::new(
                io::ErrorKind::PermissionDenied,
                "authentication failed: the client's token does not match the server's",
            );
            return refuse(&mut link, ErrorCode::AuthFailed, e).await;
        }
    }
    if shared.registry.session_count() >= super::MAX_SESSIONS {
        let e = io::Error::other("the server is at its session limit; try again later");
        return refuse(&mut link, ErrorCode::Internal, e).await;
    }
    let session_id: SessionId = auth::random()?;
    let mac = match &shared.key {
        Some(key) => key.server_proof(&p.client_nonce, &p.server_nonce, &session_id),
        None => [0; 32],
    };
    let ok = Frame::AuthOk {
        session_id,
        authenticated: shared.key.is_some(),
        mac,
        heartbeat_interval_ms: u32::try_from(shared.settings.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
    };
    with_timeout(
        shared.settings.handshake_timeout,
        "sending auth ok",
        write_frame(&mut link, &ok),
    )
    .await?;
    info!(
        "client {peer} authenticated (session {})",
        crate::wire::short_id(&session_id)
    );
    // From here on the connection is a session, not a pending handshake.
    drop(ticket);
    Session::run(shared.clone(), link, peer, session_id, client_id).await;
    Ok(())
}

async fn data<T: Transport>(
    shared: &Arc<Shared<T>>,
    mut link: T::Stream,
    peer: SocketAddr,
    session_id: SessionId,
    (server_nonce, mac): (Nonce, Mac),
    muxed: bool,
) -> io::Result<()> {
    if let Some(key) = &shared.key {
        if !key.verify_data(&session_id, &server_nonce, &mac) {
            let e = io::Error::new(
                io::ErrorKind::PermissionDenied,
                "data link authentication failed",
            );
            return refuse(&mut link, ErrorCode::AuthFailed, e).await;
        }
    }
    let Some(session) = shared.registry.session(&session_id) else {
        let e = io::Error::new(
            io::ErrorKind::NotFound,
            "data link names an unknown or ended session",
        );
        return refuse(&mut link, ErrorCode::UnknownSession, e).await;
    };
    debug!(
        "{} link from {peer} joined session {}",
        if muxed { "mux" } else { "data" },
        crate::wire::short_id(&session_id)
    );
    if muxed {
        session.add_mux(link);
    } else {
        session.add_link(crate::runtime::this_or_next_worker(), link);
    }
    Ok(())
}

/// The session an accepted connection's first bytes name, when they are
/// already a whole plain-TCP data-link (or mux-link) hello. One non-blocking
/// peek; nothing is consumed, and a control link, a TLS client or bytes not
/// yet arrived all give `None`.
pub(super) fn peek_data_hello(conn: &std::net::TcpStream) -> Option<SessionId> {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 64];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    let n = recv(conn.as_raw_fd(), &mut buf, flags).ok()?;
    match crate::protocol::decode(&buf[..n]) {
        Ok(Some((
            Frame::Hello {
                link: LinkHello::Data { session_id } | LinkHello::Mux { session_id },
                ..
            },
            _,
        ))) => Some(session_id),
        _ => None,
    }
}

/// Time left until `deadline` (zero once it passed).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Tells the peer why it is refused (best effort, bounded) and returns the cause.
async fn refuse<S>(link: &mut S, code: ErrorCode, cause: io::Error) -> io::Result<()>
where
    S: futures_lite::AsyncWrite + Unpin,
{
    let frame = Frame::Error {
        code,
        message: crate::protocol::clamp_message(&cause.to_string()),
    };
    // The peer may be gone or not reading; never let that hold the task.
    let _ = with_timeout(
        std::time::Duration::from_secs(1),
        "sending error",
        write_frame(link, &frame),
    )
    .await;
    Err(cause)
}
