//! The splice engine: raw TCP ↔ raw TCP through a kernel pipe, no userspace copy.
//!
//! Each direction loops: wait until the source is readable, take a pipe, splice
//! socket → pipe, then drain pipe → socket completely before reading again. Always
//! draining first resolves the ambiguous `EAGAIN` of socket → pipe splicing (it
//! also means "pipe full"): with an empty pipe, `EAGAIN` can only mean the socket
//! has nothing, so waiting for readability is right and can neither hang nor spin.
//! The pipe goes back to the pool once empty, so idle connections hold none.
//!
//! Small messages are not spliced: until a direction sees a read that fills
//! [`SMALL_READ_LEN`], it reads into a per-thread scratch buffer and writes the
//! bytes straight on (a request, a response, a keystroke). For a few hundred
//! bytes a `read` + `write` pair costs the kernel less than two splices through
//! a pipe, and the scratch buffer is per thread, so an idle connection still
//! holds no buffer. Only bytes the destination cannot take at once are kept,
//! in a buffer of their own, until they are written. The first full read
//! switches the direction to splicing for good: bulk moves zero-copy.

use futures_lite::AsyncWriteExt;
use nix::fcntl::{SpliceFFlags, splice};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;

use super::pipe::Pipe;
use super::{Moved, ignore_not_connected};
use crate::metrics::{Meter, Tally};
use crate::protocol::chunk::HEADER_LEN;

use crate::runtime::TcpStream;

/// Relays between two raw sockets until both directions ended or one failed.
/// Both must be registered where the relay runs.
pub async fn relay(a: &TcpStream, b: &TcpStream, meter: Meter<'_>) -> io::Result<Moved> {
    let (a_to_b, b_to_a) =
        futures_lite::future::try_zip(pump(a, b, meter.a_to_b()), pump(b, a, meter.b_to_a()))
            .await?;
    Ok(Moved { a_to_b, b_to_a })
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// A read this large means bulk: the direction switches to splicing.
pub const SMALL_READ_LEN: usize = 16 * 1024;

thread_local! {
    /// Where small reads land on their way to the destination socket, with
    /// room in front for a chunk header (`super::chunked` frames in place).
    pub(super) static SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; HEADER_LEN + SMALL_READ_LEN].into_boxed_slice());
}

/// What one small read did.
enum Small {
    /// Moved this many bytes; `Some` holds what the destination did not take.
    Moved(usize, Option<Vec<u8>>),
    /// The read filled the scratch buffer (and was passed on): bulk follows.
    Bulk(usize, Option<Vec<u8>>),
    Eof,
}

/// One direction: `from` → `to`, then FIN on `to`.
async fn pump(from: &TcpStream, to: &TcpStream, tally: Tally<'_>) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = super::Turn::default();
    loop {
        turn.take().await;
        let (n, left, bulk) = match from.socket().read_with(|s| small_read(s, to)).await? {
            Small::Eof => return finish(to, total),
            Small::Moved(n, left) => (n, left, false),
            Small::Bulk(n, left) => (n, left, true),
        };
        write_left(to, left).await?;
        total += n as u64;
        tally.add(n as u64);
        if bulk {
            return Ok(total + splice_pump(from, to, tally).await?);
        }
    }
}

/// Reads once into the scratch buffer and writes what it can on at once.
fn small_read(from: &std::net::TcpStream, to: &TcpStream) -> io::Result<Small> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let buf = &mut buf[..SMALL_READ_LEN];
        let n = (&*from).read(buf)?;
        if n == 0 {
            return Ok(Small::Eof);
        }
        let left = write_now(to, &buf[..n])?;
        Ok(if n == buf.len() {
            Small::Bulk(n, left)
        } else {
            Small::Moved(n, left)
        })
    })
}

/// Writes what `to` takes without waiting; returns the rest.
pub(super) fn write_now(to: &TcpStream, bytes: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let written = match to.get_ref().write(bytes) {
        Ok(w) => w,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    Ok((written < bytes.len()).then(|| bytes[written..].to_vec()))
}

/// Writes what [`write_now`] left, through the destination's readiness.
pub(super) async fn write_left(to: &TcpStream, left: Option<Vec<u8>>) -> io::Result<()> {
    if let Some(left) = left {
        let mut to = to;
        to.write_all(&left).await?;
    }
    Ok(())
}

/// EOF from the source: FIN to the destination.
fn finish(to: &TcpStream, total: u64) -> io::Result<u64> {
    to.shutdown(Shutdown::Write).or_else(ignore_not_connected)?;
    Ok(total)
}

/// The bulk phase of a direction: splice until EOF.
async fn splice_pump(from: &TcpStream, to: &TcpStream, tally: Tally<'_>) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = super::Turn::default();
    loop {
        turn.take().await;
        let (pipe, filled) = fill_pipe(from, usize::MAX).await?;
        if filled == 0 {
            pipe.give_back();
            return finish(to, total);
        }
        drain(&pipe, to, filled).await?;
        pipe.give_back();
        total += filled as u64;
        tally.add(filled as u64);
    }
}

/// Takes a pipe and splices into it up to `max` bytes (and at most the pipe's
/// size) from `from`, waiting until it is readable. 0 bytes: EOF.
///
/// Optimistic: it tries first and waits only on EAGAIN. The pipe is taken per
/// attempt and given back while waiting, so an idle direction holds none; it is
/// empty then, so EAGAIN means the socket has nothing, never a full pipe.
pub(super) async fn fill_pipe(from: &TcpStream, max: usize) -> io::Result<(Pipe, usize)> {
    from.socket()
        .read_with(|s| {
            let pipe = Pipe::take()?;
            match splice(s, None, &pipe.write, None, max.min(pipe.size), flags()) {
                Ok(n) => Ok((pipe, n)),
                Err(e) => {
                    pipe.give_back();
                    Err(e.into())
                }
            }
        })
        .await
}

/// Moves exactly `len` bytes from the pipe to `to`. On error the pipe is dropped
/// by the caller's `?` (never pooled with bytes in it).
pub(super) async fn drain(pipe: &Pipe, to: &TcpStream, mut len: usize) -> io::Result<()> {
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
