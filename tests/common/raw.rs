//! The client side of the wire protocol driven by hand: a control-link handshake,
//! a pooled data link and a registration, for tests that play a client which the
//! real one would never be.

use smol::net::TcpStream;
use std::net::SocketAddr;

use porthole::auth::Key;
use porthole::protocol::{Frame, LinkHello, SessionId, VERSION};
use porthole::wire::{read_frame, write_frame};

/// Performs the client side of a control-link handshake by hand and returns the
/// authenticated socket and the `AuthOk` frame. Nothing else is sent afterwards.
pub async fn raw_control_handshake(server: SocketAddr, token: &str) -> (TcpStream, SessionId) {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let client_nonce = porthole::auth::random().expect("rng");
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Control {
            client_id: porthole::auth::random().expect("rng"),
            nonce: client_nonce,
        },
    };
    write_frame(&mut stream, &hello).await.expect("send hello");
    let server_nonce = match read_frame(&mut stream).await.expect("challenge") {
        Frame::Challenge { nonce } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let key = Key::new(token);
    let mac = key.client_proof(&client_nonce, &server_nonce);
    write_frame(&mut stream, &Frame::AuthResponse { mac })
        .await
        .expect("send proof");
    match read_frame(&mut stream).await.expect("auth ok") {
        Frame::AuthOk {
            session_id,
            authenticated,
            mac,
            ..
        } => {
            assert!(authenticated, "server authenticates");
            assert!(
                key.verify_server(&client_nonce, &server_nonce, &session_id, &mac),
                "server proves the token"
            );
            (stream, session_id)
        }
        other => panic!("expected AuthOk, got {other:?}"),
    }
}

/// Opens a pooled data link of `session_id` by hand (Hello, Challenge,
/// AuthResponse); the server sends nothing more until a `Start`.
pub async fn raw_data_link(server: SocketAddr, token: &str, session_id: SessionId) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Data { session_id },
    };
    write_frame(&mut stream, &hello).await.expect("send hello");
    let nonce = match read_frame(&mut stream).await.expect("challenge") {
        Frame::Challenge { nonce } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let mac = Key::new(token).data_proof(&session_id, &nonce);
    write_frame(&mut stream, &Frame::AuthResponse { mac })
        .await
        .expect("send proof");
    stream
}

/// Registers `name` on a hand-driven control link; returns the public port.
pub async fn raw_register(control: &mut TcpStream, name: &str) -> u16 {
    let register = Frame::Register {
        name: name.to_owned(),
        remote_port: 0,
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
