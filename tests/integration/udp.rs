//! UDP services (`protocol: Udp`, `--expose udp:PORT`): each visitor source
//! is a flow, with a socket of its own at the client. A thousand flows at
//! once each get their own answers; datagrams from empty to 65,507 bytes
//! arrive whole and in order over pooled, multiplexed and TLS links; an idle
//! flow ends after `udp_idle_timeout` and its socket closes; a service holds
//! at most `max_udp_flows` flows (a new source is dropped, and counted,
//! until one ends); a flooded flow leaves other flows and TCP visitors
//! served; a restarted client gets its UDP port back; a TCP and a UDP
//! service hold the same port number; and a real `dig` resolves a name
//! through the tunnel.
//!
//! A datagram may be lost under load without any fault, so requests are
//! sent again on a short timeout, a bounded number of times
//! ([`ask`](crate::common::udp::ask)); the tests report how many resends
//! they needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::admin::{must, scrape, until, value};
use crate::common::peers::{Scratch, program};
use crate::common::process::{Proc, porthole as args, run};
use crate::common::udp::*;
use crate::common::*;
use porthole::config::Protocol;

mod binary;

/// Deadline for one expected log line of a child, or a metric to settle.
const LINE: Duration = Duration::from_secs(10);
/// The token of the tests that run the real binaries.
const BIN_TOKEN: &str = "udp-test-token";

// ---------------------------------------------------------------- many flows

/// Flows at once in [`a_thousand_flows_at_once`].
const FLOWS: usize = 1_000;
/// What the tagging service puts before each datagram it sends back.
const TAG: &[u8] = b"answer to ";

/// [`FLOWS`] visitors send at once, each its own request; each must get
/// its own answer, from a source of its own at the service.
fn a_thousand_flows_at_once(builder: TunnelBuilder) {
    // A visitor socket per flow here, and at the in-process client and
    // server a socket and a data link per flow: about 4,000 descriptors.
    let limit = porthole::runtime::fds::raise_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= 8 * FLOWS as u64,
        "RLIMIT_NOFILE {limit} is too low"
    );
    run_test(async {
        let service = udp_responder(|datagram| Some([TAG, datagram].concat())).await;
        let t = builder.udp_service("udp", service.addr).start().await;
        let public = t.public;
        let flows: Vec<_> = (0..FLOWS)
            .map(|i| smol::spawn(one_of_many(public, i)))
            .collect();
        let mut sends = Vec::with_capacity(FLOWS);
        let mut unanswered = Vec::new();
        for (i, flow) in flows.into_iter().enumerate() {
            match flow.await {
                Some(n) => sends.push(n),
                None => unanswered.push(i),
            }
        }
        assert!(
            unanswered.is_empty(),
            "{} of {FLOWS} flows got no answer in {MAX_SENDS} sends each (the service saw {} \
             sources), e.g. flows {:?}",
            unanswered.len(),
            service.sources().len(),
            &unanswered[..unanswered.len().min(5)]
        );
        let resent = sends.iter().filter(|&&s| s > 1).count();
        let most = sends.iter().max().copied().unwrap_or_default();
        eprintln!("{FLOWS} flows answered; {resent} needed a resend, the most sends {most}");
        // Each flow reached the service from a socket of its own.
        assert_eq!(service.sources().len(), FLOWS, "sources the service saw");
        t.stop().await;
    });
}

/// Flow `i` of many: its request, and its answer only. Returns the sends
/// it took, `None` when [`MAX_SENDS`] got no answer.
async fn one_of_many(public: SocketAddr, i: usize) -> Option<usize> {
    let visitor = udp_visitor(public).await;
    let request = format!("flow {i} of {FLOWS}").into_bytes();
    let expected = [TAG, &request].concat();
    let asked = ask_with(&visitor, &request, &expected, RESEND_AFTER, MAX_SENDS).await;
    // A flow gets only copies of its own answer, which is the answer:
    // anything else is another flow's.
    let others = match &asked {
        Ok(asked) => &asked.others,
        Err(others) => others,
    };
    let strays: Vec<_> = others.iter().map(|d| String::from_utf8_lossy(d)).collect();
    assert!(strays.is_empty(), "flow {i} was sent {strays:?}");
    asked.ok().map(|a| a.sends)
}

#[test]
fn a_thousand_flows_at_once_each_get_their_own_answers_over_pooled_links() {
    a_thousand_flows_at_once(TunnelBuilder::new());
}

#[test]
fn a_thousand_flows_at_once_each_get_their_own_answers_over_multiplexed_links() {
    a_thousand_flows_at_once(TunnelBuilder::new().multiplexed(2));
}

// ---------------------------------------------------------------- sizes, order

/// From empty to the largest IPv4 datagram, through an Ethernet MTU's worth
/// (1,472) and several TCP segments' worth (8,192).
const SIZES: [usize; 5] = [0, 1, 1_472, 8_192, MAX_DATAGRAM];

/// Each of [`SIZES`] through an echo and back, as one datagram of exactly
/// its length and bytes.
async fn sizes_arrive_whole(builder: TunnelBuilder) {
    let service = udp_echo_service().await;
    let t = builder.udp_service("udp", service.addr).start().await;
    let visitor = udp_visitor(t.public).await;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for (i, &len) in SIZES.iter().enumerate() {
        let datagram = payload(0x5126 + i as u64, len);
        // `ask` only takes the exact datagram as the answer: a part of it,
        // or two run together, would never be.
        let asked = ask(&visitor, &datagram, &datagram).await;
        assert_eq!(asked.answer.len(), len);
        // Anything else must be a late copy of an earlier datagram, whole.
        for other in &asked.others {
            assert!(
                sent.contains(other),
                "while sending {len} bytes, {} bytes that were never sent arrived",
                other.len()
            );
        }
        sent.push(datagram);
    }
    assert_eq!(service.sources().len(), 1, "one visitor, one flow");
    t.stop().await;
}

#[test]
fn sizes_from_empty_to_65507_bytes_arrive_whole_over_pooled_links() {
    run_test(sizes_arrive_whole(TunnelBuilder::new().pooled(2)));
}

#[test]
fn sizes_from_empty_to_65507_bytes_arrive_whole_over_multiplexed_links() {
    run_test(sizes_arrive_whole(TunnelBuilder::new().multiplexed(2)));
}

#[test]
fn sizes_from_empty_to_65507_bytes_arrive_whole_over_tls_links() {
    run_test(sizes_arrive_whole(TunnelBuilder::new().tls()));
}

/// Datagrams in one burst in [`datagrams_of_one_flow_keep_their_order`].
const BURST: u32 = 200;

#[test]
fn datagrams_of_one_flow_keep_their_order() {
    run_test(async {
        let service = udp_echo_service().await;
        let t = TunnelBuilder::new()
            .udp_service("udp", service.addr)
            .start()
            .await;
        let visitor = Arc::new(udp_visitor(t.public).await);
        // The flow is up before the burst, which then tests the relay only.
        ask(&visitor, b"hello", b"hello").await;
        let sender = visitor.clone();
        let burst = smol::spawn(async move {
            for seq in 0..BURST {
                let mut datagram = seq.to_be_bytes().to_vec();
                datagram.resize(100, b'.');
                send(&sender, &datagram).await;
            }
        });
        let mut seqs = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        // Until every one came back, or a quiet second: the rest was lost.
        while seqs.len() < BURST as usize {
            let quiet = Instant::now() + Duration::from_secs(1);
            let Some(got) = receive(&visitor, &mut buf, quiet).await else {
                break;
            };
            assert_eq!(got.len(), 100, "a datagram of the burst, whole");
            seqs.push(u32::from_be_bytes(got[..4].try_into().expect("4 bytes")));
        }
        burst.await;
        eprintln!("{} of {BURST} came back", seqs.len());
        // One link carries the flow: what arrives keeps the order it was
        // sent in, with or without losses.
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        assert!(
            seqs.len() >= BURST as usize / 2,
            "most of a burst on loopback comes back: {seqs:?}"
        );
        t.stop().await;
    });
}

// ---------------------------------------------------------------- one number, two ports

/// Public ports this test's server picks from: below Linux's ephemeral
/// range (32768 and up), so no socket another test binds to port 0 can
/// hold the number the TCP service gets when the UDP service asks for it.
const SHARED_RANGE: (u16, u16) = (20_000, 30_000);

#[test]
fn a_tcp_and_a_udp_service_share_one_port_number() {
    run_test(async {
        let udp_echo = udp_echo_service().await;
        let t = TunnelBuilder::new()
            .server(|s| s.allow_ports = vec![SHARED_RANGE.0..=SHARED_RANGE.1])
            .start()
            .await;
        let tcp_public = t.public;
        let mut settings = client_settings(
            t.server.addr,
            TOKEN,
            &[("dns", udp_echo.addr, tcp_public.port())],
        );
        settings.services[0].protocol = Protocol::Udp;
        let second = start_client(settings);
        let udp_public = second.registered("dns").await;
        assert_eq!(
            udp_public, tcp_public,
            "the UDP service got the TCP one's number"
        );
        let visitor = udp_visitor(udp_public).await;
        ask(&visitor, b"over udp", b"over udp").await;
        assert_echoes(tcp_public, 0x5ea7, 10_000).await;
        second.stop().await;
        t.stop().await;
    });
}

// ---------------------------------------------------------------- idle flows

#[test]
fn an_idle_flow_ends_after_udp_idle_timeout_and_its_socket_closes() {
    run_test(async {
        const IDLE: Duration = Duration::from_millis(300);
        let service = udp_echo_service().await;
        let t = TunnelBuilder::new()
            .server(|s| s.udp_idle_timeout = IDLE)
            .udp_service("udp", service.addr)
            .start()
            .await;
        let flow_sockets = || sockets_connected_to(service.addr);
        assert_eq!(flow_sockets(), 0, "no flow before the first datagram");
        let visitor = udp_visitor(t.public).await;
        ask(&visitor, b"first", b"first").await;
        assert_eq!(
            flow_sockets(),
            1,
            "the client holds one socket for the flow"
        );

        // Busy for three idle timeouts: the flow stays, on the same socket.
        let busy_until = Instant::now() + 3 * IDLE;
        while Instant::now() < busy_until {
            ask(&visitor, b"busy", b"busy").await;
            assert_eq!(flow_sockets(), 1, "a busy flow keeps its socket");
            smol::Timer::after(IDLE / 4).await; // ok-sleep: the pace of a busy flow
        }
        assert_eq!(service.sources().len(), 1, "one flow throughout");

        // The last datagram of the flow was sent no earlier than this.
        let last_sent = Instant::now();
        ask(&visitor, b"last", b"last").await;
        count_reaches(
            "the idle flow's socket closes",
            IDLE + PROMPTLY,
            0,
            flow_sockets,
        )
        .await;
        let ended = last_sent.elapsed();
        eprintln!("the flow ended {ended:?} after its last datagram (idle timeout {IDLE:?})");
        assert!(
            ended >= IDLE,
            "ended after {ended:?}, before the idle timeout"
        );

        // The same visitor again: a new flow, on a new socket at the client.
        ask(&visitor, b"again", b"again").await;
        assert_eq!(flow_sockets(), 1, "the new flow has its socket");
        t.stop().await;
    });
}

// ---------------------------------------------------------------- restart

#[test]
fn a_restarted_client_gets_its_udp_port_back_and_is_answered_there() {
    run_test(async {
        // Hand-written: the client is restarted below, asking for the port
        // the server picked at the first registration.
        let server = start_server(server_settings())
            .await
            .expect("server starts");
        let service = udp_echo_service().await;
        let mut settings = client_settings(server.addr, TOKEN, &[("udp", service.addr, 0)]);
        settings.services[0].protocol = Protocol::Udp;
        let client = start_client(settings.clone());
        let public = client.registered("udp").await;
        settings.services[0].remote_port = public.port();
        let visitor = udp_visitor(public).await;
        ask(&visitor, b"before", b"before").await;

        // Crash: no goodbye, so the port lingers for the client's return.
        drop(client);
        // The server may still be tearing the old session down when the new
        // one registers, and answers that race "in use": a few attempts.
        let mut attempts = 0;
        let client = loop {
            attempts += 1;
            let client = start_client(settings.clone());
            match client.registration("udp").await {
                Ok(again) => {
                    assert_eq!(again, public, "the same port after the restart");
                    break client;
                }
                Err(message) if message.contains("in use") && attempts < 20 => continue,
                Err(message) => panic!("restarted client refused after {attempts}: {message}"),
            }
        };
        eprintln!("reclaimed on attempt {attempts}");
        // The old visitor's flow ended with the old client: its next
        // datagram starts a new one. A new visitor is served too.
        ask(&visitor, b"after", b"after").await;
        ask(&udp_visitor(public).await, b"new", b"new").await;
        assert!(service.sources().len() >= 2, "a new flow after the restart");
        client.stop().await;
        server.stop().await;
    });
}
