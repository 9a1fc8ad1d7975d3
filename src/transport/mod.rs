//! The byte-stream transports that control and data links run over.
//!
//! Accepting is kept apart from the handshake: [`accept`] is cheap and
//! cancel-safe (it only takes a ready TCP connection from the kernel), so the
//! accept loop never waits on a peer; [`Transport::handshake`] may be slow (a TLS
//! handshake) and runs in the connection's own task under a deadline.
//! [`Transport::as_raw`] gives the relay the plain TCP socket of a stream that
//! the kernel can splice; [`Transport::rehome`] moves a link between threads.

mod tcp;
pub mod tls;

pub use tcp::TcpTransport;
pub(crate) use tcp::socket_is_quiet;
pub use tls::{TlsFailure, TlsTransport, is_permanent_tls};

use crate::runtime::{TcpListener, TcpStream};
use futures_lite::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A way of turning TCP connections into authenticated-transport streams.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The stream type control and data links use.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Client side: dials `addr` (`host:port`, resolved now) and completes the
    /// transport handshake.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Server side: upgrades an accepted connection. Slow; call it off the accept
    /// loop and under a deadline.
    fn handshake(&self, conn: TcpStream) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The plain socket itself, when the stream adds nothing on top of TCP (so
    /// the relay can splice it); `None` otherwise.
    fn as_raw(stream: &Self::Stream) -> Option<&TcpStream>;

    /// Moves a link's socket onto the calling worker's poller (a no-op when it
    /// is there already; an error off the workers; see [`crate::runtime`]).
    fn rehome(stream: &mut Self::Stream) -> io::Result<()>;

    /// Whether an idle link is known to be unusable: the peer closed or reset
    /// it, or sent bytes nobody asked for. Cheap and non-blocking; called before
    /// an idle data link is given to a visitor.
    fn is_dead(stream: &Self::Stream) -> bool;

    /// A short name for logs (`tcp`, `tls`).
    fn name(&self) -> &'static str;
}

/// Takes one connection from `listener`, registered where the caller runs.
/// Cheap and cancel-safe: dropping the future loses no connection.
pub async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = accept_std(listener).await?;
    Ok((TcpStream::from_std(stream)?, peer))
}

/// Takes one connection from `listener`, not yet registered anywhere, so the
/// caller can choose the thread that will own it.
pub async fn accept_std(listener: &TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept_std().await?;
    // Control frames and interactive traffic must not wait for Nagle.
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}

/// A link that moves itself (see [`Transport::rehome`]) to the thread that
/// first does I/O on it: for a task that is handed a link built elsewhere, such
/// as a mux driver spawned on a worker for a link handshaken on the control
/// plane.
pub struct Homed<T: Transport> {
    stream: T::Stream,
    homed: bool,
}

impl<T: Transport> Homed<T> {
    pub fn new(stream: T::Stream) -> Self {
        Homed {
            stream,
            homed: false,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut T::Stream>> {
        if !self.homed {
            T::rehome(&mut self.stream)?;
            self.homed = true;
        }
        Ok(Pin::new(&mut self.stream))
    }
}

impl<T: Transport> AsyncRead for Homed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: Transport> AsyncWrite for Homed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_close(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
