//! Challenge–response authentication with HMAC-SHA256; the token never crosses
//! the wire.
//!
//! Control link: the client sends a fresh nonce `Nc` in `Hello`; the server answers
//! with a fresh nonce `Ns`; the client proves the token with
//! `HMAC(token, "porthole/1 client" ‖ Nc ‖ Ns)`; the server proves it back with
//! `HMAC(token, "porthole/1 server" ‖ Nc ‖ Ns ‖ session_id)`. A captured exchange is
//! useless later because the other side's nonce will differ, and the distinct
//! labels stop a proof from one role being reflected as the other.
//!
//! Data link: `HMAC(token, "porthole/1 data" ‖ session_id ‖ Ns)` with a fresh `Ns`
//! per link, which binds the link to its control session and cannot be replayed.
//!
//! Per-client credentials: a control link that names its client id proves its
//! own token with `HMAC(token, "porthole/1 client" ‖ Nc ‖ Ns ‖ id)`, so a proof
//! made for one id never opens another (the nonces are fixed-size, so the id is
//! exactly the bytes after them, and at least one: a proof without an id never
//! matches one with). The server's proof and the session's data links then use
//! that client's token as the key.
//!
//! Verification uses `ring::hmac::verify`, which compares in constant time.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::io;

use crate::protocol::{Mac, Nonce, SessionId};

const CLIENT_LABEL: &[u8] = b"porthole/1 client";
const SERVER_LABEL: &[u8] = b"porthole/1 server";
const DATA_LABEL: &[u8] = b"porthole/1 data";

/// The shared secret as an HMAC key.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    pub fn new(token: &str) -> Self {
        Key(hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()))
    }

    fn sign(&self, parts: &[&[u8]]) -> Mac {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn verify(&self, parts: &[&[u8]], mac: &Mac) -> bool {
        let msg: Vec<u8> = parts.concat();
        hmac::verify(&self.0, &msg, mac).is_ok()
    }

    /// What the client sends in `AuthResponse` on a control link.
    pub fn client_proof(&self, client_nonce: &Nonce, server_nonce: &Nonce) -> Mac {
        self.sign(&[CLIENT_LABEL, client_nonce, server_nonce])
    }

    pub fn verify_client(&self, client_nonce: &Nonce, server_nonce: &Nonce, mac: &Mac) -> bool {
        self.verify(&[CLIENT_LABEL, client_nonce, server_nonce], mac)
    }

    /// What a client that names itself `id` sends in `AuthResponse` on a
    /// control link (keyed with its own token).
    pub fn named_client_proof(&self, client_nonce: &Nonce, server_nonce: &Nonce, id: &str) -> Mac {
        self.sign(&[CLIENT_LABEL, client_nonce, server_nonce, id.as_bytes()])
    }

    pub fn verify_named_client(
        &self,
        client_nonce: &Nonce,
        server_nonce: &Nonce,
        id: &str,
        mac: &Mac,
    ) -> bool {
        let parts = [CLIENT_LABEL, client_nonce, server_nonce, id.as_bytes()];
        self.verify(&parts, mac)
    }

    /// What the server sends in `AuthOk`.
    pub fn server_proof(
        &self,
        client_nonce: &Nonce,
        server_nonce: &Nonce,
        session: &SessionId,
    ) -> Mac {
        self.sign(&[SERVER_LABEL, client_nonce, server_nonce, session])
    }

    pub fn verify_server(
        &self,
        client_nonce: &Nonce,
        server_nonce: &Nonce,
        session: &SessionId,
        mac: &Mac,
    ) -> bool {
        self.verify(&[SERVER_LABEL, client_nonce, server_nonce, session], mac)
    }

    /// What the client sends in `AuthResponse` on a data link.
    pub fn data_proof(&self, session: &SessionId, server_nonce: &Nonce) -> Mac {
        self.sign(&[DATA_LABEL, session, server_nonce])
    }

    pub fn verify_data(&self, session: &SessionId, server_nonce: &Nonce, mac: &Mac) -> bool {
        self.verify(&[DATA_LABEL, session, server_nonce], mac)
    }
}

/// Fresh random bytes from the OS generator (nonces, session and client ids).
pub fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| io::Error::other("the system random generator failed"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_token_and_nonces() {
        let key = Key::new("s3cret");
        let (nc, ns) = ([1u8; 32], [2u8; 32]);
        let mac = key.client_proof(&nc, &ns);
        assert!(key.verify_client(&nc, &ns, &mac));
        assert!(!Key::new("other").verify_client(&nc, &ns, &mac));
        assert!(
            !key.verify_client(&nc, &[3u8; 32], &mac),
            "replay with a new nonce"
        );
        let session = [9u8; 16];
        let smac = key.server_proof(&nc, &ns, &session);
        assert!(key.verify_server(&nc, &ns, &session, &smac));
        assert!(
            !key.verify_client(&nc, &ns, &smac),
            "a server proof is not a client proof"
        );
        let dmac = key.data_proof(&session, &ns);
        assert!(key.verify_data(&session, &ns, &dmac));
        assert!(
            !key.verify_data(&[8u8; 16], &ns, &dmac),
            "bound to its session"
        );
    }

    #[test]
    fn a_named_proof_binds_its_id_and_is_no_unnamed_proof() {
        let key = Key::new("laptop's own token");
        let (nc, ns) = ([1u8; 32], [2u8; 32]);
        let mac = key.named_client_proof(&nc, &ns, "laptop");
        assert!(key.verify_named_client(&nc, &ns, "laptop", &mac));
        assert!(!key.verify_named_client(&nc, &ns, "desktop", &mac));
        assert!(!key.verify_named_client(&nc, &ns, "laptop2", &mac));
        assert!(!key.verify_client(&nc, &ns, &mac), "not an unnamed proof");
        let unnamed = key.client_proof(&nc, &ns);
        assert!(!key.verify_named_client(&nc, &ns, "laptop", &unnamed));
        assert!(!Key::new("other").verify_named_client(&nc, &ns, "laptop", &mac));
    }

    #[test]
    fn random_values_differ() {
        let a: [u8; 32] = random().expect("rng");
        let b: [u8; 32] = random().expect("rng");
        assert_ne!(a, b);
    }
}
