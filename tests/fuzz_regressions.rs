//! Replays every saved fuzz input under `fuzz/regressions/` through the fuzz
//! targets' own property checks (`fuzz/src/lib.rs`, included by path), so a crash
//! found once stays fixed without anyone running the fuzzer.
//!
//! `control_frame/` files are replayed twice: as fuzzer inputs (byte 0 picks the
//! chunking) and as a raw wire stream decoded one byte at a time. Hand-written ones
//! also have their expected outcome checked below, so a fixture that stops
//! reaching the path it was written for is noticed.
//!
//! `http_*/` files are fuzzer inputs (byte 0 picks the split size); they are
//! replayed as saved and again split one byte at a time, and hand-written ones
//! have their outcome checked too.
//!
//! `proxy_header/` files start with the cap (two bytes, big-endian); the check
//! itself parses every prefix, so they are replayed once.
//!
//! `datagram/` files are fuzzer inputs (byte 0 picks the chunking, as for
//! `control_frame`); the check decodes them whole and in chunks.

use std::path::{Path, PathBuf};

use porthole::http_proxy::framing::{Declared, Framing};
use porthole::mux::frame::{FrameError, Kind, MAX_DATA_LEN};
use porthole::protocol::DecodeError;
use porthole::protocol::chunk::ChunkError;
use porthole::protocol::datagram::{DatagramError, MAX_DATAGRAM_LEN};
use porthole::protocol::proxy_header::{Addresses, Header, ProxyHeaderError, Version};

#[path = "../fuzz/src/lib.rs"]
mod checks;

use checks::End;

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    // A loop over zero fixtures passes silently; make that a failure.
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("fixture names are UTF-8")
}

/// Whether a stream ended as a fixture expects.
type EndCheck = fn(&End) -> bool;

/// What a hand-written `control_frame` fixture, read as a raw stream, must decode
/// to: how many frames, then how the stream ends.
fn expected_stream(name: &str) -> Option<(usize, EndCheck)> {
    use DecodeError as E;
    let end: EndCheck = match name {
        "oversize-length" => |e| matches!(e, End::Error(E::BadLength { len: 0xffff, .. })),
        "length-max-plus-one" => |e| matches!(e, End::Error(E::BadLength { len: 2049, .. })),
        "zero-length" => |e| matches!(e, End::Error(E::BadLength { len: 0, .. })),
        "tls-client-hello" => |e| matches!(e, End::Error(E::BadLength { len: 0x1603, .. })),
        "http-request" => |e| matches!(e, End::Error(E::BadLength { .. })),
        "truncated-hello-body" => |e| *e == End::Error(E::Truncated),
        "truncated-hello-stream" => |e| *e == End::NeedMore(30),
        "hello-bad-magic" => |e| *e == End::Error(E::BadMagic(*b"HTTP")),
        "register-bad-utf8" => |e| *e == End::Error(E::BadUtf8),
        "register-name-too-long" => {
            |e| matches!(e, End::Error(E::StringTooLong { len: 65, max: 64 }))
        }
        "error-message-too-long" => |e| {
            matches!(
                e,
                End::Error(E::StringTooLong {
                    len: 1025,
                    max: 1024
                })
            )
        },
        "heartbeat-trailing-byte" => |e| *e == End::Error(E::TrailingBytes(1)),
        "authok-bad-bool" => |e| *e == End::Error(E::BadBool(2)),
        "start-unknown-family" => |e| *e == End::Error(E::UnknownAddrFamily(5)),
        "unknown-type" => |e| *e == End::Error(E::UnknownType(0xee)),
        "valid-session" | "drain-session" | "proxy-session" => |e| *e == End::NeedMore(0),
        "goodbye-reason-zero" => |e| *e == End::Error(E::BadFarewell(0)),
        "register-flags-zero" => |e| *e == End::Error(E::BadFlags(0)),
        _ => return None,
    };
    let frames = match name {
        "valid-session" => 14,
        // Unregister, Unregistered, Goodbye (draining).
        "drain-session" => 3,
        // Register asking for the public address, Start carrying it.
        "proxy-session" => 2,
        _ => 0,
    };
    Some((frames, end))
}

#[test]
fn control_frame_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("control_frame") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        checks::control_frame(&data);
        let mut stream = vec![0u8];
        stream.extend_from_slice(&data);
        let got = checks::control_frame(&stream);
        if let Some((frames, end)) = expected_stream(name(&path)) {
            assert!(
                got.frames.len() == frames && end(&got.end),
                "{}: unexpected outcome {got:?}",
                path.display()
            );
            hand_written += 1;
        }
    }
    assert!(
        hand_written > 0,
        "no hand-written control_frame fixture found"
    );
}

/// How many of the server and client parses (`config::parse`) must accept a hand-written fixture.
fn expected_parses(name: &str) -> Option<usize> {
    match name {
        "empty.ron" | "unterminated-comment.ron" => Some(0),
        "nested-comment.ron"
        | "valid-server.ron"
        | "valid-client.ron"
        | "raw-identifiers-and-strings.ron"
        | "multibyte-positions.ron" => Some(1),
        _ => None,
    }
}

#[test]
fn config_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("config") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let parsed = checks::config(&data);
        if let Some(expected) = expected_parses(name(&path)) {
            assert_eq!(parsed, expected, "{}: parsers accepting it", path.display());
            hand_written += 1;
        }
    }
    assert!(hand_written > 0, "no hand-written config fixture found");
}

/// What a hand-written `mux_frame` fixture decodes to: frames, then the error.
fn expected_mux(name: &str) -> Option<(usize, Option<FrameError>)> {
    use FrameError as E;
    Some(match name {
        "valid-stream" => (6, None),
        "truncated-payload" => (0, None),
        "oversize-data" => {
            let (len, max) = (MAX_DATA_LEN + 1, MAX_DATA_LEN);
            (
                0,
                Some(E::TooLarge {
                    kind: Kind::Data,
                    len,
                    max,
                }),
            )
        }
        "unknown-version" => (0, Some(E::UnknownVersion(2))),
        "ping-on-stream" => (
            0,
            Some(E::BadStream {
                kind: Kind::Ping,
                stream: 7,
            }),
        ),
        _ => return None,
    })
}

#[test]
fn mux_frame_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("mux_frame") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let (frames, err) = checks::mux_frame(&data);
        if let Some((count, want)) = expected_mux(name(&path)) {
            assert_eq!(frames.len(), count, "{}: frames", path.display());
            assert_eq!(err, want, "{}: error", path.display());
            hand_written += 1;
        }
    }
    assert!(hand_written > 0, "no hand-written mux_frame fixture found");
}

#[test]
fn mux_session_regressions_hold() {
    for path in regressions("mux_session") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        checks::mux_session(&data);
    }
}

/// What a hand-written `chunk` fixture decodes to: chunks, then the error.
fn expected_chunks(name: &str) -> Option<(usize, Option<ChunkError>)> {
    Some(match name {
        "server-data-end-idle" => (3, None),
        "client-idle-after-end" => (2, Some(ChunkError::PastEnd)),
        "server-past-idle" => (2, Some(ChunkError::PastEnd)),
        "oversize" => (
            0,
            Some(ChunkError::BadLength {
                kind: b'd',
                len: (1 << 20) + 1,
            }),
        ),
        _ => return None,
    })
}

#[test]
fn chunk_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("chunk") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let got = checks::chunk(&data);
        if let Some((count, error)) = expected_chunks(name(&path)) {
            assert_eq!(got.chunks.len(), count, "{}: chunks", path.display());
            assert_eq!(got.error, error, "{}: error", path.display());
            hand_written += 1;
        }
    }
    assert_eq!(hand_written, 4, "hand-written chunk fixtures replayed");
}

/// The input with byte 0 replaced by mode 0: the stream split one byte at a time.
fn byte_at_a_time(data: &[u8]) -> Vec<u8> {
    let mut one = vec![0u8];
    one.extend_from_slice(data.get(1..).unwrap_or_default());
    one
}

/// What a hand-written `http_request` fixture parses to: the framing when
/// accepted (`None` inside for "need more"), the status when refused.
fn expected_request(name: &str) -> Option<Result<Option<Framing>, u16>> {
    Some(match name {
        "get-no-body"
        | "obs-text"
        | "connect-ipv6"
        | "leading-crlf-ipv6"
        | "trailing-dot-fragment"
        | "hop-by-hop" => Ok(Some(Framing::None)),
        "post-length" | "content-length-5-5" => Ok(Some(Framing::Length(5))),
        "http10-length" => Ok(Some(Framing::Length(3))),
        "chunked-body" => Ok(Some(Framing::Chunked)),
        "incomplete" => Ok(None),
        "content-length-conflict"
        | "content-length-plus"
        | "connection-content-length"
        | "chunked-and-length"
        | "chunked-not-last"
        | "http10-transfer-encoding"
        | "bare-lf"
        | "obs-fold"
        | "origin-form"
        | "two-hosts"
        | "ipv6-trailing-garbage"
        | "crash-unbracketed-colon-host"
        | "crash-dot-only-host" => Err(400),
        // Origin form: refused by the proxy, answered by the admin endpoint
        // (which the target checks on the same bytes).
        "admin-metrics" | "admin-healthz-head" | "admin-status" => Err(400),
        "transfer-encoding-gzip" => Err(501),
        "http2-version" => Err(505),
        _ => return None,
    })
}

#[test]
fn http_request_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("http_request") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let _ = checks::http_request(&byte_at_a_time(&data));
        let got = match checks::http_request(&data) {
            Ok(parsed) => Ok(parsed.map(|(req, _)| req.framing)),
            Err(e) => Err(e.status()),
        };
        if let Some(expected) = expected_request(name(&path)) {
            assert_eq!(got, expected, "{}", path.display());
            hand_written += 1;
        }
    }
    assert!(
        hand_written > 0,
        "no hand-written http_request fixture found"
    );
}

/// What a hand-written `http_response` fixture declares (`None` inside for
/// "need more"), or the status a refused request head would get.
fn expected_response(name: &str) -> Option<Result<Option<Declared>, u16>> {
    Some(match name {
        "ok-length" | "content-length-5-5" => Ok(Some(Declared::Length(5))),
        "no-content-204-length" | "obs-text-reason" | "no-reason" => Ok(Some(Declared::Length(0))),
        "not-modified-304" => Ok(Some(Declared::Length(1234))),
        "chunked" => Ok(Some(Declared::Chunked)),
        "continue-100" | "switching-101" | "http10-until-close" => Ok(Some(Declared::Nothing)),
        "http10-transfer-encoding"
        | "connection-content-length"
        | "bare-lf"
        | "status-two-digits" => Err(400),
        "gzip-then-chunked" => Err(501),
        _ => return None,
    })
}

#[test]
fn http_response_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("http_response") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let _ = checks::http_response(&byte_at_a_time(&data));
        let got = match checks::http_response(&data) {
            Ok(parsed) => Ok(parsed.map(|(resp, _)| resp.declared)),
            Err(e) => Err(e.status()),
        };
        if let Some(expected) = expected_response(name(&path)) {
            assert_eq!(got, expected, "{}", path.display());
            hand_written += 1;
        }
    }
    assert!(
        hand_written > 0,
        "no hand-written http_response fixture found"
    );
}

/// What a hand-written `http_chunked` fixture decodes to: how many bytes after
/// the body are left, whether its end was seen, and its data; `None` when it
/// is malformed.
fn expected_dechunked(name: &str) -> Option<Option<(usize, bool, &'static [u8])>> {
    Some(match name {
        "wikipedia" => Some((4, true, b"Wikipedia in\r\n\r\nchunks.")),
        "empty-body" => Some((0, true, b"")),
        "uppercase-size-extension" => Some((0, true, b"0123456789")),
        "incomplete" => Some((0, false, b"ab")),
        "bare-lf" | "size-too-large" | "data-overrun" | "trailer-bare-lf" => None,
        _ => return None,
    })
}

#[test]
fn http_chunked_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("http_chunked") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let _ = checks::http_chunked(&byte_at_a_time(&data));
        let got = checks::http_chunked(&data).ok();
        if let Some(expected) = expected_dechunked(name(&path)) {
            let stream = data.len().saturating_sub(1);
            let got = got.map(|d| (stream - d.used, d.done, d.data));
            let expected = expected.map(|(left, done, data)| (left, done, data.to_vec()));
            assert_eq!(got, expected, "{}", path.display());
            hand_written += 1;
        }
    }
    assert!(
        hand_written > 0,
        "no hand-written http_chunked fixture found"
    );
}

/// What a hand-written `handshake` fixture reaches: whether the server proved
/// the link, and whether the client ended (`Some(true)`: an accepted control
/// link that the server authenticated).
fn expected_handshake(name: &str) -> Option<(bool, Option<Option<bool>>)> {
    Some(match name {
        "honest-control" => (true, Some(Some(true))),
        "wrong-token-control" => (false, None),
        "honest-data" => (true, Some(None)),
        "honest-mux-keyless" => (true, Some(None)),
        "forged-auth-ok" => (false, None),
        "unauthenticated-accepted" => (false, Some(Some(false))),
        "proof-before-hello" => (false, None),
        "honest-named-control" => (true, Some(Some(true))),
        "honest-named-bob" => (true, Some(Some(true))),
        "named-with-another-clients-token" => (false, None),
        "named-keyless-accepted" => (true, Some(Some(false))),
        _ => return None,
    })
}

#[test]
fn handshake_regressions_hold() {
    let mut checked = 0;
    for path in regressions("handshake") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let run: checks::HandshakeRun = checks::handshake(&data);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some((proven, done)) = expected_handshake(name) {
            let got = run.client_done.map(|a| a.map(|a| a.authenticated));
            assert_eq!((run.server_proven, got), (proven, done), "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 11, "every hand-written fixture is replayed");
}

/// What a hand-written `proxy_header` fixture parses to.
fn expected_proxy_header(name: &str) -> Option<checks::ProxyParsed> {
    let proxied = |version, source: &str, destination: &str, len| {
        let addresses = Addresses::Proxied {
            source: source.parse().expect("fixture address"),
            destination: destination.parse().expect("fixture address"),
        };
        Ok(Some(Header {
            version,
            addresses,
            len,
        }))
    };
    let local = |version, len| {
        Ok(Some(Header {
            version,
            addresses: Addresses::Local,
            len,
        }))
    };
    let (tcp4_source, tcp4_destination) = ("192.168.0.1:56324", "192.168.0.11:443");
    let (tcp6_source, tcp6_destination) = ("[2001:db8::1]:56324", "[2001:db8::2]:443");
    Some(match name {
        "v1-tcp4" => proxied(Version::V1, tcp4_source, tcp4_destination, 47),
        "v1-tcp6" => proxied(Version::V1, tcp6_source, tcp6_destination, 46),
        "v1-unknown" => local(Version::V1, 15),
        "v1-too-long" => Err(ProxyHeaderError::V1TooLong),
        "v1-bare-lf" => Err(ProxyHeaderError::V1("expected CRLF")),
        "v2-tcp4" => proxied(Version::V2, tcp4_source, tcp4_destination, 28),
        "v2-tcp6-tlv" => proxied(Version::V2, tcp6_source, tcp6_destination, 59),
        "v2-local" => local(Version::V2, 16),
        "v2-truncated" => Ok(None),
        "v2-oversized-length" => Err(ProxyHeaderError::TooLong {
            len: 60_016,
            max: 512,
        }),
        "v2-udp" => Err(ProxyHeaderError::V2Family(0x12)),
        "http-request" => Err(ProxyHeaderError::NotProxy),
        _ => return None,
    })
}

#[test]
fn proxy_header_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("proxy_header") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let got = checks::proxy_header(&data);
        if let Some(expected) = expected_proxy_header(name(&path)) {
            assert_eq!(got, expected, "{}", path.display());
            hand_written += 1;
        }
    }
    assert_eq!(hand_written, 12, "every hand-written fixture is replayed");
}

/// What a hand-written `datagram` fixture decodes to: the records, then how
/// the stream ends.
fn expected_datagrams(name: &str) -> Option<checks::Datagrams> {
    use checks::DatagramEnd::{Error, Partial};
    let too_large = |len| {
        Error(DatagramError::TooLarge {
            len,
            max: MAX_DATAGRAM_LEN,
        })
    };
    let (records, end): (&[&[u8]], _) = match name {
        "empty-record" => (&[b""], Partial(0)),
        "one-byte" => (&[b"A"], Partial(0)),
        "max-length-header" => (&[], Partial(5)),
        "oversize-header" => (&[], too_large(65_508)),
        "oversize-ffff" => (&[], too_large(65_535)),
        "truncated-header" => (&[], Partial(1)),
        "truncated-payload" => (&[], Partial(4)),
        "back-to-back-then-oversize" => (&[b"", b"x", b"abc"], too_large(65_508)),
        _ => return None,
    };
    let records = records.iter().map(|r| r.to_vec()).collect();
    Some(checks::Datagrams { records, end })
}

#[test]
fn datagram_regressions_hold() {
    let mut hand_written = 0;
    for path in regressions("datagram") {
        let data = std::fs::read(&path).expect("fixture readable");
        eprintln!("replaying {}", path.display());
        let got = checks::datagram(&data);
        if let Some(expected) = expected_datagrams(name(&path)) {
            assert_eq!(got, expected, "{}", path.display());
            hand_written += 1;
        }
    }
    assert_eq!(hand_written, 8, "every hand-written fixture is replayed");
}
