//! The chunk framing of a pooled data link while it carries a visitor: pure
//! encode/decode, no I/O (PROTOCOL.md section 9).
//!
//! After `Start`, each direction of a pooled link is a run of chunks, each a
//! 4-byte header — kind `u8`, length `u24` big-endian — and, for `Data`, exactly
//! `length` payload bytes. `End` (length 0) is the end of that direction: the
//! sender's source reached EOF, and the receiver shuts down its own write side.
//! Once a client has sent its `End` and received the server's, it sends `Idle`
//! (length 0) and waits for the next `Start`; the server gives the link to a new
//! visitor only after it has read that `Idle`. Because every direction ends at an
//! exact byte, no byte of one visitor can reach the next, and a `Start` can never
//! meet a link the client still thinks busy.
//!
//! Before a visitor's chunks, the client answers each `Start` with `Accept`
//! (length 0) as soon as it has read it — before it connects to the service —
//! so the server knows the link is alive and can stop keeping a copy of the
//! visitor's first bytes (a link that dies before `Accept` is replaced and those
//! bytes replayed on another link). While a link is idle the client sends
//! `Probe` (length 0) every `link_probe_interval`, so a NAT on the way keeps the
//! link's mapping and a link that died is noticed; the server skips probes
//! while it waits for `Accept` ([`before_accept`]).
//!
//! The [`Decoder`] is what both sides run over the bytes they read from a link:
//! it names what each byte is, and refuses anything out of place — an unknown
//! kind, a zero or oversized `Data` length, a length on `End` or `Idle`, `Idle`
//! before `End`, and any byte after the last chunk the reader may receive (the
//! fuzz target `chunk` checks that decoding is the same however the input is
//! split, and that encoding what was decoded gives back the input).

use std::fmt;

/// Bytes of a chunk header.
pub const HEADER_LEN: usize = 4;
/// Largest `Data` payload: the largest pipe a relay splices through (1 MiB), so
/// one header covers one pipe-full. Receivers never buffer a chunk: they move its
/// payload on as it arrives, so the cap bounds no allocation, only how far a
/// length can point.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;

// Kinds are letters, outside 0x00..=0x08 (the first byte of every control
// frame, whose length is at most 2048) and the TLS record types: a frame sent
// where a chunk is due, such as a `Start` on a link still busy, can never
// parse as a chunk, and is refused.
const KIND_DATA: u8 = b'd';
const KIND_END: u8 = b'e';
const KIND_IDLE: u8 = b'i';
const KIND_PROBE: u8 = b'p';
const KIND_ACCEPT: u8 = b'a';

/// One chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `len` payload bytes follow, `1..=MAX_CHUNK_LEN`.
    Data(u32),
    /// This direction is over for this visitor.
    End,
    /// Client to server, after both `End`s: the link is free for a new `Start`.
    Idle,
    /// Client to server, while the link is idle: keeps NAT mappings alive.
    Probe,
    /// Client to server, first after a `Start`: the client has the visitor.
    Accept,
}

/// Why a link's bytes are not valid chunks. Every one ends the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// A kind byte that is not a chunk kind.
    UnknownKind(u8),
    /// A `Data` length of 0 or above [`MAX_CHUNK_LEN`], or a non-zero length on
    /// `End` or `Idle`.
    BadLength { kind: u8, len: u32 },
    /// A well-formed chunk where it may not appear: `Idle` before `End`, a
    /// second `End`, `Idle` sent to the client, `Probe` or `Accept` among a
    /// visitor's chunks, or anything but those two before `Accept`.
    Unexpected(Chunk),
    /// A byte after the last chunk this reader may receive (after `End` on the
    /// client, after `Idle` on the server).
    PastEnd,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::UnknownKind(k) => write!(f, "unknown chunk kind {k}"),
            ChunkError::BadLength { kind, len } => {
                write!(f, "chunk kind {kind} with invalid length {len}")
            }
            ChunkError::Unexpected(c) => write!(f, "unexpected chunk {c:?}"),
            ChunkError::PastEnd => f.write_str("bytes after the end of the visitor"),
        }
    }
}

impl std::error::Error for ChunkError {}

impl Chunk {
    /// The header's bytes.
    pub const fn encode(self) -> [u8; HEADER_LEN] {
        let (kind, len) = match self {
            Chunk::Data(len) => (KIND_DATA, len),
            Chunk::End => (KIND_END, 0),
            Chunk::Idle => (KIND_IDLE, 0),
            Chunk::Probe => (KIND_PROBE, 0),
            Chunk::Accept => (KIND_ACCEPT, 0),
        };
        let len = len.to_be_bytes();
        [kind, len[1], len[2], len[3]]
    }

    /// Parses a header; strict, so whatever decodes re-encodes identically.
    pub fn decode(header: [u8; HEADER_LEN]) -> Result<Chunk, ChunkError> {
        let [kind, a, b, c] = header;
        let len = u32::from_be_bytes([0, a, b, c]);
        match (kind, len) {
            (KIND_DATA, 1..=MAX_CHUNK_LEN) => Ok(Chunk::Data(len)),
            (KIND_END, 0) => Ok(Chunk::End),
            (KIND_IDLE, 0) => Ok(Chunk::Idle),
            (KIND_PROBE, 0) => Ok(Chunk::Probe),
            (KIND_ACCEPT, 0) => Ok(Chunk::Accept),
            (KIND_DATA | KIND_END | KIND_IDLE | KIND_PROBE | KIND_ACCEPT, len) => {
                Err(ChunkError::BadLength { kind, len })
            }
            (kind, _) => Err(ChunkError::UnknownKind(kind)),
        }
    }
}

/// What the server makes of a chunk header while it waits for the client to
/// accept a `Start`: `Ok(true)` for `Accept`, `Ok(false)` for a `Probe` (sent
/// while the link was idle, before the client read the `Start`); anything else
/// ends the link.
pub fn before_accept(header: [u8; HEADER_LEN]) -> Result<bool, ChunkError> {
    match Chunk::decode(header)? {
        Chunk::Accept => Ok(true),
        Chunk::Probe => Ok(false),
        other => Err(ChunkError::Unexpected(other)),
    }
}

/// Which end of the link reads: it decides what may follow `End`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads the client's bytes: `Data`*, `End`, then `Idle`.
    Server,
    /// Reads the server's bytes: `Data`*, `End`, and nothing after.
    Client,
}

/// What the front of the input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// That many payload bytes, to be passed on.
    Payload(usize),
    /// A header or part of one: nothing to pass on.
    Header,
    /// The end of this direction.
    End,
    /// The client is idle (server side only).
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Flowing,
    Ended,
    Idle,
}

/// Incremental reader of one direction of a link, for one visitor.
#[derive(Clone, Debug)]
pub struct Decoder {
    role: Role,
    header: [u8; HEADER_LEN],
    have: usize,
    /// Payload bytes of the current `Data` chunk not yet seen.
    left: u32,
    phase: Phase,
}

impl Decoder {
    pub fn new(role: Role) -> Self {
        Decoder {
            role,
            header: [0; HEADER_LEN],
            have: 0,
            left: 0,
            phase: Phase::Flowing,
        }
    }

    /// Decodes from the front of `input` (which must not be empty): returns how
    /// many bytes that was and what they were.
    pub fn next(&mut self, input: &[u8]) -> Result<(usize, Piece), ChunkError> {
        if self.left > 0 {
            let n = input.len().min(self.left as usize);
            self.took_payload(n);
            return Ok((n, Piece::Payload(n)));
        }
        let last = match self.role {
            Role::Server => Phase::Idle,
            Role::Client => Phase::Ended,
        };
        if self.phase == last && !input.is_empty() {
            return Err(ChunkError::PastEnd);
        }
        let n = input.len().min(HEADER_LEN - self.have);
        self.header[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        if self.have < HEADER_LEN {
            return Ok((n, Piece::Header));
        }
        self.have = 0;
        let chunk = Chunk::decode(self.header)?;
        let piece = match (self.phase, chunk) {
            (Phase::Flowing, Chunk::Data(len)) => {
                self.left = len;
                Piece::Header
            }
            (Phase::Flowing, Chunk::End) => {
                self.phase = Phase::Ended;
                Piece::End
            }
            (Phase::Ended, Chunk::Idle) if self.role == Role::Server => {
                self.phase = Phase::Idle;
                Piece::Idle
            }
            (_, chunk) => return Err(ChunkError::Unexpected(chunk)),
        };
        Ok((n, piece))
    }

    /// Payload bytes of the current chunk still to come (0: a header is next).
    /// A relay may move exactly this many without looking at them.
    pub fn payload_left(&self) -> u32 {
        self.left
    }

    /// Header bytes still needed before anything else can be decoded (0 while
    /// payload is due). Reading exactly this many never reads past a chunk.
    pub fn header_need(&self) -> usize {
        if self.left > 0 {
            0
        } else {
            HEADER_LEN - self.have
        }
    }

    /// Records `n` payload bytes moved without passing through [`Decoder::next`]
    /// (spliced). `n` must not exceed [`Decoder::payload_left`].
    pub fn took_payload(&mut self, n: usize) {
        debug_assert!(n <= self.left as usize);
        self.left = self
            .left
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Whether `End` was read.
    pub fn ended(&self) -> bool {
        self.phase != Phase::Flowing
    }

    /// Whether the client's `Idle` was read (server side).
    pub fn idle(&self) -> bool {
        self.phase == Phase::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(role: Role, input: &[u8]) -> Result<(Vec<u8>, Vec<Piece>), ChunkError> {
        let mut dec = Decoder::new(role);
        let (mut payload, mut marks) = (Vec::new(), Vec::new());
        let mut rest = input;
        while !rest.is_empty() {
            let (n, piece) = dec.next(rest)?;
            match piece {
                Piece::Payload(_) => payload.extend_from_slice(&rest[..n]),
                Piece::Header => {}
                other => marks.push(other),
            }
            rest = &rest[n..];
        }
        Ok((payload, marks))
    }

    fn stream(parts: &[Chunk], payload: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in parts {
            out.extend_from_slice(&chunk.encode());
            if let Chunk::Data(len) = chunk {
                out.extend(std::iter::repeat_n(payload, *len as usize));
            }
        }
        out
    }

    #[test]
    fn headers_round_trip_and_reject_what_is_not_canonical() {
        for chunk in [
            Chunk::Data(1),
            Chunk::Data(MAX_CHUNK_LEN),
            Chunk::End,
            Chunk::Idle,
            Chunk::Probe,
            Chunk::Accept,
        ] {
            assert_eq!(Chunk::decode(chunk.encode()), Ok(chunk));
        }
        assert_eq!(
            Chunk::decode([b'p', 0, 0, 4]),
            Err(ChunkError::BadLength { kind: b'p', len: 4 })
        );
        assert_eq!(
            Chunk::decode([b'd', 0, 0, 0]),
            Err(ChunkError::BadLength { kind: b'd', len: 0 })
        );
        let too_long = (MAX_CHUNK_LEN + 1).to_be_bytes();
        assert!(matches!(
            Chunk::decode([b'd', too_long[1], too_long[2], too_long[3]]),
            Err(ChunkError::BadLength { .. })
        ));
        assert_eq!(
            Chunk::decode([b'e', 0, 0, 1]),
            Err(ChunkError::BadLength { kind: b'e', len: 1 })
        );
        assert_eq!(Chunk::decode([9, 0, 0, 0]), Err(ChunkError::UnknownKind(9)));
    }

    #[test]
    fn before_accept_only_probes_and_accept_are_allowed_and_never_inside_a_visitor() {
        assert_eq!(before_accept(Chunk::Probe.encode()), Ok(false));
        assert_eq!(before_accept(Chunk::Accept.encode()), Ok(true));
        for chunk in [Chunk::Data(1), Chunk::End, Chunk::Idle] {
            assert_eq!(
                before_accept(chunk.encode()),
                Err(ChunkError::Unexpected(chunk))
            );
        }
        for chunk in [Chunk::Probe, Chunk::Accept] {
            let bytes = stream(&[Chunk::Data(1), chunk], 0);
            assert_eq!(
                decode_all(Role::Server, &bytes),
                Err(ChunkError::Unexpected(chunk))
            );
        }
    }

    #[test]
    fn the_server_reads_data_end_idle_and_nothing_more() {
        let bytes = stream(
            &[Chunk::Data(3), Chunk::Data(2), Chunk::End, Chunk::Idle],
            7,
        );
        let (payload, marks) = decode_all(Role::Server, &bytes).expect("valid");
        assert_eq!(payload, vec![7; 5]);
        assert_eq!(marks, vec![Piece::End, Piece::Idle]);
        let mut past = bytes.clone();
        past.push(0);
        assert_eq!(decode_all(Role::Server, &past), Err(ChunkError::PastEnd));
    }

    #[test]
    fn the_client_refuses_idle_and_any_byte_after_end() {
        let idle = stream(&[Chunk::End, Chunk::Idle], 0);
        assert_eq!(decode_all(Role::Client, &idle), Err(ChunkError::PastEnd));
        assert_eq!(
            decode_all(Role::Server, &stream(&[Chunk::Idle], 0)),
            Err(ChunkError::Unexpected(Chunk::Idle)),
            "idle before end"
        );
        assert_eq!(
            decode_all(Role::Server, &stream(&[Chunk::End, Chunk::End], 0)),
            Err(ChunkError::Unexpected(Chunk::End))
        );
    }

    #[test]
    fn byte_by_byte_is_the_same_as_one_shot() {
        let bytes = stream(&[Chunk::Data(5), Chunk::End, Chunk::Idle], 1);
        let mut dec = Decoder::new(Role::Server);
        let mut payload = 0;
        for b in &bytes {
            if let (_, Piece::Payload(n)) = dec.next(std::slice::from_ref(b)).expect("valid") {
                payload += n;
            }
        }
        assert_eq!(payload, 5);
        assert!(dec.idle());
    }

    #[test]
    fn a_control_frame_where_a_chunk_is_due_is_refused() {
        let start = crate::protocol::to_bytes(&crate::protocol::Frame::Start {
            service: "web".into(),
            visitor: "127.0.0.1:9".parse().expect("addr"),
            public: None,
            udp: false,
        })
        .expect("encodes");
        for role in [Role::Client, Role::Server] {
            assert_eq!(
                Decoder::new(role).next(&start),
                Err(ChunkError::UnknownKind(start[0]))
            );
        }
    }

    #[test]
    fn spliced_payload_is_accounted_for() {
        let mut dec = Decoder::new(Role::Client);
        assert_eq!(dec.header_need(), HEADER_LEN);
        dec.next(&Chunk::Data(10).encode()).expect("header");
        assert_eq!((dec.payload_left(), dec.header_need()), (10, 0));
        dec.took_payload(10);
        assert_eq!(dec.header_need(), HEADER_LEN);
        assert_eq!(dec.next(&Chunk::End.encode()), Ok((HEADER_LEN, Piece::End)));
        assert!(dec.ended() && !dec.idle());
    }
}
