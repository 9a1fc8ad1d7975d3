//! The control and data-link wire format: pure encode/decode, no I/O.
//!
//! Every message is one frame: a big-endian `u16` length, then a one-byte type,
//! then the body (`length` counts type + body). Frames are capped at
//! [`MAX_FRAME_LEN`] so a peer can never make us allocate more than that, before or
//! after authentication. Decoding is strict and canonical: whatever decodes
//! re-encodes to exactly the same bytes (the fuzz target `control_frame` checks
//! this), so there is one spelling of every message. `PROTOCOL.md` is the normative
//! description and must change together with this file.

pub mod chunk;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version this build speaks. Sent in [`Frame::Hello`].
pub const VERSION: u8 = 3;
/// Four bytes at the start of every `Hello`, so a stray connection (a port
/// scanner, an HTTP client, a TLS client on a plain port) is told apart at once.
pub const MAGIC: [u8; 4] = *b"PTHL";
/// Largest frame (type byte + body) we encode or accept. The largest legal message
/// is a `RegisterFailed` (1 + 1 + 64 + 2 + 2 + 1024 = 1094 bytes), so 2 KiB bounds
/// every buffer a peer can make us fill, authenticated or not.
pub const MAX_FRAME_LEN: usize = 2048;
/// Longest service name (bytes). Config validation enforces the same bound.
pub const MAX_NAME_LEN: usize = 64;
/// Longest human-readable text in an `Error` or `RegisterFailed` frame (bytes).
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 2;

/// Random value chosen by one side for one handshake.
pub type Nonce = [u8; 32];
/// HMAC-SHA256 output.
pub type Mac = [u8; 32];
/// Names a control session; data links present it to join their session.
pub type SessionId = [u8; 16];
/// Chosen once per client process; lets a reconnecting client reclaim ports.
pub type ClientId = [u8; 16];

/// What a new connection wants to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkHello {
    /// A client's control link.
    Control { client_id: ClientId, nonce: Nonce },
    /// A data link joining an authenticated control session.
    Data { session_id: SessionId },
    /// A multiplexed data link (see `crate::mux`) joining a control session.
    Mux { session_id: SessionId },
}

/// Why a request failed; carried in `Error` and `RegisterFailed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    UnsupportedVersion,
    AuthFailed,
    ProtocolViolation,
    Timeout,
    PortNotAllowed,
    PortInUse,
    TooManyServices,
    BadService,
    UnknownSession,
    ShuttingDown,
    Internal,
    /// A code this build does not know (a newer peer); kept so it re-encodes.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::AuthFailed => 2,
            ErrorCode::ProtocolViolation => 3,
            ErrorCode::Timeout => 4,
            ErrorCode::PortNotAllowed => 5,
            ErrorCode::PortInUse => 6,
            ErrorCode::TooManyServices => 7,
            ErrorCode::BadService => 8,
            ErrorCode::UnknownSession => 9,
            ErrorCode::ShuttingDown => 10,
            ErrorCode::Internal => 11,
            ErrorCode::Other(n) => n,
        }
    }

    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::AuthFailed,
            3 => ErrorCode::ProtocolViolation,
            4 => ErrorCode::Timeout,
            5 => ErrorCode::PortNotAllowed,
            6 => ErrorCode::PortInUse,
            7 => ErrorCode::TooManyServices,
            8 => ErrorCode::BadService,
            9 => ErrorCode::UnknownSession,
            10 => ErrorCode::ShuttingDown,
            11 => ErrorCode::Internal,
            n => ErrorCode::Other(n),
        }
    }
}

/// Every message of the control and data-link protocol.
///
/// Direction is in the doc of each variant (C = client, S = server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// C→S, first frame of every link.
    Hello { version: u8, link: LinkHello },
    /// S→C, answer to `Hello`: the server's fresh nonce.
    Challenge { nonce: Nonce },
    /// C→S, HMAC proving knowledge of the token (see `auth`).
    AuthResponse { mac: Mac },
    /// S→C on a control link: accepted. `mac` proves the server knows the token
    /// too (all zero when `authenticated` is false: a `--insecure-no-auth` server).
    AuthOk {
        session_id: SessionId,
        authenticated: bool,
        mac: Mac,
        heartbeat_interval_ms: u32,
    },
    /// C→S: expose a service; `remote_port` 0 lets the server pick.
    Register { name: String, remote_port: u16 },
    /// S→C: the service is listening on `port`.
    Registered { name: String, port: u16 },
    /// S→C: the service was refused; the client's other services are unaffected.
    RegisterFailed {
        name: String,
        code: ErrorCode,
        message: String,
    },
    /// Both ways, every heartbeat interval.
    Heartbeat,
    /// S→C: open `count` more data links.
    OpenData { count: u16 },
    /// S→C on an idle data link: a visitor for `service` arrived from `visitor`.
    /// After this frame the link carries the visitor's bytes in chunks
    /// ([`chunk`]) until both directions end and the client says `Idle`.
    Start {
        service: String,
        visitor: SocketAddr,
    },
    /// Either way: fatal for this link; `message` says why.
    Error { code: ErrorCode, message: String },
    /// Either way on a control link: clean shutdown, do not wait for a reconnect.
    Goodbye,
}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const CHALLENGE: u8 = 0x02;
    pub const AUTH_RESPONSE: u8 = 0x03;
    pub const AUTH_OK: u8 = 0x04;
    pub const REGISTER: u8 = 0x05;
    pub const REGISTERED: u8 = 0x06;
    pub const REGISTER_FAILED: u8 = 0x07;
    pub const HEARTBEAT: u8 = 0x08;
    pub const OPEN_DATA: u8 = 0x09;
    pub const START: u8 = 0x0a;
    pub const ERROR: u8 = 0x0b;
    pub const GOODBYE: u8 = 0x0c;
}

const LINK_CONTROL: u8 = 0;
const LINK_DATA: u8 = 1;
const LINK_MUX: u8 = 2;
const ADDR_V4: u8 = 4;
const ADDR_V6: u8 = 6;

/// Why bytes are not a valid frame. Each variant carries the offending value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix is 0 or above [`MAX_FRAME_LEN`].
    BadLength {
        len: usize,
        max: usize,
    },
    UnknownType(u8),
    BadMagic([u8; 4]),
    UnknownLinkKind(u8),
    UnknownAddrFamily(u8),
    /// A boolean byte other than 0 or 1.
    BadBool(u8),
    /// A string longer than its limit.
    StringTooLong {
        len: usize,
        max: usize,
    },
    BadUtf8,
    /// The body ended before the message did.
    Truncated,
    /// The body has bytes after the message.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength { len, max } => {
                write!(f, "frame length {len} is outside 1..={max}")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown frame type {t:#04x}"),
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:02x?}: not a porthole peer"),
            DecodeError::UnknownLinkKind(k) => write!(f, "unknown link kind {k}"),
            DecodeError::UnknownAddrFamily(a) => write!(f, "unknown address family {a}"),
            DecodeError::BadBool(b) => write!(f, "invalid boolean byte {b}"),
            DecodeError::StringTooLong { len, max } => {
                write!(f, "string of {len} bytes exceeds {max}")
            }
            DecodeError::BadUtf8 => f.write_str("string is not valid UTF-8"),
            DecodeError::Truncated => f.write_str("frame body is truncated"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the message"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame cannot be encoded (a local bug or an over-long config value).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    StringTooLong { len: usize, max: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::StringTooLong { len, max } => {
                write!(f, "string of {len} bytes exceeds {max}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Checks a frame's length prefix; returns the body length (type + body) to read.
pub fn check_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, DecodeError> {
    let len = usize::from(u16::from_be_bytes(prefix));
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(DecodeError::BadLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes one frame from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` consumed
/// `used` bytes. Never reads past the frame, never panics, never allocates more
/// than the frame's own (capped) length.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = check_len(*prefix)?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, LEN_PREFIX + len)))
}

/// Decodes a frame body (type byte + fields) whose length was already checked.
pub fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
    let mut r = Reader { buf: body };
    let frame = match r.u8()? {
        tag::HELLO => decode_hello(&mut r)?,
        tag::CHALLENGE => Frame::Challenge { nonce: r.array()? },
        tag::AUTH_RESPONSE => Frame::AuthResponse { mac: r.array()? },
        tag::AUTH_OK => Frame::AuthOk {
            session_id: r.array()?,
            authenticated: r.bool()?,
            mac: r.array()?,
            heartbeat_interval_ms: r.u32()?,
        },
        tag::REGISTER => Frame::Register {
            name: r.str8(MAX_NAME_LEN)?,
            remote_port: r.u16()?,
        },
        tag::REGISTERED => Frame::Registered {
            name: r.str8(MAX_NAME_LEN)?,
            port: r.u16()?,
        },
        tag::REGISTER_FAILED => Frame::RegisterFailed {
            name: r.str8(MAX_NAME_LEN)?,
            code: ErrorCode::from_u16(r.u16()?),
            message: r.str16(MAX_MESSAGE_LEN)?,
        },
        tag::HEARTBEAT => Frame::Heartbeat,
        tag::OPEN_DATA => Frame::OpenData { count: r.u16()? },
        tag::START => Frame::Start {
            service: r.str8(MAX_NAME_LEN)?,
            visitor: r.addr()?,
        },
        tag::ERROR => Frame::Error {
            code: ErrorCode::from_u16(r.u16()?),
            message: r.str16(MAX_MESSAGE_LEN)?,
        },
        tag::GOODBYE => Frame::Goodbye,
        other => return Err(DecodeError::UnknownType(other)),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::TrailingBytes(r.buf.len()));
    }
    Ok(frame)
}

fn decode_hello(r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
    let magic: [u8; 4] = r.array()?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8()?;
    let link = match r.u8()? {
        LINK_CONTROL => LinkHello::Control {
            client_id: r.array()?,
            nonce: r.array()?,
        },
        LINK_DATA => LinkHello::Data {
            session_id: r.array()?,
        },
        LINK_MUX => LinkHello::Mux {
            session_id: r.array()?,
        },
        other => return Err(DecodeError::UnknownLinkKind(other)),
    };
    Ok(Frame::Hello { version, link })
}

/// Appends the encoding of `frame` (length prefix included) to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut w = Writer { out };
    match frame {
        Frame::Hello { version, link } => {
            w.u8(tag::HELLO);
            w.bytes(&MAGIC);
            w.u8(*version);
            match link {
                LinkHello::Control { client_id, nonce } => {
                    w.u8(LINK_CONTROL);
                    w.bytes(client_id);
                    w.bytes(nonce);
                }
                LinkHello::Data { session_id } => {
                    w.u8(LINK_DATA);
                    w.bytes(session_id);
                }
                LinkHello::Mux { session_id } => {
                    w.u8(LINK_MUX);
                    w.bytes(session_id);
                }
            }
        }
        Frame::Challenge { nonce } => {
            w.u8(tag::CHALLENGE);
            w.bytes(nonce);
        }
        Frame::AuthResponse { mac } => {
            w.u8(tag::AUTH_RESPONSE);
            w.bytes(mac);
        }
        Frame::AuthOk {
            session_id,
            authenticated,
            mac,
            heartbeat_interval_ms,
        } => {
            w.u8(tag::AUTH_OK);
            w.bytes(session_id);
            w.u8(u8::from(*authenticated));
            w.bytes(mac);
            w.bytes(&heartbeat_interval_ms.to_be_bytes());
        }
        Frame::Register { name, remote_port } => {
            w.u8(tag::REGISTER);
            w.str8(name, MAX_NAME_LEN)?;
            w.u16(*remote_port);
        }
        Frame::Registered { name, port } => {
            w.u8(tag::REGISTERED);
            w.str8(name, MAX_NAME_LEN)?;
            w.u16(*port);
        }
        Frame::RegisterFailed {
            name,
            code,
            message,
        } => {
            w.u8(tag::REGISTER_FAILED);
            w.str8(name, MAX_NAME_LEN)?;
            w.u16(code.to_u16());
            w.str16(message, MAX_MESSAGE_LEN)?;
        }
        Frame::Heartbeat => w.u8(tag::HEARTBEAT),
        Frame::OpenData { count } => {
            w.u8(tag::OPEN_DATA);
            w.u16(*count);
        }
        Frame::Start { service, visitor } => {
            w.u8(tag::START);
            w.str8(service, MAX_NAME_LEN)?;
            w.addr(visitor);
        }
        Frame::Error { code, message } => {
            w.u8(tag::ERROR);
            w.u16(code.to_u16());
            w.str16(message, MAX_MESSAGE_LEN)?;
        }
        Frame::Goodbye => w.u8(tag::GOODBYE),
    }
    // Every field is individually capped, so the body always fits; the assert
    // documents the invariant that MAX_FRAME_LEN covers the largest message.
    let len = out.len() - start - LEN_PREFIX;
    debug_assert!(len <= MAX_FRAME_LEN);
    let len = u16::try_from(len).expect("every frame fits in MAX_FRAME_LEN");
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Encodes `frame` into a fresh buffer.
pub fn to_bytes(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode(frame, &mut out)?;
    Ok(out)
}

/// Shortens `text` to at most [`MAX_MESSAGE_LEN`] bytes on a char boundary, so an
/// over-long error message degrades instead of failing to encode.
pub fn clamp_message(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::BadBool(b)),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize, max: usize) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::StringTooLong { len, max });
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8)
    }

    fn str8(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        self.string(len, max)
    }

    fn str16(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        self.string(len, max)
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            ADDR_V4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            ADDR_V6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(DecodeError::UnknownAddrFamily(other)),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn str8(&mut self, s: &str, max: usize) -> Result<(), EncodeError> {
        let len = check_str(s, max.min(usize::from(u8::MAX)))?;
        self.u8(len as u8);
        self.bytes(s.as_bytes());
        Ok(())
    }

    fn str16(&mut self, s: &str, max: usize) -> Result<(), EncodeError> {
        let len = check_str(s, max)?;
        self.u16(len as u16);
        self.bytes(s.as_bytes());
        Ok(())
    }

    fn addr(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(ADDR_V4);
                self.bytes(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(ADDR_V6);
                self.bytes(&ip.octets());
            }
        }
        self.u16(addr.port());
    }
}

fn check_str(s: &str, max: usize) -> Result<usize, EncodeError> {
    if s.len() > max {
        return Err(EncodeError::StringTooLong { len: s.len(), max });
    }
    Ok(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: VERSION,
                link: LinkHello::Control {
                    client_id: [7; 16],
                    nonce: [9; 32],
                },
            },
            Frame::Hello {
                version: VERSION,
                link: LinkHello::Data {
                    session_id: [3; 16],
                },
            },
            Frame::Hello {
                version: VERSION,
                link: LinkHello::Mux {
                    session_id: [6; 16],
                },
            },
            Frame::Challenge { nonce: [1; 32] },
            Frame::AuthResponse { mac: [2; 32] },
            Frame::AuthOk {
                session_id: [4; 16],
                authenticated: true,
                mac: [5; 32],
                heartbeat_interval_ms: 10_000,
            },
            Frame::Register {
                name: "web".into(),
                remote_port: 10080,
            },
            Frame::Registered {
                name: "web".into(),
                port: 10080,
            },
            Frame::RegisterFailed {
                name: "ssh".into(),
                code: ErrorCode::PortNotAllowed,
                message: "port 22 is not allowed".into(),
            },
            Frame::Heartbeat,
            Frame::OpenData { count: 3 },
            Frame::Start {
                service: "web".into(),
                visitor: "[::1]:5555".parse().expect("literal"),
            },
            Frame::Start {
                service: "web".into(),
                visitor: "127.0.0.1:80".parse().expect("literal"),
            },
            Frame::Error {
                code: ErrorCode::Other(999),
                message: "é".repeat(MAX_MESSAGE_LEN / 2),
            },
            Frame::Goodbye,
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in samples() {
            let bytes = to_bytes(&frame).expect("encodes");
            assert!(bytes.len() <= LEN_PREFIX + MAX_FRAME_LEN);
            let (back, used) = decode(&bytes).expect("decodes").expect("complete");
            assert_eq!(back, frame);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn every_prefix_asks_for_more() {
        for frame in samples() {
            let bytes = to_bytes(&frame).expect("encodes");
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Ok(None), "{frame:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn oversize_and_zero_lengths_are_refused_before_the_body() {
        let too_big = u16::try_from(MAX_FRAME_LEN + 1).expect("fits");
        assert!(matches!(
            decode(&too_big.to_be_bytes()),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            decode(&[0, 0]),
            Err(DecodeError::BadLength { len: 0, .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(decode(&[0, 1, 0xee]), Err(DecodeError::UnknownType(0xee)));
        assert_eq!(
            decode(&[0, 2, tag::HEARTBEAT, 0]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode(&[0, 2, tag::OPEN_DATA, 0]),
            Err(DecodeError::Truncated)
        );
        let mut hello = to_bytes(&samples()[0]).expect("encodes");
        hello[3] = b'X';
        assert!(matches!(decode(&hello), Err(DecodeError::BadMagic(_))));
        let short_string = [0, 4, tag::REGISTER, 5, b'a', b'b'];
        assert_eq!(decode(&short_string), Err(DecodeError::Truncated));
        let bad_utf8 = [0, 6, tag::REGISTER, 2, 0xff, 0xfe, 0, 1];
        assert_eq!(decode(&bad_utf8), Err(DecodeError::BadUtf8));
    }

    #[test]
    fn over_long_strings_do_not_encode() {
        let frame = Frame::Register {
            name: "x".repeat(MAX_NAME_LEN + 1),
            remote_port: 1,
        };
        assert!(matches!(
            to_bytes(&frame),
            Err(EncodeError::StringTooLong { .. })
        ));
        assert_eq!(
            clamp_message(&"é".repeat(MAX_MESSAGE_LEN)).len(),
            MAX_MESSAGE_LEN
        );
    }
}
