//! Offering a visitor to a data link: `Start` (on a pooled link; a mux
//! stream's `Open` carries it), then the visitor's bytes as they come, kept
//! (bounded) until the client's `Accept` says the link is alive — so that a
//! visitor whose link turns out dead is offered to another link with its first
//! bytes intact (PROTOCOL.md sections 9 and 10).
//!
//! Nothing waits for `Accept` before relaying: the visitor's request leaves
//! with no extra round trip, and `Accept` normally arrives before the
//! service's first answer. Only the copy is extra, and only until `Accept`.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use std::io;
use std::time::Duration;

use crate::mux;
use crate::protocol::chunk::{self, Chunk, HEADER_LEN};
use crate::runtime::TcpStream;
use crate::wire::with_timeout;

/// Visitor bytes kept until `Accept`; past this the visitor is not read until
/// `Accept` arrives. Bounds the copy per visitor: a request head, a TLS
/// ClientHello or an SSH banner fit many times over.
pub const MAX_REPLAY_LEN: usize = 64 * 1024;
/// One read from the visitor while waiting for `Accept`.
const READ_LEN: usize = 4096;

/// What a visitor sent before any link accepted it.
#[derive(Default)]
pub(super) struct Replay {
    bytes: Vec<u8>,
    /// The visitor already sent EOF (its `End` goes out once a link accepted).
    eof: bool,
}

impl Replay {
    /// The visitor's bytes read while it was offered (the accepting link
    /// has them all).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// How a link carries the visitor's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// A pooled link: in `Data` chunks.
    Chunks,
    /// A mux stream: as they are (the mux frames them).
    Raw,
}

/// Why an offer failed.
pub(super) enum Refused {
    /// The link failed before `Accept`: try another with the same replay.
    LinkLost(io::Error),
    /// The visitor failed, or the client refused it: the visitor is over.
    Visitor(io::Error),
}

/// Sends `start` (an encoded `Start` frame, or nothing on a mux stream) and
/// what `replay` holds on `link`, then relays the visitor's bytes (keeping a
/// copy) until the client's `Accept`, at most `limit`.
pub(super) async fn offer<L: AsyncRead + AsyncWrite + Unpin>(
    link: &mut L,
    (start, framing): (&[u8], Framing),
    visitor: &TcpStream,
    replay: &mut Replay,
    limit: Duration,
) -> Result<(), Refused> {
    // The first offer sends the encoded `Start` as it is; a replay goes out
    // in the same write, right behind it.
    if replay.bytes.is_empty() {
        if !start.is_empty() {
            send(link, start).await.map_err(Refused::LinkLost)?;
        }
    } else {
        let mut first = Vec::with_capacity(start.len() + HEADER_LEN + replay.bytes.len());
        first.extend_from_slice(start);
        frame(&mut first, &replay.bytes, framing)?;
        send(link, &first).await.map_err(Refused::LinkLost)?;
    }
    let waiting = until_accepted(link, framing, visitor, replay);
    match with_timeout(limit, "waiting for the client to accept a visitor", async {
        Ok(waiting.await)
    })
    .await
    {
        Ok(result) => result,
        Err(e) => Err(Refused::LinkLost(e)),
    }
}

/// What woke the wait for `Accept`.
enum Woke {
    Link(io::Result<usize>),
    Visitor(io::Result<usize>),
}

async fn until_accepted<L: AsyncRead + AsyncWrite + Unpin>(
    link: &mut L,
    framing: Framing,
    visitor: &TcpStream,
    replay: &mut Replay,
) -> Result<(), Refused> {
    let mut header = Header::default();
    // Reused for every chunk sent while waiting.
    let mut out = Vec::new();
    loop {
        let kept = replay.bytes.len();
        match next_read(link, &mut header, visitor, replay).await {
            Woke::Link(read) => {
                if header.read(read)? {
                    return Ok(());
                }
            }
            Woke::Visitor(Ok(0)) => replay.eof = true,
            Woke::Visitor(Ok(_)) => {
                let bytes = &replay.bytes[kept..];
                let sent = match framing {
                    Framing::Raw => send(link, bytes).await,
                    Framing::Chunks => {
                        out.clear();
                        frame(&mut out, bytes, framing)?;
                        send(link, &out).await
                    }
                };
                sent.map_err(Refused::LinkLost)?;
            }
            Woke::Visitor(Err(e)) => return Err(Refused::Visitor(e)),
        }
    }
}

/// Waits for the next bytes of a chunk header from the link, or of the
/// visitor's (read straight into `replay`, kept before they are sent, so a
/// link that fails mid-write loses none) while it has room and no EOF.
async fn next_read<L: AsyncRead + Unpin>(
    link: &mut L,
    header: &mut Header,
    visitor: &TcpStream,
    replay: &mut Replay,
) -> Woke {
    let kept = replay.bytes.len();
    let room = MAX_REPLAY_LEN - kept;
    // Each is one `read`: dropping the loser loses no byte.
    let from_link = async { Woke::Link(link.read(header.rest()).await) };
    if replay.eof || room == 0 {
        return from_link.await;
    }
    let mut visitor = visitor;
    replay.bytes.resize(kept + room.min(READ_LEN), 0);
    let spare = &mut replay.bytes[kept..];
    let from_visitor = async { Woke::Visitor(visitor.read(spare).await) };
    let woke = from_link.or(from_visitor).await;
    let read = match woke {
        Woke::Visitor(Ok(n)) => n,
        _ => 0,
    };
    replay.bytes.truncate(kept + read);
    woke
}

/// A chunk header from the client, read in pieces.
#[derive(Default)]
pub(super) struct Header {
    bytes: [u8; HEADER_LEN],
    have: usize,
}

impl Header {
    pub(super) fn rest(&mut self) -> &mut [u8] {
        &mut self.bytes[self.have..]
    }

    /// Takes one read from the link; `true` once a whole `Accept` arrived.
    pub(super) fn read(&mut self, read: io::Result<usize>) -> Result<bool, Refused> {
        match read {
            Ok(0) => Err(Refused::LinkLost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "data link closed before the client accepted the visitor",
            ))),
            Ok(n) => {
                self.have += n;
                if self.have < HEADER_LEN {
                    return Ok(false);
                }
                self.have = 0;
                chunk::before_accept(self.bytes)
                    .map_err(|e| Refused::LinkLost(io::Error::new(io::ErrorKind::InvalidData, e)))
            }
            // A mux stream reset by the client is its answer, not a lost link
            // (which fails the stream with `ConnectionAborted`).
            Err(e) if matches!(mux::Error::of(&e), Some(mux::Error::StreamReset)) => {
                Err(Refused::Visitor(e))
            }
            Err(e) => Err(Refused::LinkLost(e)),
        }
    }
}

/// Appends `bytes` to `out` as the link carries them (nothing when empty).
fn frame(out: &mut Vec<u8>, bytes: &[u8], framing: Framing) -> Result<(), Refused> {
    if bytes.is_empty() {
        return Ok(());
    }
    if framing == Framing::Chunks {
        // len ≤ MAX_REPLAY_LEN < MAX_CHUNK_LEN.
        let len = u32::try_from(bytes.len())
            .map_err(|_| Refused::Visitor(io::Error::other("oversized replay")))?;
        out.extend_from_slice(&Chunk::Data(len).encode());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

async fn send<L: AsyncWrite + Unpin>(link: &mut L, bytes: &[u8]) -> io::Result<()> {
    link.write_all(bytes).await?;
    link.flush().await
}
