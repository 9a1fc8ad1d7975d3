//! Reading heads through a fixed buffer, and streaming bodies.
//!
//! [`Buffered`] is the one read buffer of a connection side: heads are parsed
//! out of it, body bytes pass through it, and whatever follows a message (the
//! next pipelined request, the first tunnel bytes after CONNECT) stays in it
//! for whoever reads next — bytes are never lost between phases. The buffer is
//! [`MAX_HEAD_LEN`] bytes, so a connection costs at most that much however big
//! its bodies are.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::fmt;
use std::io;
use std::time::Duration;

use super::chunked::{ChunkError, Decoder};
use super::framing::Framing;
use super::head::{HeadError, MAX_HEAD_LEN, MAX_REQUEST_LINE_LEN};
use crate::wire::with_timeout;

/// A stream with a read buffer; see the module docs.
pub struct Buffered<S> {
    pub stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Why reading a head failed.
#[derive(Debug)]
pub enum HeadFailure {
    /// The peer sent a head we refuse.
    Invalid(HeadError),
    /// The connection failed or closed mid-head, or the deadline passed.
    Io(io::Error),
}

impl<S: AsyncRead + Unpin> Buffered<S> {
    pub fn new(stream: S) -> Self {
        Buffered {
            stream,
            buf: vec![0; MAX_HEAD_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The buffered, unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The stream and the bytes still buffered, freeing the buffer: a
    /// connection that turns into a tunnel keeps no head buffer.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let early = self.data().to_vec();
        (self.stream, early)
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Reads more bytes after the buffered ones; `Ok(0)` is EOF. An already
    /// full buffer reads nothing and returns `Ok(0)` too, which callers never
    /// reach: a full buffer always holds a complete or an oversize head.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads one head with `parse`. `Ok(None)` is a clean EOF before any byte.
    /// The parser runs only when a blank line may have arrived or a bound may
    /// have been crossed, so a peer sending one byte at a time costs linear,
    /// not quadratic, work.
    pub async fn read_head<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>,
    ) -> Result<Option<T>, HeadFailure> {
        let mut scanned: usize = 0;
        loop {
            let data = self.data();
            let from = scanned.saturating_sub(3);
            let fresh = &data[from..];
            // A bare LF ends the head at once (as an error), not at the timeout.
            let blank_line = fresh.windows(4).any(|w| w == b"\r\n\r\n")
                || fresh.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
                || data.first() == Some(&b'\n');
            let bound = data.len() >= MAX_HEAD_LEN
                || (scanned <= MAX_REQUEST_LINE_LEN && data.len() > MAX_REQUEST_LINE_LEN);
            if blank_line || bound {
                if let Some((head, used)) = parse(data).map_err(HeadFailure::Invalid)? {
                    self.consume(used);
                    return Ok(Some(head));
                }
            }
            scanned = data.len();
            match self.fill().await.map_err(HeadFailure::Io)? {
                0 if self.data().is_empty() => return Ok(None),
                0 => {
                    return Err(HeadFailure::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a message head",
                    )));
                }
                _ => {}
            }
        }
    }
}

/// Why a body could not be streamed.
#[derive(Debug)]
pub enum BodyError {
    /// The sender broke the chunked framing: nothing after this point can be
    /// trusted to belong to this message.
    Framing(ChunkError),
    /// The connection failed or closed early, or a deadline passed.
    Io(io::Error),
}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        BodyError::Io(e)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Framing(e) => e.fmt(f),
            BodyError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BodyError {}

/// Streams one body of `framing` from `src` (buffered bytes first) to `dst`;
/// with `dechunk`, a chunked body goes out as its bare data (for a reader that
/// takes the close as its end). Every read and write must make progress within
/// `idle`. Returns the bytes written; `UnexpectedEof` if the sender closes
/// before a delimited body ends.
pub async fn copy_body<R, W>(
    src: &mut Buffered<R>,
    dst: &mut W,
    framing: Framing,
    idle: Duration,
    dechunk: bool,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = match framing {
        Framing::None | Framing::Length(0) => return Ok(0),
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunked = (framing == Framing::Chunked).then(Decoder::new);
    let mut moved = 0u64;
    loop {
        if src.data().is_empty() && with_timeout(idle, "reading a body", src.fill()).await? == 0 {
            return match framing {
                Framing::UntilClose => Ok(moved),
                _ => Err(BodyError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the end of the body",
                ))),
            };
        }
        let data = src.data();
        let (take, out) = match &mut chunked {
            Some(decoder) if dechunk => decoder.split(data).map_err(BodyError::Framing)?,
            Some(decoder) => {
                let used = decoder.feed(data).map_err(BodyError::Framing)?;
                (used, 0..used)
            }
            None => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                (take, 0..take)
            }
        };
        let written = out.len() as u64;
        if !out.is_empty() {
            with_timeout(idle, "writing a body", dst.write_all(&data[out])).await?;
        }
        src.consume(take);
        moved += written;
        left -= (take as u64).min(left);
        let done = match &chunked {
            Some(decoder) => decoder.is_done(),
            None => left == 0,
        };
        if done {
            with_timeout(idle, "writing a body", dst.flush()).await?;
            return Ok(moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_proxy::head::parse_request;

    /// A reader that hands out its bytes `step` at a time.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            let pos = self.pos;
            buf[..n].copy_from_slice(&self.data[pos..pos + n]);
            self.pos += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    fn trickle(data: &[u8], step: usize) -> Buffered<Trickle> {
        Buffered::new(Trickle {
            data: data.to_vec(),
            pos: 0,
            step,
        })
    }

    #[test]
    fn pipelined_requests_and_bodies_keep_their_bytes() {
        let wire = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST http://h/2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET http://h/3 HTTP/1.1\r\nHost: h\r\n\r\n";
        for step in [1, 2, 7, 1000] {
            smol::block_on(async {
                let mut src = trickle(wire, step);
                let idle = Duration::from_secs(1);
                let mut sink = Vec::new();
                let first = src
                    .read_head(parse_request)
                    .await
                    .expect("head")
                    .expect("some");
                let framing = first.framing;
                copy_body(&mut src, &mut sink, framing, idle, false)
                    .await
                    .expect("body");
                assert_eq!(sink, b"hello");
                let second = src
                    .read_head(parse_request)
                    .await
                    .expect("head")
                    .expect("some");
                assert_eq!(second.path, "/2");
                let mut sink = Vec::new();
                copy_body(&mut src, &mut sink, Framing::Chunked, idle, false)
                    .await
                    .expect("chunked");
                assert_eq!(sink, b"3\r\nabc\r\n0\r\n\r\n");
                let third = src
                    .read_head(parse_request)
                    .await
                    .expect("head")
                    .expect("some");
                assert_eq!(third.path, "/3");
                assert!(src.read_head(parse_request).await.expect("eof").is_none());
            });
        }
    }

    #[test]
    fn oversize_and_truncated_heads_fail() {
        smol::block_on(async {
            let big = format!(
                "GET http://h/ HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(MAX_HEAD_LEN)
            );
            let mut src = trickle(big.as_bytes(), 4096);
            let err = src.read_head(parse_request).await.expect_err("too large");
            assert!(matches!(
                err,
                HeadFailure::Invalid(HeadError::TooLarge { .. })
            ));
            let mut src = trickle(b"GET http://h/ HTTP/1.1\r\nX: y", 3);
            let err = src.read_head(parse_request).await.expect_err("truncated");
            assert!(matches!(err, HeadFailure::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof));
        });
    }
}
