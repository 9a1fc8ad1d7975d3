//! PROXY headers on public ports, from the balancers `accept_proxy_protocol`
//! trusts: the header's source becomes the visitor's address.
//!
//! The header is read without reading past it: the socket is peeked until
//! the (pure, bounded) parser of `crate::protocol::proxy_header` has a whole
//! header, and then exactly that many bytes are consumed. The visitor's own
//! bytes stay in the socket for the relay, which may then splice them. A
//! peek that finds nothing new parks the task for the next readable edge
//! (new bytes always raise one), so a slow balancer costs no spinning.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::proxy_header::{self, Addresses};
use crate::runtime::TcpStream;
use crate::wire::with_timeout;

/// Who a visitor is, after its PROXY header if it had one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Visitor {
    /// The visitor's address: the header's source, else the connection's peer.
    pub addr: SocketAddr,
    /// The address the visitor connected to, when known (the header's
    /// destination); else read from the socket when asked for.
    pub public: Option<SocketAddr>,
}

/// Reads the PROXY header at the start of `visitor` (a connection from a
/// trusted balancer at `peer`) within `timeout`, at most `max_len` bytes.
/// A `LOCAL`/`UNKNOWN` header (a balancer's own health check) keeps the
/// connection's addresses.
pub(super) async fn read_header(
    visitor: &TcpStream,
    peer: SocketAddr,
    max_len: usize,
    timeout: Duration,
) -> io::Result<Visitor> {
    let header = with_timeout(timeout, "PROXY header", async {
        let header = peek_header(visitor, max_len).await?;
        consume(visitor, header.len).await?;
        Ok(header)
    })
    .await?;
    Ok(match header.addresses {
        Addresses::Proxied {
            source,
            destination,
        } => Visitor {
            addr: source,
            public: Some(destination),
        },
        Addresses::Local => Visitor {
            addr: peer,
            public: None,
        },
    })
}

/// First peek buffer: a v1 header (at most 107 bytes) or a v2 header with
/// IPv6 addresses and a few TLVs fits, so the usual header costs 256 bytes
/// while it is read, not `max_len`.
const FIRST_PEEK_LEN: usize = 256;

/// Peeks until the bytes at the start of the socket hold a whole header.
async fn peek_header(visitor: &TcpStream, max_len: usize) -> io::Result<proxy_header::Header> {
    let mut buf = vec![0u8; FIRST_PEEK_LEN.min(max_len)];
    let mut seen = 0;
    loop {
        let n = visitor
            .socket()
            .read_with(|s| match s.peek(&mut buf) {
                // Nothing new since the last look: wait for the next edge.
                // (Part of a header, then FIN, waits here for the deadline.)
                Ok(n) if n == seen && n > 0 => Err(io::ErrorKind::WouldBlock.into()),
                r => r,
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before its PROXY header",
            ));
        }
        seen = n;
        match proxy_header::parse(&buf[..n], max_len) {
            Ok(Some(header)) => return Ok(header),
            // A longer header (TLVs): room for all the cap allows. The
            // parser decides by `max_len` bytes, so this happens once.
            Ok(None) if n == buf.len() => buf.resize(max_len, 0),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Reads and drops the header's `len` bytes, which are already in the
/// socket (a peek saw them).
async fn consume(visitor: &TcpStream, mut len: usize) -> io::Result<()> {
    let mut sink = [0u8; 512];
    while len > 0 {
        let want = len.min(sink.len());
        let n = visitor
            .socket()
            .read_with(|mut s| s.read(&mut sink[..want]))
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len -= n;
    }
    Ok(())
}
