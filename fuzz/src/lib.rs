//! The properties the fuzz targets check, as plain functions over bytes.
//!
//! They live here rather than in the targets so that the main crate's
//! `tests/fuzz_regressions.rs` replays every saved input through the very same
//! checks (it includes this file with `#[path]`). Keep this file free of anything
//! but `std` and `porthole`, and free of crate-level attributes, for that reason.

use std::net::SocketAddr;
use std::path::Path;

use porthole::config::{ClientConfig, ServerConfig, parse_client, parse_server};
use porthole::protocol::{self, DecodeError, Frame, LEN_PREFIX, MAX_FRAME_LEN};

/// Chunk-size bytes that may follow the mode byte of a `control_frame` input.
const MAX_SIZE_BYTES: usize = 7;

/// How a stream of bytes ended for the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every frame decoded; this many bytes of an unfinished frame are left.
    NeedMore(usize),
    /// The first malformed frame; the link would be closed here.
    Error(DecodeError),
}

/// What a stream decodes to: its frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub frames: Vec<Frame>,
    pub end: End,
}

/// The `control_frame` target. Byte 0 is the mode `m`: the next `m % 8` bytes are
/// chunk sizes (each value + 1, used in turn, cycling; none means one byte at a
/// time), and the rest is the byte stream.
///
/// Checks: decoding never panics; every frame consumes at least one byte and at
/// most a maximal frame, and re-encodes to exactly the bytes it consumed; feeding
/// the stream in those chunks yields the same frames and the same end as decoding
/// it in one piece. Returns the one-shot result so tests can check more.
pub fn control_frame(data: &[u8]) -> Decoded {
    let Some((&mode, rest)) = data.split_first() else {
        return decode_all(data);
    };
    let size_bytes = (usize::from(mode) % (MAX_SIZE_BYTES + 1)).min(rest.len());
    let (sizes, stream) = rest.split_at(size_bytes);
    let whole = decode_all(stream);
    let chunked = decode_chunked(stream, sizes);
    assert_eq!(whole, chunked, "chunked decoding differs (sizes {sizes:?})");
    whole
}

/// Decodes `stream` in one piece, checking each frame's round trip.
pub fn decode_all(stream: &[u8]) -> Decoded {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        match protocol::decode(rest) {
            Ok(Some((frame, used))) => {
                check_round_trip(&frame, used, rest);
                frames.push(frame);
                pos += used;
            }
            Ok(None) => {
                return Decoded {
                    frames,
                    end: End::NeedMore(rest.len()),
                };
            }
            Err(e) => {
                return Decoded {
                    frames,
                    end: End::Error(e),
                };
            }
        }
    }
}

/// Feeds `stream` to a growing buffer in chunks, decoding after every chunk and
/// draining what was consumed, as a reader over a socket would.
fn decode_chunked(stream: &[u8], sizes: &[u8]) -> Decoded {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut next_size = sizes.iter().map(|&s| usize::from(s) + 1).cycle();
    let mut pos = 0;
    while pos < stream.len() {
        let size = next_size.next().unwrap_or(1);
        let end = (pos + size).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            match protocol::decode(&buf) {
                Ok(Some((frame, used))) => {
                    check_round_trip(&frame, used, &buf);
                    frames.push(frame);
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        frames,
                        end: End::Error(e),
                    };
                }
            }
        }
    }
    Decoded {
        frames,
        end: End::NeedMore(buf.len()),
    }
}

fn check_round_trip(frame: &Frame, used: usize, input: &[u8]) {
    assert!(
        (LEN_PREFIX + 1..=LEN_PREFIX + MAX_FRAME_LEN).contains(&used),
        "decode consumed {used} bytes for {frame:?}"
    );
    let encoded = protocol::to_bytes(frame)
        .unwrap_or_else(|e| panic!("decoded {frame:?} does not encode: {e}"));
    assert_eq!(
        encoded,
        input[..used],
        "{frame:?} re-encodes differently from the bytes it was decoded from"
    );
}

/// The `config` target: UTF-8 text (anything else is skipped) through
/// `parse_server` and `parse_client`, and `validate` on whatever parses. Never
/// panics. Returns how many of the two parsers accepted the text.
///
/// `validate` resolves addresses, and a fuzzer must not send DNS queries; so before
/// validating, every address that the resolver would see is replaced by an IP
/// literal. The source text (which validation scans for error positions) is kept.
pub fn config(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let origin = Path::new("fuzz.ron");
    let mut parsed = 0;
    if let Ok(mut server) = parse_server(text, origin) {
        parsed += 1;
        offline_server(&mut server);
        let _ = server.validate();
    }
    if let Ok(mut client) = parse_client(text, origin) {
        parsed += 1;
        offline_client(&mut client);
        let _ = client.validate();
    }
    let _ = porthole::config::parse_duration(text);
    parsed
}

/// Stands in for an address that would reach the resolver.
const OFFLINE_ADDR: &str = "127.0.0.1:7000";

fn offline_server(config: &mut ServerConfig) {
    make_offline(&mut config.bind);
}

fn offline_client(config: &mut ClientConfig) {
    make_offline(&mut config.server);
    for service in &mut config.services {
        make_offline(&mut service.local);
    }
}

/// Replaces `addr` unless std's `ToSocketAddrs for str` would answer it without
/// calling the resolver: an IP socket-address literal parses directly, and text
/// with no `:` or a port that is not a `u16` fails before any lookup. Everything
/// else, `localhost` included, is replaced: being strict costs a little coverage of
/// `check_address`'s error messages, being lax would send queries.
fn make_offline(addr: &mut String) {
    let offline = addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err());
    if !offline {
        *addr = OFFLINE_ADDR.to_owned();
    }
}

// ------------------------------------------------------------------ mux

use porthole::mux::frame::{Decoder, Frame as MuxFrame, FrameError, HEADER_LEN, Header};
use porthole::mux::state::{Config as MuxConfig, Side, State};

/// The `mux_frame` target. Byte 0 picks a chunk size (1..=256); the rest is a
/// byte stream for the incremental mux decoder.
///
/// Checks: no panic; each frame re-encodes to exactly the bytes it came from;
/// feeding in chunks gives the same frames and the same error as one shot.
pub fn mux_frame(data: &[u8]) -> (Vec<MuxFrame>, Option<FrameError>) {
    let Some((&mode, stream)) = data.split_first() else {
        return (Vec::new(), None);
    };
    let whole = mux_decode(stream, stream.len().max(1));
    let chunked = mux_decode(stream, usize::from(mode) + 1);
    assert_eq!(whole, chunked, "chunked mux decoding differs");
    let mut pos = 0;
    for frame in &whole.0 {
        let bytes = frame.encode();
        assert_eq!(&stream[pos..pos + bytes.len()], &bytes[..], "round trip");
        pos += bytes.len();
    }
    whole
}

fn mux_decode(stream: &[u8], chunk: usize) -> (Vec<MuxFrame>, Option<FrameError>) {
    let mut d = Decoder::default();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// The `mux_session` target: the session state machine driven by arbitrary
/// operations and peer frames. Each step takes an opcode byte and arguments:
/// open, queue bytes, finish, release, read, fill (the output is decoded and
/// checked), a peer frame (12 header bytes and its payload), ping, go-away.
///
/// Checks after every step: no panic, `State::check_invariants`, local stream
/// ids strictly increasing, everything `fill` writes decodes and no `Data`
/// frame exceeds the credit the peer granted. A peer violation ends the run,
/// as it ends the session.
pub fn mux_session(data: &[u8]) {
    let config = MuxConfig {
        initial_window: 4096,
        max_window: 65536,
        budget: 64 * 1024,
        max_streams: 8,
        ..MuxConfig::default()
    };
    let side = if data.first().is_some_and(|b| b & 1 == 1) {
        Side::Server
    } else {
        Side::Client
    };
    let mut st = State::new(side, config);
    let mut ids: Vec<u32> = Vec::new();
    let mut last_open = 0u32;
    let mut bytes = data.iter().skip(1).copied();
    let mut out = Vec::new();
    let mut next = || bytes.next();
    let now = std::time::Instant::now();
    while let Some(op) = next() {
        let pick = |b: Option<u8>, ids: &[u32]| -> u32 {
            match (b, ids.is_empty()) {
                (Some(b), false) => ids[usize::from(b) % ids.len()],
                (Some(b), true) => u32::from(b),
                (None, _) => 1,
            }
        };
        match op % 9 {
            0 => {
                let len = usize::from(next().unwrap_or(0));
                if let Ok(id) = st.open(vec![7; len]) {
                    assert!(id > last_open, "local id {id} not above {last_open}");
                    last_open = id;
                    ids.push(id);
                }
            }
            1 => {
                let id = pick(next(), &ids);
                let len = usize::from(next().unwrap_or(0)) * 64;
                st.queue(id, &vec![1; len]);
            }
            2 => st.finish(pick(next(), &ids)),
            3 => st.release(pick(next(), &ids)),
            4 => {
                let id = pick(next(), &ids);
                let mut buf = vec![0u8; usize::from(next().unwrap_or(0)) * 16];
                st.read(id, &mut buf);
            }
            5 => {
                out.clear();
                st.fill(&mut out);
                let (frames, err) = mux_decode(&out, out.len().max(1));
                assert_eq!(err, None, "fill wrote an invalid frame");
                let used: usize = frames.iter().map(|f| f.encode().len()).sum();
                assert_eq!(used, out.len(), "fill wrote a partial frame");
            }
            6 => {
                let mut head = [0u8; HEADER_LEN];
                for b in head.iter_mut() {
                    *b = next().unwrap_or(0);
                }
                head[0] = 1;
                let Ok(h) = Header::decode(&head) else {
                    continue;
                };
                // Payloads are short in the fuzzer; the real reader reads exactly
                // `payload_len` bytes, so give the header a matching length.
                let len = h.payload_len().min(64);
                let payload: Vec<u8> = (0..len).map(|_| next().unwrap_or(0)).collect();
                let h = if h.kind.has_payload() {
                    Header {
                        length: len as u32,
                        ..h
                    }
                } else {
                    h
                };
                if st.on_frame(h, &payload).is_err() {
                    return;
                }
            }
            7 => {
                let _ = st.ping(now);
            }
            _ => st.go_away(),
        }
        if let Err(e) = st.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }
}

// ---------------------------------------------------------------- chunk framing

use porthole::protocol::chunk::{
    Chunk, ChunkError, Decoder as ChunkDecoder, HEADER_LEN as CHUNK_HEADER_LEN, Piece, Role,
    before_accept,
};

/// What a pooled link's reader made of a byte stream: the chunks it saw (a
/// `Data` with its payload), and the error that ended it, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkStream {
    pub chunks: Vec<(Chunk, Vec<u8>)>,
    pub error: Option<ChunkError>,
}

/// Byte 0 picks the reader (bit 0: server or client) and the split size (the
/// rest); the stream is decoded in one piece and in pieces of that size, and
/// both must agree. What decoded must encode back to the bytes it came from.
pub fn chunk(data: &[u8]) -> ChunkStream {
    let Some((&mode, stream)) = data.split_first() else {
        return ChunkStream {
            chunks: Vec::new(),
            error: None,
        };
    };
    let role = if mode & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    before_accept_agrees(stream);
    let whole = chunk_decode(role, stream, stream.len().max(1));
    let split = chunk_decode(role, stream, usize::from(mode >> 1) + 1);
    assert_eq!(
        whole, split,
        "chunk decoding depends on how the input is split"
    );
    let mut encoded = Vec::new();
    for (chunk, payload) in &whole.chunks {
        encoded.extend_from_slice(&chunk.encode());
        encoded.extend_from_slice(payload);
    }
    assert_eq!(&stream[..encoded.len()], &encoded[..], "round trip");
    if let Some((last, _)) = whole.chunks.last() {
        // A reader stops at its last legal chunk: Idle for a server, End for a client.
        if whole.error.is_none() && encoded.len() == stream.len() && role == Role::Client {
            assert!(
                whole
                    .chunks
                    .iter()
                    .filter(|(c, _)| *c == Chunk::End)
                    .count()
                    <= 1
            );
        }
        assert!(
            *last != Chunk::Idle || role == Role::Server,
            "a client never accepts Idle"
        );
    }
    whole
}

/// The server's wait for `Accept` over the front of `stream`: probes are
/// skipped, `Accept` ends the wait, and it refuses exactly the headers that
/// are not one of those two.
fn before_accept_agrees(stream: &[u8]) {
    for header in stream.chunks_exact(CHUNK_HEADER_LEN) {
        let header: [u8; CHUNK_HEADER_LEN] = header.try_into().expect("exact chunks");
        let decoded = Chunk::decode(header);
        match before_accept(header) {
            Ok(true) => return assert_eq!(decoded, Ok(Chunk::Accept)),
            Ok(false) => assert_eq!(decoded, Ok(Chunk::Probe)),
            Err(_) => {
                return assert!(!matches!(decoded, Ok(Chunk::Probe | Chunk::Accept)));
            }
        }
    }
}

fn chunk_decode(role: Role, stream: &[u8], size: usize) -> ChunkStream {
    let mut decoder = ChunkDecoder::new(role);
    let mut out = ChunkStream {
        chunks: Vec::new(),
        error: None,
    };
    for piece in stream.chunks(size) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (used, what) = match decoder.next(rest) {
                Ok(step) => step,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            assert!(used > 0 && used <= rest.len(), "progress within the input");
            match what {
                Piece::Payload(n) => match out.chunks.last_mut() {
                    Some((Chunk::Data(_), payload)) => payload.extend_from_slice(&rest[..n]),
                    _ => panic!("payload outside a Data chunk"),
                },
                Piece::Header if decoder.header_need() == 0 => {
                    let len = decoder.payload_left();
                    out.chunks.push((Chunk::Data(len), Vec::new()));
                }
                Piece::Header => {}
                Piece::End => out.chunks.push((Chunk::End, Vec::new())),
                Piece::Idle => out.chunks.push((Chunk::Idle, Vec::new())),
            }
            rest = &rest[used..];
        }
    }
    out
}
