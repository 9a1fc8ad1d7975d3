//! What the client keeps for its whole life, across reconnects: settings,
//! transport, key, client id, the folded failure log and the event channel.

use smol::channel::Sender;
use std::sync::{Arc, Mutex};

use super::live::{Control, Credentials, Live};
use super::metrics::{Counters, State};
use arc_swap::ArcSwap;

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
    /// The server closed a service's port as asked (a reload removed or
    /// moved it).
    Unregistered { name: String },
    /// The control link ended; the client will reconnect.
    Disconnected { reason: String },
}

/// What every connection attempt shares.
pub(super) struct Context<T: Transport> {
    /// As started: what a reload changes is in `live`.
    pub settings: ClientSettings,
    /// The services and drain timeout in force (see [`super::live`]).
    pub(super) live: ArcSwap<Live>,
    /// The session that is up, for a reload to reach the server.
    pub(super) control: smol::lock::Mutex<Option<Control>>,
    /// Where the built-in HTTP proxy listens, when a service uses it.
    pub(super) builtin_proxy_local: Option<String>,
    pub transport: T,
    /// What the session that is up (or last was) authenticated with: its
    /// data links prove the same.
    pub(super) session_credentials: ArcSwap<Credentials>,
    /// When a reload last changed the credentials.
    pub(super) rotated_at: Mutex<Option<std::time::Instant>>,
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
        builtin: Option<(Arc<crate::http_proxy::Proxy>, String)>,
    ) -> Arc<Self> {
        let counters = Counters::new(settings.services.iter().map(|s| s.name.as_str()));
        let (builtin_proxy, builtin_proxy_local) = builtin.unzip();
        let live = Live::of(&settings);
        Arc::new(Context {
            session_credentials: ArcSwap::new(live.credentials.clone()),
            rotated_at: Mutex::new(None),
            live: ArcSwap::from_pointee(live),
            control: smol::lock::Mutex::new(None),
            builtin_proxy_local,
            counters,
            state: Mutex::new(State::default()),
            builtin_proxy,
            settings,
            transport,
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

    /// The services and drain timeout in force.
    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// The local address of `service`, if the client has such a service now.
    pub fn local_of(&self, service: &str) -> Option<String> {
        self.live().service(service).map(|s| s.local.clone())
    }
}
