//! Plain TCP: the handshake is a no-op and every stream is a raw socket.

use smol::net::TcpStream;
use std::io;

use super::Transport;

/// Plain TCP transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    type Stream = TcpStream;

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn handshake(&self, conn: TcpStream) -> io::Result<TcpStream> {
        Ok(conn)
    }

    fn raw_socket(stream: &TcpStream) -> Option<&TcpStream> {
        Some(stream)
    }

    fn name(&self) -> &'static str {
        "tcp"
    }
}
