//! The `handshake` target's property: an attacker's frames mixed with an
//! honest client's and an honest server's, fed to both handshake machines.

use std::time::Duration;

use porthole::auth::Key;
use porthole::handshake::{
    Accepted, ClientHandshake, ClientStep, HandshakeError, Proven, ServerHandshake, ServerStep,
    StaticKeys,
};
use porthole::protocol::{ErrorCode, Frame, LinkHello, VERSION};

const SERVER_NONCE: [u8; 32] = [0x5a; 32];
const CLIENT_NONCE: [u8; 32] = [0xc1; 32];
const CLIENT_ID: [u8; 16] = [0x1d; 16];

/// What one run reached, for tests that check more.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HandshakeRun {
    /// The server machine proved a link.
    pub server_proven: bool,
    /// The client machine ended (a ready data link or an accepted control link).
    pub client_done: Option<Option<Accepted>>,
}

/// Byte 0 picks the scenario: bit 0 the server runs without a key, bit 1
/// the honest client holds another token, bits 2–3 the client's link
/// (control, data, mux, named control), bit 4 the client accepts a server
/// without authentication, bit 5 the id a named client claims ("alice" or
/// "bob"). The server knows a shared token and alice's and bob's own; a
/// client with "another token" holds the other client's (for a named link)
/// or alice's (for an unnamed one). Then operations, one byte each (and their operands):
/// 0 the attacker sends the server a frame, 1 the attacker sends the client
/// a frame, 2 the honest client's pending frame reaches the server, 3 the
/// honest server's pending frame reaches the client.
///
/// Checks: nothing panics; the server proves a link only after `Hello` and
/// then an `AuthResponse`, and with a key, only on the honest client's
/// proof made with the same token (a named link only with its own id's
/// token: a proof for alice never opens bob, and the proof names the id it
/// verified); the client ends only after sending its
/// proof, and accepts a control link only on the honest server's `AuthOk` or,
/// when told to, on one without authentication; after an outcome or an
/// error, both machines refuse every further frame.
pub fn handshake(data: &[u8]) -> HandshakeRun {
    let mut bytes = data.iter().copied();
    let scenario = Scenario::new(bytes.next().unwrap_or(0));
    let keys = Keys::new();
    let client_key = keys.client_key(&scenario);
    let accept = scenario.accept_unauthenticated;
    let (client, hello) = match scenario.link {
        0 => ClientHandshake::control(client_key, CLIENT_ID, CLIENT_NONCE, accept),
        3 => {
            let id = scenario.id.to_owned();
            ClientHandshake::named_control(client_key, CLIENT_ID, id, CLIENT_NONCE, accept)
        }
        kind => ClientHandshake::data(client_key, scenario.session, kind == 2),
    };
    let server_keys = if scenario.keyless {
        StaticKeys::default()
    } else {
        keys.server.clone()
    };
    let mut duel = Duel {
        scenario,
        server: ServerHandshake::new(&server_keys, SERVER_NONCE),
        client,
        server_side: Side::default(),
        client_side: Side::default(),
        to_server: Some(hello),
        to_client: None,
        run: HandshakeRun::default(),
    };
    while let Some(op) = bytes.next() {
        let honest = op % 4 >= 2;
        if op % 2 == 0 {
            let frame = if honest {
                duel.to_server.take()
            } else {
                attacker_frame(&mut bytes)
            };
            if let Some(frame) = frame {
                duel.server_takes(frame, honest);
            }
        } else {
            let frame = if honest {
                duel.to_client.take()
            } else {
                attacker_frame(&mut bytes)
            };
            if let Some(frame) = frame {
                duel.client_takes(frame, honest);
            }
        }
    }
    duel.run
}

/// What byte 0 of an input chose.
struct Scenario {
    keyless: bool,
    same_token: bool,
    /// 0 control, 1 data, 2 mux, 3 named control.
    link: u8,
    accept_unauthenticated: bool,
    /// The id a named control link claims.
    id: &'static str,
    session: [u8; 16],
}

impl Scenario {
    fn new(byte: u8) -> Self {
        Scenario {
            keyless: byte & 1 == 1,
            same_token: byte & 2 == 0,
            link: (byte >> 2) & 3,
            accept_unauthenticated: byte & 16 != 0,
            id: if byte & 32 == 0 { "alice" } else { "bob" },
            session: [byte; 16],
        }
    }
}

/// The tokens of the run: the server's keyring (a shared token, alice's and
/// bob's own; data links prove the shared token) and each client's key.
struct Keys {
    server: StaticKeys,
    shared: Key,
    alice: Key,
    bob: Key,
}

impl Keys {
    fn new() -> Keys {
        let (shared, alice, bob) = (
            Key::new("server token"),
            Key::new("alice's token"),
            Key::new("bob's token"),
        );
        let server = StaticKeys {
            shared: Some(shared.clone()),
            clients: vec![("alice".into(), alice.clone()), ("bob".into(), bob.clone())],
            sessions: None,
        };
        Keys {
            server,
            shared,
            alice,
            bob,
        }
    }

    /// The honest client's key: its own (the shared token unless named),
    /// or another that the server also knows.
    fn client_key(&self, scenario: &Scenario) -> &Key {
        let alice = scenario.id == "alice";
        match (scenario.link == 3, scenario.same_token) {
            (true, true) if alice => &self.alice,
            (true, true) => &self.bob,
            (true, false) if alice => &self.bob,
            (true, false) => &self.alice,
            (false, true) => &self.shared,
            (false, false) => &self.alice,
        }
    }
}

/// Both machines, what each side's honest peer would send next, and the checks.
struct Duel<'k> {
    scenario: Scenario,
    server: ServerHandshake<'k>,
    client: ClientHandshake<'k>,
    server_side: Side,
    client_side: Side,
    to_server: Option<Frame>,
    to_client: Option<Frame>,
    run: HandshakeRun,
}

impl Duel<'_> {
    fn server_takes(&mut self, frame: Frame, honest: bool) {
        let is_proof = matches!(frame, Frame::AuthResponse { .. });
        let step = self.server.on_frame(frame);
        self.server_side.check(step.is_ok(), "server");
        match step {
            Ok(ServerStep::Send(challenge)) => {
                assert!(matches!(challenge, Frame::Challenge { .. }));
                self.server_side.sent = true;
                self.to_client = Some(challenge);
            }
            Ok(ServerStep::Proven(proven)) => {
                assert!(
                    self.server_side.sent && is_proof,
                    "proven only by a proof after a challenge"
                );
                if !self.scenario.keyless {
                    assert!(
                        honest && self.scenario.same_token,
                        "proven without the token"
                    );
                }
                self.server_side.over = true;
                self.run.server_proven = true;
                if let Proven::Control(proof) = proven {
                    let named = self.scenario.link == 3 && !self.scenario.keyless;
                    let id = named.then_some(self.scenario.id);
                    assert_eq!(proof.id.as_deref(), id, "proven for the id it names");
                    let interval = Duration::from_millis(500);
                    self.to_client = Some(proof.accept(self.scenario.session, interval));
                }
            }
            Err(e) => {
                check_error(&e);
                self.server_side.over = true;
            }
        }
    }

    fn client_takes(&mut self, frame: Frame, honest: bool) {
        let is_auth_ok = matches!(frame, Frame::AuthOk { .. });
        let step = self.client.on_frame(frame);
        self.client_side.check(step.is_ok(), "client");
        match step {
            Ok(ClientStep::Send(proof)) => self.proof_sent(proof, false),
            Ok(ClientStep::SendLast(proof)) => self.proof_sent(proof, true),
            Ok(ClientStep::Accepted(accepted)) => {
                let scenario = &self.scenario;
                assert!(
                    self.client_side.sent && is_auth_ok,
                    "accepted only after the proof"
                );
                if accepted.authenticated {
                    let genuine = honest && !scenario.keyless && scenario.same_token;
                    assert!(genuine, "a server proof forged");
                    assert_eq!(accepted.session, scenario.session);
                } else {
                    assert!(
                        scenario.accept_unauthenticated,
                        "an unauthenticated server accepted"
                    );
                }
                self.client_side.over = true;
                self.run.client_done = Some(Some(accepted));
            }
            Err(e) => {
                check_error(&e);
                self.client_side.over = true;
            }
        }
    }
}

impl Duel<'_> {
    /// The client answered a challenge; a data link's machine ends there.
    fn proof_sent(&mut self, proof: Frame, last: bool) {
        assert!(matches!(proof, Frame::AuthResponse { .. }));
        let data_link = matches!(self.scenario.link, 1 | 2);
        assert_eq!(last, data_link, "only a data link ends with its proof");
        self.client_side.sent = true;
        if last {
            self.client_side.over = true;
            self.run.client_done = Some(None);
        }
        self.to_server = Some(proof);
    }
}

/// One machine's progress as the property sees it.
#[derive(Default)]
struct Side {
    /// It answered a frame (the server its challenge, the client its proof).
    sent: bool,
    /// It reached an outcome or an error: it must refuse everything after.
    over: bool,
}

impl Side {
    fn check(&self, ok: bool, who: &str) {
        assert!(
            !(self.over && ok),
            "the {who} machine took a frame after its end"
        );
    }
}

/// Every error maps to a code and renders (what a refusal sends).
fn check_error(e: &HandshakeError) {
    let Frame::Error { message, .. } = e.to_frame() else {
        panic!("a refusal is an Error frame");
    };
    assert!(message.len() <= porthole::protocol::MAX_MESSAGE_LEN);
}

/// A valid client id (`[A-Za-z0-9_.-]`) from the attacker's bytes; "alice"
/// and "bob" are among them.
fn client_name(bytes: Vec<u8>) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    match bytes.first() {
        Some(0) => "alice".to_owned(),
        Some(1) => "bob".to_owned(),
        _ => bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()]))
            .chain(std::iter::once('x'))
            .collect(),
    }
}

/// A frame of the kinds a handshake sees, from the attacker's bytes.
fn attacker_frame(bytes: &mut impl Iterator<Item = u8>) -> Option<Frame> {
    let kind = bytes.next()?;
    let mut array = |n: usize| -> Vec<u8> { bytes.by_ref().take(n).collect() };
    let nonce = |v: Vec<u8>| -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..v.len()].copy_from_slice(&v);
        out
    };
    let id = |v: Vec<u8>| -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..v.len()].copy_from_slice(&v);
        out
    };
    Some(match kind % 8 {
        0 => Frame::Hello {
            version: if kind & 8 == 0 { VERSION } else { kind },
            link: match (kind >> 4) % 4 {
                0 => LinkHello::Control {
                    client_id: id(array(16)),
                    nonce: nonce(array(32)),
                },
                3 => LinkHello::NamedControl {
                    client_id: id(array(16)),
                    nonce: nonce(array(32)),
                    id: client_name(array(usize::from(kind >> 6) * 8 + 1)),
                },
                1 => LinkHello::Data {
                    session_id: id(array(16)),
                },
                _ => LinkHello::Mux {
                    session_id: id(array(16)),
                },
            },
        },
        1 => Frame::Challenge {
            nonce: nonce(array(32)),
        },
        2 => Frame::AuthResponse {
            mac: nonce(array(32)),
        },
        3 => Frame::AuthOk {
            session_id: id(array(16)),
            authenticated: kind & 8 != 0,
            mac: nonce(array(32)),
            heartbeat_interval_ms: u32::from(kind),
        },
        4 => Frame::Error {
            code: ErrorCode::from_u16(u16::from(kind >> 3)),
            message: String::from_utf8_lossy(&array(usize::from(kind >> 3))).into_owned(),
        },
        5 => Frame::Heartbeat,
        6 => Frame::OpenData {
            count: u16::from(kind),
        },
        _ => Frame::Goodbye {
            reason: porthole::protocol::Farewell::Leaving,
        },
    })
}
