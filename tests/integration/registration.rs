//! Registration and the control protocol from the server's point of view: limits
//! and refusals per service, a visitor that waits for a data link which never comes,
//! a link request that arrives while the client is still registering, and a server
//! running without authentication.

use crate::common::*;
use futures_lite::FutureExt;
use smol::channel::{Receiver, Sender, bounded};
use smol::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::time::Duration;

use porthole::client::{ClientError, Event};
use porthole::handshake::HandshakeError;
use porthole::protocol::{ErrorCode, Frame};
use porthole::tasks::TaskSet;
use porthole::wire::{read_frame, write_frame};

/// Sends `Register` for `name` on a hand-driven control link and returns the answer.
async fn register(link: &mut TcpStream, name: &str, remote_port: u16) -> Frame {
    register_with(link, name, remote_port, false).await
}

/// [`register`], with its `public_address` flag.
async fn register_with(
    link: &mut TcpStream,
    name: &str,
    remote_port: u16,
    public_address: bool,
) -> Frame {
    let frame = Frame::Register {
        name: name.to_owned(),
        remote_port,
        public_address,
        udp: false,
    };
    write_frame(link, &frame).await.expect("send register");
    within(PROMPTLY, "registration answer", async {
        loop {
            match read_frame(link).await.expect("answer") {
                Frame::Heartbeat => {}
                other => return other,
            }
        }
    })
    .await
}

#[test]
fn server_refuses_a_duplicate_name_a_bad_name_and_services_beyond_the_limit() {
    run_test(async {
        // Hand-written: the only client is this test, speaking the protocol by hand.
        let mut settings = server_settings();
        settings.max_services_per_client = 2;
        let server = start_server(settings).await.expect("server starts");
        let (mut link, _) = raw_control_handshake(server.addr, TOKEN).await;

        let one = match register(&mut link, "one", 0).await {
            Frame::Registered { port, .. } => port,
            other => panic!("{other:?}"),
        };
        match register(&mut link, "one", 0).await {
            Frame::RegisterFailed { code, message, .. } => {
                assert_eq!(code, ErrorCode::BadService);
                assert!(message.contains("already registered"), "{message}");
            }
            other => panic!("duplicate name accepted: {other:?}"),
        }
        // The same service asking for PROXY headers is no duplicate: its
        // flag changes in place, at the port it has; asking again is.
        match register_with(&mut link, "one", 0, true).await {
            Frame::Registered { name, port } => assert_eq!((name.as_str(), port), ("one", one)),
            other => panic!("flag change refused: {other:?}"),
        }
        assert!(matches!(
            register_with(&mut link, "one", 0, true).await,
            Frame::RegisterFailed {
                code: ErrorCode::BadService,
                ..
            }
        ));
        match register(&mut link, "bad name!", 0).await {
            Frame::RegisterFailed { code, .. } => assert_eq!(code, ErrorCode::BadService),
            other => panic!("invalid name accepted: {other:?}"),
        }
        assert!(matches!(
            register(&mut link, "two", 0).await,
            Frame::Registered { .. }
        ));
        match register(&mut link, "three", 0).await {
            Frame::RegisterFailed { code, message, .. } => {
                assert_eq!(code, ErrorCode::TooManyServices);
                assert!(message.contains('2'), "names the limit: {message}");
            }
            other => panic!("third service accepted: {other:?}"),
        }
        server.stop().await;
    });
}

#[test]
fn unexpected_frame_on_the_control_link_ends_only_that_session() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        let (mut link, _) = raw_control_handshake(t.server.addr, TOKEN).await;
        // A server-to-client frame sent by a client is a protocol violation.
        write_frame(&mut link, &Frame::OpenData { count: 1 })
            .await
            .expect("send");
        let (_, seen) = assert_closed_within(&mut link, PROMPTLY, "violating session").await;
        let errors: Vec<ErrorCode> = frames(&seen)
            .into_iter()
            .filter_map(|f| match f {
                Frame::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect();
        assert_eq!(errors, [ErrorCode::ProtocolViolation], "told why");
        assert_echoes(t.public, 41, 70_000).await;
        t.stop().await;
    });
}

/// Every whole frame in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    // Bounded by the input: each step consumes at least one byte or stops.
    while let Ok(Some((frame, used))) = porthole::protocol::decode(bytes) {
        out.push(frame);
        bytes = &bytes[used..];
    }
    out
}

#[test]
fn visitor_is_closed_after_visitor_timeout_when_the_client_opens_no_data_link() {
    run_test(async {
        // Hand-written: the only client is this test, speaking the protocol by hand.
        let mut settings = server_settings();
        settings.visitor_timeout = Duration::from_millis(300);
        let server = start_server(settings).await.expect("server starts");
        // A client that registers but never dials a data link, though asked to.
        let (mut link, _) = raw_control_handshake(server.addr, TOKEN).await;
        let port = match register(&mut link, "stingy", 0).await {
            Frame::Registered { port, .. } => port,
            other => panic!("expected Registered, got {other:?}"),
        };
        let mut visitor = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let asked = within(PROMPTLY, "link request", read_frame(&mut link))
            .await
            .expect("a frame");
        assert!(
            matches!(asked, Frame::OpenData { count } if count >= 1),
            "the server asks for a data link: {asked:?}"
        );
        let (took, seen) =
            assert_closed_within(&mut visitor, Duration::from_secs(3), "waiting visitor").await;
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
        assert!(seen.is_empty());
        server.stop().await;
    });
}

#[test]
fn server_without_auth_accepts_only_a_client_that_opted_in() {
    run_test(async {
        // Hand-written: a server without authentication, and clients that know
        // no token, which the harness's tunnel never is.
        let mut config = porthole::config::ServerConfig::new("127.0.0.1:0");
        config.insecure_no_auth = true;
        let settings = config.validate().expect("insecure config is valid");
        assert!(settings.token.is_none());
        let server = start_server(settings).await.expect("server starts");
        let service = echo_service().await;

        // By default a client refuses a server that cannot prove the token: an
        // impostor could claim "no auth" as well.
        let cautious = client_settings(server.addr, "whatever", &[("open", service.addr, 0)]);
        let (_trigger, signal) = porthole::shutdown::channel();
        let refused = within(
            PROMPTLY,
            "cautious client gives up",
            porthole::client::run(cautious, porthole::transport::TcpTransport, signal, None),
        )
        .await;
        match refused {
            Err(ClientError::Handshake(e @ HandshakeError::ServerUnauthenticated)) => {
                assert!(e.to_string().contains("--insecure-no-auth"), "{e}")
            }
            other => panic!("expected an auth error, got {other:?}"),
        }

        let mut opted_in = client_settings(server.addr, "whatever", &[("open", service.addr, 0)]);
        opted_in.insecure_no_auth = true;
        let client = start_client(opted_in);
        let public = client.registered("open").await;
        assert_echoes(public, 42, 70_000).await;
        client.stop().await;
        server.stop().await;
    });
}

/// A link request (`OpenData`) that the server sends while the client is still
/// waiting for the answer to its second `Register` must not cost the session: the
/// real server sends one whenever a visitor of an already registered service finds
/// no idle data link.
///
/// A proxy between client and server makes the interleaving deterministic: it holds
/// every data link and the client's second `Register` until a visitor of the first
/// service has made the server send `OpenData` and the proxy has passed it on.
#[test]
fn link_request_during_registration_does_not_drop_the_session() {
    run_test(async {
        // Hand-written: the proxy holds the second registration back, so the
        // test waits for each service on its own (the harness waits for all).
        let server = start_server(server_settings())
            .await
            .expect("server starts");
        let proxy = HoldingProxy::start(server.addr).await;
        let (a, b) = (echo_service().await, echo_service().await);
        let client = start_client(client_settings(
            proxy.addr,
            TOKEN,
            &[("first", a.addr, 0), ("second", b.addr, 0)],
        ));
        let public = client.registered("first").await;
        let visitor = smol::spawn(assert_echoes(public, 43, 70_000));
        within(
            PROMPTLY,
            "server asks for a data link",
            proxy.open_data_seen.recv(),
        )
        .await
        .expect("proxy running");
        proxy.release.send(()).await.expect("proxy running");
        proxy.open_links.fire();
        match client.next_event(PROMPTLY).await {
            Event::Registered { name, .. } => assert_eq!(name, "second"),
            other => {
                panic!("expected the second service to register on the same session, got {other:?}")
            }
        }
        within(PROMPTLY * 2, "visitor of the first service", visitor).await;
        client.stop().await;
        server.stop().await;
    });
}

/// Forwards connections to `upstream`. The first connection (the control link) is
/// forwarded frame by frame: the client's second `Register` is held until `release`,
/// and every `OpenData` from the server is reported on `open_data_seen`. Later
/// connections (data links) are held until `open_links` fires, then relayed as
/// plain bytes.
struct HoldingProxy {
    addr: SocketAddr,
    release: Sender<()>,
    open_links: porthole::shutdown::Trigger,
    open_data_seen: Receiver<()>,
    _task: smol::Task<()>,
}

impl HoldingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (release, release_rx) = bounded(1);
        let (seen_tx, open_data_seen) = bounded(16);
        let (open_links, gate) = porthole::shutdown::channel();
        let task = smol::spawn(async move {
            let conns = TaskSet::new();
            let mut control = Some((release_rx, seen_tx));
            while let Ok((down, _)) = listener.accept().await {
                match control.take() {
                    Some((release, seen)) => {
                        let Ok(up) = TcpStream::connect(upstream).await else {
                            continue;
                        };
                        conns.spawn(control_link(down, up, release, seen));
                    }
                    None => {
                        let gate = gate.clone();
                        conns.spawn(async move {
                            gate.wait().await;
                            if let Ok(up) = TcpStream::connect(upstream).await {
                                let _ = porthole::relay::relay(down, up).await;
                            }
                        })
                    }
                }
            }
        });
        HoldingProxy {
            addr,
            release,
            open_links,
            open_data_seen,
            _task: task,
        }
    }
}

async fn control_link(down: TcpStream, up: TcpStream, release: Receiver<()>, seen: Sender<()>) {
    let (mut down_r, mut down_w) = (down.clone(), down);
    let (mut up_r, mut up_w) = (up.clone(), up);
    let to_server = async {
        let mut registers = 0;
        while let Ok(frame) = read_frame(&mut down_r).await {
            if matches!(frame, Frame::Register { .. }) {
                registers += 1;
                if registers == 2 && release.recv().await.is_err() {
                    return;
                }
            }
            if write_frame(&mut up_w, &frame).await.is_err() {
                return;
            }
        }
    };
    let to_client = async {
        while let Ok(frame) = read_frame(&mut up_r).await {
            let open_data = matches!(frame, Frame::OpenData { .. });
            if write_frame(&mut down_w, &frame).await.is_err() {
                return;
            }
            if open_data {
                let _ = seen.try_send(());
            }
        }
    };
    to_server.or(to_client).await;
}
