//! The chunked relay for links the kernel cannot splice (TLS): the same chunks
//! and the same end-of-direction rules as [`super::chunked`], moved through
//! userspace buffers that start small and grow once bytes flow in bulk.

use futures_lite::future::try_zip;
use futures_lite::io::split;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
use std::net::Shutdown;

use super::copy::{COPY_BUF_LEN, COPY_START_LEN};
use super::{Ends, Moved, Turn, ignore_not_connected, invalid};
use crate::protocol::chunk::{Chunk, Decoder, HEADER_LEN, Piece, Role};
use crate::runtime::TcpStream;

/// Relays between `socket` and `link` until both directions ended or one
/// failed; the link stays usable for the caller after a clean end.
pub(super) async fn relay<L>(
    socket: &TcpStream,
    link: &mut L,
    role: Role,
    ends: &Ends<'_>,
) -> io::Result<(Moved, Decoder)>
where
    L: AsyncRead + AsyncWrite + Unpin,
{
    let (link_read, link_write) = split(link);
    let mut decoder = Decoder::new(role);
    let (out, back) = try_zip(
        pump_out(socket, link_write, ends),
        pump_in(link_read, socket, &mut decoder, ends),
    )
    .await?;
    let moved = Moved {
        a_to_b: out,
        b_to_a: back,
    };
    Ok((moved, decoder))
}

/// Socket → link: a header and the bytes in one write per read; `End` at EOF.
async fn pump_out<W: AsyncWrite + Unpin>(
    mut from: &TcpStream,
    mut to: W,
    ends: &Ends<'_>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; HEADER_LEN + COPY_START_LEN];
    let mut total = 0u64;
    let mut turn = Turn::default();
    loop {
        turn.take().await;
        let n = from.read(&mut buf[HEADER_LEN..]).await?;
        if n == 0 {
            break;
        }
        let len = u32::try_from(n).map_err(|_| invalid("oversized read"))?;
        buf[..HEADER_LEN].copy_from_slice(&Chunk::Data(len).encode());
        to.write_all(&buf[..HEADER_LEN + n]).await?;
        total += n as u64;
        ends.meter.a_to_b().add(n as u64);
        if n == buf.len() - HEADER_LEN && buf.len() < HEADER_LEN + COPY_BUF_LEN {
            buf.resize(HEADER_LEN + COPY_BUF_LEN, 0);
        }
    }
    let (closing, len) = ends.closing();
    to.write_all(&closing[..len]).await?;
    to.flush().await?;
    ends.sent_end();
    Ok(total)
}

/// Link → socket, decoded, until `End` (a server also takes an `Idle` that
/// came in the same read).
async fn pump_in<R: AsyncRead + Unpin>(
    mut from: R,
    mut to: &TcpStream,
    decoder: &mut Decoder,
    ends: &Ends<'_>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_START_LEN];
    let mut total = 0u64;
    let mut turn = Turn::default();
    while !decoder.ended() {
        turn.take().await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "data link closed in the middle of a visitor",
            ));
        }
        let mut pos = 0;
        while pos < n {
            let (used, piece) = decoder.next(&buf[pos..n]).map_err(invalid)?;
            if let Piece::Payload(len) = piece {
                to.write_all(&buf[pos..pos + len]).await?;
                total += len as u64;
                ends.meter.b_to_a().add(len as u64);
            }
            pos += used;
        }
        if n == buf.len() && buf.len() < COPY_BUF_LEN {
            buf.resize(COPY_BUF_LEN, 0);
        }
    }
    if ends.read_end() {
        to.shutdown(Shutdown::Write).or_else(ignore_not_connected)?;
    }
    Ok(total)
}
