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
use super::credentials::{Credential, ServerKeys, who};
use super::metrics::{Handshake, Reason};
use super::session::Session;
use crate::auth;
use crate::handshake::drive::{receive, send};
use crate::handshake::{ControlProof, HandshakeError, Proven, ServerHandshake, ServerStep};
use crate::protocol::{Frame, LinkHello, SessionId};
use crate::transport::Transport;
use crate::wire::with_deadline;

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
        let conn = TcpStream::from_std(conn).map_err(HandshakeError::Io)?;
        handshake(&shared, conn, ticket, peer, accepted).await
    };
    // Shedding ends only the pending part: the ticket is gone once a control
    // link became a session, and then `shed` never completes. It is counted
    // where it was shed.
    let shed = async {
        shed.wait().await;
        Ok(())
    };
    let Err(e) = futures_lite::future::or(run, shed).await else {
        return;
    };
    shared.counters.handshake(Handshake::of(&e));
    // A link its client closed or reset (a client exiting drops its idle
    // and half-dialled links) is no news: the server refused nothing.
    if hung_up(&e) {
        return debug!("connection from {peer} closed by its client: {e}");
    }
    if shared.connection_log.note(e.cause(), peer.ip()) {
        warn!("connection from {peer} refused: {e}");
    }
}

/// Whether the peer just went away: EOF, a reset or a broken pipe.
fn hung_up(e: &HandshakeError) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    match e {
        HandshakeError::Closed => true,
        HandshakeError::Io(e) | HandshakeError::Transport(e) => {
            matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
        }
        _ => false,
    }
}

async fn handshake<T: Transport>(
    shared: &Arc<Shared<T>>,
    conn: TcpStream,
    ticket: Ticket,
    peer: SocketAddr,
    accepted: Instant,
) -> Result<(), HandshakeError> {
    // One deadline for the whole pre-auth exchange, not one per step: a peer
    // that dribbles one frame per almost-timeout still goes at
    // `handshake_timeout`. The hello (after the TLS handshake, if any) is due
    // sooner: a client sends it at once, and a connection that is silent or
    // trickles its first bytes is what a flood is made of.
    let settings = Arc::clone(&shared.settings());
    let deadline = accepted + settings.handshake_timeout;
    let hello_deadline = deadline.min(accepted + settings.hello_timeout);
    let mut link = secure(shared, conn, hello_deadline).await?;
    // Keys from this one snapshot of the settings, so the key a control
    // link proves and the credential its session keeps agree.
    let keys = ServerKeys {
        settings: &settings,
        registry: &shared.registry,
    };
    let mut joins = None;
    let deadlines = (hello_deadline, deadline);
    match prove(&mut link, &keys, deadlines, &mut joins).await {
        Ok(Proven::Control(proof)) => {
            let credential = Credential::of(&proof, &settings);
            control(shared, link, peer, *proof, credential, ticket).await
        }
        Ok(Proven::Data { session, muxed }) => data(shared, link, peer, session, muxed).await,
        Err(HandshakeError::UnknownSession) => match joins {
            Some(session) => unknown_session(shared, link, peer, session).await,
            None => refuse(&mut link, HandshakeError::UnknownSession).await,
        },
        Err(e) => refuse(&mut link, e).await,
    }
}

/// Runs the machine over `link` until it proves the link, the hello due by
/// the first deadline, the rest by the second. `joins` is set to the
/// session a data link's hello names.
async fn prove<S>(
    link: &mut S,
    keys: &dyn crate::handshake::Keyring,
    (hello_deadline, deadline): (Instant, Instant),
    joins: &mut Option<SessionId>,
) -> Result<Proven, HandshakeError>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let nonce = auth::random().map_err(HandshakeError::Io)?;
    let mut machine = ServerHandshake::new(keys, nonce);
    let hello = receive(link);
    let mut frame = with_deadline(left(hello_deadline), "waiting for hello", hello).await?;
    if let Frame::Hello {
        link: LinkHello::Data { session_id } | LinkHello::Mux { session_id },
        ..
    } = &frame
    {
        *joins = Some(*session_id);
    }
    // Bounded by the machine: it refuses anything after its outcome.
    loop {
        match machine.on_frame(frame)? {
            ServerStep::Send(challenge) => {
                let sent = send(link, &challenge);
                with_deadline(left(deadline), "sending challenge", sent).await?;
                let proof = receive(link);
                frame = with_deadline(left(deadline), "waiting for auth response", proof).await?;
            }
            ServerStep::Proven(proven) => return Ok(proven),
        }
    }
}

/// The transport's own handshake (TLS), due by `deadline`.
async fn secure<T: Transport>(
    shared: &Shared<T>,
    conn: TcpStream,
    deadline: Instant,
) -> Result<T::Stream, HandshakeError> {
    let tls = shared.transport.handshake(conn);
    with_deadline(left(deadline), "transport handshake", tls)
        .await
        .map_err(|e: io::Error| match e.kind() {
            io::ErrorKind::TimedOut => HandshakeError::Timeout(e),
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
            _ => HandshakeError::Transport(e),
        })
}

async fn control<T: Transport>(
    shared: &Arc<Shared<T>>,
    mut link: T::Stream,
    peer: SocketAddr,
    proof: ControlProof,
    credential: Credential,
    ticket: Ticket,
) -> Result<(), HandshakeError> {
    if shared.registry.session_count() >= super::MAX_SESSIONS {
        shared.counters.refused(Reason::SessionLimit);
        return refuse(&mut link, HandshakeError::SessionLimit).await;
    }
    let session_id: SessionId = auth::random().map_err(HandshakeError::Io)?;
    shared.counters.handshake(Handshake::Ok);
    let ok = proof.accept(session_id, shared.settings().heartbeat_interval);
    let named = match &proof.id {
        Some(id) => format!("{id} ({peer})"),
        None => peer.to_string(),
    };
    info!(
        "client {named} authenticated (session {})",
        crate::wire::short_id(&session_id)
    );
    // From here on the connection is a session, not a pending handshake. The
    // session sends the `AuthOk` once it is registered: a data link the
    // client dials the moment it reads it must find the session.
    drop(ticket);
    let client_id = proof.client_id;
    Session::run(
        shared.clone(),
        link,
        peer,
        session_id,
        client_id,
        credential,
        ok,
    )
    .await;
    Ok(())
}

async fn data<T: Transport>(
    shared: &Arc<Shared<T>>,
    link: T::Stream,
    peer: SocketAddr,
    session_id: SessionId,
    muxed: bool,
) -> Result<(), HandshakeError> {
    // It may have ended since its key was looked up.
    let Some(session) = shared.registry.session(&session_id) else {
        return unknown_session(shared, link, peer, session_id).await;
    };
    shared.counters.handshake(Handshake::Ok);
    debug!(
        "{} link from client {} joined session {}",
        if muxed { "mux" } else { "data" },
        who(&session),
        crate::wire::short_id(&session_id)
    );
    if muxed {
        session.add_mux(link);
    } else {
        session.add_link(crate::runtime::this_or_next_worker(), link);
    }
    Ok(())
}

/// Refuses a data link of a session the server does not have.
async fn unknown_session<S>(
    shared: &Shared<impl Transport>,
    mut link: S,
    peer: SocketAddr,
    session_id: SessionId,
) -> Result<(), HandshakeError>
where
    S: futures_lite::AsyncWrite + Unpin,
{
    let refused = refuse(&mut link, HandshakeError::UnknownSession).await;
    shared.counters.refused(Reason::UnknownSession);
    if shared.registry.recently_ended(&session_id) {
        // Its client dialled it just before the session ended: no news.
        shared.counters.handshake(Handshake::Refused);
        debug!("data link from {peer} came after its session ended");
        return Ok(());
    }
    refused
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
async fn refuse<S>(link: &mut S, cause: HandshakeError) -> Result<(), HandshakeError>
where
    S: futures_lite::AsyncWrite + Unpin,
{
    // Best effort: a peer that is not reading may not hold the task.
    let frame = cause.to_frame();
    let _ = with_deadline(Duration::from_secs(1), "sending error", send(link, &frame)).await;
    Err(cause)
}
