//! Frames to bytes and back: strict, canonical, capped (see the module docs
//! of `crate::protocol`). No I/O; the fuzz target `control_frame` drives it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    ErrorCode, Farewell, Frame, LEN_PREFIX, LinkHello, MAGIC, MAX_FRAME_LEN, MAX_ID_LEN,
    MAX_MESSAGE_LEN, MAX_NAME_LEN, valid_name,
};

pub(super) mod tag {
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
    pub const UNREGISTER: u8 = 0x0d;
    pub const UNREGISTERED: u8 = 0x0e;
    /// `Start` of a UDP flow: datagram records follow, not chunks.
    pub const START_FLOW: u8 = 0x0f;
}

const LINK_CONTROL: u8 = 0;
const LINK_DATA: u8 = 1;
const LINK_MUX: u8 = 2;
/// A control link naming its per-client credentials (an extension of version
/// 3: an older server answers it as undecodable, see PROTOCOL.md).
const LINK_NAMED_CONTROL: u8 = 3;
const ADDR_V4: u8 = 4;
const ADDR_V6: u8 = 6;
/// `Register` flags byte: Starts for the service carry the public address.
const REGISTER_PUBLIC_ADDRESS: u8 = 0x01;
/// `Register` flag: a UDP service (PROTOCOL.md section 16).
const REGISTER_UDP: u8 = 0x02;
/// Every `Register` flag this version knows.
const REGISTER_FLAGS: u8 = REGISTER_PUBLIC_ADDRESS | REGISTER_UDP;

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
    /// A client id that is not 1..=64 bytes of `[A-Za-z0-9_.-]`.
    BadId(String),
    /// The body ended before the message did.
    Truncated,
    /// The body has bytes after the message.
    TrailingBytes(usize),
    /// A `Goodbye` reason byte of 0 (leaving is spelled with no body).
    BadFarewell(u8),
    /// A `Register` flags byte other than the one flag defined (no flags
    /// are spelled with no byte).
    BadFlags(u8),
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
            DecodeError::BadId(id) => write!(
                f,
                "client id {id:?} is not 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_', '.', '-'"
            ),
            DecodeError::Truncated => f.write_str("frame body is truncated"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the message"),
            DecodeError::BadFarewell(n) => write!(f, "goodbye reason {n} is not a spelling"),
            DecodeError::BadFlags(n) => write!(f, "register flags {n:#04x} are not a spelling"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame cannot be encoded (a local bug or an over-long config value).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    StringTooLong {
        len: usize,
        max: usize,
    },
    /// A client id the decoder would refuse (see `protocol::valid_name`).
    BadId(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::StringTooLong { len, max } => {
                write!(f, "string of {len} bytes exceeds {max}")
            }
            EncodeError::BadId(id) => write!(f, "client id {id:?} is not a valid id"),
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
    let tag = r.u8()?;
    let frame = match tag {
        tag::HELLO => decode_hello(&mut r)?,
        tag::CHALLENGE => Frame::Challenge { nonce: r.array()? },
        tag::AUTH_RESPONSE => Frame::AuthResponse { mac: r.array()? },
        tag::AUTH_OK => Frame::AuthOk {
            session_id: r.array()?,
            authenticated: r.bool()?,
            mac: r.array()?,
            heartbeat_interval_ms: r.u32()?,
        },
        tag::REGISTER => {
            let name = r.str8(MAX_NAME_LEN)?;
            let remote_port = r.u16()?;
            // Absent means none, so `0x00` is not a spelling (canonical).
            let flags = match r.buf.is_empty() {
                true => 0,
                false => match r.u8()? {
                    f if f != 0 && f & !REGISTER_FLAGS == 0 => f,
                    other => return Err(DecodeError::BadFlags(other)),
                },
            };
            Frame::Register {
                name,
                remote_port,
                public_address: flags & REGISTER_PUBLIC_ADDRESS != 0,
                udp: flags & REGISTER_UDP != 0,
            }
        }
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
        tag::START | tag::START_FLOW => Frame::Start {
            service: r.str8(MAX_NAME_LEN)?,
            visitor: r.addr()?,
            public: match r.buf.is_empty() {
                true => None,
                false => Some(r.addr()?),
            },
            udp: tag == tag::START_FLOW,
        },
        tag::ERROR => Frame::Error {
            code: ErrorCode::from_u16(r.u16()?),
            message: r.str16(MAX_MESSAGE_LEN)?,
        },
        tag::GOODBYE => Frame::Goodbye {
            reason: match r.buf.is_empty() {
                true => Farewell::Leaving,
                false => {
                    let n = r.u8()?;
                    Farewell::from_u8(n).ok_or(DecodeError::BadFarewell(n))?
                }
            },
        },
        tag::UNREGISTER => Frame::Unregister {
            name: r.str8(MAX_NAME_LEN)?,
        },
        tag::UNREGISTERED => Frame::Unregistered {
            name: r.str8(MAX_NAME_LEN)?,
        },
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
        LINK_NAMED_CONTROL => LinkHello::NamedControl {
            client_id: r.array()?,
            nonce: r.array()?,
            id: r.id()?,
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
                LinkHello::NamedControl {
                    client_id,
                    nonce,
                    id,
                } => {
                    w.u8(LINK_NAMED_CONTROL);
                    w.bytes(client_id);
                    w.bytes(nonce);
                    if !valid_name(id) {
                        return Err(EncodeError::BadId(id.clone()));
                    }
                    w.str8(id, MAX_ID_LEN)?;
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
        Frame::Register {
            name,
            remote_port,
            public_address,
            udp,
        } => {
            w.u8(tag::REGISTER);
            w.str8(name, MAX_NAME_LEN)?;
            w.u16(*remote_port);
            let flags = (u8::from(*public_address) * REGISTER_PUBLIC_ADDRESS)
                | (u8::from(*udp) * REGISTER_UDP);
            if flags != 0 {
                w.u8(flags);
            }
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
        Frame::Start {
            service,
            visitor,
            public,
            udp,
        } => {
            w.u8(if *udp { tag::START_FLOW } else { tag::START });
            w.str8(service, MAX_NAME_LEN)?;
            w.addr(visitor);
            if let Some(public) = public {
                w.addr(public);
            }
        }
        Frame::Error { code, message } => {
            w.u8(tag::ERROR);
            w.u16(code.to_u16());
            w.str16(message, MAX_MESSAGE_LEN)?;
        }
        Frame::Goodbye { reason } => {
            w.u8(tag::GOODBYE);
            if let Some(n) = reason.to_u8() {
                w.u8(n);
            }
        }
        Frame::Unregister { name } => {
            w.u8(tag::UNREGISTER);
            w.str8(name, MAX_NAME_LEN)?;
        }
        Frame::Unregistered { name } => {
            w.u8(tag::UNREGISTERED);
            w.str8(name, MAX_NAME_LEN)?;
        }
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

    /// A client id: a `str8` that must pass `protocol::valid_name`.
    fn id(&mut self) -> Result<String, DecodeError> {
        let id = self.str8(MAX_ID_LEN)?;
        if !valid_name(&id) {
            return Err(DecodeError::BadId(id));
        }
        Ok(id)
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
