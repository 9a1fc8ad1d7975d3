//! Who a session is, and what that allows: per-client credentials at the
//! server.
//!
//! A session's [`Credential`] names its principal (the shared token, or a
//! `clients` entry by id) and keeps the token it proved. Everything a
//! principal may do is looked up in the settings in force at each use
//! ([`limits`]), never copied at session start, since a reload may change
//! it. [`ServerKeys`] is the keyring the handshake machine asks: a control
//! link's key from the current settings, a data link's from its session.
//!
//! Revocation: [`revoke_changed`] (called by a reload once the new settings
//! are in force) ends every session whose principal's token was removed or
//! changed, at once, and closes its ports instead of letting them linger; a
//! session that authenticated with the old settings while they were being
//! swapped is caught by [`recheck`] once it is registered. Logs name the
//! client id, never a token.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::info;

use super::Shared;
use super::registry::Registry;
use super::session::Session;
use crate::auth::Key;
use crate::config::{Secret, ServerSettings};
use crate::handshake::{ControlProof, KeyLookup, Keyring};
use crate::protocol::{ErrorCode, Frame, SessionId};
use crate::transport::Transport;

/// Whose credentials a session proved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Principal {
    /// The shared `token` (or no authentication at all).
    Shared,
    /// A `clients` entry, by id.
    Client(String),
}

impl Principal {
    /// The id as a log line or a metric label shows it; `""` for the shared token.
    pub fn label(&self) -> &str {
        match self {
            Principal::Shared => "",
            Principal::Client(id) => id,
        }
    }

    /// The token this principal must prove under `settings` (`None`: no
    /// authentication, or the principal is gone).
    fn token<'s>(&self, settings: &'s ServerSettings) -> Option<&'s Secret> {
        match self {
            Principal::Shared => settings.token.as_ref(),
            Principal::Client(id) => settings.client(id).map(|c| &c.token),
        }
    }

    /// Whether `settings` still let this principal in with `token`.
    fn admits(&self, settings: &ServerSettings, token: Option<&Secret>) -> bool {
        match (self, token) {
            // An unauthenticated session stays only while authentication is off.
            (Principal::Shared, None) => !settings.authenticates(),
            (_, token) => token.is_some() && self.token(settings) == token,
        }
    }
}

/// What a session proved: its principal, the token and the key it proved
/// with (its data links prove the same key).
pub(crate) struct Credential {
    pub principal: Principal,
    /// Compared at a reload; a `Secret`, so never printed.
    token: Option<Secret>,
    key: Option<Key>,
    revoked: AtomicBool,
}

impl Credential {
    /// The credential `proof` established under `settings` (the settings its
    /// keyring answered from).
    pub fn of(proof: &ControlProof, settings: &ServerSettings) -> Credential {
        let principal = match &proof.id {
            Some(id) => Principal::Client(id.clone()),
            None => Principal::Shared,
        };
        let token = proof.key().and(principal.token(settings)).cloned();
        Credential {
            principal,
            token,
            key: proof.key().cloned(),
            revoked: AtomicBool::new(false),
        }
    }

    /// Why the session was ended from outside (see `Session::supersede`).
    pub fn kill_reason(&self) -> &'static str {
        if self.revoked.load(Ordering::Relaxed) {
            "its credentials were revoked"
        } else {
            "superseded by a new connection of the same client"
        }
    }
}

/// `who` in log lines: `laptop (192.0.2.1:41234)`, or the address alone for
/// the shared token.
pub(super) fn who<T: Transport>(session: &Session<T>) -> String {
    match &session.credential.principal {
        Principal::Shared => session.peer.to_string(),
        Principal::Client(id) => format!("{id} ({})", session.peer),
    }
}

/// What a principal may register, from the settings in force.
pub(super) struct Limits<'s> {
    pub allow_ports: &'s [RangeInclusive<u16>],
    pub max_services: usize,
}

impl Limits<'_> {
    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.iter().any(|range| range.contains(&port))
    }
}

/// `principal`'s limits under `settings`: a client's own, or the server's
/// for the shared token. A client no longer listed may register nothing
/// (its session is being revoked).
pub(super) fn limits<'s>(settings: &'s ServerSettings, principal: &Principal) -> Limits<'s> {
    match principal {
        Principal::Shared => Limits {
            allow_ports: &settings.allow_ports,
            max_services: settings.max_services_per_client,
        },
        Principal::Client(id) => match settings.client(id) {
            Some(c) => Limits {
                allow_ports: &c.allow_ports,
                max_services: c.max_services,
            },
            None => Limits {
                allow_ports: &[],
                max_services: 0,
            },
        },
    }
}

/// The keyring of one handshake: control-link keys from `settings` (one
/// snapshot, so the key and the credential agree), data-link keys from the
/// live sessions.
pub(super) struct ServerKeys<'a, T: Transport> {
    pub settings: &'a ServerSettings,
    pub registry: &'a Registry<T>,
}

impl<T: Transport> Keyring for ServerKeys<'_, T> {
    fn control(&self, id: Option<&str>) -> KeyLookup {
        if !self.settings.authenticates() {
            return KeyLookup::Open;
        }
        let token = match id {
            None => self.settings.token.as_ref(),
            Some(id) => self.settings.client(id).map(|c| &c.token),
        };
        token.map_or(KeyLookup::Unknown, |t| KeyLookup::Key(Key::new(t.expose())))
    }

    fn session(&self, session: &SessionId) -> KeyLookup {
        match self.registry.session(session) {
            Some(s) => s
                .credential
                .key
                .clone()
                .map_or(KeyLookup::Open, KeyLookup::Key),
            None => KeyLookup::Unknown,
        }
    }
}

/// Ends `session` for good: closes its ports (returning once they are
/// closed, so a visitor after this is refused), tells its client why (an
/// `AuthFailed` error, which a client takes as final) and ends it.
async fn revoke<T: Transport>(registry: &Arc<Registry<T>>, session: &Session<T>) -> Vec<u16> {
    session.credential.revoked.store(true, Ordering::Relaxed);
    let ports = registry.release_all(session).await;
    let _ = session.control.try_send(Frame::Error {
        code: ErrorCode::AuthFailed,
        message: "authentication failed: this client's credentials were revoked".to_owned(),
    });
    registry.end_session(session, true, Duration::ZERO);
    session.supersede();
    ports
}

/// After a reload put `new` in force: ends every live session whose
/// principal `new` no longer admits with the token it proved (removed,
/// changed, or a shared token added or dropped), and releases its ports at
/// once. The reload logs what changed in the config; this logs, per
/// principal, the sessions it ended and the ports it released.
pub(crate) async fn revoke_changed<T: Transport>(shared: &Shared<T>, new: &ServerSettings) {
    let mut ended: BTreeMap<Principal, (usize, Vec<u16>)> = BTreeMap::new();
    for session in shared.registry.sessions() {
        let credential = &session.credential;
        if credential.principal.admits(new, credential.token.as_ref()) {
            continue;
        }
        let ports = revoke(&shared.registry, &session).await;
        let entry = ended.entry(credential.principal.clone()).or_default();
        entry.0 += 1;
        entry.1.extend(ports);
    }
    for (principal, (sessions, ports)) in ended {
        let whom = match &principal {
            Principal::Shared => "the shared token".to_owned(),
            Principal::Client(id) => format!("client {id}"),
        };
        info!("{whom} revoked: {sessions} session(s) ended, ports {ports:?} released");
    }
}

/// Revokes `session` if the settings in force no longer admit it: closes
/// the window where a reload's [`revoke_changed`] ran between this
/// session's handshake (with the old settings) and its registration.
pub(super) async fn recheck<T: Transport>(shared: &Shared<T>, session: &Session<T>) {
    let credential = &session.credential;
    let admitted = credential
        .principal
        .admits(&shared.settings(), credential.token.as_ref());
    if !admitted {
        revoke(&shared.registry, session).await;
    }
}
