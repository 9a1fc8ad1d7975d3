//! Joins two byte streams in both directions.
//!
//! Semantics every engine keeps: bytes flow both ways independently; EOF on one
//! side becomes a write shutdown (FIN) on the other while the opposite direction
//! keeps flowing until it ends too; an error in either direction ends the relay
//! and drops (closes) both streams. The byte count of each direction is returned.
//!
//! Today there is one engine, a userspace copy with 64 KiB buffers; the splice
//! engine for raw sockets plugs in behind [`relay`].

mod copy;

pub use copy::COPY_BUF_LEN;

use futures_lite::{AsyncRead, AsyncWrite};
use std::io;

/// Bytes moved by a finished relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// From the first stream to the second.
    pub a_to_b: u64,
    /// From the second stream to the first.
    pub b_to_a: u64,
}

/// Relays between `a` and `b` until both directions ended or one failed.
pub async fn relay<A, B>(a: A, b: B) -> io::Result<Moved>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    copy::relay(a, b).await
}
