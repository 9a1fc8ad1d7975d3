//! The relay of a pooled data link: a raw socket (the visitor at the server, the
//! local service at the client) on one side, the link on the other, the link's
//! bytes in chunks (`protocol::chunk`), so the link outlives its visitor.
//!
//! Toward the link, a direction frames what it reads: small reads go out as a
//! header and the bytes in one `write` from a per-thread scratch buffer; once a
//! read fills that buffer, the direction splices — socket → pipe, one header
//! (sent with `MSG_MORE`, so it leaves in the same segment as the payload),
//! pipe → link. EOF from the socket becomes an `End` chunk, not a FIN.
//!
//! From the link, a direction decodes: small reads land in the scratch buffer and
//! their payload is written on; once a read fills the buffer, the direction reads
//! exactly the header bytes it needs and splices exactly the payload a header
//! announced, so it never reads past the end of a chunk. `End` becomes a write
//! shutdown of the socket — unless the other direction has already ended, in
//! which case the socket is about to be closed anyway and the caller closes it
//! once the link is settled (the server puts the link back in its pool first, so
//! a visitor that sees its connection end and connects again finds it there).
//!
//! An error, a reset or an EOF of the link before `End` fails the relay; the
//! caller then closes the link instead of reusing it.

use futures_lite::FutureExt;
use nix::sys::socket::{MsgFlags, send, setsockopt, sockopt};
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::splice::{SCRATCH, SMALL_READ_LEN, drain, fill_pipe, write_left, write_now};
use super::{Ends, Moved, Turn, ignore_not_connected, invalid};
use crate::metrics::Tally;
use crate::protocol::chunk::{Chunk, Decoder, HEADER_LEN, MAX_CHUNK_LEN, Piece, Role};
use crate::runtime::TcpStream;

/// Relays between `socket` and the raw `link` until both directions ended
/// (returns the link's decoder, which has read the peer's `End`) or one failed.
pub(super) async fn relay(
    socket: &TcpStream,
    link: &TcpStream,
    role: Role,
    ends: &Ends<'_>,
) -> io::Result<(Moved, Decoder)> {
    let mut decoder = Decoder::new(role);
    let (out, back) = futures_lite::future::try_zip(
        pump_out(socket, link, ends),
        pump_in(link, socket, &mut decoder, ends),
    )
    .await?;
    let moved = Moved {
        a_to_b: out,
        b_to_a: back,
    };
    Ok((moved, decoder))
}

/// What one small read did.
enum Step {
    /// Moved this many bytes; `Some` holds what the destination did not take.
    Moved(usize, Option<Vec<u8>>, bool),
    Eof,
}

/// Socket → link, framed; `End` at EOF.
async fn pump_out(from: &TcpStream, to: &TcpStream, ends: &Ends<'_>) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = Turn::default();
    // A corked `Accept` leaves with the first chunk, or alone once the
    // service has been silent for a moment.
    let mut uncork = ends.uncork_at.map(crate::runtime::sleep_until);
    loop {
        turn.take().await;
        let read = from.socket().read_with(|s| frame_small(s, to));
        let step = match uncork.as_mut() {
            None => read.await?,
            Some(timer) => {
                let timer = async {
                    timer.await;
                    Err(io::ErrorKind::WouldBlock.into())
                };
                match read.or(timer).await {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        setsockopt(to.get_ref(), sockopt::TcpNoDelay, &true)?;
                        uncork = None;
                        continue;
                    }
                    step => {
                        uncork = None;
                        step?
                    }
                }
            }
        };
        match step {
            Step::Eof => break,
            Step::Moved(n, left, bulk) => {
                write_left(to, left).await?;
                total += n as u64;
                ends.meter.a_to_b().add(n as u64);
                if bulk {
                    total += splice_out(from, to, ends.meter.a_to_b()).await?;
                    break;
                }
            }
        }
    }
    let mut to = to;
    let (closing, len) = ends.closing();
    to.write_all(&closing[..len]).await?;
    ends.sent_end();
    Ok(total)
}

/// Reads once into the scratch buffer, behind a header, and writes header and
/// bytes on in one call.
fn frame_small(from: &std::net::TcpStream, to: &TcpStream) -> io::Result<Step> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let n = (&*from).read(&mut buf[HEADER_LEN..])?;
        if n == 0 {
            return Ok(Step::Eof);
        }
        // n ≤ SMALL_READ_LEN < MAX_CHUNK_LEN, so it fits a header.
        let len = u32::try_from(n).map_err(|_| invalid("oversized read"))?;
        buf[..HEADER_LEN].copy_from_slice(&Chunk::Data(len).encode());
        let left = write_now(to, &buf[..HEADER_LEN + n])?;
        Ok(Step::Moved(n, left, n == SMALL_READ_LEN))
    })
}

/// The bulk phase toward the link: one chunk per pipe-full, until EOF.
async fn splice_out(from: &TcpStream, to: &TcpStream, tally: Tally<'_>) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = Turn::default();
    loop {
        turn.take().await;
        let (pipe, filled) = fill_pipe(from, MAX_CHUNK_LEN as usize).await?;
        if filled == 0 {
            pipe.give_back();
            return Ok(total);
        }
        let len = u32::try_from(filled).map_err(|_| invalid("oversized splice"))?;
        send_header(to, Chunk::Data(len)).await?;
        drain(&pipe, to, filled).await?;
        pipe.give_back();
        total += filled as u64;
        tally.add(filled as u64);
    }
}

/// Writes a header that the payload follows at once: `MSG_MORE` keeps it in the
/// same segment as the spliced bytes instead of a 4-byte packet of its own.
async fn send_header(to: &TcpStream, chunk: Chunk) -> io::Result<()> {
    let header = chunk.encode();
    let mut sent = 0;
    while sent < HEADER_LEN {
        sent += to
            .socket()
            .write_with(|s| {
                send(
                    s.as_raw_fd(),
                    &header[sent..],
                    MsgFlags::from_bits_retain(nix::libc::MSG_MORE),
                )
                .map_err(io::Error::from)
            })
            .await?;
    }
    Ok(())
}

/// Link → socket, decoded, until `End`.
async fn pump_in(
    from: &TcpStream,
    to: &TcpStream,
    decoder: &mut Decoder,
    ends: &Ends<'_>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = Turn::default();
    loop {
        turn.take().await;
        let (n, left, full) = from
            .socket()
            .read_with(|s| deframe_small(s, to, decoder))
            .await?;
        write_left(to, left).await?;
        total += n as u64;
        ends.meter.b_to_a().add(n as u64);
        if decoder.ended() {
            break;
        }
        if full {
            total += splice_in(from, to, decoder, ends.meter.b_to_a()).await?;
            break;
        }
    }
    if ends.read_end() {
        to.shutdown(Shutdown::Write).or_else(ignore_not_connected)?;
    }
    Ok(total)
}

/// Reads once into the scratch buffer and passes the payload on; returns the
/// payload moved, what the socket did not take, and whether the read was full.
fn deframe_small(
    from: &std::net::TcpStream,
    to: &TcpStream,
    decoder: &mut Decoder,
) -> io::Result<(usize, Option<Vec<u8>>, bool)> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let buf = &mut buf[..SMALL_READ_LEN];
        let n = (&*from).read(buf)?;
        if n == 0 {
            return Err(link_closed());
        }
        let (mut pos, mut moved) = (0, 0);
        let mut left: Option<Vec<u8>> = None;
        while pos < n {
            let (used, piece) = decoder.next(&buf[pos..n]).map_err(invalid)?;
            if let Piece::Payload(len) = piece {
                let bytes = &buf[pos..pos + len];
                match &mut left {
                    Some(left) => left.extend_from_slice(bytes),
                    None => left = write_now(to, bytes)?,
                }
                moved += len;
            }
            pos += used;
        }
        Ok((moved, left, n == buf.len()))
    })
}

/// The bulk phase from the link: exact header reads, exact payload splices.
async fn splice_in(
    from: &TcpStream,
    to: &TcpStream,
    decoder: &mut Decoder,
    tally: Tally<'_>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut turn = Turn::default();
    while !decoder.ended() {
        turn.take().await;
        let left = decoder.payload_left() as usize;
        if left == 0 {
            read_header(from, decoder).await?;
            continue;
        }
        let (pipe, filled) = fill_pipe(from, left).await?;
        if filled == 0 {
            pipe.give_back();
            return Err(link_closed());
        }
        drain(&pipe, to, filled).await?;
        pipe.give_back();
        decoder.took_payload(filled);
        total += filled as u64;
        tally.add(filled as u64);
    }
    Ok(total)
}

/// Reads exactly the header bytes the decoder needs (never past the chunk).
pub(super) async fn read_header<R: futures_lite::AsyncRead + Unpin>(
    mut from: R,
    decoder: &mut Decoder,
) -> io::Result<Piece> {
    let mut header = [0u8; HEADER_LEN];
    let need = decoder.header_need();
    let n = from.read(&mut header[..need]).await?;
    if n == 0 {
        return Err(link_closed());
    }
    let (_, piece) = decoder.next(&header[..n]).map_err(invalid)?;
    Ok(piece)
}

fn link_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "data link closed in the middle of a visitor",
    )
}
