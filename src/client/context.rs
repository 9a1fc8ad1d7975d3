//! What the client keeps for its whole life, across reconnects and for
//! every server: settings, the services in force, client id, the service
//! counters, the event channel, and one [`Upstream`] per server.

use smol::channel::Sender;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::live::Live;
use super::metrics::Counters;
use super::upstream::Upstream;
use arc_swap::ArcSwap;

use crate::config::ClientSettings;
use crate::protocol::ClientId;
use crate::transport::Transport;

/// What happened, for callers that want to know (the demo, tests, the CLI).
/// Each names the `server` (as configured) it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The control link is up and authenticated.
    Connected { server: String },
    /// A service is reachable at `public` (`server-host:port`).
    Registered {
        server: String,
        name: String,
        port: u16,
        public: String,
    },
    /// The server refused a service; the others are unaffected.
    Refused {
        server: String,
        name: String,
        message: String,
    },
    /// The server closed a service's port as asked (a reload removed or
    /// moved it).
    Unregistered { server: String, name: String },
    /// The control link ended; the client will reconnect.
    Disconnected { server: String, reason: String },
    /// The server refused what only the operator can fix (credentials,
    /// version, TLS, every service): the client stops trying it. The other
    /// servers are unaffected; the client ends once every server gave up.
    GaveUp { server: String, reason: String },
}

impl Event {
    /// The server the event is about.
    pub fn server(&self) -> &str {
        match self {
            Event::Connected { server }
            | Event::Registered { server, .. }
            | Event::Refused { server, .. }
            | Event::Unregistered { server, .. }
            | Event::Disconnected { server, .. }
            | Event::GaveUp { server, .. } => server,
        }
    }
}

/// What every session with every server shares.
pub(super) struct Context<T: Transport> {
    /// As started: what a reload changes is in `live`.
    pub settings: ClientSettings,
    /// The services, drain timeout and credentials in force (see
    /// [`super::live`]).
    pub(super) live: ArcSwap<Live>,
    /// One per configured server, in config order.
    pub(super) upstreams: Vec<Arc<Upstream<T>>>,
    /// Where the built-in HTTP proxy listens, when a service uses it.
    pub(super) builtin_proxy_local: Option<String>,
    /// When a reload last changed the credentials.
    pub(super) rotated_at: Mutex<Option<std::time::Instant>>,
    pub client_id: ClientId,
    events: Option<Sender<Event>>,
    /// The services' counters, over every server (see [`super::metrics`]).
    pub counters: Counters,
    /// Set by the first session that drains at shutdown: the client says
    /// once how many visitors are in flight, not once per server.
    pub(super) drain_announced: AtomicBool,
    /// The built-in HTTP proxy, when a service uses it (its counters are
    /// reported with the client's).
    pub builtin_proxy: Option<Arc<crate::http_proxy::Proxy>>,
}

impl<T: Transport> Context<T> {
    /// A context for `servers`: each configured address with the transport
    /// that dials it.
    pub fn new(
        settings: ClientSettings,
        servers: Vec<(String, T)>,
        client_id: ClientId,
        events: Option<Sender<Event>>,
        builtin: Option<(Arc<crate::http_proxy::Proxy>, String)>,
    ) -> Arc<Self> {
        let counters = Counters::new(settings.services.iter().map(|s| s.name.as_str()));
        let (builtin_proxy, builtin_proxy_local) = builtin.unzip();
        let live = Live::of(&settings);
        let upstreams = servers
            .into_iter()
            .map(|(address, transport)| {
                let credentials = live.credentials.clone();
                Arc::new(Upstream::new(address, transport, credentials))
            })
            .collect();
        Arc::new(Context {
            rotated_at: Mutex::new(None),
            live: ArcSwap::from_pointee(live),
            upstreams,
            builtin_proxy_local,
            counters,
            drain_announced: AtomicBool::new(false),
            builtin_proxy,
            settings,
            client_id,
            events,
        })
    }

    /// Follows `event` into `server`'s state, then tells the observer.
    pub fn emit(&self, server: &Upstream<T>, event: Event) {
        server.track(&event);
        if let Some(events) = &self.events {
            // Observers are optional; one that stopped listening is ignored.
            let _ = events.try_send(event);
        }
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
