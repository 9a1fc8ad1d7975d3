//! The relay engines on real loopback sockets: byte integrity at sizes around the
//! pipe and buffer capacity (64 KiB ± 1) and far above it, half-close in each
//! direction, a peer that resets mid-stream, a reader that never reads next to a
//! healthy relay, and many relays at once.
//!
//! Every case runs once per engine (splice, then copy), each run under its own
//! deadline, and both runs must produce the same outcome, `Moved` counts included.
//! The layout is always `visitor ↔ [near | far] ↔ service`, with the relay given
//! `(near, far)`, so `a_to_b` counts visitor → service bytes.
//!
//! Relays run as tasks on smol's global executor (one thread unless
//! `SMOL_THREADS` says otherwise) while the test thread drives the endpoints: a
//! relay that spins or blocks its thread starves the other relays but cannot stop
//! the deadline from firing.

use futures_lite::future::{self, try_zip};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use smol::Async;
use smol::net::TcpStream;
use std::cell::Cell;
use std::fmt::Debug;
use std::future::Future;
use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use porthole::metrics::{Sharded, Traffic};
use porthole::relay::{Engine, Moved, relay_tcp_with};

const ENGINES: [Engine; 2] = [Engine::Splice, Engine::Copy];
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Runs `case` once per engine, each run under [`run_test`]'s deadline, and asserts
/// that both engines produced the same outcome.
fn on_both_engines<T, F, Fut>(case: F) -> T
where
    T: PartialEq + Debug,
    F: Fn(Engine) -> Fut,
    Fut: Future<Output = T>,
{
    let mut outcomes = Vec::new();
    for engine in ENGINES {
        let started = Instant::now();
        let mut outcome = None;
        run_test(async { outcome = Some(case(engine).await) });
        eprintln!("{engine:?}: {:?}", started.elapsed());
        outcomes.push((engine, outcome.expect("the case ran to the end")));
    }
    let (first_engine, first) = outcomes.remove(0);
    for (engine, outcome) in &outcomes {
        assert_eq!(
            outcome, &first,
            "{engine:?} and {first_engine:?} disagree on the outcome"
        );
    }
    first
}

/// Relay sockets plus the relay itself, spawned on a data-plane worker (where
/// both sockets are registered, as in the tunnel).
async fn start_relay(
    engine: Engine,
    service_rcvbuf: Option<usize>,
) -> (
    TcpStream,
    TcpStream,
    porthole::runtime::Task<io::Result<Moved>>,
    Arc<Sharded<Traffic>>,
) {
    let RelaySockets {
        visitor,
        near,
        far,
        service,
    } = relay_sockets(service_rcvbuf).await;
    let traffic = Arc::new(Sharded::<Traffic>::new());
    let counted = traffic.clone();
    let relay = porthole::runtime::spawn(async move {
        relay_tcp_with(engine, on_runtime(near), on_runtime(far), counted.meter()).await
    });
    (visitor, service, relay, traffic)
}

fn assert_same_bytes(got: &[u8], sent: &[u8], what: &str) {
    assert_eq!(got.len(), sent.len(), "{what}: length");
    assert_eq!(sha256(got), sha256(sent), "{what}: SHA-256");
}

// ---------------------------------------------------------------- integrity

/// `len` random bytes each way at once; both ends close after their last byte.
async fn both_ways(engine: Engine, len: usize, seed: u64) -> Moved {
    let (visitor, service, relay, traffic) = start_relay(engine, None).await;
    let up = payload(seed, len);
    let down = payload(seed ^ 0x5eed, len);
    let (at_service, at_visitor) = try_zip(exchange_on(service, &down), exchange_on(visitor, &up))
        .await
        .unwrap_or_else(|e| panic!("{engine:?}, {len} B each way: endpoint I/O failed: {e}"));
    assert_same_bytes(&at_service, &up, "visitor → service");
    assert_same_bytes(&at_visitor, &down, "service → visitor");
    let moved = within(PROMPTLY, "relay returns after both FINs", relay)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}, {len} B each way: relay failed: {e}"));
    let expected = Moved {
        a_to_b: len as u64,
        b_to_a: len as u64,
    };
    assert_eq!(moved, expected, "{engine:?}: bytes counted");
    let metered = traffic.totals();
    assert_eq!(
        (metered.received_bytes, metered.sent_bytes),
        (len as u64, len as u64),
        "{engine:?}: bytes metered as they moved"
    );
    moved
}

macro_rules! integrity {
    ($($name:ident: $len:expr,)*) => {
        $(
            #[test]
            fn $name() {
                on_both_engines(|engine| both_ways(engine, $len, $len as u64 + 1));
            }
        )*
    };
}

integrity! {
    integrity_0_bytes: 0,
    integrity_1_byte: 1,
    integrity_64k_minus_1: 64 * KIB - 1,
    integrity_64k: 64 * KIB,
    integrity_64k_plus_1: 64 * KIB + 1,
    integrity_4m: 4 * MIB,
    integrity_64m: 64 * MIB,
}

// ---------------------------------------------------------------- half-close

/// The first speaker's message; above the copy buffer and the default pipe.
const ASK_LEN: usize = 64 * KIB + 1;
/// The reply: a different size, so swapped counts cannot pass.
const REPLY_LEN: usize = MIB + 7;

/// `first` sends [`ASK_LEN`] bytes and shuts its write side; `second` reads to
/// EOF, then replies with [`REPLY_LEN`] bytes and closes; `first` must receive
/// the whole reply after it stopped sending.
async fn half_close(engine: Engine, visitor_speaks_first: bool) -> Moved {
    let (visitor, service, relay, _) = start_relay(engine, None).await;
    let (mut first, mut second) = if visitor_speaks_first {
        (visitor, service)
    } else {
        (service, visitor)
    };
    let ask = payload(11, ASK_LEN);
    let reply = payload(12, REPLY_LEN);

    let first_side = async {
        first.write_all(&ask).await?;
        first.close().await?; // shutdown(Write): FIN, the read side stays open
        let mut got = Vec::new();
        first.read_to_end(&mut got).await?;
        io::Result::Ok(got)
    };
    let second_side = async {
        let mut got = Vec::new();
        second.read_to_end(&mut got).await?;
        assert_same_bytes(&got, &ask, "message before the half-close");
        // `second` has not closed yet, so the relay has a live direction left.
        assert!(
            !relay.is_finished(),
            "{engine:?}: relay ended after one direction's EOF"
        );
        second.write_all(&reply).await?;
        second.close().await?;
        io::Result::Ok(())
    };
    let (got_reply, ()) = try_zip(first_side, second_side)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: endpoint I/O failed: {e}"));
    assert_same_bytes(&got_reply, &reply, "reply after the half-close");

    let moved = within(PROMPTLY, "relay returns after both FINs", relay)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: relay failed: {e}"));
    let (up, down) = if visitor_speaks_first {
        (ASK_LEN, REPLY_LEN)
    } else {
        (REPLY_LEN, ASK_LEN)
    };
    let expected = Moved {
        a_to_b: up as u64,
        b_to_a: down as u64,
    };
    assert_eq!(moved, expected, "{engine:?}: bytes counted");
    moved
}

#[test]
fn half_close_visitor_first() {
    on_both_engines(|engine| half_close(engine, true));
}

#[test]
fn half_close_service_first() {
    on_both_engines(|engine| half_close(engine, false));
}

// ---------------------------------------------------------------- reset

/// What a reset mid-stream looked like from outside.
#[derive(Debug, PartialEq)]
struct ResetOutcome {
    relay_failed: bool,
    survivor_write_failed: bool,
}

/// Most bytes the survivor sends before the test gives up on seeing its writes
/// fail: bounds the loop; far above every buffer on the path.
const SURVIVOR_CAP: usize = 1 << 30;
/// Bytes the resetting peer reads first, so the reset is mid-stream.
const BEFORE_RESET: usize = 256 * KIB;

/// The survivor keeps sending; the other peer reads [`BEFORE_RESET`] bytes, then
/// closes with SO_LINGER 0 (RST). The relay must end and close both of its
/// sockets: the survivor's writes fail and its reads see EOF or an error.
async fn reset_mid_stream(engine: Engine, service_resets: bool) -> ResetOutcome {
    let (visitor, service, relay, _) = start_relay(engine, None).await;
    let (mut resetter, survivor) = if service_resets {
        (service, visitor)
    } else {
        (visitor, service)
    };
    reset_on_close(&resetter);
    let mut survivor_reader = survivor.clone();
    let mut survivor_writer = survivor;

    let chunk = payload(21, 64 * KIB);
    let keep_sending = async {
        let mut sent = 0usize;
        while sent < SURVIVOR_CAP {
            if survivor_writer.write_all(&chunk).await.is_err() {
                return true;
            }
            sent += chunk.len();
        }
        false
    };
    let reset_then_watch = async {
        let mut first = vec![0u8; BEFORE_RESET];
        resetter
            .read_exact(&mut first)
            .await
            .expect("the resetting peer receives the start of the stream");
        assert_same_bytes(
            &first[..chunk.len()],
            &chunk,
            "start of the stream before the reset",
        );
        drop(resetter); // RST, not FIN
        let (took, _) = assert_closed_within(
            &mut survivor_reader,
            PROMPTLY * 2,
            "survivor sees the relay close its side",
        )
        .await;
        eprintln!("{engine:?}: survivor saw the close after {took:?}");
    };
    let (survivor_write_failed, ()) = within(
        PROMPTLY * 3,
        "survivor's writes fail after the reset",
        future::zip(keep_sending, reset_then_watch),
    )
    .await;
    let result = within(PROMPTLY, "relay returns after a reset", relay).await;
    eprintln!("{engine:?}: relay returned {result:?}");
    assert!(
        survivor_write_failed,
        "{engine:?}: survivor sent {SURVIVOR_CAP} bytes into a reset connection"
    );
    ResetOutcome {
        relay_failed: result.is_err(),
        survivor_write_failed,
    }
}

#[test]
fn reset_by_service_mid_stream() {
    on_both_engines(|engine| reset_mid_stream(engine, true));
}

#[test]
fn reset_by_visitor_mid_stream() {
    on_both_engines(|engine| reset_mid_stream(engine, false));
}

// ---------------------------------------------------------------- slow reader

/// What the stalled relay's sender offers: far more than every buffer on its path
/// (sender's send buffer ≤ 4 MiB, relay's receive buffer ≤ 6 MiB, a 1 MiB pipe or a
/// 64 KiB copy buffer, relay's send buffer ≤ 4 MiB, a tiny receive buffer), so the
/// sender must block while nobody reads.
const SLOW_LEN: usize = 32 * MIB;
/// The never-reading service's SO_RCVBUF (the kernel doubles and clamps it).
const TINY_RCVBUF: usize = 4 * KIB;
/// Bytes each way through the healthy relay.
const FAST_LEN: usize = 4 * MIB;

/// A relay whose receiver never reads sits next to a second relay on the same
/// executor; the second must finish 4 MiB each way while the first is stuck. Then
/// the receiver reads, and the stuck relay must deliver every byte.
async fn slow_reader(engine: Engine) -> (Moved, Moved) {
    let (visitor, mut receiver, slow_relay, _) = start_relay(engine, Some(TINY_RCVBUF)).await;
    let sender: Arc<Async<std::net::TcpStream>> = visitor.into();
    let data = payload(31, SLOW_LEN);
    let written = Cell::new(0usize);
    let (blocked_tx, blocked_rx) = smol::channel::bounded::<usize>(1);

    let send = async {
        while written.get() < data.len() {
            match sender.get_ref().write(&data[written.get()..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written.set(written.get() + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = blocked_tx.try_send(written.get());
                    sender.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        sender.get_ref().shutdown(Shutdown::Write)
    };
    let mut send = pin!(send);

    // Phase 1: the sender has hit backpressure; a second relay runs meanwhile.
    let healthy = async {
        let first_block = blocked_rx.recv().await.expect("sender reports a block");
        eprintln!("{engine:?}: sender first blocked after {first_block} B");
        let moved = within(
            PROMPTLY * 2,
            "a healthy relay next to a stalled one",
            both_ways(engine, FAST_LEN, 32),
        )
        .await;
        assert!(
            !slow_relay.is_finished(),
            "{engine:?}: stalled relay ended although nothing failed"
        );
        assert!(
            written.get() < SLOW_LEN,
            "{engine:?}: all {SLOW_LEN} B were accepted although nobody reads"
        );
        eprintln!("{engine:?}: sender stuck at {} B", written.get());
        moved
    };
    let fast_moved = healthy
        .or(async {
            let result = (&mut send).await;
            panic!("{engine:?}: sender finished although nobody reads: {result:?}")
        })
        .await;

    // Phase 2: the receiver finally reads; every byte must arrive, in order.
    receiver
        .close()
        .await
        .expect("receiver shuts its (unused) write side");
    let mut got = Vec::with_capacity(SLOW_LEN);
    let ((), _) = try_zip(send, receiver.read_to_end(&mut got))
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: draining the stalled relay failed: {e}"));
    assert_same_bytes(&got, &data, "stalled relay once its reader reads");
    let slow_moved = within(PROMPTLY, "stalled relay returns", slow_relay)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: stalled relay failed: {e}"));
    assert_eq!(
        slow_moved,
        Moved {
            a_to_b: SLOW_LEN as u64,
            b_to_a: 0,
        },
        "{engine:?}: stalled relay's counts"
    );
    (slow_moved, fast_moved)
}

#[test]
fn slow_reader_does_not_stall_others() {
    on_both_engines(slow_reader);
}

// ---------------------------------------------------------------- many at once

const CONCURRENT: usize = 200;
const CONCURRENT_LEN: usize = 64 * KIB + 1;

/// [`CONCURRENT`] relays at once, each moving [`CONCURRENT_LEN`] bytes both ways.
async fn many_at_once(engine: Engine) -> (usize, Moved) {
    let cases: Vec<_> = (0..CONCURRENT)
        .map(|i| smol::spawn(both_ways(engine, CONCURRENT_LEN, 1000 + i as u64)))
        .collect();
    let mut total = Moved::default();
    let mut finished = 0;
    for case in cases {
        let moved = case.await;
        total.a_to_b += moved.a_to_b;
        total.b_to_a += moved.b_to_a;
        finished += 1;
    }
    let expected = (CONCURRENT * CONCURRENT_LEN) as u64;
    assert_eq!(
        total,
        Moved {
            a_to_b: expected,
            b_to_a: expected,
        },
        "{engine:?}: bytes over all relays"
    );
    (finished, total)
}

#[test]
fn concurrent_200_relays() {
    let (finished, _) = on_both_engines(many_at_once);
    assert_eq!(finished, CONCURRENT);
}

/// What an idle tunneled connection costs is mostly its relay future; keep it
/// small (it was 1.6 KiB before the engine was chosen outside the future, and a
/// whole visitor task was 2.4 KiB on the server and 5.2 KiB on the client).
#[test]
fn an_idle_relay_is_a_small_future() {
    run_test(async {
        let (a, b) = tcp_pair().await;
        let (socket, mut link) = (on_runtime(a), on_runtime(b));
        let relay = porthole::relay::relay_chunked::<porthole::transport::TcpTransport>(
            &socket,
            &mut link,
            porthole::protocol::chunk::Role::Server,
            None,
            porthole::relay::Accepted::Sent,
            porthole::relay::Meter::NONE,
        );
        let size = std::mem::size_of_val(&relay);
        assert!(size <= 1024, "relay future is {size} bytes");
    });
}

/// A client relay whose link's `End` came first sends its own `End` and `Idle`
/// in one write when it keeps the link, so the server finds the link idle at
/// once; the local service sees the server's bytes, then EOF, and its reply
/// arrives framed.
#[test]
fn a_client_relay_says_idle_with_its_end_when_the_server_ended_first() {
    use porthole::protocol::chunk::{Chunk, Role};
    run_test(async {
        let (near, mut service) = tcp_pair().await;
        let (far, mut server) = tcp_pair().await;
        let (socket, mut link) = (on_runtime(near), on_runtime(far));
        let keep = || true;
        let script = async {
            let mut request = Chunk::Data(5).encode().to_vec();
            request.extend_from_slice(b"hello");
            request.extend_from_slice(&Chunk::End.encode());
            server.write_all(&request).await?;
            let mut got = Vec::new();
            service.read_to_end(&mut got).await?;
            assert_eq!(got, b"hello", "the service got the bytes, then EOF");
            service.write_all(b"bye").await?;
            service.close().await?;
            let mut expected = Chunk::Data(3).encode().to_vec();
            expected.extend_from_slice(b"bye");
            expected.extend_from_slice(&Chunk::End.encode());
            expected.extend_from_slice(&Chunk::Idle.encode());
            let mut reply = vec![0u8; expected.len()];
            server.read_exact(&mut reply).await?;
            assert_eq!(reply, expected, "reply, End and Idle");
            Ok::<_, io::Error>(())
        };
        let relay = porthole::relay::relay_chunked::<porthole::transport::TcpTransport>(
            &socket,
            &mut link,
            Role::Client,
            Some(&keep),
            porthole::relay::Accepted::Sent,
            porthole::relay::Meter::NONE,
        );
        let (finished, ()) = try_zip(relay, script).await.expect("relay and script");
        assert!(finished.idle_sent, "Idle left with the End");
        assert_eq!(
            finished.moved,
            Moved {
                a_to_b: 3,
                b_to_a: 5
            }
        );
    });
}

/// A client's `Accept` corked with `MSG_MORE` never waits for ever: with a
/// silent service the relay pushes it alone (well within the deadline), and
/// with an answering service it arrives first, right before the answer.
#[test]
fn a_corked_accept_leaves_alone_when_the_service_is_silent_and_first_when_it_answers() {
    use porthole::protocol::chunk::{Chunk, Role};
    use porthole::relay::{Accepted, relay_chunked, send_corked};
    run_test(async {
        for answers in [false, true] {
            let (near, mut service) = tcp_pair().await;
            let (far, mut server) = tcp_pair().await;
            let (socket, mut link) = (on_runtime(near), on_runtime(far));
            let keep = || true;
            let accept = Chunk::Accept.encode();
            assert!(
                send_corked(&link, &accept),
                "an idle link takes 4 bytes at once"
            );
            let corked = Accepted::Corked(std::time::Instant::now());
            let script = async {
                if answers {
                    service.write_all(b"hi").await?;
                }
                let mut expected = accept.to_vec();
                if answers {
                    expected.extend_from_slice(&Chunk::Data(2).encode());
                    expected.extend_from_slice(b"hi");
                }
                let mut got = vec![0u8; expected.len()];
                // The kernel would push corked bytes after about 200 ms on
                // its own; the relay does it after `UNCORK_AFTER` (1 ms).
                within(
                    Duration::from_millis(100),
                    "the Accept",
                    server.read_exact(&mut got),
                )
                .await?;
                assert_eq!(got, expected, "service answers: {answers}");
                // End the visitor: the server's End, then the service's.
                server.write_all(&Chunk::End.encode()).await?;
                service.close().await?;
                Ok::<_, io::Error>(())
            };
            let relay = relay_chunked::<porthole::transport::TcpTransport>(
                &socket,
                &mut link,
                Role::Client,
                Some(&keep),
                corked,
                porthole::relay::Meter::NONE,
            );
            let (finished, ()) = try_zip(relay, script).await.expect("relay and script");
            assert_eq!(finished.moved.a_to_b, if answers { 2 } else { 0 });
        }
    });
}
