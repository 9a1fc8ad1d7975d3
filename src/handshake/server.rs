//! The server's side of every link's handshake, I/O-free: fed the client's
//! frames in order, it answers with the frame to send or with what the link
//! proved to be. `Hello` → `Challenge`; `AuthResponse` → a proven control
//! link (which [`ControlProof::accept`] turns into `AuthOk`) or a proven data
//! link. Anything out of order, a version other than ours or a proof that does
//! not verify is a [`HandshakeError`], and the machine accepts nothing after.

use std::time::Duration;

use super::HandshakeError;
use super::error::frame_name;
use crate::auth::Key;
use crate::protocol::{ClientId, Frame, LinkHello, Mac, Nonce, SessionId, VERSION};

/// One link's handshake, server side.
pub struct ServerHandshake<'k> {
    /// `None` only with `--insecure-no-auth`: every proof is accepted.
    key: Option<&'k Key>,
    /// The fresh nonce this link's challenge carries.
    nonce: Nonce,
    state: State,
}

enum State {
    AwaitHello,
    AwaitProof(LinkHello),
    /// Proven or refused: nothing more is accepted.
    Over,
}

/// What the client's frame leads to.
#[derive(Debug)]
pub enum ServerStep<'k> {
    /// Send this frame (the challenge) and feed the next one.
    Send(Frame),
    /// The link proved the token.
    Proven(Proven<'k>),
}

/// What a link proved to be.
#[derive(Debug)]
pub enum Proven<'k> {
    /// A control link; see [`ControlProof::accept`].
    Control(ControlProof<'k>),
    /// A data link of `session`; whether that session exists is the
    /// server's to check.
    Data { session: SessionId, muxed: bool },
}

/// A control link whose client proved the token, not yet answered.
pub struct ControlProof<'k> {
    pub client_id: ClientId,
    client_nonce: Nonce,
    server_nonce: Nonce,
    /// Signs the server's proof in `AuthOk`; `None` without authentication.
    key: Option<&'k Key>,
}

impl std::fmt::Debug for ControlProof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlProof")
            .field("client_id", &self.client_id)
            .field("authenticated", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<'k> ServerHandshake<'k> {
    /// `nonce` must be fresh (random) for each link: it is what makes a
    /// recorded proof useless on another link.
    pub fn new(key: Option<&'k Key>, nonce: Nonce) -> Self {
        ServerHandshake {
            key,
            nonce,
            state: State::AwaitHello,
        }
    }

    /// Feeds the client's next frame.
    pub fn on_frame(&mut self, frame: Frame) -> Result<ServerStep<'k>, HandshakeError> {
        match (std::mem::replace(&mut self.state, State::Over), frame) {
            (State::AwaitHello, Frame::Hello { version, link }) => {
                if version != VERSION {
                    return Err(HandshakeError::Version {
                        theirs: version,
                        ours: VERSION,
                    });
                }
                self.state = State::AwaitProof(link);
                Ok(ServerStep::Send(Frame::Challenge { nonce: self.nonce }))
            }
            (State::AwaitProof(link), Frame::AuthResponse { mac }) => self.proven(link, &mac),
            (state, frame) => Err(HandshakeError::Unexpected {
                expected: match state {
                    State::AwaitHello => "hello",
                    State::AwaitProof(_) => "auth response",
                    State::Over => "nothing more",
                },
                got: frame_name(&frame),
            }),
        }
    }

    fn proven(&self, link: LinkHello, mac: &Mac) -> Result<ServerStep<'k>, HandshakeError> {
        let ok = |valid: bool| {
            if valid {
                Ok(())
            } else {
                Err(HandshakeError::BadProof)
            }
        };
        match link {
            LinkHello::Control { client_id, nonce } => {
                if let Some(key) = self.key {
                    ok(key.verify_client(&nonce, &self.nonce, mac))?;
                }
                Ok(ServerStep::Proven(Proven::Control(ControlProof {
                    client_id,
                    client_nonce: nonce,
                    server_nonce: self.nonce,
                    key: self.key,
                })))
            }
            LinkHello::Data { session_id } | LinkHello::Mux { session_id } => {
                if let Some(key) = self.key {
                    ok(key.verify_data(&session_id, &self.nonce, mac))?;
                }
                let muxed = matches!(link, LinkHello::Mux { .. });
                Ok(ServerStep::Proven(Proven::Data {
                    session: session_id,
                    muxed,
                }))
            }
        }
    }
}

impl ControlProof<'_> {
    /// The `AuthOk` that opens session `session_id`; it proves the server
    /// knows the token too (all zero without authentication).
    pub fn accept(&self, session_id: SessionId, heartbeat_interval: Duration) -> Frame {
        let mac = match self.key {
            Some(key) => key.server_proof(&self.client_nonce, &self.server_nonce, &session_id),
            None => [0; 32],
        };
        Frame::AuthOk {
            session_id,
            authenticated: self.key.is_some(),
            mac,
            heartbeat_interval_ms: u32::try_from(heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        }
    }
}
