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

use super::Socket;

/// Relays between two raw sockets until both directions ended or one failed.
pub async fn relay(a: Socket, b: Socket) -> io::Result<Moved> {
    let (a_to_b, b_to_a) = futures_lite::future::try_zip(pump(&a, &b), pump(&b, &a)).await?;
    Ok(Moved { a_to_b, b_to_a })
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// One direction: `from` → `to`, then FIN on `to`.
async fn pump(from: &Socket, to: &Socket) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // Optimistic: try first, wait only on EAGAIN. The pipe is taken per
        // attempt and given back while waiting, so an idle direction holds none.
        let pipe = Pipe::take()?;
        let filled = match splice(from.get_ref(), None, &pipe.write, None, pipe.size, flags()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => {
                // The pipe is empty, so EAGAIN means the socket has nothing.
                pipe.give_back();
                from.readable().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if filled == 0 {
            pipe.give_back();
            to.get_ref()
                .shutdown(Shutdown::Write)
                .or_else(ignore_not_connected)?;
            return Ok(total);
        }
        drain(&pipe, to, filled).await?;
        pipe.give_back();
        total += filled as u64;
    }
}

/// Moves exactly `len` bytes from the pipe to `to`. On error the pipe is dropped
/// by the caller's `?` (never pooled with bytes in it).
async fn drain(pipe: &Pipe, to: &Socket, mut len: usize) -> io::Result<()> {
    while len > 0 {
        let n = to
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
