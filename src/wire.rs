//! Async frame I/O over any byte stream, and the deadline helper.
//!
//! Frames are read with exact reads (length prefix, then exactly that many bytes)
//! and never through a read-ahead buffer: after `Start` a data link becomes a raw
//! byte pipe, and any byte buffered past the frame would be lost to the relay.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use std::future::Future;
use std::io;
use std::time::Duration;

use crate::protocol::{self, Frame, LEN_PREFIX, MAX_FRAME_LEN};

/// Reads one frame. EOF before the first byte is `UnexpectedEof`; a malformed or
/// oversize frame is `InvalidData` and nothing beyond the prefix is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Frame> {
    let mut prefix = [0u8; LEN_PREFIX];
    r.read_exact(&mut prefix).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by peer")
        } else {
            e
        }
    })?;
    if let Some(record) = TlsRecord::at_start(prefix) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, record));
    }
    let len = protocol::check_len(prefix).map_err(invalid)?;
    let mut body = [0u8; MAX_FRAME_LEN];
    r.read_exact(&mut body[..len]).await?;
    protocol::decode_body(&body[..len]).map_err(invalid)
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> io::Result<()> {
    let bytes = protocol::to_bytes(frame).map_err(invalid)?;
    w.write_all(&bytes).await?;
    w.flush().await
}

/// A TLS record where a frame was due: the peer speaks TLS and we do not.
/// [`read_frame`] returns it inside an `InvalidData` error, so the handshake
/// can tell this mix-up from garbage (see `crate::handshake::drive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRecord {
    /// A handshake record (0x16, version 3.x): how a TLS client opens, with
    /// its ClientHello.
    Handshake,
    /// An alert record (0x15, version 3.x): what a TLS server answers the
    /// plain bytes of a frame with.
    Alert,
}

impl TlsRecord {
    /// The record a frame's first two bytes are the header of, if any. No
    /// frame starts so: 0x1503 and 0x1603 are lengths far above
    /// `MAX_FRAME_LEN`.
    fn at_start(prefix: [u8; LEN_PREFIX]) -> Option<TlsRecord> {
        match prefix {
            [0x16, 0x03] => Some(TlsRecord::Handshake),
            [0x15, 0x03] => Some(TlsRecord::Alert),
            _ => None,
        }
    }

    /// The record inside `e`, when `e` is [`read_frame`]'s report of one.
    pub fn in_error(e: &io::Error) -> Option<TlsRecord> {
        e.get_ref()?.downcast_ref::<TlsRecord>().copied()
    }
}

impl std::fmt::Display for TlsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsRecord::Handshake => "the peer started a TLS handshake where a frame was due",
            TlsRecord::Alert => "the peer answered with a TLS alert where a frame was due",
        })
    }
}

impl std::error::Error for TlsRecord {}

fn invalid<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs `fut` with a deadline; on expiry returns `TimedOut` naming `what`.
pub async fn with_timeout<T, F>(limit: Duration, what: &str, fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    with_deadline(limit, what, fut).await
}

/// [`with_timeout`] for any error type an `io::Error` converts into (the
/// `TimedOut` error is converted).
pub async fn with_deadline<T, E, F>(limit: Duration, what: &str, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<io::Error>,
{
    // On a worker the deadline lives in the worker's timer map (no syscall);
    // elsewhere it is an async-io timer.
    fut.or(async move {
        crate::runtime::sleep(limit).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out after {limit:?}"),
        )
        .into())
    })
    .await
}

/// Writes every frame queued on `rx` until the queue closes or after `Goodbye`,
/// then shuts the writer down. The control links of both sides run one of these
/// so that producers (heartbeats, link requests) never wait on the socket.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    rx: smol::channel::Receiver<Frame>,
) {
    while let Ok(frame) = rx.recv().await {
        if write_frame(&mut writer, &frame).await.is_err() {
            return;
        }
        if matches!(frame, Frame::Goodbye { .. }) {
            break;
        }
    }
    let _ = writer.close().await;
}

/// Queues a heartbeat every `every` until the queue closes. A full queue skips a
/// beat: the peer is not reading, and its heartbeat timeout will say so.
pub async fn heartbeats(control: smol::channel::Sender<Frame>, every: Duration) {
    loop {
        crate::runtime::sleep(every).await;
        if control.try_send(Frame::Heartbeat).is_err() && control.is_closed() {
            return;
        }
    }
}

/// The first bytes of an id, in hex, for logs.
pub fn short_id(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
