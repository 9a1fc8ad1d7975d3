//! The mux frame codec: pure functions over bytes, no I/O.
//!
//! Every frame starts with a fixed 12-byte header:
//!
//! ```text
//! version:u8  type:u8  flags:u16  stream:u32  length:u32      (big-endian)
//! ```
//!
//! `length` is the payload length for `Open` and `Data` and a value for the other
//! types (a credit increment, an error code, a ping nonce). Payloads are capped
//! ([`MAX_DATA_LEN`], [`MAX_OPEN_LEN`]) so one stream cannot hog the link and a
//! header can never make the reader allocate more than a cap. An unknown version,
//! type or flag is an error, never a panic. The normative description is
//! PROTOCOL.md, section "Multiplexed data links".

/// Bytes in a header.
pub const HEADER_LEN: usize = 12;
/// The only version this codec speaks.
pub const VERSION: u8 = 1;
/// Largest `Data` payload: 32 KiB keeps a round-robin turn short (one frame of
/// one stream is at most ~3 µs of a 10 Gbit/s link) while amortising the header.
pub const MAX_DATA_LEN: u32 = 32 * 1024;
/// Largest `Open` payload (the tunnel puts a `Start` frame there, ≤ 2 KiB).
pub const MAX_OPEN_LEN: u32 = 2048;

/// Ping flag: this ping is an answer.
pub const FLAG_ACK: u16 = 1;

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Opens `stream`; the payload is opaque to the mux (the tunnel's `Start`).
    Open = 0,
    /// Stream bytes.
    Data = 1,
    /// Grants `length` more bytes of credit on `stream`.
    Window = 2,
    /// The sender will send no more bytes on `stream` (half-close).
    Fin = 3,
    /// Abort `stream`; `length` is an error code.
    Reset = 4,
    /// Liveness probe (stream 0); `length` is a nonce echoed with `FLAG_ACK`.
    Ping = 5,
    /// No new streams; `stream` is the highest peer-opened id that was handled.
    GoAway = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Open,
            1 => Kind::Data,
            2 => Kind::Window,
            3 => Kind::Fin,
            4 => Kind::Reset,
            5 => Kind::Ping,
            6 => Kind::GoAway,
            _ => return None,
        })
    }

    /// Whether `length` counts payload bytes that follow the header.
    pub fn has_payload(self) -> bool {
        matches!(self, Kind::Open | Kind::Data)
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u16,
    pub stream: u32,
    pub length: u32,
}

/// Why a header was refused. Every one ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    UnknownVersion(u8),
    UnknownType(u8),
    UnknownFlags {
        kind: Kind,
        flags: u16,
    },
    TooLarge {
        kind: Kind,
        len: u32,
        max: u32,
    },
    /// Stream 0 is the session; only Ping and GoAway use it, and they use only it.
    BadStream {
        kind: Kind,
        stream: u32,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::UnknownVersion(v) => write!(f, "unknown mux version {v}"),
            FrameError::UnknownType(t) => write!(f, "unknown mux frame type {t}"),
            FrameError::UnknownFlags { kind, flags } => {
                write!(f, "unknown flags {flags:#x} on {kind:?}")
            }
            FrameError::TooLarge { kind, len, max } => {
                write!(f, "{kind:?} payload of {len} bytes exceeds {max}")
            }
            FrameError::BadStream { kind, stream } => {
                write!(f, "{kind:?} frame on stream {stream}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl Header {
    pub fn new(kind: Kind, flags: u16, stream: u32, length: u32) -> Self {
        Header {
            kind,
            flags,
            stream,
            length,
        }
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        if b[0] != VERSION {
            return Err(FrameError::UnknownVersion(b[0]));
        }
        let kind = Kind::from_u8(b[1]).ok_or(FrameError::UnknownType(b[1]))?;
        let flags = u16::from_be_bytes([b[2], b[3]]);
        let stream = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let length = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let allowed_flags = if kind == Kind::Ping { FLAG_ACK } else { 0 };
        if flags & !allowed_flags != 0 {
            return Err(FrameError::UnknownFlags { kind, flags });
        }
        let bad_stream = match kind {
            Kind::Ping => stream != 0,
            Kind::GoAway => false,
            _ => stream == 0,
        };
        if bad_stream {
            return Err(FrameError::BadStream { kind, stream });
        }
        let max = match kind {
            Kind::Data => MAX_DATA_LEN,
            Kind::Open => MAX_OPEN_LEN,
            _ => u32::MAX,
        };
        if length > max {
            return Err(FrameError::TooLarge {
                kind,
                len: length,
                max,
            });
        }
        Ok(Header {
            kind,
            flags,
            stream,
            length,
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = self.kind as u8;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Payload bytes that follow this header.
    pub fn payload_len(&self) -> usize {
        if self.kind.has_payload() {
            self.length as usize
        } else {
            0
        }
    }
}

/// A whole frame, for the incremental [`Decoder`] (tests and fuzzing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Header and payload in wire order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Incremental decoding: bytes in, whole frames out; `Ok(None)` means "need
/// more bytes". Memory is bounded by one header plus the largest payload.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes. The caller drains with [`Decoder::next_frame`] between pushes,
    /// so at most one partial frame is ever buffered.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(head) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::decode(head)?;
        let total = HEADER_LEN + header.payload_len();
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Frame { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_errors() {
        let h = Header::new(Kind::Data, 0, 7, 100);
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let ping = Header::new(Kind::Ping, FLAG_ACK, 0, 42);
        assert_eq!(Header::decode(&ping.encode()), Ok(ping));
        let mut b = h.encode();
        b[0] = 2;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownVersion(2)));
        b = h.encode();
        b[1] = 9;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownType(9)));
        let big = Header::new(Kind::Data, 0, 1, MAX_DATA_LEN + 1).encode();
        assert!(matches!(
            Header::decode(&big),
            Err(FrameError::TooLarge { .. })
        ));
        let flagged = Header::new(Kind::Data, FLAG_ACK, 1, 1).encode();
        assert!(matches!(
            Header::decode(&flagged),
            Err(FrameError::UnknownFlags { .. })
        ));
        let data_on_zero = Header::new(Kind::Data, 0, 0, 1).encode();
        assert!(matches!(
            Header::decode(&data_on_zero),
            Err(FrameError::BadStream { .. })
        ));
        let ping_on_stream = Header::new(Kind::Ping, 0, 3, 1).encode();
        assert!(matches!(
            Header::decode(&ping_on_stream),
            Err(FrameError::BadStream { .. })
        ));
    }

    #[test]
    fn chunked_feeding_equals_one_shot() {
        let frames = [
            Frame {
                header: Header::new(Kind::Open, 0, 2, 3),
                payload: b"abc".to_vec(),
            },
            Frame {
                header: Header::new(Kind::Data, 0, 2, 5),
                payload: b"hello".to_vec(),
            },
            Frame {
                header: Header::new(Kind::Window, 0, 2, 65536),
                payload: vec![],
            },
            Frame {
                header: Header::new(Kind::Fin, 0, 2, 0),
                payload: vec![],
            },
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().expect("valid") {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }
}
