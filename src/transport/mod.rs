//! The byte-stream transports that control and data links run over.
//!
//! Accepting is kept apart from the handshake: [`accept`] is cheap and
//! cancel-safe (it only takes a ready TCP connection from the kernel), so the
//! accept loop never waits on a peer; [`Transport::handshake`] may be slow (a TLS
//! handshake) and runs in the connection's own task under a deadline.
//! [`Transport::raw_socket`] tells the relay whether a stream is a plain TCP socket
//! that the kernel can splice.

mod tcp;
pub mod tls;

pub use tcp::TcpTransport;
pub use tls::TlsTransport;

use futures_lite::{AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;

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

    /// The plain socket beneath, when the stream adds nothing on top of TCP.
    fn raw_socket(stream: &Self::Stream) -> Option<&TcpStream>;

    /// Whether an idle link is known to be unusable: the peer closed or reset
    /// it, or sent bytes nobody asked for. Cheap and non-blocking; called before
    /// an idle data link is given to a visitor.
    fn is_dead(stream: &Self::Stream) -> bool;

    /// A short name for logs (`tcp`, `tls`).
    fn name(&self) -> &'static str;
}

/// Takes one connection from `listener`. Cheap and cancel-safe: dropping the
/// future loses no connection.
pub async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    // Control frames and interactive traffic must not wait for Nagle.
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}
