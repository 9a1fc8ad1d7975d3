//! Joins two byte streams in both directions.
//!
//! Semantics every engine keeps: bytes flow both ways independently; EOF on one
//! side becomes a write shutdown (FIN) on the other while the opposite direction
//! keeps flowing until it ends too; an error in either direction ends the relay
//! and drops (closes) both streams. The byte count of each direction is returned.
//!
//! Two engines: [`splice`] moves bytes between raw TCP sockets inside the kernel
//! (through a pooled [`pipe`]); [`copy`] is a userspace copy with 64 KiB buffers (4 KiB until bulk flows)
//! for anything else (TLS, mux streams). [`relay_tcp`] picks splice for raw
//! sockets; [`relay`] copies.

mod copy;
pub mod pipe;
mod splice;

pub use copy::{COPY_BUF_LEN, COPY_START_LEN};

use futures_lite::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;

use crate::runtime::TcpStream;
use crate::transport::Transport;

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
    copy::relay(a, b).await
}

/// Relays between a TCP socket and a transport stream: splice when the stream is
/// a raw socket too, copy otherwise. The one entry point the tunnel uses.
pub fn relay_link<T: Transport>(
    socket: TcpStream,
    link: T::Stream,
) -> impl Future<Output = io::Result<Moved>> + Send + 'static {
    run(match T::into_raw(link) {
        Ok(raw) => Plan::Splice(socket, raw),
        Err(link) => Plan::Copy(Box::pin(copy::relay(socket, link))),
    })
}

/// Relays between two raw TCP sockets with the default engine (splice).
pub fn relay_tcp(
    a: TcpStream,
    b: TcpStream,
) -> impl Future<Output = io::Result<Moved>> + Send + 'static {
    relay_tcp_with(Engine::default(), a, b)
}

/// Relays between two raw TCP sockets with the given engine.
pub fn relay_tcp_with(
    engine: Engine,
    a: TcpStream,
    b: TcpStream,
) -> impl Future<Output = io::Result<Moved>> + Send + 'static {
    run(match engine {
        Engine::Splice => Plan::Splice(a, b),
        Engine::Copy => Plan::Copy(Box::pin(copy::relay(a, b))),
    })
}

/// A relay with its engine chosen. Deciding before the future is built keeps
/// the future (what an idle tunneled connection costs) small: the copy
/// engine's larger state lives in its own box.
enum Plan {
    Splice(TcpStream, TcpStream),
    Copy(futures_lite::future::Boxed<io::Result<Moved>>),
}

async fn run(plan: Plan) -> io::Result<Moved> {
    match plan {
        Plan::Splice(a, b) => splice::relay(&a, &b).await,
        Plan::Copy(copy) => copy.await,
    }
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

/// Shutting down a socket the peer already reset is not an error worth ending
/// the other direction for.
fn ignore_not_connected(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(e)
    }
}
