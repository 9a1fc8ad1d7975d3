//! Joins two byte streams in both directions.
//!
//! Semantics every engine keeps: bytes flow both ways independently; EOF on one
//! side becomes a write shutdown (FIN) on the other while the opposite direction
//! keeps flowing until it ends too; an error in either direction ends the relay
//! and drops (closes) both streams. The byte count of each direction is returned.
//!
//! Two engines: [`splice`] moves bytes between raw TCP sockets inside the kernel
//! (through a pooled [`pipe`]); [`copy`] is a userspace copy with 64 KiB buffers
//! for anything else (TLS, mux streams). [`relay_tcp`] picks splice for raw
//! sockets; [`relay`] copies.

mod copy;
pub mod pipe;
mod splice;

pub use copy::COPY_BUF_LEN;

use futures_lite::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use std::io;

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
pub async fn relay_link<T: Transport>(socket: TcpStream, link: T::Stream) -> io::Result<Moved> {
    match T::raw_socket(&link) {
        Some(raw) => {
            let raw = raw.clone();
            // `raw` shares the socket; the original handle closes it when dropped.
            let moved = relay_tcp(socket, raw).await;
            drop(link);
            moved
        }
        None => relay(socket, link).await,
    }
}

/// Relays between two raw TCP sockets with the default engine (splice).
pub async fn relay_tcp(a: TcpStream, b: TcpStream) -> io::Result<Moved> {
    relay_tcp_with(Engine::default(), a, b).await
}

/// Relays between two raw TCP sockets with the given engine.
pub async fn relay_tcp_with(engine: Engine, a: TcpStream, b: TcpStream) -> io::Result<Moved> {
    match engine {
        Engine::Splice => splice::relay(a.into(), b.into()).await,
        Engine::Copy => copy::relay(a, b).await,
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
