//! The multiplexer over a real loopback TCP link: integrity for many sequential
//! and concurrent streams, a stalled reader that does not slow the others,
//! half-close, reset, go-away, keepalive, and a peer that breaks the rules
//! (over-credit data, oversize and malformed frames) losing only its session.

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::mux::frame::{FrameError, HEADER_LEN, Header, Kind, MAX_DATA_LEN};
use porthole::mux::{Config, Error, Session, Side, Stream, Violation};
use smol::Task;
use std::io;
use std::time::Duration;

/// Both ends of a session over a loopback TCP pair; drivers owned here.
struct Pair {
    client: Session,
    server: Session,
    client_driver: Task<io::Result<()>>,
    server_driver: Task<io::Result<()>>,
}

impl Pair {
    /// A stream opened by the client and the server's end of it.
    async fn open(&self) -> (porthole::mux::Stream, porthole::mux::Stream) {
        let opened = self.client.open(Vec::new()).expect("open");
        let (accepted, _) = within(PROMPTLY, "accept", self.server.accept())
            .await
            .expect("stream");
        (opened, accepted)
    }
}

async fn pair(config: Config) -> Pair {
    let (a, b) = tcp_pair().await;
    // As the transports do: frames must not wait for Nagle.
    a.set_nodelay(true).expect("nodelay");
    b.set_nodelay(true).expect("nodelay");
    let (client, cd) = Session::new(a, Side::Client, config.clone());
    let (server, sd) = Session::new(b, Side::Server, config);
    Pair {
        client,
        server,
        client_driver: smol::spawn(cd),
        server_driver: smol::spawn(sd),
    }
}

/// Echoes every stream the session accepts until the session ends.
fn echo_streams(session: Session) -> Task<()> {
    smol::spawn(async move {
        let mut streams = Vec::new();
        while let Some((stream, _)) = session.accept().await {
            streams.push(smol::spawn(echo_stream(stream)));
        }
    })
}

async fn echo_stream(stream: Stream) {
    let (mut r, mut w) = futures_lite::io::split(stream);
    let _ = futures_lite::io::copy(&mut r, &mut w).await;
    let _ = w.close().await;
}

/// Writes `data` on a new stream, half-closes, reads the echo to the end.
async fn round_trip(session: &Session, data: &[u8]) -> io::Result<Vec<u8>> {
    let stream = session.open(b"hello".to_vec())?;
    let (mut r, mut w) = futures_lite::io::split(stream);
    let send = async {
        w.write_all(data).await?;
        w.close().await
    };
    let recv = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await?;
        Ok(got)
    };
    let ((), got) = futures_lite::future::try_zip(send, recv).await?;
    Ok(got)
}

async fn assert_round_trip(session: &Session, seed: u64, len: usize) {
    let data = payload(seed, len);
    let got = round_trip(session, &data).await.expect("round trip");
    assert_eq!(got.len(), data.len(), "length (seed {seed})");
    assert_eq!(sha256(&got), sha256(&data), "bytes (seed {seed})");
}

#[test]
fn a_thousand_sequential_and_two_hundred_concurrent_streams_are_intact() {
    run_test(async {
        let p = pair(Config::default()).await;
        let _echo = echo_streams(p.server.clone());
        for i in 0..1000u64 {
            let len = [0, 1, 100, 40_000][(i % 4) as usize];
            assert_round_trip(&p.client, i, len).await;
        }
        let many: Vec<_> = (0..200u64)
            .map(|i| {
                let s = p.client.clone();
                smol::spawn(async move { assert_round_trip(&s, 5000 + i, 70_000).await })
            })
            .collect();
        for t in many {
            within(PROMPTLY * 2, "concurrent stream", t).await;
        }
        assert_round_trip(&p.client, 9, 8 << 20).await;
        // Everything finished: the tables empty out on both sides.
        within(PROMPTLY, "tables empty", async {
            while p.client.stream_count() + p.server.stream_count() > 0 {
                smol::future::yield_now().await;
            }
        })
        .await;
        drop(p);
    });
}

#[test]
fn a_stream_whose_reader_stopped_does_not_slow_the_others() {
    run_test(async {
        let config = Config::default();
        let window = config.initial_window as usize;
        let p = pair(config).await;
        // The server floods a stream the client never reads.
        let (stalled, mut flood) = p.open().await;
        let flooder = smol::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            // Credit runs out long before this bound; the write then waits.
            for _ in 0..1024 {
                flood.write_all(&chunk).await.expect("write");
            }
        });
        // Meanwhile other streams move 16 MiB through the same link.
        let _echo_later = {
            let server = p.server.clone();
            smol::spawn(async move {
                while let Some((s, _)) = server.accept().await {
                    smol::spawn(echo_stream(s)).detach();
                }
            })
        };
        for seed in 0..4 {
            within(
                PROMPTLY * 2,
                "other streams move",
                assert_round_trip(&p.client, seed, 4 << 20),
            )
            .await;
        }
        assert!(!flooder.is_finished(), "the flooder is held back by credit");
        // The stalled stream holds no more than the window it granted.
        let mut buf = vec![0u8; 2 * window];
        let mut held = 0;
        let mut stalled = stalled;
        while held < window {
            let n = within(PROMPTLY, "read stalled", stalled.read(&mut buf))
                .await
                .expect("read");
            assert!(n > 0);
            held += n;
        }
        assert!(held <= window, "held {held} > window {window}");
        drop(flooder);
    });
}

#[test]
fn half_close_works_both_ways_and_reset_reaches_the_peer() {
    run_test(async {
        let p = pair(Config::default()).await;
        let (mut a, mut b) = p.open().await;
        // a → b then FIN; b still talks back afterwards.
        a.write_all(b"ping").await.expect("write");
        a.close().await.expect("close");
        let mut got = Vec::new();
        within(PROMPTLY, "read to fin", b.read_to_end(&mut got))
            .await
            .expect("read");
        assert_eq!(got, b"ping");
        b.write_all(b"pong after your fin")
            .await
            .expect("write after peer fin");
        b.close().await.expect("close");
        let mut back = Vec::new();
        within(PROMPTLY, "read back", a.read_to_end(&mut back))
            .await
            .expect("read");
        assert_eq!(back, b"pong after your fin");
        // Reset: dropping a stream mid-transfer fails the peer's read.
        let (c, mut d) = p.open().await;
        drop(c);
        let mut buf = [0u8; 16];
        let err = within(PROMPTLY, "reset seen", d.read(&mut buf))
            .await
            .expect_err("reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    });
}

#[test]
fn a_stream_dropped_after_its_fin_resets_the_peers_writes() {
    run_test(async {
        let p = pair(Config::default()).await;
        let (mut a, mut b) = p.open().await;
        // a finished writing, then went away before reading b's side: that
        // direction was cut, so b must not see its writes accepted.
        a.close().await.expect("close");
        drop(a);
        let mut got = Vec::new();
        within(PROMPTLY, "read to fin", b.read_to_end(&mut got))
            .await
            .expect("a's direction ended cleanly");
        assert!(got.is_empty());
        // More than the send buffer and the credit together: it cannot all
        // be accepted before the reset is seen.
        let err = within(PROMPTLY, "write fails", b.write_all(&vec![7; 1 << 20]))
            .await
            .expect_err("reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    });
}

#[test]
fn streams_fail_rather_than_end_when_their_link_dies() {
    run_test(async {
        let p = pair(Config::default()).await;
        let (mut a, mut b) = p.open().await;
        a.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 16];
        within(PROMPTLY, "first byte", b.read_exact(&mut buf[..1]))
            .await
            .expect("read");
        // Cancelling the client's driver drops its end of the link.
        drop(p.client_driver);
        // The peer's link ended: its stream fails, it does not read EOF.
        let err = within(PROMPTLY, "peer stream fails", b.read(&mut buf))
            .await
            .expect_err("link lost");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        // The stream whose own driver was dropped fails too, never hangs.
        let err = within(PROMPTLY, "own stream fails", a.read(&mut buf))
            .await
            .expect_err("driver dropped");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    });
}

#[test]
fn go_away_refuses_new_streams_and_drains_open_ones() {
    run_test(async {
        let p = pair(Config::default()).await;
        let _echo = echo_streams(p.server.clone());
        let open = p.client.open(Vec::new()).expect("open");
        p.client.go_away();
        assert!(
            p.client.open(Vec::new()).is_err(),
            "no new streams after go-away"
        );
        let (mut r, mut w) = futures_lite::io::split(open);
        let data = payload(3, 1 << 20);
        let send = async {
            w.write_all(&data).await?;
            w.close().await
        };
        let recv = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await?;
            Ok(got)
        };
        let ((), got) = within(PROMPTLY, "drain", futures_lite::future::try_zip(send, recv))
            .await
            .expect("open stream carried on");
        assert_eq!(sha256(&got), sha256(&data));
        drop((r, w));
        // With nothing left, the going-away side closes the link.
        within(PROMPTLY, "client driver ends", p.client_driver)
            .await
            .expect("clean end");
        within(PROMPTLY, "server driver ends", p.server_driver)
            .await
            .expect("clean end");
    });
}

#[test]
fn keepalive_notices_a_peer_that_stops_answering() {
    run_test(async {
        let (a, _silent) = tcp_pair().await;
        let config = Config {
            ping_interval: Duration::from_millis(20),
            ping_timeout: Duration::from_millis(100),
            ..Config::default()
        };
        let (session, driver) = Session::new(a, Side::Client, config);
        let stream = session.open(Vec::new()).expect("open");
        let err = within(PROMPTLY, "dead link noticed", driver)
            .await
            .expect_err("timeout");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let mut stream = stream;
        let mut buf = [0u8; 1];
        let err = stream.read(&mut buf).await.expect_err("stream failed too");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    });
}

/// A server session facing hand-written bytes; returns how its driver ended.
async fn server_facing(bytes: Vec<u8>) -> io::Error {
    let (mut raw, b) = tcp_pair().await;
    let (session, driver) = Session::new(b, Side::Server, Config::default());
    let driver = smol::spawn(driver);
    // Keep the raw side open while the session judges it.
    raw.write_all(&bytes).await.expect("write");
    let err = within(PROMPTLY, "session ends", driver)
        .await
        .expect_err("refused");
    assert!(session.closed().is_some(), "session marked closed");
    drop(raw);
    err
}

/// The mux error inside a driver's `io::Error`.
fn mux_error(err: &io::Error) -> Option<&Error> {
    err.get_ref()?.downcast_ref()
}

fn frame(kind: Kind, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Header::new(kind, 0, stream, payload.len() as u32)
        .encode()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_peer_sending_beyond_its_credit_loses_the_session() {
    run_test(async {
        let mut bytes = frame(Kind::Open, 1, b"");
        let chunk = vec![1u8; MAX_DATA_LEN as usize];
        let window = Config::default().initial_window as usize;
        for _ in 0..window / chunk.len() + 1 {
            bytes.extend(frame(Kind::Data, 1, &chunk));
        }
        let err = server_facing(bytes).await;
        let over = Violation::BeyondCredit {
            stream: 1,
            len: chunk.len() as u64,
            credit: 0,
        };
        assert!(
            matches!(mux_error(&err), Some(Error::Violation(v)) if *v == over),
            "{err}"
        );
    });
}

#[test]
fn oversize_and_malformed_frames_close_the_session_cleanly() {
    run_test(async {
        let mut oversize = Header::new(Kind::Data, 0, 1, MAX_DATA_LEN + 1)
            .encode()
            .to_vec();
        oversize.extend(vec![0u8; 64]);
        let err = server_facing(oversize).await;
        let too_large = FrameError::TooLarge {
            kind: Kind::Data,
            len: MAX_DATA_LEN + 1,
            max: MAX_DATA_LEN,
        };
        assert!(
            matches!(mux_error(&err), Some(Error::Frame(e)) if *e == too_large),
            "{err}"
        );
        let mut bad_version = Header::new(Kind::Ping, 0, 0, 1).encode();
        bad_version[0] = 9;
        let err = server_facing(bad_version.to_vec()).await;
        assert!(
            matches!(
                mux_error(&err),
                Some(Error::Frame(FrameError::UnknownVersion(9)))
            ),
            "{err}"
        );
        let wrong_parity = frame(Kind::Open, 2, b"");
        let err = server_facing(wrong_parity).await;
        assert!(
            matches!(
                mux_error(&err),
                Some(Error::Violation(Violation::WrongParity { stream: 2 }))
            ),
            "{err}"
        );
        let mut reused = frame(Kind::Open, 3, b"");
        reused.extend(frame(Kind::Open, 1, b""));
        let err = server_facing(reused).await;
        assert!(
            matches!(
                mux_error(&err),
                Some(Error::Violation(Violation::ReusedId { stream: 1, last: 3 }))
            ),
            "{err}"
        );
        assert_eq!(HEADER_LEN, 12);
    });
}

// ---------------------------------------------------------------- in the tunnel

#[test]
fn a_multiplexed_tunnel_carries_sequential_and_concurrent_visitors_intact() {
    run_test(async {
        let t = TunnelBuilder::new().multiplexed(2).start().await;
        for (seed, len) in [(1, 0), (2, 1), (3, 64 * 1024 + 1), (4, 4 << 20)] {
            assert_echoes(t.public, seed, len).await;
        }
        for seed in 0..300 {
            assert_echoes(t.public, 100 + seed, 64).await;
        }
        let concurrent: Vec<_> = (0..200u64)
            .map(|i| smol::spawn(assert_echoes(t.public, 1000 + i, 50_000)))
            .collect();
        for visitor in concurrent {
            within(PROMPTLY * 2, "concurrent visitor", visitor).await;
        }
        t.stop().await;
    });
}

#[test]
fn a_session_that_accepts_no_streams_refuses_the_peers_opens() {
    run_test(async {
        let (mut raw, b) = tcp_pair().await;
        let config = Config {
            accept_streams: false,
            ..Config::default()
        };
        let (session, driver) = Session::new(b, Side::Server, config);
        let _driver = smol::spawn(driver);
        raw.write_all(&frame(Kind::Open, 1, b""))
            .await
            .expect("write");
        // Skip the session's own pings; the answer to the Open is a Reset.
        let reset = within(PROMPTLY, "reset", async {
            loop {
                let mut head = [0u8; HEADER_LEN];
                raw.read_exact(&mut head).await.expect("frame");
                let h = Header::decode(&head).expect("valid frame");
                if h.kind == Kind::Reset {
                    return h;
                }
            }
        })
        .await;
        assert_eq!(reset.stream, 1);
        assert_eq!(reset.length, porthole::mux::state::RESET_REFUSED);
        assert_eq!(session.stream_count(), 0, "nothing buffered for it");
    });
}

/// Opens a visitor and proves it is served end to end (a byte through the echo).
async fn held_visitor(public: std::net::SocketAddr) -> smol::net::TcpStream {
    let mut stream = smol::net::TcpStream::connect(public)
        .await
        .expect("connect");
    stream.write_all(b"h").await.expect("write");
    let mut back = [0u8; 1];
    within(
        PROMPTLY,
        "held visitor served",
        stream.read_exact(&mut back),
    )
    .await
    .expect("echo");
    stream
}

#[test]
fn visitors_beyond_a_full_multiplexed_link_spill_to_pooled_links() {
    run_test(async {
        let t = TunnelBuilder::new()
            .server(|s| s.max_streams_per_link = 4)
            .multiplexed(1)
            .start()
            .await;
        // Ten held at once: four streams fill the link, six take pooled links
        // the server asks the client for; none is reset.
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(held_visitor(t.public).await);
        }
        assert_eq!(held.len(), 10);
        // Once they close, streams are free again.
        drop(held);
        for seed in 0..20 {
            assert_echoes(t.public, seed, 1000).await;
        }
        t.stop().await;
    });
}
