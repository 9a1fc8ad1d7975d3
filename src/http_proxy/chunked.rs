//! Pure, incremental parser of the chunked transfer coding (RFC 9112 §7.1).
//!
//! The proxy forwards a chunked body byte for byte; this state machine only
//! finds where it ends, so that nothing past the body (the next request on a
//! keep-alive connection) is sent along and nothing of the body is left behind.
//! It holds a few integers, never the data: a body of any size streams through.
//! Line endings must be CRLF (bare LF is a known smuggling vector).

use std::fmt;
use std::ops::Range;

/// Longest chunk-size line or trailer line (size, extensions, CRLF included).
/// Lines are forwarded, not stored, but an endless extension would otherwise
/// hold a connection forever without carrying a byte of body.
pub const MAX_CHUNK_LINE_LEN: usize = 4096;
/// Most hex digits in a chunk size: 16 fit a u64; more (even leading zeros)
/// is refused rather than risking an overflow.
const MAX_SIZE_DIGITS: u32 = 16;
/// Most trailer fields: each is a line of up to [`MAX_CHUNK_LINE_LEN`].
const MAX_TRAILERS: u32 = 64;

/// A malformed chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u32,
        value: u64,
    },
    /// After the size: extensions up to CR.
    Extension {
        value: u64,
    },
    /// Expecting LF after the size line's CR.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        left: u64,
    },
    /// Expecting CR, then LF, after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    Done,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    line_len: usize,
    trailers: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            line_len: 0,
            trailers: 0,
        }
    }

    /// Whether the whole body (last chunk and trailers) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`; returns how many of its bytes belong to the body. Fewer
    /// than `input.len()` only when the body ended inside `input`.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            used += self.split(&input[used..])?.0;
        }
        Ok(used)
    }

    /// Scans `input` up to the end of the first run of chunk data in it (or to
    /// its end, or the body's). Returns how many bytes it used and where in
    /// them that chunk data lies (empty when there was none): the way to
    /// de-chunk a body while it streams.
    pub fn split(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data { left } = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok((i + take, i..i + take));
            }
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE_LEN {
                return Err(ChunkError("line too long"));
            }
            self.state = self.step(input[i])?;
            i += 1;
        }
        Ok((i, i..i))
    }

    /// One byte outside chunk data: one flat match over the states.
    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        Ok(match (self.state, b) {
            (State::Size { digits, value }, _) if b.is_ascii_hexdigit() => {
                if digits == MAX_SIZE_DIGITS {
                    return Err(ChunkError("chunk size too large"));
                }
                let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                State::Size {
                    digits: digits + 1,
                    value: (value << 4) | digit,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err(ChunkError("missing chunk size")),
            (State::Size { value, .. }, b';' | b' ' | b'\t') => State::Extension { value },
            (State::Size { value, .. } | State::Extension { value }, b'\r') => {
                State::SizeLf { value }
            }
            (State::Size { .. }, _) => return Err(ChunkError("invalid chunk size")),
            (State::Extension { .. }, b'\n' | 0) => {
                return Err(ChunkError("bare LF or NUL in a chunk extension"));
            }
            (State::Extension { .. }, _) => self.state,
            (State::SizeLf { value }, b'\n') => {
                self.line_len = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    State::Data { left: value }
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line_len = 0;
                State::Size {
                    digits: 0,
                    value: 0,
                }
            }
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::Trailer, b'\n') => {
                return Err(ChunkError("bare LF in the trailer"));
            }
            (State::TrailerStart, _) => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(ChunkError("too many trailer fields"));
                }
                State::Trailer
            }
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::Trailer, _) => State::Trailer,
            (State::TrailerLf, b'\n') => {
                self.line_len = 0;
                State::TrailerStart
            }
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ChunkError("expected CRLF")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns bytes used and whether done.
    fn run(body: &[u8], step: usize) -> Result<(usize, bool), ChunkError> {
        let mut d = Decoder::new();
        let mut used = 0;
        for piece in body.chunks(step) {
            let n = d.feed(piece)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, d.is_done()))
    }

    #[test]
    fn finds_the_end_at_any_split() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        let mut stream = body.to_vec();
        stream.extend_from_slice(b"GET http://next/ HTTP/1.1\r\n");
        for step in 1..=stream.len() {
            assert_eq!(run(&stream, step), Ok((body.len(), true)), "step {step}");
        }
    }

    #[test]
    fn incomplete_is_not_done() {
        assert_eq!(run(b"5\r\nab", 100), Ok((5, false)));
        assert_eq!(run(b"0\r\n", 100), Ok((3, false)));
        assert_eq!(run(b"", 1), Ok((0, false)));
    }

    #[test]
    fn refuses_malformed_bodies() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"4\nWiki\r\n",
            b"4\r\nWikiX\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n",
            b"10000000000000000\r\n",
            b"00000000000000001\r\n",
        ] {
            assert!(run(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE_LEN));
        assert_eq!(run(long.as_bytes(), 7), Err(ChunkError("line too long")));
    }

    #[test]
    fn split_yields_exactly_the_data_at_any_split() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..=body.len() {
            let (mut d, mut data, mut used) = (Decoder::new(), Vec::new(), 0);
            for piece in body.chunks(step) {
                let mut at = 0;
                while at < piece.len() && !d.is_done() {
                    let (n, range) = d.split(&piece[at..]).expect("valid");
                    data.extend_from_slice(&piece[at..][range]);
                    at += n;
                }
                used += at;
            }
            assert_eq!((data.as_slice(), used), (&b"Wikipedia"[..], body.len() - 4));
            assert!(d.is_done());
        }
    }

    #[test]
    fn huge_chunks_stream_without_storing() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"ffffffffffffffff\r\n"), Ok(18));
        let block = [0u8; 4096];
        for _ in 0..16 {
            assert_eq!(d.feed(&block), Ok(block.len()));
        }
        assert!(!d.is_done());
    }
}
