//! Version 1 of the PROXY header: one line of US-ASCII text, parsed left to
//! right so that a wrong byte is refused as soon as it settles the question (a
//! field's text when the space, CR or LF that ends it arrives), and written in
//! the one spelling the spec asks for (no leading zeros, IPv6 in hex groups).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Addresses, E, Header, Pair, ProxyHeaderError, V1_MAX_LEN, Version, capped, signature};

const V1_SIGNATURE: &[u8] = b"PROXY";

/// Longest v1 field of each kind. Only to refuse garbage early: the whole line
/// is capped anyway. An IPv6 address may end in a dotted quad (what `inet_ntop`
/// writes for a mapped address), hence 45 (`INET6_ADDRSTRLEN` - 1), not 39.
const V1_MAX_PROTO_LEN: usize = "UNKNOWN".len();
const V1_MAX_IPV4_LEN: usize = "255.255.255.255".len();
const V1_MAX_IPV6_LEN: usize = 45;
const V1_MAX_PORT_LEN: usize = "65535".len();

/// The v1 line at the start of `buf`, in at most `max` bytes (the caller's cap
/// and [`V1_MAX_LEN`], whichever is smaller).
pub(super) fn parse(buf: &[u8], max: usize) -> Result<Option<Header>, ProxyHeaderError> {
    let too_long = if max == V1_MAX_LEN {
        E::V1TooLong
    } else {
        // No CRLF within `max` bytes: the line is at least one byte longer.
        E::TooLong { len: max + 1, max }
    };
    capped(buf, max, v1_line, too_long)
}

/// A v1 line, left to right: `PROXY SP proto`, then for `UNKNOWN` anything up
/// to CRLF, for `TCP4`/`TCP6` `SP src SP dst SP sport SP dport CRLF`.
fn v1_line(buf: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    need!(signature(buf, V1_SIGNATURE));
    let mut line = Line {
        buf,
        at: V1_SIGNATURE.len(),
    };
    need!(line.expect(b' ', "expected a space after PROXY"));
    let proto = need!(line.field(
        V1_MAX_PROTO_LEN,
        |b| b.is_ascii_alphanumeric(),
        "bad protocol"
    ));
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        b"UNKNOWN" => {
            // The spec: the receiver ignores whatever precedes the CRLF.
            if need!(line.peek()) == b' ' {
                while !matches!(need!(line.peek()), b'\r' | b'\n') {
                    line.at += 1;
                }
            }
            need!(line.crlf());
            return Ok(Some(v1_header(Addresses::Local, line.at)));
        }
        _ => return Err(E::V1("unknown protocol")),
    };
    need!(line.expect(b' ', "expected a space after the protocol"));
    let source = need!(line.address(v6, "bad source address"));
    need!(line.expect(b' ', "expected a space after the source address"));
    let destination = need!(line.address(v6, "bad destination address"));
    need!(line.expect(b' ', "expected a space after the destination address"));
    let source_port = need!(line.port("bad source port"));
    need!(line.expect(b' ', "expected a space after the source port"));
    let destination_port = need!(line.port("bad destination port"));
    need!(line.crlf());
    let addresses = Addresses::Proxied {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    };
    Ok(Some(v1_header(addresses, line.at)))
}

fn v1_header(addresses: Addresses, len: usize) -> Header {
    Header {
        version: Version::V1,
        addresses,
        len,
    }
}

/// A cursor over a v1 line. Every step returns `Ok(None)` when the buffer ends
/// before it can decide.
struct Line<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Line<'a> {
    fn peek(&self) -> Result<Option<u8>, ProxyHeaderError> {
        Ok(self.buf.get(self.at).copied())
    }

    fn expect(&mut self, want: u8, reason: &'static str) -> Result<Option<()>, ProxyHeaderError> {
        let got = need!(self.peek());
        if got != want {
            return Err(E::V1(reason));
        }
        self.at += 1;
        Ok(Some(()))
    }

    /// CR then LF; the spec forbids ending a line on either alone.
    fn crlf(&mut self) -> Result<Option<()>, ProxyHeaderError> {
        need!(self.expect(b'\r', "expected CRLF"));
        self.expect(b'\n', "CR without LF")
    }

    /// A non-empty run of `allowed` bytes up to a space, CR or LF (which is not
    /// consumed). Refused at the first byte that is not allowed or exceeds `max`.
    fn field(
        &mut self,
        max: usize,
        allowed: fn(u8) -> bool,
        reason: &'static str,
    ) -> Result<Option<&'a [u8]>, ProxyHeaderError> {
        let start = self.at;
        loop {
            let byte = need!(self.peek());
            if matches!(byte, b' ' | b'\r' | b'\n') {
                break;
            }
            if !allowed(byte) || self.at - start >= max {
                return Err(E::V1(reason));
            }
            self.at += 1;
        }
        match self.buf.get(start..self.at) {
            Some(field) if !field.is_empty() => Ok(Some(field)),
            _ => Err(E::V1("empty field")),
        }
    }

    /// An address of the family the protocol named, in the syntax std parses:
    /// dotted decimal without leading zeros for IPv4; for IPv6 hex groups with
    /// at most one `::`, optionally ending in a dotted quad.
    fn address(&mut self, v6: bool, reason: &'static str) -> Result<Option<IpAddr>, E> {
        let text = if v6 {
            need!(self.field(
                V1_MAX_IPV6_LEN,
                |b| b.is_ascii_hexdigit() || b == b':' || b == b'.',
                reason
            ))
        } else {
            need!(self.field(V1_MAX_IPV4_LEN, |b| b.is_ascii_digit() || b == b'.', reason))
        };
        let text = std::str::from_utf8(text).map_err(|_| E::V1(reason))?;
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map(Some).map_err(|_| E::V1(reason))
    }

    /// A decimal port in 0..=65535 without leading zeros (the spec forbids them
    /// so that nobody reads them as octal).
    fn port(&mut self, reason: &'static str) -> Result<Option<u16>, ProxyHeaderError> {
        let digits = need!(self.field(V1_MAX_PORT_LEN, |b| b.is_ascii_digit(), reason));
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(E::V1(reason));
        }
        let value = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        u16::try_from(value).map(Some).map_err(|_| E::V1(reason))
    }
}

/// `PROXY TCP4|TCP6 src dst sport dport` and CRLF.
pub(super) fn encode(pair: Pair, out: &mut Vec<u8>) {
    let (sport, dport) = match pair {
        Pair::V4(s, d) => {
            out.extend_from_slice(b"PROXY TCP4 ");
            push_ipv4(out, *s.ip());
            out.push(b' ');
            push_ipv4(out, *d.ip());
            (s.port(), d.port())
        }
        Pair::V6(s, d) => {
            out.extend_from_slice(b"PROXY TCP6 ");
            push_ipv6(out, *s.ip());
            out.push(b' ');
            push_ipv6(out, *d.ip());
            (s.port(), d.port())
        }
    };
    out.push(b' ');
    push_decimal(out, sport);
    out.push(b' ');
    push_decimal(out, dport);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, value: u16) {
    let mut digits = [0u8; V1_MAX_PORT_LEN];
    let mut start = digits.len();
    let mut rest = value;
    // A u16 has at most 5 digits, so `start` stays in range.
    while start == digits.len() || rest > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[start..]);
}

fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_decimal(out, u16::from(octet));
    }
}

/// RFC 5952 text in hex groups only: lower case, no leading zeros, the longest
/// run of two or more zero groups (the first of equals) as `::`. Not std's
/// `Display`, which writes a mapped address as a dotted quad: the v1 spec asks
/// for hex groups, and a strict receiver may refuse the dotted form.
pub(super) fn push_ipv6(out: &mut Vec<u8>, ip: Ipv6Addr) {
    let groups = ip.segments();
    // The longest run of zero groups, as (start, end).
    let (mut best, mut i) = ((0, 0), 0);
    while i < groups.len() {
        let start = i;
        while groups.get(i) == Some(&0) {
            i += 1;
        }
        if i - start > best.1 - best.0 {
            best = (start, i);
        }
        i += 1;
    }
    // One zero group stays "0" (RFC 5952 4.2.2).
    let (gap_start, gap_end) = if best.1 - best.0 >= 2 {
        best
    } else {
        (groups.len(), groups.len())
    };
    for (i, &group) in groups.iter().enumerate().take(gap_start) {
        if i > 0 {
            out.push(b':');
        }
        push_hex(out, group);
    }
    if gap_start < groups.len() {
        out.extend_from_slice(b"::");
    }
    for (i, &group) in groups.iter().enumerate().skip(gap_end) {
        if i > gap_end {
            out.push(b':');
        }
        push_hex(out, group);
    }
}

fn push_hex(out: &mut Vec<u8>, group: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12u16, 8, 4, 0] {
        let nibble = usize::from((group >> shift) & 0xf);
        if nibble != 0 || started || shift == 0 {
            out.push(HEX[nibble]);
            started = true;
        }
    }
}
