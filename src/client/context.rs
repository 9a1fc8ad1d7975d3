//! What the client keeps for its whole life, across reconnects: settings,
//! transport, key, client id, the folded failure log and the event channel.

use smol::channel::Sender;
use std::sync::{Arc, Mutex};

use super::metrics::{Counters, State};

use crate::auth::Key;
use crate::config::ClientSettings;
use crate::logfold::Fold;
use crate::protocol::ClientId;
use crate::transport::Transport;

/// What happened, for callers that want to know (the demo, tests, the CLI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The control link is up and authenticated.
    Connected,
    /// A service is reachable at `public` (`server-host:port`).
    Registered {
        name: String,
        port: u16,
        public: String,
    },
    /// The server refused a service; the others are unaffected.
    Refused { name: String, message: String },
    /// The control link ended; the client will reconnect.
    Disconnected { reason: String },
}

/// What every connection attempt shares.
pub(super) struct Context<T: Transport> {
    pub settings: ClientSettings,
    pub transport: T,
    pub key: Key,
    pub client_id: ClientId,
    /// Failed reconnects and data-link dials, folded: a long outage is a few
    /// lines, not one per attempt.
    pub log: Arc<Fold>,
    events: Option<Sender<Event>>,
    /// What the admin endpoint reports (see [`super::metrics`]).
    pub counters: Counters,
    pub(super) state: Mutex<State>,
    /// The built-in HTTP proxy, when a service uses it (its counters are
    /// reported with the client's).
    pub builtin_proxy: Option<Arc<crate::http_proxy::Proxy>>,
}

impl<T: Transport> Context<T> {
    pub fn new(
        settings: ClientSettings,
        transport: T,
        client_id: ClientId,
        events: Option<Sender<Event>>,
        builtin_proxy: Option<Arc<crate::http_proxy::Proxy>>,
    ) -> Arc<Self> {
        let key = Key::new(settings.token.expose());
        let counters = Counters::new(settings.services.iter().map(|s| s.name.as_str()));
        Arc::new(Context {
            counters,
            state: Mutex::new(State::default()),
            builtin_proxy,
            settings,
            transport,
            key,
            client_id,
            log: Arc::new(Fold::new("failures")),
            events,
        })
    }

    pub fn emit(&self, event: Event) {
        self.track(&event);
        if let Some(events) = &self.events {
            // Observers are optional; one that stopped listening is ignored.
            let _ = events.try_send(event);
        }
    }

    /// The host part of the server address, for printing public addresses.
    pub fn server_host(&self) -> &str {
        let server = &self.settings.server;
        server
            .rsplit_once(':')
            .map_or(server.as_str(), |(host, _)| host)
    }

    /// The local address of `service`, if the client has such a service.
    pub fn local_of(&self, service: &str) -> Option<&str> {
        let services = &self.settings.services;
        let found = services.iter().find(|s| s.name == service);
        found.map(|s| s.local.as_str())
    }
}
