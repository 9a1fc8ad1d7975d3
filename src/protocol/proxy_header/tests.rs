use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use super::v1::push_ipv6;
use super::*;

/// The v2 signature, written out by hand from the spec.
const SIG: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn proxied(source: &str, destination: &str) -> Addresses {
    Addresses::Proxied {
        source: sa(source),
        destination: sa(destination),
    }
}

fn encoded(version: Version, source: &str, destination: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode(version, sa(source), sa(destination), &mut out);
    out
}

/// `parse(buf, max_len)`, after checking that every prefix of `buf` gives
/// `Ok(None)` until the first answer, and from then on the one-shot answer.
fn parse_all(buf: &[u8], max_len: usize) -> Result<Option<Header>, ProxyHeaderError> {
    let whole = parse(buf, max_len);
    let mut decided = None;
    for end in 0..=buf.len() {
        let got = parse(&buf[..end], max_len);
        if got == Ok(None) {
            assert_eq!(decided, None, "undecided again at {end} bytes");
        } else {
            decided.get_or_insert(end);
            assert_eq!(got, whole, "prefix of {end} bytes");
        }
    }
    whole
}

fn header(version: Version, addresses: Addresses, len: usize) -> Option<Header> {
    Some(Header {
        version,
        addresses,
        len,
    })
}

fn v2(command: u8, family: u8, len: u16, block: &[u8]) -> Vec<u8> {
    let mut out = SIG.to_vec();
    out.extend_from_slice(&[0x20 | command, family]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(block);
    out
}

#[test]
fn v1_tcp4_is_the_spec_example() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let got = encoded(Version::V1, "192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(got, line);
    let addresses = proxied("192.168.0.1:56324", "192.168.0.11:443");
    let mut with_request = line.to_vec();
    with_request.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let want = header(Version::V1, addresses, line.len());
    assert_eq!(parse_all(&with_request, usize::MAX), Ok(want));
}

#[test]
fn v1_tcp6_is_compressed_hex() {
    let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n";
    let got = encoded(Version::V1, "[2001:db8::1]:56324", "[2001:db8::2]:443");
    assert_eq!(got, line);
    let addresses = proxied("[2001:db8::1]:56324", "[2001:db8::2]:443");
    let want = header(Version::V1, addresses, line.len());
    assert_eq!(parse_all(line, V1_MAX_LEN), Ok(want));
}

#[test]
fn v1_worst_case_is_max_encoded_len() {
    let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    let line = encoded(Version::V1, all, all);
    assert_eq!(line.len(), MAX_ENCODED_LEN);
    assert_eq!(MAX_ENCODED_LEN, 104);
    let want = header(Version::V1, proxied(all, all), 104);
    assert_eq!(parse_all(&line, MAX_ENCODED_LEN), Ok(want));
}

#[test]
fn v2_tcp4_bytes() {
    let mut want = SIG.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    want.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb]);
    let got = encoded(Version::V2, "192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(got, want);
    let addresses = proxied("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse_all(&got, 512), Ok(header(Version::V2, addresses, 28)));
}

#[test]
fn v2_tcp6_bytes() {
    let mut want = SIG.to_vec();
    want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    want.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
    let got = encoded(Version::V2, "[2001:db8::1]:56324", "[2001:db8::2]:443");
    assert_eq!(got, want);
    let addresses = proxied("[2001:db8::1]:56324", "[2001:db8::2]:443");
    assert_eq!(parse_all(&got, 512), Ok(header(Version::V2, addresses, 52)));
}

#[test]
fn mixed_families_are_written_ipv4_mapped() {
    let line = encoded(Version::V1, "192.0.2.1:1000", "[2001:db8::2]:443");
    assert_eq!(line, b"PROXY TCP6 ::ffff:c000:201 2001:db8::2 1000 443\r\n");
    let line = encoded(Version::V1, "[2001:db8::2]:443", "192.0.2.1:1000");
    assert_eq!(line, b"PROXY TCP6 2001:db8::2 ::ffff:c000:201 443 1000\r\n");
    let mapped = proxied("[::ffff:192.0.2.1]:1000", "[2001:db8::2]:443");
    for version in [Version::V1, Version::V2] {
        let bytes = encoded(version, "192.0.2.1:1000", "[2001:db8::2]:443");
        let got = parse_all(&bytes, usize::MAX)
            .expect("valid")
            .expect("whole");
        assert_eq!((got.version, got.addresses), (version, mapped));
    }
    let v2 = encoded(Version::V2, "192.0.2.1:1000", "[2001:db8::2]:443");
    assert_eq!(v2[13], 0x21);
    assert_eq!(
        v2[16..32],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
    );
}

#[test]
fn round_trips_both_versions() {
    let pairs = [
        ("127.0.0.1:0", "127.0.0.1:65535"),
        ("0.0.0.0:1", "255.255.255.255:2"),
        ("[::]:1", "[::1]:2"),
        ("[2001:db8:0:0:1:0:0:1]:80", "[1::]:8080"),
        ("[::ffff:1.2.3.4]:5", "[::ffff:5.6.7.8]:6"),
    ];
    for (source, destination) in pairs {
        for version in [Version::V1, Version::V2] {
            let bytes = encoded(version, source, destination);
            assert!(bytes.len() <= MAX_ENCODED_LEN);
            let want = header(version, proxied(source, destination), bytes.len());
            assert_eq!(parse_all(&bytes, MAX_ENCODED_LEN), Ok(want), "{source}");
        }
    }
}

#[test]
fn flow_labels_and_scope_ids_are_not_written() {
    let ip: Ipv6Addr = "fe80::1".parse().expect("ip");
    let scoped = SocketAddr::V6(SocketAddrV6::new(ip, 9, 0x1234, 7));
    let plain = SocketAddr::V6(SocketAddrV6::new(ip, 9, 0, 0));
    for version in [Version::V1, Version::V2] {
        let mut bytes = Vec::new();
        encode(version, scoped, scoped, &mut bytes);
        let got = parse(&bytes, usize::MAX).expect("valid").expect("whole");
        let want = Addresses::Proxied {
            source: plain,
            destination: plain,
        };
        assert_eq!(got.addresses, want);
    }
}

#[test]
fn ipv6_text_is_rfc_5952_in_hex_groups() {
    let cases = [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("0:0:1::", "0:0:1::"),
        ("2001:db8::ff00:42:8329", "2001:db8::ff00:42:8329"),
        ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
        ("1:0:0:1:1:0:0:1", "1::1:1:0:0:1"),
        ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
        ("::ffff:1.2.3.4", "::ffff:102:304"),
        (
            "ABCD:EF01:2345:6789:abcd:ef01:2345:6789",
            "abcd:ef01:2345:6789:abcd:ef01:2345:6789",
        ),
    ];
    for (input, want) in cases {
        let ip: Ipv6Addr = input.parse().expect("ip");
        let mut out = Vec::new();
        push_ipv6(&mut out, ip);
        assert_eq!(String::from_utf8_lossy(&out), want, "{input}");
        assert_eq!(want.parse::<Ipv6Addr>(), Ok(ip));
    }
}

#[test]
fn v1_reads_other_ipv6_spellings() {
    let line = b"PROXY TCP6 ::FFFF:1.2.3.4 0001:0DB8::0002 1 65535\r\n";
    let want = proxied("[::ffff:1.2.3.4]:1", "[1:db8::2]:65535");
    assert_eq!(
        parse_all(line, 200),
        Ok(header(Version::V1, want, line.len()))
    );
}

#[test]
fn v1_unknown_is_local() {
    let short = b"PROXY UNKNOWN\r\n";
    assert_eq!(
        parse_all(short, 15),
        Ok(header(Version::V1, Addresses::Local, 15))
    );
    let long = b"PROXY UNKNOWN ffff:: 1.2.3.4 junk \x00\xff 1\r\nrest";
    let want = header(Version::V1, Addresses::Local, long.len() - 4);
    assert_eq!(parse_all(long, usize::MAX), Ok(want));
    // The spec's worst case fits exactly; one more byte does not.
    let mut max = b"PROXY UNKNOWN ".to_vec();
    max.resize(V1_MAX_LEN - 2, b'f');
    max.extend_from_slice(b"\r\n");
    let want = header(Version::V1, Addresses::Local, V1_MAX_LEN);
    assert_eq!(parse_all(&max, usize::MAX), Ok(want));
    max.insert(20, b'f');
    assert_eq!(
        parse_all(&max, usize::MAX),
        Err(ProxyHeaderError::V1TooLong)
    );
}

#[test]
fn v2_local_ignores_family_and_addresses() {
    let bare = v2(0, 0x00, 0, &[]);
    assert_eq!(
        parse_all(&bare, 16),
        Ok(header(Version::V2, Addresses::Local, 16))
    );
    // A LOCAL header must still be skipped whole, whatever it claims to carry.
    let block = [9u8; 40];
    for family in [0x00, 0x11, 0x12, 0x22, 0x31, 0xff] {
        let local = v2(0, family, 40, &block);
        let want = header(Version::V2, Addresses::Local, 56);
        assert_eq!(parse_all(&local, 512), Ok(want), "family {family:#x}");
    }
}

#[test]
fn v2_proxy_with_unspec_or_unix_is_local() {
    let unspec = v2(1, 0x00, 3, &[1, 2, 3]);
    assert_eq!(
        parse_all(&unspec, 512),
        Ok(header(Version::V2, Addresses::Local, 19))
    );
    let unix = v2(1, 0x31, 216, &[b'/'; 216]);
    assert_eq!(
        parse_all(&unix, 512),
        Ok(header(Version::V2, Addresses::Local, 232))
    );
    let short = v2(1, 0x31, 215, &[b'/'; 215]);
    let want = ProxyHeaderError::V2AddressTooShort {
        family: 0x31,
        len: 215,
    };
    assert_eq!(parse_all(&short, 512), Err(want));
}

#[test]
fn v2_tlvs_are_skipped_and_later_bytes_unread() {
    let mut bytes = encoded(Version::V2, "10.0.0.1:1", "10.0.0.2:2");
    bytes[15] = 12 + 7;
    // An ALPN TLV, then the connection's own first bytes.
    bytes.extend_from_slice(&[0x01, 0x00, 0x04, b'h', b't', b't', b'p', 0xde, 0xad]);
    let want = header(Version::V2, proxied("10.0.0.1:1", "10.0.0.2:2"), 16 + 19);
    assert_eq!(parse_all(&bytes, 512), Ok(want));
}

#[test]
fn not_proxy_is_decided_at_the_first_wrong_byte() {
    use ProxyHeaderError::NotProxy;
    assert_eq!(parse(b"", 0), Ok(None));
    assert_eq!(parse(b"PRO", 512), Ok(None));
    assert_eq!(parse(&SIG[..11], 512), Ok(None));
    for input in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"PROX!",
        b"\r\n\r\n\x01",
        b"\r\n\r\n\x00\r\nQUIX",
        b"PTHL",
    ] {
        assert_eq!(parse_all(input, 512), Err(NotProxy), "{input:?}");
    }
}

#[test]
fn v1_grammar_errors() {
    let cases: [(&[u8], &str); 18] = [
        (b"PROXYTCP4", "expected a space after PROXY"),
        (b"PROXY  TCP4", "empty field"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
        (b"PROXY TCP9 ", "unknown protocol"),
        (b"PROXY UNKNOWNX", "bad protocol"),
        (b"PROXY UNKNOWN\n", "expected CRLF"),
        (b"PROXY TCP4\r\n", "expected a space after the protocol"),
        (b"PROXY TCP4 ::1", "bad source address"),
        (b"PROXY TCP4 01.2.3.4 ", "bad source address"),
        (b"PROXY TCP4 1.2.3 ", "bad source address"),
        (b"PROXY TCP6 1.2.3.4 ", "bad source address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8\t", "bad destination address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 ", "bad source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456", "bad source port"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            "bad destination port",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "expected a space after the source port",
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "expected CRLF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR without LF"),
    ];
    for (input, reason) in cases {
        let got = parse_all(input, usize::MAX);
        assert_eq!(got, Err(ProxyHeaderError::V1(reason)), "{input:?}");
    }
    let bare_lf = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n";
    assert_eq!(
        parse(bare_lf, 512),
        Err(ProxyHeaderError::V1("expected CRLF"))
    );
}

#[test]
fn v2_header_errors() {
    use ProxyHeaderError as E;
    let mut bad_version = v2(1, 0x11, 12, &[0; 12]);
    bad_version[12] = 0x11;
    assert_eq!(parse_all(&bad_version[..13], 512), Err(E::V2Version(1)));
    assert_eq!(
        parse_all(&v2(2, 0x11, 12, &[0; 12]), 512),
        Err(E::V2Command(2))
    );
    assert_eq!(
        parse_all(&v2(0xf, 0x11, 12, &[]), 512),
        Err(E::V2Command(0xf))
    );
    for family in [0x12, 0x22, 0x32, 0x10, 0x01, 0x41, 0x13] {
        let bytes = v2(1, family, 12, &[0; 12]);
        assert_eq!(parse_all(&bytes[..14], 512), Err(E::V2Family(family)));
    }
    let tcp4 = v2(1, 0x11, 11, &[0; 11]);
    let want = E::V2AddressTooShort {
        family: 0x11,
        len: 11,
    };
    assert_eq!(parse_all(&tcp4[..16], 512), Err(want));
    let tcp6 = v2(1, 0x21, 12, &[0; 12]);
    let want = E::V2AddressTooShort {
        family: 0x21,
        len: 12,
    };
    assert_eq!(parse_all(&tcp6, 512), Err(want));
}

#[test]
fn v2_too_long_is_decided_with_the_fixed_part() {
    let huge = v2(1, 0x11, 60_000, &[0; 100]);
    assert_eq!(parse(&huge[..15], 512), Ok(None));
    let want = ProxyHeaderError::TooLong {
        len: 60_016,
        max: 512,
    };
    assert_eq!(parse_all(&huge[..16], 512), Err(want.clone()));
    assert_eq!(parse_all(&huge, 512), Err(want));
    // Exactly at the cap is fine.
    let fits = v2(1, 0x11, 496, &[0; 496]);
    assert_eq!(
        parse_all(&fits, 512).map(|h| h.map(|h| h.len)),
        Ok(Some(512))
    );
}

#[test]
fn max_len_below_a_whole_header() {
    use ProxyHeaderError::TooLong;
    let line = encoded(Version::V1, "192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(&line[..19], 20), Ok(None));
    assert_eq!(parse_all(&line, 20), Err(TooLong { len: 21, max: 20 }));
    let bytes = encoded(Version::V2, "192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(&bytes[..9], 10), Ok(None));
    assert_eq!(parse_all(&bytes, 10), Err(TooLong { len: 16, max: 10 }));
    assert_eq!(parse_all(&bytes, 27), Err(TooLong { len: 28, max: 27 }));
    // A wrong byte inside the cap is still named as such.
    assert_eq!(
        parse_all(b"\r\n\r\n\x00\r\nQUIT\n\x31", 14),
        Err(ProxyHeaderError::V2Version(3))
    );
    assert_eq!(parse_all(b"PRX", 2), Err(TooLong { len: 3, max: 2 }));
}

#[test]
fn max_len_is_clamped_to_the_format_limit() {
    let mut bytes = encoded(Version::V2, "10.0.0.1:1", "10.0.0.2:2");
    bytes[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    bytes.resize(V2_MAX_LEN, 0);
    let want = header(Version::V2, proxied("10.0.0.1:1", "10.0.0.2:2"), V2_MAX_LEN);
    assert_eq!(parse_all(&bytes, usize::MAX), Ok(want));
    assert_eq!(parse(&bytes[..V2_MAX_LEN - 1], usize::MAX), Ok(None));
    let below = ProxyHeaderError::TooLong {
        len: V2_MAX_LEN,
        max: V2_MAX_LEN - 1,
    };
    assert_eq!(parse(&bytes, V2_MAX_LEN - 1), Err(below));
}

#[test]
fn errors_display_their_values() {
    use ProxyHeaderError as E;
    let shown = [
        (E::NotProxy, "not a PROXY"),
        (E::V1("empty field"), "empty field"),
        (E::V1TooLong, "107"),
        (E::V2Version(3), "version 3"),
        (E::V2Command(7), "command 7"),
        (E::V2Family(0x12), "0x12"),
        (
            E::V2AddressTooShort {
                family: 0x21,
                len: 12,
            },
            "length 12",
        ),
        (E::TooLong { len: 600, max: 512 }, "512"),
    ];
    for (error, part) in shown {
        assert!(error.to_string().contains(part), "{error}");
    }
}
