//! Replays every saved fuzz input under `fuzz/regressions/` through the fuzz
//! targets' own property checks (`fuzz/src/lib.rs`, included by path), so a crash
//! found once stays fixed without anyone running the fuzzer.
//!
//! `control_frame/` files are replayed twice: as fuzzer inputs (byte 0 picks the
//! chunking) and as a raw wire stream decoded one byte at a time. Hand-written ones
//! also have their expected outcome checked below, so a fixture that stops
//! reaching the path it was written for is noticed.

use std::path::{Path, PathBuf};

use porthole::protocol::DecodeError;
use porthole::protocol::chunk::ChunkError;

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
        "valid-session" => |e| *e == End::NeedMore(0),
        _ => return None,
    };
    let frames = if name == "valid-session" { 14 } else { 0 };
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

/// How many of `parse_server` and `parse_client` must accept a hand-written fixture.
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
fn expected_mux(name: &str) -> Option<(usize, Option<&'static str>)> {
    Some(match name {
        "valid-stream" => (6, None),
        "truncated-payload" => (0, None),
        "oversize-data" => (0, Some("TooLarge")),
        "unknown-version" => (0, Some("UnknownVersion(2)")),
        "ping-on-stream" => (0, Some("BadStream")),
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
            let got = err.map(|e| format!("{e:?}"));
            assert_eq!(frames.len(), count, "{}: frames", path.display());
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.starts_with(w) => {}
                _ => panic!("{}: error {got:?}, expected {want:?}", path.display()),
            }
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
