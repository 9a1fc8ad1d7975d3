//! Plain TCP: the handshake is a no-op and every stream is a raw socket.

use crate::runtime::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, setsockopt, sockopt};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::Transport;

/// Plain TCP transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    type Stream = TcpStream;

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        keepalive(&stream)?;
        Ok(stream)
    }

    async fn handshake(&self, conn: TcpStream) -> io::Result<TcpStream> {
        keepalive(&conn)?;
        Ok(conn)
    }

    fn as_raw(stream: &TcpStream) -> Option<&TcpStream> {
        Some(stream)
    }

    fn rehome(stream: &mut TcpStream) -> io::Result<()> {
        stream.rehome()
    }

    fn is_dead(stream: &TcpStream) -> bool {
        socket_is_dead(stream)
    }

    fn name(&self) -> &'static str {
        "tcp"
    }
}

/// TCP keepalive on every link: idle data links wait at the server for minutes,
/// and a NAT or firewall on the way may silently forget them. Probes keep the
/// mapping alive and turn a dead path into a socket error within about
/// `KEEPALIVE_IDLE_SECS + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_SECS` seconds.
const KEEPALIVE_IDLE_SECS: u32 = 30;
const KEEPALIVE_INTERVAL_SECS: u32 = 10;
const KEEPALIVE_COUNT: u32 = 3;

fn keepalive(stream: &TcpStream) -> io::Result<()> {
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_SECS)?;
    setsockopt(stream, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_SECS)?;
    setsockopt(stream, sockopt::TcpKeepCount, &KEEPALIVE_COUNT)?;
    Ok(())
}

/// Whether `stream` has nothing to read and no end pending: the test for an
/// idle connection whose peer must not have said anything since (a pooled
/// HTTP origin connection: any byte there would be out of step).
pub(crate) fn socket_is_quiet(stream: &TcpStream) -> bool {
    matches!(peek_one(stream), Err(Errno::EAGAIN))
}

/// Peeks one byte without blocking: EOF or an error (reset, keepalive timeout)
/// means the link must not be used. Bytes are the client's probes of an idle
/// link (anything else is caught while the server waits for `Accept`, and the
/// visitor then goes to another link).
pub(crate) fn socket_is_dead(stream: &TcpStream) -> bool {
    !matches!(peek_one(stream), Ok(1) | Err(Errno::EAGAIN))
}

/// Peeks at most one byte without blocking: `Ok(0)` is EOF, `EAGAIN` nothing yet.
fn peek_one(stream: &TcpStream) -> Result<usize, Errno> {
    let mut byte = [0u8; 1];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    recv(stream.as_fd().as_raw_fd(), &mut byte, flags)
}
