//! Pooled links that carry visitor after visitor (PROTOCOL.md section 9): every
//! visitor's bytes arrive intact and separate, half-close works on a reused link,
//! errors retire a link instead of reusing it, and a peer that breaks the chunk
//! framing or the `End`/`Idle` exchange loses its link. Links are counted with a
//! proxy between client and server that sees every connection the client opens.

use crate::common::proxy::{LinkProxy, link_proxy};
use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::protocol::Frame;
use porthole::protocol::chunk::Chunk;
use porthole::wire::read_frame;
use smol::channel::unbounded;
use smol::net::TcpStream;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

/// What a visitor of the sized service sends first: its number, how many bytes
/// it sends, how many it wants back.
const HEADER_LEN: usize = 24;
/// Largest visitor message in these tests (both directions).
const MAX_LEN: usize = 1 << 20;

fn request_seed(i: u64) -> u64 {
    i
}

fn reply_seed(i: u64) -> u64 {
    i | 1 << 40
}

/// Reads a header and the request to EOF, checks both, then answers one byte
/// (1: the request was exactly what visitor `i` sent) and the reply.
async fn sized(mut stream: TcpStream) -> io::Result<()> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let field = |k: usize| u64::from_be_bytes(header[k * 8..k * 8 + 8].try_into().expect("8"));
    let (i, sent, wanted) = (field(0), field(1), field(2));
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await?;
    let intact = got == payload(request_seed(i), sent as usize);
    // One write: two small ones would meet Nagle and a delayed ACK (40 ms).
    let mut reply = vec![u8::from(intact)];
    reply.extend_from_slice(&payload(reply_seed(i), wanted as usize));
    stream.write_all(&reply).await?;
    stream.close().await
}

/// Visitor `i`: sends `sent` bytes, stops writing, and checks the whole reply.
async fn visit(public: SocketAddr, i: u64, sent: usize, wanted: usize) {
    let mut request = Vec::with_capacity(HEADER_LEN + sent);
    for v in [i, sent as u64, wanted as u64] {
        request.extend_from_slice(&v.to_be_bytes());
    }
    request.extend_from_slice(&payload(request_seed(i), sent));
    let reply = exchange(public, &request)
        .await
        .unwrap_or_else(|e| panic!("visitor {i}: {e}"));
    assert_eq!(
        reply.first(),
        Some(&1),
        "visitor {i}: the service got its bytes intact"
    );
    assert_eq!(reply.len() - 1, wanted, "visitor {i}: reply length");
    assert!(
        reply[1..] == payload(reply_seed(i), wanted)[..],
        "visitor {i}: reply bytes"
    );
}

/// A tunnel with a one-link pool whose client dials through a counting proxy.
struct OneLink {
    public: SocketAddr,
    proxy: LinkProxy,
    tunnel: Tunnel,
    _service: Service,
}

async fn one_link(service: Service) -> OneLink {
    let (tunnel, proxy) = TunnelBuilder::new()
        .service("svc", service.addr)
        .pooled(1)
        .start_via(link_proxy)
        .await;
    OneLink {
        public: tunnel.public,
        proxy,
        tunnel,
        _service: service,
    }
}

impl OneLink {
    /// Connections the client opened so far (the control link included).
    fn links_opened(&self, seen: &mut usize) -> usize {
        *seen += self.proxy.take_new().len();
        *seen
    }

    async fn stop(self) {
        self.tunnel.stop().await;
    }
}

#[test]
fn one_link_carries_a_thousand_sequential_visitors_of_random_sizes() {
    run_test(async {
        let tunnel = one_link(serve(local_listener().await, sized)).await;
        let mut rng = fastrand::Rng::with_seed(11);
        let mut size = || {
            // Mostly small messages, one in eight up to 1 MiB (both directions
            // switch to splicing then), and empty ones.
            match rng.u8(..8) {
                0 => rng.usize(..=MAX_LEN),
                1 => 0,
                _ => rng.usize(..4096),
            }
        };
        // The first visitor may race the pool's first link to the server and
        // have one more opened for it; from then on, links are counted.
        visit(tunnel.public, 1000, 10, 10).await;
        let mut seen = 0;
        let before = tunnel.links_opened(&mut seen);
        assert!(before <= 3, "{before} connections for the first visitor");
        for i in 0..1000u64 {
            let (sent, wanted) = (size(), size());
            visit(tunnel.public, i, sent, wanted).await;
        }
        assert_eq!(
            tunnel.links_opened(&mut seen),
            before,
            "no new data link for 1,000 sequential visitors"
        );
        tunnel.stop().await;
    });
}

/// The service ends its direction first: it sends its whole reply and shuts
/// down writing, then reads the visitor's bytes to EOF and reports them.
#[test]
fn half_close_works_both_ways_on_a_reused_link() {
    run_test(async {
        let (report, reports) = unbounded();
        let service = serve(local_listener().await, move |mut stream: TcpStream| {
            let report = report.clone();
            async move {
                stream.write_all(&payload(7, 100_000)).await?;
                stream.shutdown(Shutdown::Write)?;
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await?;
                let _ = report.send(got).await;
                Ok(())
            }
        });
        let tunnel = one_link(service).await;
        for round in 0..3u64 {
            let mut visitor = TcpStream::connect(tunnel.public).await.expect("connect");
            let mut reply = Vec::new();
            visitor.read_to_end(&mut reply).await.expect("read reply");
            assert!(
                reply == payload(7, 100_000),
                "round {round}: the whole reply"
            );
            // The service's direction is over; ours still flows.
            let sent = payload(100 + round, 70_000);
            visitor.write_all(&sent).await.expect("write after EOF");
            visitor.shutdown(Shutdown::Write).expect("shutdown");
            let got = within(PROMPTLY, "service report", reports.recv())
                .await
                .expect("report");
            assert!(got == sent, "round {round}: the service got every byte");
        }
        // And the ordinary direction (visitor ends first) on the same links.
        let tunnel2 = one_link(serve(local_listener().await, sized)).await;
        visit(tunnel2.public, 0, 1, 1).await;
        let mut seen = 0;
        let before = tunnel2.links_opened(&mut seen);
        for i in 1..20 {
            visit(tunnel2.public, i, 65_537, 65_535).await;
        }
        assert_eq!(
            tunnel2.links_opened(&mut seen),
            before,
            "the links were reused"
        );
        tunnel2.stop().await;
        tunnel.stop().await;
    });
}

/// After an error on the only link, the next visitor needed a new one (the
/// broken link was not reused); at most two can be opened for it: the
/// replacement the client dials at once, and one the server asks for if its
/// visitor arrives before the client noticed the break.
fn replaced(after: usize, before: usize) {
    assert!(
        (before + 1..=before + 2).contains(&after),
        "links opened: {before} before the error, {after} after"
    );
}

#[test]
fn a_visitor_reset_mid_stream_retires_the_link() {
    run_test(async {
        let tunnel = one_link(serve(local_listener().await, sized)).await;
        let mut seen = 0;
        // Two visitors first: if the first raced the pool's first link and got
        // a second one, the second visitor's link is closed after it (the pool
        // is full), so exactly one link is left.
        visit(tunnel.public, 1, 10, 10).await;
        visit(tunnel.public, 2, 10, 10).await;
        let before = tunnel.links_opened(&mut seen);

        let visitor = TcpStream::connect(tunnel.public).await.expect("connect");
        let mut w = visitor.clone();
        // A header promising more than is sent, then a reset.
        w.write_all(&[0u8; HEADER_LEN - 1]).await.expect("write");
        w.write_all(&[0xff; 1]).await.expect("write");
        reset_on_close(&visitor);
        drop((visitor, w));

        // The next visitor is served, on a new link.
        visit(tunnel.public, 3, 5000, 5000).await;
        replaced(tunnel.links_opened(&mut seen), before);
        tunnel.stop().await;
    });
}

#[test]
fn a_service_reset_mid_stream_retires_the_link() {
    run_test(async {
        let resetting = serve(local_listener().await, |mut stream: TcpStream| async move {
            let mut first = [0u8; 1];
            stream.read_exact(&mut first).await?;
            if first[0] == b'x' {
                stream.write_all(b"partial").await?;
                reset_on_close(&stream);
                return Ok(());
            }
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await?;
            stream.write_all(&rest).await?;
            stream.close().await
        });
        let tunnel = one_link(resetting).await;
        let mut seen = 0;
        // Two visitors first, so exactly one link is left (see above).
        for _ in 0..2 {
            assert_eq!(
                exchange(tunnel.public, b"-hello").await.expect("echo"),
                b"hello"
            );
        }
        let before = tunnel.links_opened(&mut seen);

        // The service resets mid-visitor: the visitor sees its connection end
        // without a clean reply.
        let mut visitor = TcpStream::connect(tunnel.public).await.expect("connect");
        visitor.write_all(b"x and more").await.expect("write");
        assert_closed_within(&mut visitor, PROMPTLY, "visitor of a reset service").await;

        assert_eq!(
            exchange(tunnel.public, b"-again").await.expect("echo"),
            b"again"
        );
        replaced(tunnel.links_opened(&mut seen), before);
        tunnel.stop().await;
    });
}

/// A hand-driven client: control link, one registered service, one data link.
struct Manual {
    server: Server,
    public: SocketAddr,
    link: TcpStream,
    _control: TcpStream,
}

/// Hand-written: the client is this test, speaking the protocol by hand.
async fn manual(handshake_timeout: Duration) -> Manual {
    let mut settings = server_settings();
    settings.handshake_timeout = handshake_timeout;
    let server = start_server(settings).await.expect("server");
    let (mut control, session) = raw_control_handshake(server.addr, TOKEN).await;
    let port = raw_register(&mut control, "svc").await;
    let link = raw_data_link(server.addr, TOKEN, session).await;
    Manual {
        public: SocketAddr::from(([127, 0, 0, 1], port)),
        server,
        link,
        _control: control,
    }
}

/// Connects a visitor that sends `hello` and stops writing; reads the `Start`,
/// accepts it and reads the visitor's bytes off the link up to the server's `End`.
async fn start_visitor(m: &mut Manual, hello: &[u8]) -> TcpStream {
    let mut visitor = TcpStream::connect(m.public).await.expect("visitor");
    visitor.write_all(hello).await.expect("visitor writes");
    visitor
        .shutdown(Shutdown::Write)
        .expect("visitor shuts down");
    let start = within(PROMPTLY, "start", read_frame(&mut m.link)).await;
    assert!(matches!(start, Ok(Frame::Start { .. })), "{start:?}");
    m.link
        .write_all(&Chunk::Accept.encode())
        .await
        .expect("accept");
    let mut expected = Chunk::Data(hello.len() as u32).encode().to_vec();
    expected.extend_from_slice(hello);
    expected.extend_from_slice(&Chunk::End.encode());
    let mut got = vec![0u8; expected.len()];
    within(PROMPTLY, "chunks", m.link.read_exact(&mut got))
        .await
        .expect("read chunks");
    assert_eq!(got, expected, "the visitor's bytes in chunks, then End");
    visitor
}

#[test]
fn a_well_behaved_manual_client_gets_its_link_back_for_the_next_start() {
    run_test(async {
        let mut m = manual(PROMPTLY).await;
        for round in 0..3u8 {
            let mut visitor = start_visitor(&mut m, &[round; 5]).await;
            let mut answer = Chunk::Data(2).encode().to_vec();
            answer.extend_from_slice(b"ok");
            answer.extend_from_slice(&Chunk::End.encode());
            answer.extend_from_slice(&Chunk::Idle.encode());
            m.link.write_all(&answer).await.expect("answer");
            let mut reply = Vec::new();
            within(PROMPTLY, "reply", visitor.read_to_end(&mut reply))
                .await
                .expect("reply");
            assert_eq!(reply, b"ok", "round {round}");
        }
        m.server.stop().await;
    });
}

/// What a misbehaving client does after the server's `End`, and what must follow:
/// the server closes the link (EOF or reset at our end) and never starts
/// another visitor on it.
async fn misbehave(answer: &[u8], handshake_timeout: Duration) {
    let mut m = manual(handshake_timeout).await;
    let visitor = start_visitor(&mut m, b"hello").await;
    m.link.write_all(answer).await.expect("write");
    let mut rest = Vec::new();
    let closed = within(
        PROMPTLY,
        "server closes the link",
        m.link.read_to_end(&mut rest),
    )
    .await;
    assert!(
        closed.is_err() || rest.is_empty(),
        "nothing (no Start) after a broken exchange: {rest:?}"
    );
    drop(visitor);
    m.server.stop().await;
}

#[test]
fn a_client_that_never_says_idle_loses_its_link_at_the_deadline() {
    run_test(misbehave(
        &[Chunk::End.encode()].concat(),
        Duration::from_millis(300),
    ));
}

#[test]
fn a_client_that_sends_bytes_past_its_end_loses_its_link() {
    let mut past_end = Chunk::End.encode().to_vec();
    past_end.extend_from_slice(&Chunk::Data(3).encode());
    past_end.extend_from_slice(b"abc");
    run_test(misbehave(&past_end, PROMPTLY));
}

#[test]
fn a_client_that_says_idle_before_its_end_loses_its_link() {
    run_test(misbehave(&Chunk::Idle.encode(), PROMPTLY));
}

#[test]
fn a_client_that_sends_more_after_idle_loses_its_link() {
    let mut extra = Chunk::End.encode().to_vec();
    extra.extend_from_slice(&Chunk::Idle.encode());
    extra.push(0);
    run_test(misbehave(&extra, PROMPTLY));
}

#[test]
fn a_client_that_sends_a_frame_where_a_chunk_is_due_loses_its_link() {
    // A `Start`, as a confused peer would send on a link it thinks idle.
    let start = Frame::Start {
        service: "svc".into(),
        visitor: SocketAddr::from(([127, 0, 0, 1], 9)),
        public: None,
        udp: false,
    };
    let frame = porthole::protocol::to_bytes(&start).expect("encodes");
    run_test(misbehave(&frame, PROMPTLY));
}

#[test]
fn a_malformed_chunk_header_loses_the_link() {
    run_test(misbehave(&[9, 0, 0, 0], PROMPTLY));
}
