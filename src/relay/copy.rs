//! The copy engine: two pumps with their own buffers, one per direction.

use futures_lite::future::try_zip;
use futures_lite::io::split;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;

use super::{Moved, ignore_not_connected};
use crate::metrics::{Meter, Tally};

/// Buffer per direction once bytes flow in bulk. 64 KiB moves a full socket
/// buffer per wake-up; smaller buffers cost measurably more syscalls.
pub const COPY_BUF_LEN: usize = 64 * 1024;
/// Buffer a direction starts with. Most tunneled connections sit idle or carry
/// small messages, and 2 × 64 KiB of zeroed memory per connection dominated the
/// idle memory of TLS and multiplexed tunnels; the first read that fills this
/// buffer switches the direction to [`COPY_BUF_LEN`].
pub const COPY_START_LEN: usize = 4 * 1024;

pub(super) async fn relay<A, B>(a: A, b: B, meter: Meter<'_>) -> io::Result<Moved>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (a_read, a_write) = split(a);
    let (b_read, b_write) = split(b);
    // try_zip returns at the first error and drops the other pump, so both
    // streams are closed together on failure.
    let (a_to_b, b_to_a) = try_zip(
        pump(a_read, b_write, meter.a_to_b()),
        pump(b_read, a_write, meter.b_to_a()),
    )
    .await?;
    Ok(Moved { a_to_b, b_to_a })
}

/// Copies until EOF, then shuts the writer down so the peer sees FIN.
async fn pump<R, W>(mut from: R, mut to: W, tally: Tally<'_>) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_START_LEN];
    let mut total = 0u64;
    let mut turn = super::Turn::default();
    loop {
        turn.take().await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // A TCP stream's poll_close shuts down the write half (FIN).
            to.close().await.or_else(ignore_not_connected)?;
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
        tally.add(n as u64);
        // A full read means more is waiting: bulk, so take the full buffer.
        if n == buf.len() && buf.len() < COPY_BUF_LEN {
            buf.resize(COPY_BUF_LEN, 0);
        }
    }
}
