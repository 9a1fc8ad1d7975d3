use std::time::Duration;

use super::*;
use crate::auth::Key;
use crate::protocol::{ErrorCode, Frame, LinkHello, VERSION};

const CLIENT_ID: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [9; 16];

/// Runs a client machine against a server machine until the server proves
/// the link; returns the server's step and the client's last answer.
fn run<'c, 'k>(
    client: (ClientHandshake<'c>, Frame),
    server: &mut ServerHandshake<'k>,
) -> Result<(ServerStep<'k>, ClientHandshake<'c>), HandshakeError> {
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
    let mut server = ServerHandshake::new(Some(&key), [2; 32]);
    let client = ClientHandshake::control(&key, CLIENT_ID, [1; 32], false);
    let (step, mut client) = run(client, &mut server).expect("handshake");
    let ServerStep::Proven(Proven::Control(proof)) = step else {
        panic!("a control link");
    };
    assert_eq!(proof.client_id, CLIENT_ID);
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
        let mut server = ServerHandshake::new(Some(&server_key), [2; 32]);
        let err = run(client, &mut server).err().expect("refused");
        assert!(matches!(err, HandshakeError::BadProof), "{err:?}");
        assert_eq!(err.code(), ErrorCode::AuthFailed);
        assert!(err.is_permanent());
    }
}

#[test]
fn data_links_are_proven_for_their_session_and_kind() {
    let key = Key::new("s3cret");
    for muxed in [false, true] {
        let mut server = ServerHandshake::new(Some(&key), [3; 32]);
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
    let mut server = ServerHandshake::new(None, [0; 32]);
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
    let mut server = ServerHandshake::new(Some(&key), [0; 32]);
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
    for accept in [false, true] {
        let mut server = ServerHandshake::new(None, [2; 32]);
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
