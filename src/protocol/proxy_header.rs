//! The PROXY protocol header (haproxy's `proxy-protocol.txt`, versions 1 and 2):
//! pure encode/decode, no I/O (PROTOCOL.md section 15).
//!
//! A PROXY header is what a relay puts before the first byte of a connection it
//! opens on someone's behalf, so that the receiver learns who really connected.
//! [`encode`] writes one for a TCP connection; [`parse`] reads one at the start of
//! a buffer and says how many bytes it took ([`Header::len`]); the bytes after it
//! are the connection's own and are never looked at.
//!
//! Invariants:
//! - Bounded: a header is never longer than the caller's `max_len` (clamped to
//!   [`V2_MAX_LEN`]); a v1 line never longer than [`V1_MAX_LEN`]. Once a
//!   non-empty buffer holds that many bytes, `parse` answers, it never asks for more.
//! - Split-independent: `parse` over a buffer that grows piece by piece returns
//!   `Ok(None)` until it returns exactly what it returns for the whole input
//!   (the same header, or the same error). Every decision is made from the bytes
//!   up to the one that settles it, left to right, so a bad byte is refused as
//!   soon as it arrives (a v1 field at the delimiter that ends it).
//! - What `encode` writes, `parse` reads back to the same addresses (the fuzz
//!   target `proxy_header` checks both properties).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ProxyHeaderError as E;

/// Which version a writer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Longest v1 header, CRLF included (the spec's 107: `PROXY UNKNOWN` with two
/// 39-character IPv6 addresses and two 5-digit ports).
pub const V1_MAX_LEN: usize = 107;
/// Fixed part of a v2 header (signature, version/command, family, length).
pub const V2_FIXED_LEN: usize = 16;
/// Longest v2 header the format allows (16 + u16::MAX).
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;
/// Longest header [`encode`] writes: a v1 TCP6 line with two 39-character
/// addresses and two 5-digit ports (104 bytes); a v2 header with no TLVs is at
/// most 16 + 36 = 52.
pub const MAX_ENCODED_LEN: usize = V1_TCP6_MAX_LEN;

/// "PROXY TCP6 " + address + " " + address + " " + port + " " + port + CRLF.
const V1_TCP6_MAX_LEN: usize = "PROXY TCP6 ".len() + 39 + 1 + 39 + 1 + 5 + 1 + 5 + 2;
const _: () = assert!(MAX_ENCODED_LEN <= V1_MAX_LEN);
const _: () = assert!(V2_FIXED_LEN + V2_TCP6_LEN <= MAX_ENCODED_LEN);

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// High nibble of byte 13.
const V2_VERSION: u8 = 2;
const COMMAND_LOCAL: u8 = 0;
const COMMAND_PROXY: u8 = 1;
const FAMILY_UNSPEC: u8 = 0x00;
const FAMILY_TCP4: u8 = 0x11;
const FAMILY_TCP6: u8 = 0x21;
const FAMILY_UNIX_STREAM: u8 = 0x31;
/// Address block of each family: two addresses, then two ports (none for UNIX).
const V2_TCP4_LEN: usize = 4 + 4 + 2 + 2;
const V2_TCP6_LEN: usize = 16 + 16 + 2 + 2;
const V2_UNIX_LEN: usize = 108 + 108;

/// What a header says about the connection it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// Relayed for `source`, which connected to `destination`.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v1 `UNKNOWN`, v2 `LOCAL`, or v2 `PROXY` with a family we do not carry
    /// (AF_UNSPEC, AF_UNIX): the receiver uses the connection's own addresses
    /// (e.g. a balancer's health check).
    Local,
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub addresses: Addresses,
    /// bytes the header occupies (consume exactly these)
    pub len: usize,
}

/// Why a buffer does not start with an acceptable PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// Starts with neither signature (decided at the first byte that differs).
    NotProxy,
    /// A v1 line that breaks the grammar; the reason names the rule.
    V1(&'static str),
    /// No CRLF in the first [`V1_MAX_LEN`] bytes of a v1 line.
    V1TooLong,
    /// A v2 version nibble other than 2.
    V2Version(u8),
    /// A v2 command nibble other than LOCAL (0) and PROXY (1).
    V2Command(u8),
    /// A v2 family/transport byte porthole refuses: UDP (0x12, 0x22), UNIX
    /// datagram (0x32), and every combination the spec does not define.
    V2Family(u8),
    /// A v2 length field shorter than the address block of `family`.
    V2AddressTooShort { family: u8, len: u16 },
    /// The header needs `len` bytes (exactly, for v2 once its length field is
    /// in; at least, otherwise), more than the `max` allowed.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E::NotProxy => f.write_str("not a PROXY protocol header"),
            E::V1(reason) => write!(f, "bad PROXY v1 header: {reason}"),
            E::V1TooLong => write!(f, "PROXY v1 line without CRLF in {V1_MAX_LEN} bytes"),
            E::V2Version(v) => write!(f, "unsupported PROXY protocol version {v}"),
            E::V2Command(c) => write!(f, "unknown PROXY v2 command {c}"),
            E::V2Family(b) => write!(f, "unsupported PROXY v2 family/protocol 0x{b:02x}"),
            E::V2AddressTooShort { family, len } => {
                write!(
                    f,
                    "PROXY v2 length {len} too short for family 0x{family:02x}"
                )
            }
            E::TooLong { len, max } => {
                write!(f, "PROXY header longer than {max} bytes (needs {len})")
            }
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Unwraps a step's `Some`, or returns `Ok(None)` (need more bytes) from the
/// enclosing parser.
macro_rules! need {
    ($step:expr) => {
        match $step? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

mod v1;

/// Parses the header at the start of `buf`. Ok(None): `buf` is a strict prefix
/// of something that may still become a valid header within `max_len` bytes
/// (read more). `max_len` caps the whole header (clamped to [`V2_MAX_LEN`]; v1
/// is always capped at [`V1_MAX_LEN`] too). Bytes after the header are not
/// looked at.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<Header>, ProxyHeaderError> {
    let max = max_len.min(V2_MAX_LEN);
    match buf.first() {
        None => Ok(None),
        Some(b'P') => v1::parse(buf, max.min(V1_MAX_LEN)),
        Some(b'\r') => parse_v2(buf, max),
        Some(_) => Err(E::NotProxy),
    }
}

/// Whether `buf` starts with `sig`: `Some` when it does, `None` while it is a
/// shorter prefix of it, `NotProxy` at the first byte that differs.
fn signature(buf: &[u8], sig: &[u8]) -> Result<Option<()>, ProxyHeaderError> {
    if buf.iter().zip(sig).any(|(got, want)| got != want) {
        return Err(E::NotProxy);
    }
    Ok((buf.len() >= sig.len()).then_some(()))
}

/// The cap rule for both versions: the core parser sees at most `max` bytes, so
/// whatever it cannot settle within them is too long. Because the view of any
/// buffer of `max` bytes or more is the same, so is the answer.
fn capped(
    buf: &[u8],
    max: usize,
    core: impl FnOnce(&[u8]) -> Result<Option<Header>, ProxyHeaderError>,
    too_long: ProxyHeaderError,
) -> Result<Option<Header>, ProxyHeaderError> {
    let view = buf.get(..max).unwrap_or(buf);
    match core(view)? {
        Some(header) => Ok(Some(header)),
        None if buf.len() < max => Ok(None),
        None => Err(too_long),
    }
}

fn parse_v2(buf: &[u8], max: usize) -> Result<Option<Header>, ProxyHeaderError> {
    // Only reachable when `max` < 16: past the fixed part, `v2_header` itself
    // refuses a length that does not fit, so it never waits at `max` bytes.
    let too_long = E::TooLong {
        len: V2_FIXED_LEN,
        max,
    };
    capped(buf, max, |view| v2_header(view, max), too_long)
}

/// A v2 header, decided byte by byte: signature, version/command (byte 12),
/// family (13), length (14..16, refused at once if it cannot fit `max`), then
/// the address block and any TLVs, which are skipped.
fn v2_header(buf: &[u8], max: usize) -> Result<Option<Header>, ProxyHeaderError> {
    need!(signature(buf, V2_SIGNATURE));
    let Some(&version_command) = buf.get(12) else {
        return Ok(None);
    };
    let (version, command) = (version_command >> 4, version_command & 0x0f);
    if version != V2_VERSION {
        return Err(E::V2Version(version));
    }
    if command != COMMAND_LOCAL && command != COMMAND_PROXY {
        return Err(E::V2Command(command));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    // LOCAL: the spec says to ignore the family and the block, only skip them.
    let needed = match (command, family) {
        (COMMAND_LOCAL, _) | (_, FAMILY_UNSPEC) => 0,
        (_, FAMILY_TCP4) => V2_TCP4_LEN,
        (_, FAMILY_TCP6) => V2_TCP6_LEN,
        (_, FAMILY_UNIX_STREAM) => V2_UNIX_LEN,
        _ => return Err(E::V2Family(family)),
    };
    let (Some(&high), Some(&low)) = (buf.get(14), buf.get(15)) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([high, low]);
    if usize::from(len) < needed {
        return Err(E::V2AddressTooShort { family, len });
    }
    let total = V2_FIXED_LEN + usize::from(len);
    if total > max {
        return Err(E::TooLong { len: total, max });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    let addresses = match (command, family) {
        (COMMAND_PROXY, FAMILY_TCP4 | FAMILY_TCP6) => v2_addresses(family == FAMILY_TCP6, block)
            .ok_or(E::V2AddressTooShort { family, len })?,
        _ => Addresses::Local,
    };
    Ok(Some(Header {
        version: Version::V2,
        addresses,
        len: total,
    }))
}

/// Source and destination from a v2 address block (addresses, then ports, in
/// network order); `None` if the block is too short (checked before, so never).
fn v2_addresses(v6: bool, block: &[u8]) -> Option<Addresses> {
    let size = if v6 { 16 } else { 4 };
    let ip = |at: usize| -> Option<IpAddr> {
        let bytes = block.get(at..at + size)?;
        Some(if v6 {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))
        })
    };
    let port = |at: usize| -> Option<u16> {
        let bytes = block.get(at..at + 2)?;
        Some(u16::from_be_bytes(bytes.try_into().ok()?))
    };
    Some(Addresses::Proxied {
        source: SocketAddr::new(ip(0)?, port(2 * size)?),
        destination: SocketAddr::new(ip(size)?, port(2 * size + 2)?),
    })
}

/// Appends a header for a TCP connection from `source` to `destination`
/// (PROXY command, no TLVs). When one is IPv4 and the other IPv6, the IPv4 one
/// is written IPv4-mapped (::ffff:a.b.c.d) so both are TCP6. At most
/// [`MAX_ENCODED_LEN`] bytes; IPv6 flow labels and scope ids do not cross the
/// wire.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    let pair = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Pair::V4(s, d),
        (s, d) => Pair::V6(as_v6(s), as_v6(d)),
    };
    match version {
        Version::V1 => v1::encode(pair, out),
        Version::V2 => encode_v2(pair, out),
    }
}

/// Two addresses of one family, as the wire carries them.
#[derive(Clone, Copy)]
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

fn as_v6(addr: SocketAddr) -> SocketAddrV6 {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    SocketAddrV6::new(ip, addr.port(), 0, 0)
}

fn encode_v2(pair: Pair, out: &mut Vec<u8>) {
    out.extend_from_slice(V2_SIGNATURE);
    out.push((V2_VERSION << 4) | COMMAND_PROXY);
    let (sport, dport) = match pair {
        Pair::V4(s, d) => {
            out.push(FAMILY_TCP4);
            out.extend_from_slice(&(V2_TCP4_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            (s.port(), d.port())
        }
        Pair::V6(s, d) => {
            out.push(FAMILY_TCP6);
            out.extend_from_slice(&(V2_TCP6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            (s.port(), d.port())
        }
    };
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
}

#[cfg(test)]
mod tests;
