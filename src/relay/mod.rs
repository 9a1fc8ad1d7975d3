//! Joins two byte streams in both directions.
//!
//! Semantics every engine keeps: bytes flow both ways independently; EOF on one
//! side becomes a write shutdown (FIN) on the other while the opposite direction
//! keeps flowing until it ends too; an error in either direction ends the relay
//! and drops (closes) both streams. The byte count of each direction is returned.
//!
//! Aborts travel as aborts: when a relay does not end cleanly — an error or a
//! reset on either side, a data link lost before its `End`, a mux stream reset,
//! a timeout, or the relay's future dropped (its session ended) — every raw TCP
//! socket it relays is set to close with a reset (RST, see
//! [`crate::runtime::AbortGuard`]), never a FIN, so the visitor or the local
//! service cannot take a cut transfer for a complete one. A FIN goes out only
//! for an EOF that really came from the other end. The clean path makes no
//! extra system call.
//!
//! Two engines: [`splice`] moves bytes between raw TCP sockets inside the kernel
//! (through a pooled [`pipe`]); [`copy`] is a userspace copy with 64 KiB buffers (4 KiB until bulk flows)
//! for anything else (TLS, mux streams). [`relay_tcp`] picks splice for raw
//! sockets; [`relay`] copies.
//!
//! A pooled data link is relayed by [`relay_chunked`] instead: its side of the
//! relay is framed in chunks (`protocol::chunk`) so that each direction ends at
//! an exact byte with an `End` chunk rather than a FIN, and the link can carry
//! the next visitor. It splices when the link is raw TCP ([`chunked`]) and copies
//! otherwise ([`chunked_copy`]).
//!
//! A UDP flow's link carries datagram records instead ([`datagrams`]): the
//! server and client each poll it next to their UDP socket.

mod chunked;
mod chunked_copy;
mod copy;
pub mod datagrams;
pub mod pipe;
mod splice;

pub use copy::{COPY_BUF_LEN, COPY_START_LEN};

use futures_lite::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;

pub use crate::metrics::Meter;
use crate::protocol::chunk::{Chunk, Decoder, HEADER_LEN, Role};
use crate::runtime::{AbortGuard, TcpStream};
use crate::transport::Transport;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes moved by a finished relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// From the first stream to the second.
    pub a_to_b: u64,
    /// From the second stream to the first.
    pub b_to_a: u64,
}

/// Which engine moves the bytes between two raw sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Kernel-side `splice(2)` through a pipe (the default).
    #[default]
    Splice,
    /// Userspace copy (for comparison and as a fallback).
    Copy,
}

/// Relays between any two streams with the copy engine.
pub async fn relay<A, B>(a: A, b: B) -> io::Result<Moved>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    copy::relay(a, b, Meter::NONE).await
}

/// Relays between a raw TCP socket (the visitor, or the local service) and any
/// stream (a mux stream) with the copy engine; the socket closes with a reset
/// unless the relay ends cleanly (see the module docs). `Moved::a_to_b` counts
/// socket → stream.
pub async fn relay_socket<S>(socket: &TcpStream, stream: S, meter: Meter<'_>) -> io::Result<Moved>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let aborting = socket.abort_guard();
    let moved = copy::relay(socket, stream, meter).await?;
    aborting.disarm();
    Ok(moved)
}

/// A chunked relay that ended cleanly: what it moved, and the link's decoder,
/// which has read the peer's `End` (and, at the server, maybe its `Idle`).
#[derive(Debug)]
pub struct Finished {
    /// `a_to_b`: socket to link; `b_to_a`: link to socket.
    pub moved: Moved,
    pub decoder: Decoder,
    /// `Idle` went out right behind our `End` (see [`relay_chunked`]).
    pub idle_sent: bool,
}

/// Asked when a client's direction ends: whether it keeps the link (and so may
/// send `Idle` at once).
pub type KeepLink<'a> = &'a (dyn Fn() -> bool + Sync);

/// What the two directions of a chunked relay tell each other.
struct Ends<'a> {
    /// Our `End` is sent.
    sent: AtomicBool,
    /// The peer's `End` is read.
    read: AtomicBool,
    /// May send `Idle` right behind our `End` (a client keeping the link).
    offer_idle: Option<KeepLink<'a>>,
    idle_sent: AtomicBool,
    /// The client's `Accept` waits corked in the link's socket until then
    /// (see [`Accepted::Corked`]) unless the first chunk takes it along.
    uncork_at: Option<std::time::Instant>,
    /// Where both directions count their payload bytes as they move.
    meter: Meter<'a>,
}

impl<'a> Ends<'a> {
    fn new(
        offer_idle: Option<KeepLink<'a>>,
        uncork_at: Option<std::time::Instant>,
        meter: Meter<'a>,
    ) -> Self {
        Ends {
            uncork_at,
            meter,
            sent: AtomicBool::new(false),
            read: AtomicBool::new(false),
            offer_idle,
            idle_sent: AtomicBool::new(false),
        }
    }

    /// What ends our direction: `End`, with `Idle` in the same write when the
    /// peer's `End` came first and `Idle` may be offered (the usual order for
    /// a client: the visitor stops, then the service) — the server then finds
    /// the link idle without waiting for another packet.
    fn closing(&self) -> ([u8; 2 * HEADER_LEN], usize) {
        let mut bytes = [0; 2 * HEADER_LEN];
        bytes[..HEADER_LEN].copy_from_slice(&Chunk::End.encode());
        let keep = || self.offer_idle.is_some_and(|keep| keep());
        if self.read.load(Ordering::Acquire) && keep() {
            bytes[HEADER_LEN..].copy_from_slice(&Chunk::Idle.encode());
            self.idle_sent.store(true, Ordering::Release);
            return (bytes, 2 * HEADER_LEN);
        }
        (bytes, HEADER_LEN)
    }

    /// Our `End` is out.
    fn sent_end(&self) {
        self.sent.store(true, Ordering::Release);
    }

    /// The peer's `End` arrived: whether to shut our socket's write side now.
    /// Not when our own direction is over too: the socket is about to be
    /// closed, and the caller closes it once the link is settled.
    fn read_end(&self) -> bool {
        self.read.store(true, Ordering::Release);
        !self.sent.load(Ordering::Acquire)
    }
}

/// How the client's `Accept` of this visitor left (PROTOCOL.md section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Already on the wire (or the server's side of the relay).
    Sent,
    /// Written with `MSG_MORE` on a raw link ([`send_corked`]) at this
    /// instant: it leaves with the first chunk toward the server — usually the
    /// service's first answer — in one segment, so the server wakes once for
    /// both; [`UNCORK_AFTER`] after this instant with no chunk (a silent
    /// service, a slow local connect) it is pushed alone when the relay starts.
    Corked(std::time::Instant),
}

/// How long a corked `Accept` waits for the service's first bytes.
pub const UNCORK_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// Writes `bytes` (a few, to an idle link whose send buffer is empty) with
/// `MSG_MORE`, so they wait for the next write; `false` when the socket did
/// not take them all at once (the caller then writes them normally).
pub fn send_corked(link: &TcpStream, bytes: &[u8]) -> bool {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_DONTWAIT;
    matches!(send(link.get_ref().as_raw_fd(), bytes, flags), Ok(n) if n == bytes.len())
}

/// Relays between a TCP socket (the visitor, or the local service) and a pooled
/// data link until both directions ended with `End` chunks or one failed. The
/// link is borrowed: after a clean end it is ready for the `Idle` exchange and
/// the next visitor; after an error the caller must close it. Splices when the
/// link is a raw socket, copies otherwise.
///
/// A client passes `offer_idle`, asked when its direction ends after the
/// server's: if it says the link is kept, `End` and `Idle` leave in one write
/// ([`Finished::idle_sent`]) and the client must then keep the link.
///
/// Unless the relay ends cleanly, `socket` closes with a reset: a link that
/// ends before the peer's `End` (the other side's process died, the path
/// broke, the peer's socket failed) is an abort, and the socket passes it on.
pub async fn relay_chunked<T: Transport>(
    socket: &TcpStream,
    link: &mut T::Stream,
    role: Role,
    offer_idle: Option<KeepLink<'_>>,
    accepted: Accepted,
    meter: Meter<'_>,
) -> io::Result<Finished> {
    let uncork_at = match accepted {
        Accepted::Corked(at) if T::as_raw(link).is_some() => Some(at + UNCORK_AFTER),
        _ => None,
    };
    let ends = Ends::new(
        offer_idle.filter(|_| role == Role::Client),
        uncork_at,
        meter,
    );
    let aborting = socket.abort_guard();
    let (moved, decoder) = match T::as_raw(link) {
        Some(raw) => chunked::relay(socket, raw, role, &ends).await?,
        None => chunked_copy::relay(socket, link, role, &ends).await?,
    };
    aborting.disarm();
    Ok(Finished {
        moved,
        decoder,
        idle_sent: ends.idle_sent.load(Ordering::Acquire),
    })
}

/// Reads from an idle-to-be link until the decoder has seen the client's `Idle`
/// (server side, after [`relay_chunked`]); only header bytes are read, so
/// nothing past `Idle` is consumed.
pub async fn read_idle<R: AsyncRead + Unpin>(
    link: &mut R,
    decoder: &mut Decoder,
) -> io::Result<()> {
    while !decoder.idle() {
        chunked::read_header(&mut *link, decoder).await?;
    }
    Ok(())
}

/// Relays between two raw TCP sockets with the default engine (splice). Both
/// close with a reset unless the relay ends cleanly (see the module docs).
pub fn relay_tcp(
    a: TcpStream,
    b: TcpStream,
    meter: Meter<'_>,
) -> impl Future<Output = io::Result<Moved>> + Send + '_ {
    relay_tcp_with(Engine::default(), a, b, meter)
}

/// Relays between two raw TCP sockets with the given engine.
pub fn relay_tcp_with(
    engine: Engine,
    a: TcpStream,
    b: TcpStream,
    meter: Meter<'_>,
) -> impl Future<Output = io::Result<Moved>> + Send + '_ {
    run(
        match engine {
            Engine::Splice => Plan::Splice(a, b),
            Engine::Copy => Plan::Copy(Box::pin(copy_tcp(a, b, meter))),
        },
        meter,
    )
}

async fn copy_tcp(a: TcpStream, b: TcpStream, meter: Meter<'_>) -> io::Result<Moved> {
    let aborting = (a.abort_guard(), b.abort_guard());
    let moved = copy::relay(&a, &b, meter).await?;
    disarm(aborting);
    Ok(moved)
}

/// A relay with its engine chosen. Deciding before the future is built keeps
/// the future (what an idle tunneled connection costs) small: the copy
/// engine's larger state lives in its own box.
enum Plan<'a> {
    Splice(TcpStream, TcpStream),
    Copy(std::pin::Pin<Box<dyn Future<Output = io::Result<Moved>> + Send + 'a>>),
}

async fn run(plan: Plan<'_>, meter: Meter<'_>) -> io::Result<Moved> {
    match plan {
        Plan::Splice(a, b) => {
            let aborting = (a.abort_guard(), b.abort_guard());
            let moved = splice::relay(&a, &b, meter).await?;
            disarm(aborting);
            Ok(moved)
        }
        Plan::Copy(copy) => copy.await,
    }
}

/// Both sockets of a clean relay close with a FIN.
fn disarm((a, b): (AbortGuard<'_>, AbortGuard<'_>)) {
    a.disarm();
    b.disarm();
}

/// Moves a relay direction makes before it lets the other tasks of its worker
/// run. A relay between two fast sockets never sees `EAGAIN`, and without a
/// turn it would keep its worker (and the visitors the kernel keeps handing to
/// that worker's listener) waiting for the whole transfer. 16 moves are up to
/// 16 MiB spliced or 1 MiB copied per turn.
const MOVES_PER_TURN: u32 = 16;

/// Counts a direction's moves and yields to the worker's queue every
/// [`MOVES_PER_TURN`].
#[derive(Default)]
struct Turn(u32);

impl Turn {
    async fn take(&mut self) {
        self.0 += 1;
        if self.0 > MOVES_PER_TURN {
            self.0 = 0;
            futures_lite::future::yield_now().await;
        }
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Shutting down a socket the peer already reset is not an error worth ending
/// the other direction for.
fn ignore_not_connected(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(e)
    }
}
