use std::time::Duration;

use super::*;
use crate::auth::Key;
use crate::protocol::{ErrorCode, Frame, LinkHello, VERSION};

const CLIENT_ID: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [9; 16];

/// Runs a client machine against a server machine until the server proves
/// the link; returns the server's step and the client's last answer.
fn run<'c>(
    client: (ClientHandshake<'c>, Frame),
    server: &mut ServerHandshake<'_>,
) -> Result<(ServerStep, ClientHandshake<'c>), HandshakeError> {
    let (mut client, hello) = client;
    let ServerStep::Send(challenge) = server.on_frame(hello)? else {
        panic!("the first answer is a challenge");
    };
    let (ClientStep::Send(proof) | ClientStep::SendLast(proof)) = client.on_frame(challenge)?
    else {
        panic!("the client proves the token");
    };
    Ok((server.on_frame(proof)?, client))
}

#[test]
fn a_control_link_with_the_same_token_is_accepted_both_ways() {
    let key = Key::new("s3cret");
    let keys = StaticKeys::shared(Some(key.clone()));
    let mut server = ServerHandshake::new(&keys, [2; 32]);
    let client = ClientHandshake::control(&key, CLIENT_ID, [1; 32], false);
    let (step, mut client) = run(client, &mut server).expect("handshake");
    let ServerStep::Proven(Proven::Control(proof)) = step else {
        panic!("a control link");
    };
    assert_eq!(proof.client_id, CLIENT_ID);
    assert_eq!(proof.id, None, "the shared token");
    let ok = proof.accept(SESSION, Duration::from_millis(1500));
    let accepted = client.on_frame(ok).expect("the server's proof verifies");
    assert_eq!(
        accepted,
        ClientStep::Accepted(Accepted {
            session: SESSION,
            authenticated: true,
            heartbeat_interval: Duration::from_millis(1500),
        })
    );
    assert!(matches!(
        client.on_frame(Frame::Heartbeat),
        Err(HandshakeError::Unexpected { .. })
    ));
}

#[test]
fn a_wrong_token_is_refused_on_either_kind_of_link() {
    let (server_key, client_key) = (Key::new("right"), Key::new("wrong"));
    for client in [
        ClientHandshake::control(&client_key, CLIENT_ID, [1; 32], false),
        ClientHandshake::data(&client_key, SESSION, false),
        ClientHandshake::data(&client_key, SESSION, true),
    ] {
        let keys = StaticKeys::shared(Some(server_key.clone()));
        let mut server = ServerHandshake::new(&keys, [2; 32]);
        let err = run(client, &mut server).err().expect("refused");
        assert!(matches!(err, HandshakeError::BadProof), "{err:?}");
        assert_eq!(err.code(), ErrorCode::AuthFailed);
        assert!(err.is_permanent());
    }
}

#[test]
fn data_links_are_proven_for_their_session_and_kind() {
    let key = Key::new("s3cret");
    let keys = StaticKeys::shared(Some(key.clone()));
    for muxed in [false, true] {
        let mut server = ServerHandshake::new(&keys, [3; 32]);
        let client = ClientHandshake::data(&key, SESSION, muxed);
        let (step, mut client) = run(client, &mut server).expect("handshake");
        assert!(matches!(
            step,
            ServerStep::Proven(Proven::Data { session, muxed: m }) if session == SESSION && m == muxed
        ));
        assert!(client.on_frame(Frame::Heartbeat).is_err(), "nothing after");
    }
}

#[test]
fn another_version_is_refused_with_both_numbers() {
    let keys = StaticKeys::shared(None);
    let mut server = ServerHandshake::new(&keys, [0; 32]);
    let hello = Frame::Hello {
        version: VERSION + 1,
        link: LinkHello::Data {
            session_id: SESSION,
        },
    };
    let err = server.on_frame(hello).expect_err("refused");
    assert!(
        matches!(err, HandshakeError::Version { theirs, ours } if theirs == VERSION + 1 && ours == VERSION)
    );
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn frames_out_of_order_are_refused_and_the_machine_stays_refused() {
    let key = Key::new("k");
    let keys = StaticKeys::shared(Some(key.clone()));
    let mut server = ServerHandshake::new(&keys, [0; 32]);
    let mac = key.data_proof(&SESSION, &[0; 32]);
    let err = server
        .on_frame(Frame::AuthResponse { mac })
        .expect_err("no hello yet");
    assert!(matches!(
        err,
        HandshakeError::Unexpected {
            expected: "hello",
            got: "auth response"
        }
    ));
    let (_, hello) = ClientHandshake::data(&key, SESSION, false);
    assert!(server.on_frame(hello).is_err(), "refused for good");
}

#[test]
fn a_server_without_authentication_is_accepted_only_when_asked() {
    let key = Key::new("any");
    let keys = StaticKeys::shared(None);
    for accept in [false, true] {
        let mut server = ServerHandshake::new(&keys, [2; 32]);
        let client = ClientHandshake::control(&key, CLIENT_ID, [1; 32], accept);
        let (ServerStep::Proven(Proven::Control(proof)), mut client) =
            run(client, &mut server).expect("handshake")
        else {
            panic!("a control link");
        };
        let outcome = client.on_frame(proof.accept(SESSION, Duration::ZERO));
        match (accept, outcome) {
            (true, Ok(ClientStep::Accepted(a))) => assert!(!a.authenticated),
            (false, Err(HandshakeError::ServerUnauthenticated)) => {}
            (accept, other) => panic!("accept={accept}: {other:?}"),
        }
    }
}

#[test]
fn a_server_with_another_token_does_not_prove_itself() {
    let (client_key, server_key) = (Key::new("mine"), Key::new("theirs"));
    let (mut client, _) = ClientHandshake::control(&client_key, CLIENT_ID, [1; 32], false);
    client
        .on_frame(Frame::Challenge { nonce: [2; 32] })
        .expect("proof");
    let ok = Frame::AuthOk {
        session_id: SESSION,
        authenticated: true,
        mac: server_key.server_proof(&[1; 32], &[2; 32], &SESSION),
        heartbeat_interval_ms: 1000,
    };
    let err = client.on_frame(ok).expect_err("unproven");
    assert!(matches!(err, HandshakeError::ServerUnproven));
    assert!(err.is_permanent());
}

#[test]
fn an_error_frame_is_the_servers_refusal_and_keeps_its_code() {
    let key = Key::new("k");
    let (mut client, _) = ClientHandshake::data(&key, SESSION, false);
    let err = client
        .on_frame(HandshakeError::UnknownSession.to_frame())
        .expect_err("refused");
    assert!(
        matches!(&err, HandshakeError::Refused { code: ErrorCode::UnknownSession, message } if message.contains("unknown"))
    );
    assert!(!err.is_permanent(), "a session can come back");
    assert_eq!(err.code(), ErrorCode::UnknownSession);
}

/// A server with a shared token and two clients of their own, and sessions
/// of each.
fn per_client_keys() -> StaticKeys {
    StaticKeys {
        shared: Some(Key::new("shared")),
        clients: vec![
            ("laptop".into(), Key::new("laptop's token")),
            ("desktop".into(), Key::new("desktop's token")),
        ],
        sessions: Some(vec![(SESSION, Key::new("laptop's token"))]),
    }
}

#[test]
fn a_named_client_is_proven_with_its_own_token_and_named_in_the_proof() {
    let keys = per_client_keys();
    let token = Key::new("laptop's token");
    let mut server = ServerHandshake::new(&keys, [2; 32]);
    let client = ClientHandshake::named_control(&token, CLIENT_ID, "laptop".into(), [1; 32], false);
    let (step, mut client) = run(client, &mut server).expect("handshake");
    let ServerStep::Proven(Proven::Control(proof)) = step else {
        panic!("a control link");
    };
    assert_eq!(proof.id.as_deref(), Some("laptop"));
    let ok = proof.accept(SESSION, Duration::from_secs(1));
    assert!(matches!(
        client.on_frame(ok),
        Ok(ClientStep::Accepted(Accepted {
            authenticated: true,
            ..
        }))
    ));
    // Its session's data links prove the same token.
    let mut server = ServerHandshake::new(&keys, [3; 32]);
    let (step, _) = run(ClientHandshake::data(&token, SESSION, false), &mut server)
        .expect("a data link of the laptop's session");
    assert!(matches!(step, ServerStep::Proven(Proven::Data { .. })));
}

#[test]
fn wrong_ids_wrong_tokens_and_unnamed_links_are_refused_as_a_wrong_token_is() {
    let keys = per_client_keys();
    let (laptop, desktop) = (Key::new("laptop's token"), Key::new("desktop's token"));
    let shared = Key::new("shared");
    let named =
        |key, id: &str| ClientHandshake::named_control(key, CLIENT_ID, id.into(), [1; 32], false);
    for client in [
        // A proof for id A never opens id B, either way round.
        named(&laptop, "desktop"),
        named(&desktop, "laptop"),
        // An id the server does not know, even with a token it knows.
        named(&laptop, "nobody"),
        named(&shared, "nobody"),
        // The shared token is not a client's own.
        named(&shared, "laptop"),
        // A client's own token is not the shared token.
        ClientHandshake::control(&laptop, CLIENT_ID, [1; 32], false),
    ] {
        let mut server = ServerHandshake::new(&keys, [2; 32]);
        let err = run(client, &mut server).err().expect("refused");
        assert!(matches!(err, HandshakeError::BadProof), "{err:?}");
        assert_eq!(err.to_string(), HandshakeError::BadProof.to_string());
    }
    // A clients-only server refuses an unnamed link too.
    let clients_only = StaticKeys {
        shared: None,
        ..per_client_keys()
    };
    let mut server = ServerHandshake::new(&clients_only, [2; 32]);
    let client = ClientHandshake::control(&shared, CLIENT_ID, [1; 32], false);
    let err = run(client, &mut server).err().expect("refused");
    assert!(matches!(err, HandshakeError::BadProof), "{err:?}");
}

#[test]
fn a_data_link_is_proven_only_with_its_sessions_key_and_an_unknown_session_is_told_so() {
    let keys = per_client_keys();
    for key in [Key::new("shared"), Key::new("desktop's token")] {
        let mut server = ServerHandshake::new(&keys, [3; 32]);
        let err = run(ClientHandshake::data(&key, SESSION, true), &mut server)
            .err()
            .expect("another key");
        assert!(matches!(err, HandshakeError::BadProof), "{err:?}");
    }
    let mut server = ServerHandshake::new(&keys, [3; 32]);
    let laptop = Key::new("laptop's token");
    let err = run(ClientHandshake::data(&laptop, [1; 16], false), &mut server)
        .err()
        .expect("no such session");
    assert!(matches!(err, HandshakeError::UnknownSession), "{err:?}");
}

/// An `io::Error` carrying a TLS failure, as the TLS transport returns it.
fn tls_io(e: rustls::Error) -> std::io::Error {
    use crate::transport::tls::{Side, TlsFailure};
    let failure = TlsFailure::from_rustls(e, Side::Client, true);
    std::io::Error::new(std::io::ErrorKind::InvalidData, failure)
}

#[test]
fn tls_failures_only_an_operator_can_fix_are_permanent() {
    use rustls::{AlertDescription, CertificateError};
    let untrusted = || {
        tls_io(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    };
    let refused = || {
        tls_io(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ))
    };
    for err in [
        HandshakeError::Transport(untrusted()),
        HandshakeError::Io(untrusted()),
        // On a TLS 1.3 link a refusal of our certificate comes with the
        // first read, through the frame reader's conversion.
        HandshakeError::from(refused()),
        HandshakeError::ServerSpeaksTls,
        HandshakeError::ClientSpeaksTls,
    ] {
        assert!(err.is_permanent(), "{err}");
    }
    assert!(matches!(
        HandshakeError::from(refused()),
        HandshakeError::Transport(_)
    ));
    let internal = tls_io(rustls::Error::AlertReceived(
        AlertDescription::InternalError,
    ));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    for err in [
        HandshakeError::Transport(internal),
        HandshakeError::Io(reset),
        HandshakeError::Closed,
        HandshakeError::Timeout(std::io::Error::from(std::io::ErrorKind::TimedOut)),
    ] {
        assert!(!err.is_permanent(), "{err}");
    }
    // The TLS failure's own words, without a second prefix.
    let shown = HandshakeError::Transport(untrusted()).to_string();
    assert!(
        shown.starts_with("TLS handshake failed: the server's certificate"),
        "{shown}"
    );
}

/// What `drive` makes of `bytes` where a frame is due, on each side.
fn read_first(bytes: &[u8]) -> (HandshakeError, HandshakeError) {
    let server = futures_lite::future::block_on(drive::receive(
        &mut futures_lite::io::Cursor::new(bytes.to_vec()),
    ))
    .expect_err("no frame");
    let key = Key::new("k");
    let (machine, hello) = ClientHandshake::data(&key, SESSION, false);
    let mut link = Scripted(futures_lite::io::Cursor::new(bytes.to_vec()));
    let client = futures_lite::future::block_on(drive::client(&mut link, machine, hello))
        .expect_err("no frame");
    (server, client)
}

/// A peer that says its script (read from the start) and hears nothing.
struct Scripted(futures_lite::io::Cursor<Vec<u8>>);

impl futures_lite::AsyncRead for Scripted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl futures_lite::AsyncWrite for Scripted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[test]
fn a_tls_record_where_a_frame_is_due_names_the_side_that_speaks_tls() {
    // A ClientHello's record header, and the decode_error alert a TLS
    // server answers a plain hello with.
    let client_hello = [0x16, 0x03, 0x01, 0x00, 0xc8, 0x01];
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
    for bytes in [&client_hello[..], &alert[..]] {
        let (server, client) = read_first(bytes);
        assert!(
            matches!(server, HandshakeError::ClientSpeaksTls),
            "{server:?}"
        );
        assert!(
            matches!(client, HandshakeError::ServerSpeaksTls),
            "{client:?}"
        );
        assert!(
            server
                .to_string()
                .contains("start the server with --tls, or the client without"),
            "{server}"
        );
        assert!(
            client
                .to_string()
                .contains("the server speaks TLS: add --tls"),
            "{client}"
        );
        assert!(client.is_permanent());
    }
    // Garbage that is not TLS stays malformed, and is not permanent.
    let (server, client) = read_first(&[0xff, 0xff, 0, 0]);
    assert!(matches!(server, HandshakeError::Malformed(_)), "{server:?}");
    assert!(!client.is_permanent(), "{client:?}");
}
