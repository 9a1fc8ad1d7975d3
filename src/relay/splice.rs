//! The splice engine: raw TCP ↔ raw TCP through a kernel pipe, no userspace copy.
//!
//! Each direction loops: wait until the source is readable, take a pipe, splice
//! socket → pipe, then drain pipe → socket completely before reading again. Always
//! draining first resolves the ambiguous `EAGAIN` of socket → pipe splicing (it
//! also means "pipe full"): with an empty pipe, `EAGAIN` can only mean the socket
//! has nothing, so waiting for readability is right and can neither hang nor spin.
//! The pipe goes back to the pool once empty, so idle connections hold none.

use nix::fcntl::{SpliceFFlags, splice};
use std::io;
use std::net::Shutdown;

use super::pipe::Pipe;
use super::{Moved, ignore_not_connected};

use crate::runtime::TcpStream;

/// Relays between two raw sockets until both directions ended or one failed.
/// Both must be registered where the relay runs.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> io::Result<Moved> {
    let (a_to_b, b_to_a) = futures_lite::future::try_zip(pump(a, b), pump(b, a)).await?;
    Ok(Moved { a_to_b, b_to_a })
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// One direction: `from` → `to`, then FIN on `to`.
async fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // Optimistic: try first, wait only on EAGAIN. The pipe is taken per
        // attempt and given back while waiting, so an idle direction holds none.
        let (pipe, filled) = from
            .socket()
            .read_with(|s| {
                let pipe = Pipe::take()?;
                match splice(s, None, &pipe.write, None, pipe.size, flags()) {
                    Ok(n) => Ok((pipe, n)),
                    Err(e) => {
                        // The pipe is empty, so EAGAIN means the socket has
                        // nothing (and the pipe can be pooled either way).
                        pipe.give_back();
                        Err(e.into())
                    }
                }
            })
            .await?;
        if filled == 0 {
            pipe.give_back();
            to.shutdown(Shutdown::Write).or_else(ignore_not_connected)?;
            return Ok(total);
        }
        drain(&pipe, to, filled).await?;
        pipe.give_back();
        total += filled as u64;
    }
}

/// Moves exactly `len` bytes from the pipe to `to`. On error the pipe is dropped
/// by the caller's `?` (never pooled with bytes in it).
async fn drain(pipe: &Pipe, to: &TcpStream, mut len: usize) -> io::Result<()> {
    while len > 0 {
        let n = to
            .socket()
            .write_with(|s| {
                splice(&pipe.read, None, s, None, len, flags()).map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "splice wrote nothing",
            ));
        }
        len -= n;
    }
    Ok(())
}
