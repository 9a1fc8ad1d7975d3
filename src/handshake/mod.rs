//! The handshake every link starts with, written once, as I/O-free state
//! machines in the shape of `crate::mux::state`: a machine is fed decoded
//! frames and answers with frames to send or with an outcome; it owns no
//! socket, no clock and no random source (nonces are passed in).
//!
//! ```text
//! client                                  server
//!   Hello { version, Control | NamedControl | Data | Mux } ──▶   version must be ours
//!                                ◀── Challenge { server nonce }
//!   AuthResponse { HMAC proof }            ──▶   verified with the link's key
//!                                ◀── AuthOk { session, server proof }   (control links only)
//! ```
//!
//! [`ClientHandshake`] and [`ServerHandshake`] are the two sides;
//! [`HandshakeError`] says why one failed and maps to and from the wire's
//! `ErrorCode`. The server's driver (`crate::server`) adds its deadlines and
//! its session registry; the client's control and data dials and the tests use
//! [`drive::client`]. Proofs are `crate::auth`'s; PROTOCOL.md sections 4–6 are
//! the normative text.
//!
//! The server's machine asks a [`Keyring`] for the key a link must prove: the
//! shared token's for an unnamed control link, the client's own for a named
//! one (`NamedControl { id }`), and for a data link the key its session's
//! control link proved.
//!
//! Invariants (the `handshake` fuzz target checks them): no input panics; a
//! server machine proves a link only after `Hello` then `AuthResponse`, in
//! that order, with a proof made with that link's key (a named control link
//! only with its own id's key: a proof for id A never opens id B; an unknown
//! id is refused as a wrong token is); a client machine accepts a
//! control link only after its own proof is sent and only with the server's
//! proof (or, when told to, a server without authentication); after an
//! outcome or an error, every further frame is refused.

mod client;
pub mod drive;
mod error;
mod keys;
mod server;
#[cfg(test)]
mod tests;

pub use client::{Accepted, ClientHandshake, ClientStep};
pub use error::HandshakeError;
pub use keys::{KeyLookup, Keyring, StaticKeys};
pub use server::{ControlProof, Proven, ServerHandshake, ServerStep};
