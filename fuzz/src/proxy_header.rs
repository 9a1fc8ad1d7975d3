//! The `proxy_header` target's property: the PROXY protocol codec
//! (`porthole::protocol::proxy_header`) over arbitrary bytes and caps, and a
//! round trip of addresses built from the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use porthole::protocol::proxy_header::{
    Addresses, Header, MAX_ENCODED_LEN, ProxyHeaderError, V1_MAX_LEN, V2_MAX_LEN, Version, encode,
    parse,
};

/// What `parse` answers.
pub type ProxyParsed = Result<Option<Header>, ProxyHeaderError>;

/// Bytes of a structured round trip: a flag byte, two 16-byte addresses, two
/// ports (missing bytes read as zero).
const ROUND_TRIP_LEN: usize = 1 + 16 + 16 + 2 + 2;

/// The `proxy_header` target. Bytes 0–1 (big-endian) are `max_len`, `0xffff`
/// standing for no cap at all (`usize::MAX`, which `parse` clamps); the rest is
/// what a public port would read first.
///
/// Checks: no panic; every prefix of the stream is "need more" until the first
/// answer, which is the one-shot answer, and every longer prefix gives it too;
/// an accepted header lies within the stream and the caps, parses the same from
/// its own bytes alone, and when it carries addresses, re-encodes in its version
/// to a header that parses back to them (byte for byte, for v2 without TLVs).
/// Then the stream's first bytes, read as two addresses and ports, go through
/// `encode` and `parse` in both versions. Returns the one-shot answer.
pub fn proxy_header(data: &[u8]) -> ProxyParsed {
    let (max_len, stream) = match data {
        [high, low, rest @ ..] => match u16::from_be_bytes([*high, *low]) {
            u16::MAX => (usize::MAX, rest),
            cap => (usize::from(cap), rest),
        },
        _ => (usize::MAX, data),
    };
    let whole = prefixes_agree(stream, max_len);
    if let Ok(Some(header)) = &whole {
        accepted_header(header, stream, max_len);
    }
    addresses_round_trip(stream);
    whole
}

/// `parse` over every prefix of `stream`, checked against the one-shot answer.
fn prefixes_agree(stream: &[u8], max_len: usize) -> ProxyParsed {
    let whole = parse(stream, max_len);
    let mut decided = false;
    for end in 0..=stream.len() {
        let got = parse(&stream[..end], max_len);
        if got == Ok(None) {
            assert!(!decided, "need more again at {end} bytes after an answer");
        } else {
            decided = true;
            assert_eq!(got, whole, "a {end}-byte prefix answers differently");
        }
    }
    // A non-empty buffer of `max_len` bytes or more always gets an answer.
    if !stream.is_empty() && stream.len() >= max_len.min(V2_MAX_LEN) {
        assert_ne!(whole, Ok(None), "need more past the cap");
    }
    whole
}

fn accepted_header(header: &Header, stream: &[u8], max_len: usize) {
    let cap = match header.version {
        Version::V1 => max_len.min(V1_MAX_LEN),
        Version::V2 => max_len.min(V2_MAX_LEN),
    };
    assert!(
        (1..=stream.len().min(cap)).contains(&header.len),
        "{header:?} outside the stream or the cap {cap}"
    );
    let own = &stream[..header.len];
    assert_eq!(parse(own, max_len), Ok(Some(*header)), "reads past its end");
    let Addresses::Proxied {
        source,
        destination,
    } = header.addresses
    else {
        return;
    };
    assert_eq!(source.is_ipv4(), destination.is_ipv4(), "mixed families");
    let mut again = Vec::new();
    encode(header.version, source, destination, &mut again);
    let want = Header {
        len: again.len(),
        ..*header
    };
    assert_eq!(parse(&again, MAX_ENCODED_LEN), Ok(Some(want)), "re-encoded");
    if header.version == Version::V2 && header.len == again.len() {
        assert_eq!(again, own, "a v2 header without TLVs has one spelling");
    }
}

/// Two addresses and ports from the stream's first bytes: bit 0 and bit 1 of
/// the flag byte make the source and the destination IPv4 (their first four
/// bytes), bit 2 gives IPv6 ones a flow label and a scope id, which must not
/// come back.
fn addresses_round_trip(stream: &[u8]) {
    let mut bytes = [0u8; ROUND_TRIP_LEN];
    let n = stream.len().min(ROUND_TRIP_LEN);
    bytes[..n].copy_from_slice(&stream[..n]);
    let flags = bytes[0];
    let address = |at: usize, v4: bool, port_at: usize| -> SocketAddr {
        let port = u16::from_be_bytes([bytes[port_at], bytes[port_at + 1]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[at..at + 16]);
        if v4 {
            let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
            SocketAddr::new(IpAddr::V4(ip), port)
        } else {
            let (flow, scope) = if flags & 4 != 0 { (7, 3) } else { (0, 0) };
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, flow, scope))
        }
    };
    let source = address(1, flags & 1 != 0, 33);
    let destination = address(17, flags & 2 != 0, 35);
    // Both IPv4 stay IPv4; otherwise both come back IPv6, IPv4 ones mapped.
    let expected = if source.is_ipv4() && destination.is_ipv4() {
        Addresses::Proxied {
            source,
            destination,
        }
    } else {
        Addresses::Proxied {
            source: as_v6(source),
            destination: as_v6(destination),
        }
    };
    for version in [Version::V1, Version::V2] {
        // `encode` appends: what is already in `out` stays.
        let mut out = vec![0xaa];
        encode(version, source, destination, &mut out);
        assert_eq!(out[0], 0xaa, "encode overwrote the buffer");
        let header = &out[1..];
        assert!(header.len() <= MAX_ENCODED_LEN, "{} bytes", header.len());
        let want = Header {
            version,
            addresses: expected,
            len: header.len(),
        };
        assert_eq!(prefixes_agree(header, MAX_ENCODED_LEN), Ok(Some(want)));
    }
}

fn as_v6(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    SocketAddr::V6(SocketAddrV6::new(ip, addr.port(), 0, 0))
}
