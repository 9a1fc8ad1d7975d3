//! The server's side of every link's handshake, I/O-free: fed the client's
//! frames in order, it answers with the frame to send or with what the link
//! proved to be. `Hello` → `Challenge`; `AuthResponse` → a proven control
//! link (which [`ControlProof::accept`] turns into `AuthOk`) or a proven data
//! link. Anything out of order, a version other than ours or a proof that does
//! not verify is a [`HandshakeError`], and the machine accepts nothing after.
//! Keys come from a [`Keyring`], asked once the proof is in: an unnamed
//! control link's from the shared token, a named one's from its client's
//! own token, a data link's from the session it names.

use std::time::Duration;

use super::HandshakeError;
use super::error::frame_name;
use super::keys::{KeyLookup, Keyring};
use crate::auth::Key;
use crate::protocol::{ClientId, Frame, LinkHello, Mac, Nonce, SessionId, VERSION};

/// The key an unknown client id's proof is checked with, so that refusing it
/// costs the same HMAC work as refusing a wrong token. Its proofs are refused
/// whatever they are.
const DUMMY_TOKEN: &str = "porthole: no such client";

/// One link's handshake, server side.
pub struct ServerHandshake<'k> {
    keys: &'k dyn Keyring,
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
pub enum ServerStep {
    /// Send this frame (the challenge) and feed the next one.
    Send(Frame),
    /// The link proved the token.
    Proven(Proven),
}

/// What a link proved to be.
#[derive(Debug)]
pub enum Proven {
    /// A control link; see [`ControlProof::accept`]. Boxed: it holds a key.
    Control(Box<ControlProof>),
    /// A data link of `session`, proven with that session's key.
    Data { session: SessionId, muxed: bool },
}

/// A control link whose client proved its token, not yet answered.
pub struct ControlProof {
    pub client_id: ClientId,
    /// The client id whose own token the proof verified with; `None` for the
    /// shared token, or when the server runs without authentication (a name
    /// nobody proved is no identity).
    pub id: Option<String>,
    client_nonce: Nonce,
    server_nonce: Nonce,
    /// Signs the server's proof in `AuthOk`; `None` without authentication.
    key: Option<Key>,
}

impl std::fmt::Debug for ControlProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlProof")
            .field("client_id", &self.client_id)
            .field("id", &self.id)
            .field("authenticated", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<'k> ServerHandshake<'k> {
    /// `nonce` must be fresh (random) for each link: it is what makes a
    /// recorded proof useless on another link.
    pub fn new(keys: &'k dyn Keyring, nonce: Nonce) -> Self {
        ServerHandshake {
            keys,
            nonce,
            state: State::AwaitHello,
        }
    }

    /// Feeds the client's next frame.
    pub fn on_frame(&mut self, frame: Frame) -> Result<ServerStep, HandshakeError> {
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
            (State::AwaitProof(link), Frame::AuthResponse { mac }) => {
                self.proven(link, &mac).map(ServerStep::Proven)
            }
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

    fn proven(&self, link: LinkHello, mac: &Mac) -> Result<Proven, HandshakeError> {
        let ns = &self.nonce;
        match link {
            LinkHello::Control { client_id, nonce } => {
                let lookup = self.keys.control(None);
                let key = check(lookup, |k| k.verify_client(&nonce, ns, mac))?;
                Ok(self.control(client_id, nonce, None, key))
            }
            LinkHello::NamedControl {
                client_id,
                nonce,
                id,
            } => {
                let lookup = self.keys.control(Some(&id));
                let key = check(lookup, |k| k.verify_named_client(&nonce, ns, &id, mac))?;
                let id = key.is_some().then_some(id);
                Ok(self.control(client_id, nonce, id, key))
            }
            LinkHello::Data { session_id } | LinkHello::Mux { session_id } => {
                let lookup = match self.keys.session(&session_id) {
                    KeyLookup::Unknown => return Err(HandshakeError::UnknownSession),
                    found => found,
                };
                check(lookup, |k| k.verify_data(&session_id, ns, mac))?;
                let muxed = matches!(link, LinkHello::Mux { .. });
                Ok(Proven::Data {
                    session: session_id,
                    muxed,
                })
            }
        }
    }

    fn control(
        &self,
        client_id: ClientId,
        client_nonce: Nonce,
        id: Option<String>,
        key: Option<Key>,
    ) -> Proven {
        Proven::Control(Box::new(ControlProof {
            client_id,
            id,
            client_nonce,
            server_nonce: self.nonce,
            key,
        }))
    }
}

/// Verifies a proof with what the lookup found: `Ok(Some(key))` when it
/// verified, `Ok(None)` without authentication. An unknown client does the
/// same HMAC work with a dummy key and is refused like a wrong token.
fn check(lookup: KeyLookup, verify: impl Fn(&Key) -> bool) -> Result<Option<Key>, HandshakeError> {
    match lookup {
        KeyLookup::Key(key) if verify(&key) => Ok(Some(key)),
        KeyLookup::Key(_) => Err(HandshakeError::BadProof),
        KeyLookup::Open => Ok(None),
        KeyLookup::Unknown => {
            let _ = verify(&Key::new(DUMMY_TOKEN));
            Err(HandshakeError::BadProof)
        }
    }
}

impl ControlProof {
    /// The `AuthOk` that opens session `session_id`; it proves the server
    /// knows the client's token too (all zero without authentication).
    pub fn accept(&self, session_id: SessionId, heartbeat_interval: Duration) -> Frame {
        let mac = match &self.key {
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

    /// The key the client proved (its session's data links must prove it
    /// too); `None` without authentication.
    pub fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }
}
