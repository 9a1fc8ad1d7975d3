//! The client side of the wire protocol driven by hand: a control-link handshake
//! and a pooled data link (on the library's handshake machines), and a
//! registration, for tests that play a client which the real one would never be.

use smol::net::TcpStream;
use std::net::SocketAddr;

use porthole::auth::{Key, random};
use porthole::handshake::{ClientHandshake, drive};
use porthole::protocol::{Frame, SessionId};
use porthole::wire::{read_frame, write_frame};

/// Performs the client side of a control-link handshake (the library's own
/// machine, driven here) and returns the authenticated socket and its session.
/// Nothing else is sent afterwards.
pub async fn raw_control_handshake(server: SocketAddr, token: &str) -> (TcpStream, SessionId) {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let key = Key::new(token);
    let (client_id, nonce) = (random().expect("rng"), random().expect("rng"));
    let (machine, hello) = ClientHandshake::control(&key, client_id, nonce, false);
    let accepted = drive::client(&mut stream, machine, hello)
        .await
        .expect("control-link handshake")
        .expect("a control link ends accepted");
    // The machine checked the server's proof of the token.
    assert!(accepted.authenticated, "server authenticates");
    (stream, accepted.session)
}

/// Opens a pooled data link of `session_id` (Hello, Challenge, AuthResponse);
/// the server sends nothing more until a `Start`.
pub async fn raw_data_link(server: SocketAddr, token: &str, session_id: SessionId) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let key = Key::new(token);
    let (machine, hello) = ClientHandshake::data(&key, session_id, false);
    let accepted = drive::client(&mut stream, machine, hello)
        .await
        .expect("data-link handshake");
    assert!(accepted.is_none(), "a data link gets no AuthOk");
    stream
}

/// Registers `name` on a hand-driven control link; returns the public port.
pub async fn raw_register(control: &mut TcpStream, name: &str) -> u16 {
    let register = Frame::Register {
        name: name.to_owned(),
        remote_port: 0,
        public_address: false,
        udp: false,
    };
    write_frame(control, &register)
        .await
        .expect("send register");
    loop {
        match read_frame(control).await.expect("registration answer") {
            Frame::Registered { port, .. } => return port,
            Frame::Heartbeat | Frame::OpenData { .. } => {}
            other => panic!("expected Registered, got {other:?}"),
        }
    }
}
