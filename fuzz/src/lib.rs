//! The properties the fuzz targets check, as plain functions over bytes.
//!
//! They live here rather than in the targets so that the main crate's
//! `tests/fuzz_regressions.rs` replays every saved input through the very same
//! checks (it includes this file with `#[path]`). Keep this file free of anything
//! but `std` and `porthole`, and free of crate-level attributes, for that reason.

use std::net::SocketAddr;
use std::path::Path;

use porthole::config::{ClientConfig, ServerConfig, parse};
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

/// A chunked target's input after its mode byte `mode`: the next `mode % 8`
/// bytes are chunk sizes, the rest is the byte stream.
fn sizes_and_stream(mode: u8, rest: &[u8]) -> (&[u8], &[u8]) {
    let size_bytes = (usize::from(mode) % (MAX_SIZE_BYTES + 1)).min(rest.len());
    rest.split_at(size_bytes)
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
    let (sizes, stream) = sizes_and_stream(mode, rest);
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
    let (frames, end) = feed_chunked(stream, sizes, |buf| {
        let decoded = protocol::decode(buf);
        if let Ok(Some((frame, used))) = &decoded {
            check_round_trip(frame, *used, buf);
        }
        decoded
    });
    let end = end.map_or_else(End::Error, End::NeedMore);
    Decoded { frames, end }
}

/// Feeds `stream` to `step` through a growing buffer, `sizes` bytes at a time
/// (each value + 1, cycling; none: one byte at a time), taking every whole item
/// after each chunk and draining the bytes it used. Returns the items, then the
/// bytes left over or the first error.
fn feed_chunked<T, E>(
    stream: &[u8],
    sizes: &[u8],
    mut step: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> (Vec<T>, Result<usize, E>) {
    let mut buf = Vec::new();
    let mut items = Vec::new();
    let mut next_size = sizes.iter().map(|&s| usize::from(s) + 1).cycle();
    let mut pos = 0;
    while pos < stream.len() {
        let size = next_size.next().unwrap_or(1);
        let end = (pos + size).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            match step(&buf) {
                Ok(Some((item, used))) => {
                    items.push(item);
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => return (items, Err(e)),
            }
        }
    }
    let left = buf.len();
    (items, Ok(left))
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
/// `config::parse` as a server and as a client config, and `validate` on whatever
/// parses (a client's `http_proxy` rules included). Never
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
    if let Ok(mut server) = parse::<ServerConfig>(text, origin) {
        parsed += 1;
        offline_server(&mut server);
        let _ = server.validate();
    }
    if let Ok(mut client) = parse::<ClientConfig>(text, origin) {
        parsed += 1;
        offline_client(&mut client);
        let _ = client.validate_with(porthole::http_proxy::check_tunnel_rules);
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
    for server in &mut config.server {
        make_offline(server);
    }
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

// ---------------------------------------------------------------- HTTP proxy codecs

use std::fmt::Debug;

use porthole::http_proxy::chunked::{ChunkError as HttpChunkError, Decoder as HttpChunkDecoder};
use porthole::http_proxy::framing::{Declared, Framing};
use porthole::http_proxy::head::{
    HeadError, MAX_HEAD_LEN, MAX_HEADERS, MAX_REQUEST_LINE_LEN, Request, Response, Version,
    parse_request, parse_response,
};
use porthole::http_proxy::rewrite::{Upstream, client_response, dechunks, origin_request};

/// What a head parser made of a buffer: the head and the bytes it used, `None`
/// for "need more", or why it was refused.
pub type Parsed<T> = Result<Option<(T, usize)>, HeadError>;

/// Byte 0 of an HTTP input picks the split size (its value + 1); the rest is
/// the byte stream.
fn split_mode(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&mode, stream)) => (usize::from(mode) + 1, stream),
        None => (1, data),
    }
}

/// The `http_request` target: what a client sends, through `parse_request`.
///
/// Checks: no panic; every prefix shorter than an accepted head is "need more";
/// re-parsing a buffer that grows piece by piece reaches the one-shot result.
/// And the differential: an accepted request (not CONNECT, whose bytes after
/// the head are the tunnel's) whose body is all there, re-serialised by
/// `origin_request` with that body and its request line put back in absolute
/// form, parses again to the same method, destination, path and framing, uses
/// exactly the re-serialised head and delimits exactly the same body; that
/// head carries at most one framing field. Returns the one-shot result.
pub fn http_request(data: &[u8]) -> Parsed<Request> {
    let (size, stream) = split_mode(data);
    let whole = parse_request(stream);
    heads_agree(stream, size, &whole, parse_request);
    if let Ok(Some((req, used))) = &whole {
        request_round_trip(req, &stream[*used..]);
    }
    admin_answers(stream, &whole);
    whole
}

/// The admin endpoint's side of the same bytes: `parse_request_head` (the
/// part of `parse_request` the endpoint uses) accepts whatever
/// `parse_request` accepts, an accepted head is answered by `admin::respond`
/// without a panic, and the answer parses back, with our own response
/// parser, to its status and a body of its `Content-Length`.
fn admin_answers(stream: &[u8], whole: &Parsed<Request>) {
    let head = porthole::http_proxy::head::parse_request_head(stream);
    if let Ok(Some((_, used))) = whole {
        let head_used = head.as_ref().ok().and_then(|h| h.as_ref().map(|(_, u)| *u));
        assert_eq!(head_used, Some(*used), "the endpoint's parser disagrees");
    }
    let Ok(Some((head, _))) = head else {
        return;
    };
    let response = porthole::admin::respond(&head, &FuzzProbe);
    let bytes = response.encode();
    let (parsed, used) = match parse_response(&bytes) {
        Ok(Some(parsed)) => parsed,
        other => panic!("the endpoint's answer does not parse: {other:?}"),
    };
    assert_eq!(parsed.status, response.status);
    if !response.head_only {
        assert_eq!(bytes.len() - used, response.body.len());
    }
}

/// A role for [`admin_answers`]: one metric, healthy, an empty status.
struct FuzzProbe;

impl porthole::admin::Probe for FuzzProbe {
    fn metrics(&self, out: &mut porthole::metrics::Exposition) {
        out.single("porthole_fuzz", porthole::metrics::Kind::Gauge, "fuzz", 1);
    }

    fn health(&self) -> porthole::admin::Health {
        porthole::admin::Health::Serving
    }

    fn status(&self) -> porthole::admin::Status {
        porthole::admin::Status::default()
    }
}

/// The `http_response` target: what an origin sends, through `parse_response`.
///
/// Checks: no panic; the prefix and split properties of `http_request`; an
/// accepted head, rewritten by `client_response` for HTTP/1.1 and HTTP/1.0
/// clients with and without keep-alive, parses again whole, to the same status
/// and reason, with at most one framing field, declaring what the origin
/// declared, except nothing for 1xx and 204 and for a body sent de-chunked.
/// Returns the one-shot result.
pub fn http_response(data: &[u8]) -> Parsed<Response> {
    let (size, stream) = split_mode(data);
    let whole = parse_response(stream);
    heads_agree(stream, size, &whole, parse_response);
    if let Ok(Some((resp, _))) = &whole {
        for version in [Version::Http11, Version::Http10] {
            for keep_alive in [true, false] {
                response_round_trip(resp, version, keep_alive);
            }
        }
    }
    whole
}

/// Every prefix of an accepted head is "need more", and parsing a buffer that
/// grows by `size` bytes at a time stops where the one-shot parse does.
fn heads_agree<T: Debug + PartialEq>(
    stream: &[u8],
    size: usize,
    whole: &Parsed<T>,
    parse: fn(&[u8]) -> Parsed<T>,
) {
    if let Ok(Some((_, used))) = whole {
        assert!(
            *used <= stream.len(),
            "used {used} of {} bytes",
            stream.len()
        );
        for len in 0..*used {
            let prefix = parse(&stream[..len]);
            assert!(
                matches!(prefix, Ok(None)),
                "a {len}-byte prefix of a {used}-byte head gives {prefix:?}"
            );
        }
    }
    let mut grown = Ok(None);
    for end in (size..stream.len()).step_by(size).chain([stream.len()]) {
        grown = parse(&stream[..end]);
        if !matches!(grown, Ok(None)) {
            break;
        }
    }
    let same = match (&grown, whole) {
        (Err(a), Err(b)) => same_head_error(a, b),
        (a, b) => a == b,
    };
    assert!(
        same,
        "split into {size}-byte pieces: {grown:?}, one shot: {whole:?}"
    );
}

/// Errors alike but for the length seen, which depends on how much had arrived.
fn same_head_error(a: &HeadError, b: &HeadError) -> bool {
    match (a, b) {
        (HeadError::TooLarge { max: a, .. }, HeadError::TooLarge { max: b, .. })
        | (HeadError::LineTooLong { max: a, .. }, HeadError::LineTooLong { max: b, .. }) => a == b,
        _ => a == b,
    }
}

/// The body a head's framing delimits at the start of `after`; `None` when it
/// is incomplete, malformed, or runs until close.
fn body_of(framing: Framing, after: &[u8]) -> Option<&[u8]> {
    match framing {
        Framing::None => Some(&after[..0]),
        Framing::Length(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= after.len())
            .map(|n| &after[..n]),
        Framing::Chunked => {
            let mut decoder = HttpChunkDecoder::new();
            let used = decoder.feed(after).ok()?;
            decoder.is_done().then_some(&after[..used])
        }
        Framing::UntilClose => None,
    }
}

/// The field lines of a serialised head (without its first line).
fn field_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// How many `Content-Length` and `Transfer-Encoding` fields a head carries.
fn framing_fields(head: &[u8]) -> usize {
    field_lines(head)
        .filter(|line| {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
        })
        .count()
}

/// Whether a head the proxy wrote exceeds a bound the parser enforces: the
/// proxy adds `Via`, `Host`, `Connection` and a space after each colon, so a
/// head near a limit may be refused for size when read back.
fn over_limits(head: &[u8], request: bool) -> bool {
    let line = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    head.len() > MAX_HEAD_LEN
        || field_lines(head).count() > MAX_HEADERS
        || (request && line > MAX_REQUEST_LINE_LEN)
}

fn request_round_trip(req: &Request, after: &[u8]) {
    if req.is_connect() {
        return;
    }
    let Some(body) = body_of(req.framing, after) else {
        return;
    };
    let head = origin_request(req, Upstream::default());
    assert!(
        framing_fields(&head) <= 1,
        "more than one framing field in {:?}",
        String::from_utf8_lossy(&head)
    );
    let origin_line = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    assert!(
        head.starts_with(origin_line.as_bytes()),
        "origin request does not start {origin_line:?}: {:?}",
        String::from_utf8_lossy(&head)
    );
    let mut again = format!(
        "{} http://{}{} HTTP/1.1\r\n",
        req.method,
        req.dest.authority(),
        req.path
    )
    .into_bytes();
    again.extend_from_slice(&head[origin_line.len()..]);
    let head_len = again.len();
    let over = over_limits(&again, true);
    again.extend_from_slice(body);
    match parse_request(&again) {
        Ok(Some((re, used))) if !over => {
            let text = String::from_utf8_lossy(&again[..head_len]);
            assert_eq!(used, head_len, "re-parse used a different head: {text:?}");
            assert_eq!(
                (&re.method, &re.dest, &re.path, re.framing),
                (&req.method, &req.dest, &req.path, req.framing),
                "re-parse differs: {text:?}"
            );
            assert_eq!(
                body_of(re.framing, &again[used..]),
                Some(body),
                "re-parse delimits another body: {text:?}"
            );
        }
        Err(HeadError::TooLarge { .. } | HeadError::LineTooLong { .. }) if over => {}
        other => panic!(
            "re-serialised {:?} (over limits: {over}) parses to {other:?}; first parse: {req:?}",
            String::from_utf8_lossy(&again[..head_len])
        ),
    }
}

fn response_round_trip(resp: &Response, version: Version, keep_alive: bool) {
    let head = client_response(resp, version, keep_alive);
    let text = String::from_utf8_lossy(&head);
    assert!(
        framing_fields(&head) <= 1,
        "more than one framing field in {text:?}"
    );
    let informational = (100..200).contains(&resp.status);
    let expected = if informational || resp.status == 204 || dechunks(resp, version) {
        Declared::Nothing
    } else {
        resp.declared
    };
    let over = over_limits(&head, false);
    match parse_response(&head) {
        Ok(Some((re, used))) if !over => {
            assert_eq!(used, head.len(), "re-parse used part of {text:?}");
            assert_eq!(
                (re.status, &re.reason, re.declared),
                (resp.status, &resp.reason, expected),
                "for {version:?}, keep-alive {keep_alive}: {text:?} from {resp:?}"
            );
            if !informational {
                assert_eq!(re.keep_alive(), keep_alive, "Connection in {text:?}");
            }
        }
        Err(HeadError::TooLarge { .. }) if over => {}
        other => panic!("rewritten {text:?} (over limits: {over}) parses to {other:?}"),
    }
}

/// A chunked body as the proxy reads it: the bytes that belong to it, whether
/// its end was seen, and its data with the chunk framing taken off.
#[derive(Debug, PartialEq, Eq)]
pub struct Dechunked {
    pub used: usize,
    pub done: bool,
    pub data: Vec<u8>,
}

/// The `http_chunked` target: byte 0 picks the split size (value + 1), the
/// rest is a chunked body and whatever follows it.
///
/// Checks: no panic; `feed` in one shot and in pieces uses the same bytes,
/// finishes alike and fails alike; `split` in one shot and in pieces yields
/// the same data, bytes used, end and error, and agrees with `feed`; every
/// `split` makes progress and points inside what it used. A finished body's
/// data, sent again as one chunk, decodes to the same data. Returns the
/// one-shot `split` result.
pub fn http_chunked(data: &[u8]) -> Result<Dechunked, HttpChunkError> {
    let (size, stream) = split_mode(data);
    let one_shot = stream.len().max(1);
    let fed = feed_in(stream, one_shot);
    let fed_pieces = feed_in(stream, size);
    assert_eq!(
        fed.as_ref().ok(),
        fed_pieces.as_ref().ok(),
        "feed in {size}-byte pieces: {fed_pieces:?}, one shot: {fed:?}"
    );
    assert_eq!(fed.is_err(), fed_pieces.is_err());
    let whole = split_in(stream, one_shot);
    let pieces = split_in(stream, size);
    assert_eq!(whole, pieces, "split in {size}-byte pieces differs");
    assert_eq!(
        whole.as_ref().map(|d| (d.used, d.done)).ok(),
        fed.as_ref().ok().copied(),
        "split and feed disagree"
    );
    assert_eq!(whole.is_err(), fed.is_err(), "split and feed disagree");
    if let Ok(Dechunked {
        done: true, data, ..
    }) = &whole
    {
        let mut encoded = Vec::new();
        if !data.is_empty() {
            encoded.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            encoded.extend_from_slice(data);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        let expected = Dechunked {
            used: encoded.len(),
            done: true,
            data: data.clone(),
        };
        for size in [encoded.len(), size] {
            assert_eq!(
                split_in(&encoded, size).as_ref(),
                Ok(&expected),
                "one chunk of the same data, in {size}-byte pieces"
            );
            assert_eq!(feed_in(&encoded, size), Ok((encoded.len(), true)));
        }
    }
    whole
}

/// `feed` over `stream` in `size`-byte pieces: bytes used, and whether done.
fn feed_in(stream: &[u8], size: usize) -> Result<(usize, bool), HttpChunkError> {
    let mut decoder = HttpChunkDecoder::new();
    let mut used = 0;
    for piece in stream.chunks(size) {
        let n = decoder.feed(piece)?;
        assert!(
            n == piece.len() || (n < piece.len() && decoder.is_done()),
            "feed used {n} of {} bytes without finishing",
            piece.len()
        );
        used += n;
        if decoder.is_done() {
            break;
        }
    }
    Ok((used, decoder.is_done()))
}

/// `split` over `stream` in `size`-byte pieces, collecting the data.
fn split_in(stream: &[u8], size: usize) -> Result<Dechunked, HttpChunkError> {
    let mut decoder = HttpChunkDecoder::new();
    let (mut used, mut data) = (0, Vec::new());
    for piece in stream.chunks(size) {
        let mut at = 0;
        while at < piece.len() && !decoder.is_done() {
            let (n, range) = decoder.split(&piece[at..])?;
            assert!(
                n > 0 && n <= piece.len() - at,
                "split used {n} of {} bytes",
                piece.len() - at
            );
            assert!(
                range.start <= range.end && range.end <= n,
                "data {range:?} of {n}"
            );
            data.extend_from_slice(&piece[at..][range]);
            at += n;
        }
        used += at;
        if decoder.is_done() {
            break;
        }
    }
    Ok(Dechunked {
        used,
        done: decoder.is_done(),
        data,
    })
}

// ---------------------------------------------------------------- handshake

#[path = "handshake.rs"]
mod handshake_property;
pub use handshake_property::{HandshakeRun, handshake};

// ---------------------------------------------------------------- PROXY protocol headers

#[path = "proxy_header.rs"]
mod proxy_header_property;
pub use proxy_header_property::{ProxyParsed, proxy_header};

// ---------------------------------------------------------------- datagram records

use porthole::protocol::datagram::{
    self, DatagramError, HEADER_LEN as DATAGRAM_HEADER_LEN, MAX_DATAGRAM_LEN,
};

/// How a UDP flow's stream of records ended for its reader.
#[derive(Debug, PartialEq, Eq)]
pub enum DatagramEnd {
    /// Every whole record decoded; this many bytes of an unfinished one are left.
    Partial(usize),
    /// A header over the cap; the link would be closed here.
    Error(DatagramError),
}

/// What a stream of records decodes to: the datagrams, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagrams {
    pub records: Vec<Vec<u8>>,
    pub end: DatagramEnd,
}

/// The `datagram` target. Byte 0 is the mode `m`: the next `m % 8` bytes are
/// chunk sizes (each value + 1, used in turn, cycling; none means one byte at a
/// time), as for `control_frame`; the rest is the byte stream.
///
/// Checks: no panic; `need` agrees with `decode` at every step (0 exactly when
/// a record is whole, the same error); every record re-encodes to exactly the
/// bytes it used, and those bytes are the front of the stream; the stream ends
/// in an error exactly when the header there says more than the cap, else with
/// less than a whole record left; feeding it in chunks gives the same records
/// and the same end. Returns the one-shot result.
pub fn datagram(data: &[u8]) -> Datagrams {
    let Some((&mode, rest)) = data.split_first() else {
        return datagrams_whole(data);
    };
    let (sizes, stream) = sizes_and_stream(mode, rest);
    let whole = datagrams_whole(stream);
    let mut encoded = Vec::new();
    for payload in &whole.records {
        datagram::encode(payload, &mut encoded).expect("a decoded record encodes");
    }
    assert_eq!(
        encoded,
        stream[..encoded.len()],
        "records are the stream's front"
    );
    datagram_end_agrees(&whole.end, &stream[encoded.len()..]);
    let chunked = datagrams_chunked(stream, sizes);
    assert_eq!(whole, chunked, "chunked decoding differs (sizes {sizes:?})");
    whole
}

/// Decodes `stream` in one piece, record by record.
fn datagrams_whole(stream: &[u8]) -> Datagrams {
    let mut records = Vec::new();
    let mut rest = stream;
    loop {
        match datagram_step(rest) {
            Ok(Some((payload, used))) => {
                records.push(payload);
                rest = &rest[used..];
            }
            Ok(None) => {
                let end = DatagramEnd::Partial(rest.len());
                return Datagrams { records, end };
            }
            Err(e) => {
                let end = DatagramEnd::Error(e);
                return Datagrams { records, end };
            }
        }
    }
}

/// Feeds `stream` in chunks, as a reader over a socket would.
fn datagrams_chunked(stream: &[u8], sizes: &[u8]) -> Datagrams {
    let (records, end) = feed_chunked(stream, sizes, datagram_step);
    let end = end.map_or_else(DatagramEnd::Error, DatagramEnd::Partial);
    Datagrams { records, end }
}

/// One `decode` at the front of `buf`, checked against `need` and against
/// re-encoding: the payload and the bytes it used.
fn datagram_step(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, DatagramError> {
    let needed = datagram::need(buf);
    let decoded = datagram::decode(buf);
    match &decoded {
        Ok(Some(_)) => assert_eq!(needed, Ok(0), "need says a whole record is missing"),
        Ok(None) => assert!(matches!(needed, Ok(n) if n > 0), "need {needed:?}"),
        Err(e) => assert_eq!(needed.as_ref(), Err(e), "need and decode disagree"),
    }
    let Some((range, used)) = decoded? else {
        return Ok(None);
    };
    assert!(
        range.start == DATAGRAM_HEADER_LEN && range.end == used && used <= buf.len(),
        "payload {range:?} of a {used}-byte record in {} bytes",
        buf.len()
    );
    let payload = buf[range].to_vec();
    let mut encoded = Vec::new();
    datagram::encode(&payload, &mut encoded).expect("a decoded record encodes");
    assert_eq!(encoded, buf[..used], "the record re-encodes differently");
    Ok(Some((payload, used)))
}

/// What is left after the last record ends the stream as its header says: an
/// error exactly for a length over the cap, else less than a whole record.
fn datagram_end_agrees(end: &DatagramEnd, left: &[u8]) {
    let announced = left
        .first_chunk::<DATAGRAM_HEADER_LEN>()
        .map(|&header| usize::from(u16::from_be_bytes(header)));
    match (end, announced) {
        (DatagramEnd::Error(e), Some(len)) => {
            assert!(len > MAX_DATAGRAM_LEN, "refused a {len}-byte record");
            assert_eq!(
                e,
                &DatagramError::TooLarge {
                    len,
                    max: MAX_DATAGRAM_LEN
                }
            );
            assert_eq!(datagram::header(len), Err(e.clone()), "header agrees");
        }
        (DatagramEnd::Error(e), None) => panic!("{e} without a whole header"),
        (DatagramEnd::Partial(n), announced) => {
            assert_eq!(*n, left.len());
            let whole = announced.map_or(DATAGRAM_HEADER_LEN, |len| DATAGRAM_HEADER_LEN + len);
            assert!(announced.is_none_or(|len| len <= MAX_DATAGRAM_LEN));
            assert!(left.len() < whole, "a whole record was left undecoded");
        }
    }
}
