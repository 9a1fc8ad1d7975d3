//! Misbehaving and unauthorised peers against a server that is serving a good
//! client at the same time: each bad peer loses only its own connection (the server
//! closes it within a deadline) and the good client's visitors still get through.
//! Also the server's refusals of single services (allow-list, port in use).

use crate::common::*;
use futures_lite::AsyncWriteExt;
use smol::Timer;
use smol::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use porthole::client::{ClientError, Event};
use porthole::handshake::HandshakeError;
use porthole::protocol::{ErrorCode, Frame, LinkHello, VERSION};
use porthole::wire::{read_frame, write_frame};

/// Runs `attack` against a server that also serves a good client, then checks that
/// the attacker's socket was closed by the server and the good client still works.
async fn survives(what: &str, attack: &[u8], then_eof: bool) -> Vec<u8> {
    let t = TunnelBuilder::new().start().await;
    assert_echoes(t.public, 1, 70_000).await;
    let mut bad = TcpStream::connect(t.server.addr).await.expect("connect");
    if !attack.is_empty() {
        bad.write_all(attack).await.expect("send attack bytes");
    }
    if then_eof {
        bad.close().await.expect("shut down write side");
    }
    let (_, seen) = assert_closed_within(&mut bad, PROMPTLY, what).await;
    assert_echoes(t.public, 2, 70_000).await;
    t.stop().await;
    seen
}

/// The `Error` frame the server sent before closing, if `seen` holds one.
fn error_frame(seen: &[u8]) -> Option<(ErrorCode, String)> {
    match porthole::protocol::decode(seen) {
        Ok(Some((Frame::Error { code, message }, _))) => Some((code, message)),
        _ => None,
    }
}

#[test]
fn garbage_bytes_lose_only_their_own_connection() {
    run_test(async {
        let seen = survives(
            "garbage peer",
            b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
            false,
        )
        .await;
        let (code, _) = error_frame(&seen).expect("the server says why before closing");
        assert_eq!(code, ErrorCode::ProtocolViolation);
    });
}

#[test]
fn oversize_length_prefix_loses_only_its_own_connection() {
    run_test(async {
        let seen = survives("oversize prefix", &[0xff, 0xff], false).await;
        let (code, message) = error_frame(&seen).expect("an error frame");
        assert_eq!(code, ErrorCode::ProtocolViolation);
        assert!(message.contains("65535"), "names the length: {message}");
    });
}

#[test]
fn truncated_frame_then_eof_loses_only_its_own_connection() {
    run_test(async {
        // Announces 100 bytes, sends 3, then closes its write side.
        survives("truncated frame", &[0, 100, 1, b'P', b'T'], true).await;
    });
}

#[test]
fn peer_that_never_speaks_is_closed_after_the_handshake_timeout() {
    run_test(async {
        let t = TunnelBuilder::new()
            .server(|s| s.handshake_timeout = Duration::from_millis(200))
            .start()
            .await;
        let mut silent = TcpStream::connect(t.server.addr).await.expect("connect");
        let (took, _) =
            assert_closed_within(&mut silent, Duration::from_secs(3), "silent peer").await;
        assert!(
            took >= Duration::from_millis(150),
            "closed after {took:?}, before the handshake timeout"
        );
        assert_echoes(t.public, 3, 70_000).await;
        t.stop().await;
    });
}

#[test]
fn peer_that_trickles_its_hello_is_closed_at_the_hello_deadline_not_the_handshake_one() {
    run_test(async {
        let t = TunnelBuilder::new()
            .server(|s| {
                s.handshake_timeout = Duration::from_secs(30);
                s.hello_timeout = Duration::from_millis(300);
            })
            .start()
            .await;
        let mut peer = TcpStream::connect(t.server.addr).await.expect("connect");
        let hello = Frame::Hello {
            version: VERSION,
            link: LinkHello::Control {
                client_id: [1; 16],
                nonce: [2; 32],
            },
        };
        let hello = porthole::protocol::to_bytes(&hello).expect("encodes");
        let started = Instant::now();
        let trickle = async {
            for byte in hello.iter().cycle() {
                if peer.write_all(&[*byte]).await.is_err() {
                    return;
                }
                Timer::after(Duration::from_millis(50)).await; // ok-sleep: the trickle's pace
            }
        };
        within(Duration::from_secs(5), "trickling peer closed", trickle).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "closed after {took:?}, before the hello deadline"
        );
        assert_echoes(t.public, 4, 1000).await;
        t.stop().await;
    });
}

#[test]
fn wrong_protocol_version_is_told_unsupported_version_and_closed() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        let mut peer = TcpStream::connect(t.server.addr).await.expect("connect");
        let hello = Frame::Hello {
            version: VERSION.wrapping_add(1),
            link: LinkHello::Control {
                client_id: [1; 16],
                nonce: [2; 32],
            },
        };
        write_frame(&mut peer, &hello).await.expect("send hello");
        let reply = within(PROMPTLY, "version refusal", read_frame(&mut peer))
            .await
            .expect("an error frame");
        match reply {
            Frame::Error { code, message } => {
                assert_eq!(code, ErrorCode::UnsupportedVersion, "{message}");
                assert!(message.contains("version"), "{message}");
            }
            other => panic!("expected Error(UnsupportedVersion), got {other:?}"),
        }
        assert_closed_within(&mut peer, PROMPTLY, "wrong-version peer").await;
        assert_echoes(t.public, 4, 70_000).await;
        t.stop().await;
    });
}

#[test]
fn data_link_for_an_unknown_session_is_refused() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        // A correct proof for a session that does not exist.
        let mut peer = raw_data_link(t.server.addr, TOKEN, [7u8; 16]).await;
        match within(PROMPTLY, "refusal", read_frame(&mut peer)).await {
            Ok(Frame::Error { code, .. }) => assert_eq!(code, ErrorCode::UnknownSession),
            other => panic!("expected Error(UnknownSession), got {other:?}"),
        }
        assert_closed_within(&mut peer, PROMPTLY, "unknown-session data link").await;
        assert_echoes(t.public, 5, 70_000).await;
        t.stop().await;
    });
}

#[test]
fn wrong_token_is_an_auth_error_while_a_good_client_is_served() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        // Hand-written: a second client, with the wrong token.
        let service = echo_service().await;
        let bad = start_client(client_settings(
            t.server.addr,
            "not-the-token",
            &[("intruder", service.addr, 0)],
        ));
        let result = within(PROMPTLY, "bad client gives up", bad.task).await;
        match result {
            Err(ClientError::Handshake(HandshakeError::Refused {
                code: ErrorCode::AuthFailed,
                message,
            })) => {
                assert!(message.contains("authentication failed"), "{message}");
            }
            other => panic!("expected the server's AuthFailed, got {other:?}"),
        }
        // It never got as far as registering anything.
        while let Ok(event) = bad.events.try_recv() {
            assert!(
                !matches!(event, Event::Registered { .. } | Event::Connected { .. }),
                "a client with the wrong token got {event:?}"
            );
        }
        assert_echoes(t.public, 6, 70_000).await;
        t.stop().await;
    });
}

#[test]
fn port_outside_allow_ports_is_refused_while_the_other_service_works() {
    run_test(async {
        // Hand-written: one service is meant to be refused, which the harness
        // (waiting for every service to register) treats as a failure.
        let mut settings = server_settings();
        settings.allow_ports = vec![20000..=40000, 50000..=60000];
        let server = start_server(settings).await.expect("server starts");
        let (good, other) = (echo_service().await, echo_service().await);
        let client = start_client(client_settings(
            server.addr,
            TOKEN,
            &[("good", good.addr, 0), ("outside", other.addr, 45000)],
        ));
        let mut public = None;
        let mut refusal = None;
        while public.is_none() || refusal.is_none() {
            match client.next_event(PROMPTLY).await {
                Event::Registered {
                    name,
                    public: p,
                    port,
                    ..
                } => {
                    assert_eq!(name, "good", "only the allowed service registers");
                    assert!((20000..=40000).contains(&port) || (50000..=60000).contains(&port));
                    public = Some(p.parse().expect("ip:port"));
                }
                Event::Refused { name, message, .. } => {
                    assert_eq!(name, "outside");
                    refusal = Some(message);
                }
                Event::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let message = refusal.expect("refused");
        assert!(
            message.contains("allow_ports"),
            "names allow_ports: {message}"
        );
        assert!(message.contains("45000"), "names the port: {message}");
        assert_echoes(public.expect("registered"), 7, 70_000).await;
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn port_already_in_use_is_refused_while_the_other_service_works() {
    run_test(async {
        // Hand-written: one service is meant to be refused (see above).
        // Hold a port ourselves; the server is allowed to use it but cannot.
        let held = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = held.local_addr().expect("address").port();
        let mut settings = server_settings();
        settings.allow_ports = vec![port..=port, 1024..=65535];
        let server = start_server(settings).await.expect("server starts");
        let (good, other) = (echo_service().await, echo_service().await);
        let client = start_client(client_settings(
            server.addr,
            TOKEN,
            &[("good", good.addr, 0), ("taken", other.addr, port)],
        ));
        let mut public = None;
        let mut refusal = None;
        while public.is_none() || refusal.is_none() {
            match client.next_event(PROMPTLY).await {
                Event::Registered {
                    name, public: p, ..
                } => {
                    assert_eq!(name, "good", "only the free service registers");
                    public = Some(p.parse().expect("ip:port"));
                }
                Event::Refused { name, message, .. } => {
                    assert_eq!(name, "taken");
                    refusal = Some(message);
                }
                Event::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let message = refusal.expect("refused");
        assert!(message.contains("in use"), "says in use: {message}");
        assert_echoes(public.expect("registered"), 8, 70_000).await;
        // Our listener was not disturbed.
        let probe = smol::spawn(async move { held.accept().await.map(|_| ()) });
        let _conn = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        within(PROMPTLY, "our listener still accepts", probe)
            .await
            .expect("accepted");
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn many_hostile_peers_at_once_do_not_disturb_a_transfer_in_progress() {
    run_test(async {
        let t = TunnelBuilder::new()
            .server(|s| s.handshake_timeout = Duration::from_millis(500))
            .start()
            .await;
        // A large transfer runs while a crowd of bad peers comes and goes.
        let transfer = smol::spawn(assert_echoes(t.public, 9, 4 * 1024 * 1024));
        let attacks: [&[u8]; 4] = [&[0xff, 0xff], b"\x00\x05garbage", &[0, 0], b"\x16\x03\x01"];
        let mut peers = Vec::new();
        for i in 0..40 {
            let mut peer = TcpStream::connect(t.server.addr).await.expect("connect");
            let _ = peer.write_all(attacks[i % attacks.len()]).await;
            peers.push(peer);
        }
        for peer in &mut peers {
            assert_closed_within(peer, PROMPTLY, "one of many bad peers").await;
        }
        within(PROMPTLY * 3, "transfer alongside bad peers", transfer).await;
        t.stop().await;
    });
}
