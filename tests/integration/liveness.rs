//! What happens when a side vanishes: a crashed client (its visitors closed, its
//! explicit port reclaimed on restart), a restarted server (the client comes back on
//! its own), and half-open control links noticed by the heartbeat on either side.

use crate::common::*;
use futures_lite::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use porthole::auth::Key;
use porthole::client::Event;
use porthole::handshake::{Proven, ServerHandshake, ServerStep};
use porthole::protocol::{Frame, LinkHello};
use porthole::wire::{read_frame, write_frame};

#[test]
fn crashed_client_closes_its_visitors_and_a_restarted_client_reclaims_its_port() {
    run_test(async {
        // Hand-written: the client is restarted below, asking for its port.
        // The server picks that port at the first registration: a number the
        // test picked could be taken by anyone before the server bound it.
        let server = start_server(server_settings())
            .await
            .expect("server starts");
        let service = echo_service().await;
        let mut settings = client_settings(server.addr, TOKEN, &[("web", service.addr, 0)]);
        let client = start_client(settings.clone());
        let public = client.registered("web").await;
        let remote_port = public.port();
        assert_ne!(remote_port, 0, "the server reports the port it bound");
        // From now on the client asks for that port explicitly.
        settings.services[0].remote_port = remote_port;

        // A visitor mid-conversation: proven to be relayed before the crash.
        let mut visitor = TcpStream::connect(public).await.expect("connect");
        visitor.write_all(b"ping").await.expect("write");
        let mut echoed = [0u8; 4];
        futures_lite::AsyncReadExt::read_exact(&mut visitor, &mut echoed)
            .await
            .expect("echo before the crash");
        assert_eq!(&echoed, b"ping");

        // Crash: cancel the client task, no goodbye.
        drop(client);
        assert_closed_within(&mut visitor, PROMPTLY, "visitor of a crashed client").await;
        // While nobody owns the port, a new visitor is turned away (reset, not
        // refused by the kernel: the port still listens), not left hanging.
        assert_refused(public, PROMPTLY, "visitor of a lingering port").await;

        // The restarted process asks for the same explicit port and gets it back.
        // The server may still be tearing the old session down when the new one
        // registers; that race is answered with "in use", so allow a few attempts.
        let mut attempts = 0;
        let client = loop {
            attempts += 1;
            let client = start_client(settings.clone());
            match client.registration("web").await {
                Ok(public) => {
                    assert_eq!(public.port(), remote_port, "same port after restart");
                    eprintln!("reclaimed on attempt {attempts}");
                    break client;
                }
                Err(message) if message.contains("in use") && attempts < 20 => continue,
                Err(message) => panic!("restarted client refused after {attempts}: {message}"),
            }
        };
        assert_echoes(public, 21, 100_000).await;
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn client_reconnects_on_its_own_after_the_server_restarts() {
    run_test(server_restart(true));
}

#[test]
fn client_reconnects_on_its_own_after_the_server_crashes_and_comes_back() {
    run_test(server_restart(false));
}

/// Stops the server (a clean shutdown that says goodbye, or a crash: the task is
/// dropped), starts a new one on the same address, and expects the client to
/// report the loss and register again by itself.
async fn server_restart(graceful: bool) {
    let t = TunnelBuilder::new().start().await;
    let (first, client) = (t.server, t.client);
    let addr = first.addr;
    assert_echoes(t.public, 31, 10_000).await;

    if graceful {
        first.stop().await;
    } else {
        drop(first);
    }
    match client.next_event(PROMPTLY).await {
        Event::Disconnected { reason, .. } => assert!(!reason.is_empty(), "a reason is given"),
        other => panic!("expected Disconnected after the server stopped, got {other:?}"),
    }

    // The same address again: the client only knows this one.
    let mut settings = server_settings();
    settings.bind = addr;
    let second = start_server_retrying(settings).await;
    let public = client.registered("echo").await;
    assert_echoes(public, 32, 100_000).await;
    client.stop().await;
    second.stop().await;
}

#[test]
fn client_serves_again_within_a_second_of_its_server_returning_from_a_five_second_outage() {
    run_test(async {
        let t = TunnelBuilder::new()
            // The default cap: the young-outage schedule is what is under test.
            .client(|c| c.reconnect_max_backoff = Duration::from_secs(30))
            .start()
            .await;
        let (first, client) = (t.server, t.client);
        let addr = first.addr;
        drop(first);
        // The outage itself: the client keeps trying meanwhile.
        smol::Timer::after(OUTAGE).await; // ok-sleep: the outage under test
        let mut settings = server_settings();
        settings.bind = addr;
        let second = start_server_retrying(settings).await;
        let back = Instant::now();
        let public = within(
            PROMPTLY,
            "registration after the outage",
            client.registered("echo"),
        )
        .await;
        assert_echoes(public, 33, 10_000).await;
        let took = back.elapsed();
        eprintln!("serving again {took:?} after the server came back");
        assert!(
            took < Duration::from_secs(1),
            "serving again only after {took:?}"
        );
        client.stop().await;
        second.stop().await;
    });
}

/// How long the server is gone in the outage test.
const OUTAGE: Duration = Duration::from_secs(5);

/// Starts a server on a fixed (previously used) address, retrying a bounded number
/// of times if the kernel has not released it yet.
async fn start_server_retrying(settings: porthole::config::ServerSettings) -> Server {
    let mut last = None;
    for _ in 0..50 {
        match start_server(settings.clone()).await {
            Ok(server) => return server,
            Err(e) => last = Some(e),
        }
        // A bounded retry interval, not synchronisation.
        smol::Timer::after(Duration::from_millis(20)).await; // ok-sleep
    }
    panic!("could not rebind {}: {last:?}", settings.bind);
}

#[test]
fn server_closes_a_silent_authenticated_control_link_within_the_heartbeat_timeout() {
    run_test(async {
        // Hand-written: the only client is this test, speaking the protocol by hand.
        let mut settings = server_settings();
        settings.heartbeat_interval = Duration::from_millis(100);
        settings.heartbeat_timeout = Duration::from_millis(300);
        let server = start_server(settings).await.expect("server starts");

        // Authenticates for real, then never sends another byte (a half-open link as
        // seen from the server). It keeps reading, so only the timeout can end it.
        let (mut silent, _session) = raw_control_handshake(server.addr, TOKEN).await;
        let (took, seen) =
            assert_closed_within(&mut silent, Duration::from_secs(3), "silent control link").await;
        assert!(
            took >= Duration::from_millis(250),
            "closed after {took:?}: before the heartbeat timeout could have expired"
        );
        assert!(!seen.is_empty(), "the server sent heartbeats meanwhile");
        server.stop().await;
    });
}

#[test]
fn client_notices_a_silent_server_within_its_heartbeat_timeout_and_reconnects() {
    run_test(async {
        // Hand-written: the client's server is a fake one.
        // A fake server that authenticates the client for real, grants its service,
        // and then goes silent without closing the socket.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let fake = smol::spawn(async move {
            let key = Key::new(TOKEN);
            let (mut controls, mut data_links) = (Vec::new(), Vec::new());
            // Bounded: the first control link and its reconnect, plus whatever data
            // links the client dials meanwhile (held open, never answered).
            for _ in 0..64 {
                let (mut link, _) = listener.accept().await.expect("accept");
                match read_frame(&mut link).await.expect("hello") {
                    hello @ Frame::Hello {
                        link: LinkHello::Control { .. },
                        ..
                    } => {
                        silent_server_handshake(&key, &mut link, hello).await;
                        controls.push(link);
                        if controls.len() == 2 {
                            break;
                        }
                    }
                    Frame::Hello { .. } => data_links.push(link),
                    other => panic!("expected a hello, got {other:?}"),
                }
            }
            controls.len()
        });
        let service = echo_service().await;
        let mut settings = client_settings(addr, TOKEN, &[("echo", service.addr, 0)]);
        settings.heartbeat_timeout = Duration::from_millis(300);
        let client = start_client(settings);
        client.registered("echo").await;
        let started = std::time::Instant::now();
        match client.next_event(Duration::from_secs(3)).await {
            Event::Disconnected { reason, .. } => {
                assert!(reason.contains("heartbeat"), "reason: {reason}")
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "not before the timeout"
        );
        // It comes back on its own.
        client.registered("echo").await;
        client.stop().await;
        let controls = within(PROMPTLY, "fake server done", fake).await;
        assert_eq!(controls, 2, "one control link, then one reconnect");
    });
}

/// The server side of a control handshake (the library's own machine, driven
/// here) from the client's `Hello`, then `Registered` for the one service;
/// after that, silence.
async fn silent_server_handshake(key: &Key, link: &mut TcpStream, hello: Frame) {
    let keys = porthole::handshake::StaticKeys::shared(Some(key.clone()));
    let mut machine = ServerHandshake::new(&keys, porthole::auth::random().expect("rng"));
    let ServerStep::Send(challenge) = machine.on_frame(hello).expect("hello accepted") else {
        panic!("a challenge answers the hello");
    };
    write_frame(link, &challenge).await.expect("challenge");
    let proof = read_frame(link).await.expect("proof");
    let Ok(ServerStep::Proven(Proven::Control(proof))) = machine.on_frame(proof) else {
        panic!("the client proves the token on a control link");
    };
    let session_id = porthole::auth::random().expect("rng");
    let ok = proof.accept(session_id, Duration::from_millis(100));
    write_frame(link, &ok).await.expect("auth ok");
    match read_frame(link).await.expect("register") {
        Frame::Register { name, .. } => {
            write_frame(link, &Frame::Registered { name, port: 1 })
                .await
                .expect("registered");
        }
        other => panic!("expected Register, got {other:?}"),
    }
}
