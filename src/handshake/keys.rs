//! Where the server's handshake machine finds its keys: a lookup it calls
//! with what the link claims (a client id, a session), never I/O. The server
//! answers from its current settings and its live sessions
//! (`crate::server::credentials`); tests and the fuzz target use
//! [`StaticKeys`].

use crate::auth::Key;
use crate::protocol::SessionId;

/// What a lookup found.
#[derive(Clone)]
pub enum KeyLookup {
    /// Proofs must verify with this key.
    Key(Key),
    /// The server runs without authentication: any proof is accepted.
    Open,
    /// No such client or session. A control link is then refused exactly as
    /// a wrong token is (after the same HMAC work, with a dummy key), so the
    /// answer does not tell which ids exist; a data link is told the session
    /// is unknown.
    Unknown,
}

/// The server's keys, looked up per link.
pub trait Keyring: Sync {
    /// The key a control link's proof must verify with: the shared token's
    /// for an unnamed link (`None`), client `id`'s own for a named one.
    fn control(&self, id: Option<&str>) -> KeyLookup;
    /// The key of `session`'s data links: the one its control link proved.
    fn session(&self, session: &SessionId) -> KeyLookup;
}

/// A fixed keyring: an optional shared key, per-client keys and the keys of
/// known sessions. Without a shared key and without clients, authentication
/// is off (every proof accepted), as with `--insecure-no-auth`.
#[derive(Clone, Default)]
pub struct StaticKeys {
    pub shared: Option<Key>,
    pub clients: Vec<(String, Key)>,
    /// Sessions data links may join; `None` accepts any session with the
    /// shared key (or openly, without authentication).
    pub sessions: Option<Vec<(SessionId, Key)>>,
}

impl StaticKeys {
    /// Authentication with one shared key (`None`: off), any session.
    pub fn shared(key: Option<Key>) -> Self {
        StaticKeys {
            shared: key,
            ..StaticKeys::default()
        }
    }

    fn open(&self) -> bool {
        self.shared.is_none() && self.clients.is_empty()
    }
}

impl Keyring for StaticKeys {
    fn control(&self, id: Option<&str>) -> KeyLookup {
        if self.open() {
            return KeyLookup::Open;
        }
        let key = match id {
            None => self.shared.clone(),
            Some(id) => self
                .clients
                .iter()
                .find(|(c, _)| c == id)
                .map(|c| c.1.clone()),
        };
        key.map_or(KeyLookup::Unknown, KeyLookup::Key)
    }

    fn session(&self, session: &SessionId) -> KeyLookup {
        let Some(sessions) = &self.sessions else {
            return self.control(None);
        };
        match sessions.iter().find(|(s, _)| s == session) {
            Some((_, key)) if !self.open() => KeyLookup::Key(key.clone()),
            Some(_) => KeyLookup::Open,
            None => KeyLookup::Unknown,
        }
    }
}
