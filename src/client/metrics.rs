//! What the client counts, what it knows of its sessions, and the metrics its
//! admin endpoint reports ([`Probe::metrics`]; health and status are in
//! `status.rs`).
//!
//! Counters are per worker ([`crate::metrics`]): per server its data links
//! dialled and failed and its reconnects; per configured service its
//! visitors, bytes and failed local connects, over every server. Each
//! server's session state (control link up, each service's public address
//! or refusal) follows the [`Event`]s the client emits about it, so health,
//! status and the events observers see cannot disagree.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::context::{Context, Event};
use super::upstream::Upstream;
use crate::admin::Probe;
use crate::metrics::{ByLabel, Exposition, Family, Kind, Sharded, Traffic, TrafficTotals};
use crate::tasks::lock;
use crate::transport::Transport;

/// Indexes of a server's link counters.
const RECONNECTS: usize = 0;
const DIALED: usize = 1;
const DIAL_FAILED: usize = 2;

/// A configured service's counters.
#[derive(Debug, Default)]
pub(super) struct ServiceCounters {
    /// Visitors the server started here, and their bytes with the local
    /// service ("received": read from it).
    pub traffic: Sharded<Traffic>,
    /// Failed local connects, then UDP datagrams dropped toward the
    /// service and toward the server.
    events: Sharded<ByLabel<3>>,
}

const LOCAL_FAILED: usize = 0;
const DROPPED_TO_SERVICE: usize = 1;
const DROPPED_TO_SERVER: usize = 2;

/// Where a UDP datagram was dropped (a queue or socket was full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropped {
    /// From the server, toward the local service.
    ToService,
    /// From the local service, toward the server's data link.
    ToServer,
}

impl ServiceCounters {
    pub fn local_failed(&self) {
        self.events.bump(LOCAL_FAILED);
    }

    pub fn dropped(&self, direction: Dropped) {
        self.events.bump(match direction {
            Dropped::ToService => DROPPED_TO_SERVICE,
            Dropped::ToServer => DROPPED_TO_SERVER,
        });
    }
}

/// A service's counters as one scrape reads them.
struct ServiceRow {
    traffic: TrafficTotals,
    local_failures: u64,
    dropped: [u64; 2],
}

/// The services' counters: a reload swaps the list, and a visitor keeps its
/// service's counters while it lives.
type ServiceList = Vec<(String, Arc<ServiceCounters>)>;

/// The client's counters by configured service, in config order.
#[derive(Debug)]
pub(super) struct Counters {
    services: ArcSwap<ServiceList>,
}

impl Counters {
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        Counters {
            services: ArcSwap::from_pointee(
                names.map(|n| (n.to_owned(), Arc::default())).collect(),
            ),
        }
    }

    /// A service's counters (a handful of services: a scan is cheapest).
    pub fn service(&self, name: &str) -> Option<Arc<ServiceCounters>> {
        self.services
            .load()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
    }

    /// Visitors connected now, over every service.
    pub fn active(&self) -> u64 {
        let services = self.services.load();
        services
            .iter()
            .map(|(_, c)| c.traffic.totals().active)
            .sum()
    }

    /// After a reload: counters for exactly these services, in this order;
    /// a service kept keeps its counts.
    pub fn keep_services<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let old = self.services.load();
        let list: ServiceList = names
            .map(|n| {
                let kept = old.iter().find(|(o, _)| o == n).map(|(_, c)| c.clone());
                (n.to_owned(), kept.unwrap_or_default())
            })
            .collect();
        self.services.store(Arc::new(list));
    }
}

/// One server's link counters: reconnects, data links dialled and failed.
#[derive(Debug, Default)]
pub(super) struct LinkCounters(Sharded<ByLabel<3>>);

impl LinkCounters {
    /// One data link (pooled or multiplexed) dialled; `ok` if it authenticated.
    pub fn dialed(&self, ok: bool) {
        self.0.bump(DIALED);
        if !ok {
            self.0.bump(DIAL_FAILED);
        }
    }
}

/// Where a configured service stands with one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Registration {
    Pending,
    Public(String),
    Refused(String),
}

/// One server's session as the client's events tell it.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Since when the control link is up and authenticated.
    pub connected: Option<Instant>,
    /// The session id's first 8 hex digits, while connected.
    pub session: Option<String>,
    ever_connected: bool,
    /// Why the last session ended (for health while reconnecting).
    pub last_loss: Option<String>,
    /// Why the client gave up on this server, once it has.
    pub gave_up: Option<String>,
    services: HashMap<String, Registration>,
}

impl State {
    pub fn registration(&self, name: &str) -> Registration {
        self.services
            .get(name)
            .cloned()
            .unwrap_or(Registration::Pending)
    }

    /// The services this server accepted, in no particular order.
    pub fn public(&self) -> impl Iterator<Item = &str> {
        self.services
            .iter()
            .filter(|(_, r)| matches!(r, Registration::Public(_)))
            .map(|(name, _)| name.as_str())
    }
}

impl<T: Transport> Upstream<T> {
    /// Follows an event about this server into its state (see the module
    /// docs).
    pub(super) fn track(&self, event: &Event) {
        let mut st = lock(&self.state);
        match event {
            Event::Connected { .. } => {
                if st.ever_connected {
                    self.links.0.bump(RECONNECTS);
                }
                st.ever_connected = true;
                st.connected = Some(Instant::now());
                st.services.clear();
            }
            Event::Registered { name, public, .. } => {
                st.services
                    .insert(name.clone(), Registration::Public(public.clone()));
            }
            Event::Refused { name, message, .. } => {
                st.services
                    .insert(name.clone(), Registration::Refused(message.clone()));
            }
            Event::Unregistered { name, .. } => {
                st.services.remove(name);
            }
            Event::Disconnected { reason, .. } => {
                (st.connected, st.session) = (None, None);
                st.last_loss = Some(reason.clone());
                st.services.clear();
            }
            Event::GaveUp { reason, .. } => {
                (st.connected, st.session) = (None, None);
                st.gave_up = Some(reason.clone());
                st.services.clear();
            }
        }
    }

    /// The session that is up has this id (shown by status, as logged).
    pub(super) fn session_up(&self, id: &[u8]) {
        lock(&self.state).session = Some(crate::wire::short_id(id));
    }
}

/// A server's gauges and counters as one scrape reads them.
struct ServerRow {
    connected: u64,
    registered: u64,
    reconnects: u64,
    dialed: u64,
    dial_failed: u64,
}

impl<T: Transport> Upstream<T> {
    fn row(&self) -> ServerRow {
        let st = lock(&self.state);
        let links = &self.links.0;
        ServerRow {
            connected: u64::from(st.connected.is_some()),
            registered: st.public().count() as u64,
            reconnects: links.get(RECONNECTS),
            dialed: links.get(DIALED),
            dial_failed: links.get(DIAL_FAILED),
        }
    }
}

/// The families with a `server` label: one series per configured server
/// (at most `MAX_SERVERS`, so the label stays small).
const SERVER_FAMILIES: [Family<ServerRow>; 5] = [
    (
        "porthole_client_connected",
        Kind::Gauge,
        "1 while the control link to the server is up and authenticated.",
        |s| s.connected,
    ),
    (
        "porthole_client_reconnects_total",
        Kind::Counter,
        "Control links established again after one was lost.",
        |s| s.reconnects,
    ),
    (
        "porthole_client_data_links_dialed_total",
        Kind::Counter,
        "Data links (pooled and multiplexed) dialled to the server.",
        |s| s.dialed,
    ),
    (
        "porthole_client_data_link_failures_total",
        Kind::Counter,
        "Data links that failed to connect or authenticate.",
        |s| s.dial_failed,
    ),
    (
        "porthole_client_services_registered",
        Kind::Gauge,
        "Services the server accepted in this session.",
        |s| s.registered,
    ),
];

/// The families with a `service` label, over every server.
const SERVICE_FAMILIES: [Family<ServiceRow>; 5] = [
    (
        "porthole_client_visitors_total",
        Kind::Counter,
        "Visitors the server started for the service.",
        |s| s.traffic.total,
    ),
    (
        "porthole_client_visitors_active",
        Kind::Gauge,
        "Visitors connected now.",
        |s| s.traffic.active,
    ),
    (
        "porthole_client_local_connect_failures_total",
        Kind::Counter,
        "Visitors closed because the local service could not be reached.",
        |s| s.local_failures,
    ),
    (
        "porthole_client_received_bytes_total",
        Kind::Counter,
        "Bytes received from the local service.",
        |s| s.traffic.received_bytes,
    ),
    (
        "porthole_client_sent_bytes_total",
        Kind::Counter,
        "Bytes sent to the local service.",
        |s| s.traffic.sent_bytes,
    ),
];

/// `porthole_client_udp_dropped_total`, by service and direction.
fn write_dropped(out: &mut Exposition, rows: &[(&str, &ServiceRow)]) {
    let name = "porthole_client_udp_dropped_total";
    let help = "UDP datagrams dropped because a flow's queue or socket was full.";
    out.family(name, Kind::Counter, help);
    for (service, row) in rows {
        for (direction, n) in ["to_service", "to_server"].into_iter().zip(row.dropped) {
            out.sample(name, &[("service", service), ("direction", direction)], n);
        }
    }
}

impl<T: Transport> Probe for Context<T> {
    fn metrics(&self, out: &mut Exposition) {
        crate::reload::write_metrics(out);
        let servers: Vec<(&str, ServerRow)> = self
            .upstreams
            .iter()
            .map(|u| (u.address.as_str(), u.row()))
            .collect();
        let rows: Vec<(&str, &ServerRow)> = servers.iter().map(|(n, r)| (*n, r)).collect();
        out.by_label("server", &SERVER_FAMILIES, &rows);
        // Each service's slots summed once, then read by every family.
        let services = self.counters.services.load();
        let totals: Vec<(&str, ServiceRow)> = services
            .iter()
            .map(|(name, s)| {
                let row = ServiceRow {
                    traffic: s.traffic.totals(),
                    local_failures: s.events.get(LOCAL_FAILED),
                    dropped: [
                        s.events.get(DROPPED_TO_SERVICE),
                        s.events.get(DROPPED_TO_SERVER),
                    ],
                };
                (name.as_str(), row)
            })
            .collect();
        let rows: Vec<(&str, &ServiceRow)> = totals.iter().map(|(n, r)| (*n, r)).collect();
        out.by_label("service", &SERVICE_FAMILIES, &rows);
        write_dropped(out, &rows);
        if let Some(proxy) = &self.builtin_proxy {
            proxy.stats().write_metrics(out);
        }
    }

    fn health(&self) -> crate::admin::Health {
        super::status::health(self)
    }

    fn status(&self) -> crate::admin::Status {
        super::status::status(self)
    }
}
