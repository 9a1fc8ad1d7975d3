//! The client's side of every link's handshake, I/O-free. A machine is made
//! with the `Hello` to send; fed the server's frames in order it answers with
//! the next frame to send, and ends in [`ClientStep::Accepted`] (a control
//! link: the server proved the token back) or [`ClientStep::SendLast`] (a
//! data link: the server says nothing more until it has a visitor). An
//! `Error` frame from the server is [`HandshakeError::Refused`].

use std::time::Duration;

use super::HandshakeError;
use super::error::frame_name;
use crate::auth::Key;
use crate::protocol::{ClientId, Frame, LinkHello, Nonce, SessionId, VERSION};

/// One link's handshake, client side.
pub struct ClientHandshake<'k> {
    key: &'k Key,
    link: Link,
    state: State,
}

enum Link {
    Control {
        nonce: Nonce,
        accept_unauthenticated: bool,
        /// The client id a named control link proves its token for.
        id: Option<String>,
    },
    Data {
        session: SessionId,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    /// Control links only: the proof is sent, `AuthOk` is due.
    AwaitAccept {
        client_nonce: Nonce,
        server_nonce: Nonce,
        accept_unauthenticated: bool,
    },
    Over,
}

/// What the server's frame leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this frame and feed the server's next one.
    Send(Frame),
    /// Send this frame; the data link is then ready for its first `Start`.
    SendLast(Frame),
    /// The server accepted the control link and proved it knows the token
    /// (or runs without authentication, and we agreed to that).
    Accepted(Accepted),
}

/// An accepted control link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub session: SessionId,
    /// False when the server runs with `--insecure-no-auth`.
    pub authenticated: bool,
    /// The heartbeat interval the server asks for, as sent (not yet bounded).
    pub heartbeat_interval: Duration,
}

impl<'k> ClientHandshake<'k> {
    /// A control link's handshake and its `Hello`. `nonce` must be fresh
    /// (random) for each attempt.
    pub fn control(
        key: &'k Key,
        client_id: ClientId,
        nonce: Nonce,
        accept_unauthenticated: bool,
    ) -> (Self, Frame) {
        let link = Link::Control {
            nonce,
            accept_unauthenticated,
            id: None,
        };
        let hello = LinkHello::Control { client_id, nonce };
        (Self::new(key, link), hello_frame(hello))
    }

    /// [`control`](Self::control) for a client with its own credentials:
    /// the `Hello` names `id` and the proof, keyed with the client's own
    /// token, binds it. `id` must pass `protocol::valid_name` (the config
    /// checks it), or the `Hello` does not encode.
    pub fn named_control(
        key: &'k Key,
        client_id: ClientId,
        id: String,
        nonce: Nonce,
        accept_unauthenticated: bool,
    ) -> (Self, Frame) {
        let hello = LinkHello::NamedControl {
            client_id,
            nonce,
            id: id.clone(),
        };
        let link = Link::Control {
            nonce,
            accept_unauthenticated,
            id: Some(id),
        };
        (Self::new(key, link), hello_frame(hello))
    }

    /// A data link's handshake (pooled, or multiplexed when `muxed`) for
    /// control session `session`, and its `Hello`.
    pub fn data(key: &'k Key, session: SessionId, muxed: bool) -> (Self, Frame) {
        let hello = if muxed {
            LinkHello::Mux {
                session_id: session,
            }
        } else {
            LinkHello::Data {
                session_id: session,
            }
        };
        (Self::new(key, Link::Data { session }), hello_frame(hello))
    }

    fn new(key: &'k Key, link: Link) -> Self {
        ClientHandshake {
            key,
            link,
            state: State::AwaitChallenge,
        }
    }

    /// Feeds the server's next frame.
    pub fn on_frame(&mut self, frame: Frame) -> Result<ClientStep, HandshakeError> {
        let state = std::mem::replace(&mut self.state, State::Over);
        match (state, frame) {
            (State::Over, frame) => Err(HandshakeError::Unexpected {
                expected: "nothing more",
                got: frame_name(&frame),
            }),
            (_, Frame::Error { code, message }) => Err(HandshakeError::from_wire(code, message)),
            (State::AwaitChallenge, Frame::Challenge { nonce }) => Ok(self.prove(nonce)),
            (
                State::AwaitAccept {
                    client_nonce,
                    server_nonce,
                    accept_unauthenticated,
                },
                Frame::AuthOk {
                    session_id,
                    authenticated,
                    mac,
                    heartbeat_interval_ms,
                },
            ) => {
                if !authenticated && !accept_unauthenticated {
                    return Err(HandshakeError::ServerUnauthenticated);
                }
                let proven =
                    self.key
                        .verify_server(&client_nonce, &server_nonce, &session_id, &mac);
                if authenticated && !proven {
                    return Err(HandshakeError::ServerUnproven);
                }
                Ok(ClientStep::Accepted(Accepted {
                    session: session_id,
                    authenticated,
                    heartbeat_interval: Duration::from_millis(u64::from(heartbeat_interval_ms)),
                }))
            }
            (state, frame) => Err(HandshakeError::Unexpected {
                expected: match state {
                    State::AwaitChallenge => "challenge",
                    _ => "auth ok",
                },
                got: frame_name(&frame),
            }),
        }
    }

    fn prove(&mut self, server_nonce: Nonce) -> ClientStep {
        match self.link {
            Link::Control {
                nonce,
                accept_unauthenticated,
                ref id,
            } => {
                self.state = State::AwaitAccept {
                    client_nonce: nonce,
                    server_nonce,
                    accept_unauthenticated,
                };
                let mac = match id {
                    Some(id) => self.key.named_client_proof(&nonce, &server_nonce, id),
                    None => self.key.client_proof(&nonce, &server_nonce),
                };
                ClientStep::Send(Frame::AuthResponse { mac })
            }
            Link::Data { session } => {
                let mac = self.key.data_proof(&session, &server_nonce);
                ClientStep::SendLast(Frame::AuthResponse { mac })
            }
        }
    }
}

fn hello_frame(link: LinkHello) -> Frame {
    Frame::Hello {
        version: VERSION,
        link,
    }
}
