//! What the client counts, what it knows of its session, and what its admin
//! endpoint reports ([`Probe`]).
//!
//! Counters are per worker ([`crate::metrics`]): data links dialled and failed,
//! reconnects, and per configured service its visitors, bytes and failed
//! local connects. The session's state (control link up, each service's
//! public address or refusal) follows the [`Event`]s the client emits, so
//! health, status and the events observers see cannot disagree.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::context::{Context, Event};
use crate::admin::status::ServiceStatus;
use crate::admin::{Health, Probe, Status};
use crate::metrics::{ByLabel, Exposition, Family, Kind, Sharded, Traffic, TrafficTotals};
use crate::tasks::lock;
use crate::transport::Transport;

/// Indexes of the client-wide counters.
const RECONNECTS: usize = 0;
const DIALED: usize = 1;
const DIAL_FAILED: usize = 2;

/// A configured service's counters.
#[derive(Debug, Default)]
pub(super) struct ServiceCounters {
    /// Visitors the server started here, and their bytes with the local
    /// service ("received": read from it).
    pub traffic: Sharded<Traffic>,
    local_failures: Sharded<ByLabel<1>>,
}

impl ServiceCounters {
    pub fn local_failed(&self) {
        self.local_failures.bump(0);
    }
}

/// A service's counters as one scrape reads them.
struct ServiceRow {
    traffic: TrafficTotals,
    local_failures: u64,
}

/// The client's counters, by configured service in config order.
/// The services' counters: a reload swaps the list, and a visitor keeps its
/// service's counters while it lives.
type ServiceList = Vec<(String, Arc<ServiceCounters>)>;

#[derive(Debug)]
pub(super) struct Counters {
    links: Sharded<ByLabel<3>>,
    services: ArcSwap<ServiceList>,
}

impl Counters {
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        Counters {
            links: Sharded::new(),
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

    /// One data link (pooled or multiplexed) dialled; `ok` if it authenticated.
    pub fn dialed(&self, ok: bool) {
        self.links.bump(DIALED);
        if !ok {
            self.links.bump(DIAL_FAILED);
        }
    }
}

/// Where a configured service stands with the server.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Registration {
    Pending,
    Public(String),
    Refused(String),
}

/// The session as the client's events tell it.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Since when the control link is up and authenticated.
    connected: Option<Instant>,
    ever_connected: bool,
    /// Why the last session ended (for health while reconnecting).
    last_loss: Option<String>,
    services: HashMap<String, Registration>,
}

impl<T: Transport> Context<T> {
    /// Follows an event into the session state (see the module docs).
    pub(super) fn track(&self, event: &Event) {
        let mut st = lock(&self.state);
        match event {
            Event::Connected => {
                if st.ever_connected {
                    self.counters.links.bump(RECONNECTS);
                }
                st.ever_connected = true;
                st.connected = Some(Instant::now());
                st.services.clear();
            }
            Event::Registered { name, public, .. } => {
                st.services
                    .insert(name.clone(), Registration::Public(public.clone()));
            }
            Event::Refused { name, message } => {
                st.services
                    .insert(name.clone(), Registration::Refused(message.clone()));
            }
            Event::Unregistered { name } => {
                st.services.remove(name);
            }
            Event::Disconnected { reason } => {
                st.connected = None;
                st.last_loss = Some(reason.clone());
                st.services.clear();
            }
        }
    }

    fn registration(&self, st: &State, name: &str) -> Registration {
        st.services
            .get(name)
            .cloned()
            .unwrap_or(Registration::Pending)
    }
}

impl<T: Transport> Probe for Context<T> {
    fn metrics(&self, out: &mut Exposition) {
        crate::reload::write_metrics(out);
        let (up, registered) = {
            let st = lock(&self.state);
            let registered = st
                .services
                .values()
                .filter(|r| matches!(r, Registration::Public(_)))
                .count();
            (st.connected.is_some(), registered)
        };
        let c = &self.counters;
        out.single(
            "porthole_client_connected",
            Kind::Gauge,
            "1 while the control link to the server is up and authenticated.",
            u8::from(up),
        );
        out.single(
            "porthole_client_reconnects_total",
            Kind::Counter,
            "Control links established again after one was lost.",
            c.links.get(RECONNECTS),
        );
        out.single(
            "porthole_client_data_links_dialed_total",
            Kind::Counter,
            "Data links (pooled and multiplexed) dialled to the server.",
            c.links.get(DIALED),
        );
        out.single(
            "porthole_client_data_link_failures_total",
            Kind::Counter,
            "Data links that failed to connect or authenticate.",
            c.links.get(DIAL_FAILED),
        );
        out.single(
            "porthole_client_services_registered",
            Kind::Gauge,
            "Services the server accepted in this session.",
            registered,
        );
        let families: [Family<ServiceRow>; 5] = [
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
        // Each service's slots summed once, then read by every family.
        let services = c.services.load();
        let totals: Vec<(&str, ServiceRow)> = services
            .iter()
            .map(|(name, s)| {
                let row = ServiceRow {
                    traffic: s.traffic.totals(),
                    local_failures: s.local_failures.get(0),
                };
                (name.as_str(), row)
            })
            .collect();
        let rows: Vec<(&str, &ServiceRow)> = totals.iter().map(|(n, r)| (*n, r)).collect();
        out.by_label("service", &families, &rows);
        if let Some(proxy) = &self.builtin_proxy {
            proxy.stats().write_metrics(out);
        }
    }

    fn health(&self) -> Health {
        let st = lock(&self.state);
        let server = &self.settings.server;
        if st.connected.is_none() {
            let why = st
                .last_loss
                .as_deref()
                .map_or(String::new(), |e| format!(": {e}"));
            return Health::Unavailable(format!("not connected to {server}{why}"));
        }
        for s in &self.live().services {
            match self.registration(&st, &s.name) {
                Registration::Public(_) => {}
                Registration::Pending => {
                    return Health::Unavailable(format!(
                        "service {} is not registered yet",
                        s.name
                    ));
                }
                Registration::Refused(why) => {
                    return Health::Unavailable(format!(
                        "service {} refused by the server: {why}",
                        s.name
                    ));
                }
            }
        }
        Health::Serving
    }

    fn status(&self) -> Status {
        let problem = match self.health() {
            Health::Serving => None,
            Health::Unavailable(why) => Some(why),
        };
        let mut status = Status::new("client", problem);
        status.upstream = Some(self.settings.server.clone());
        let st = lock(&self.state);
        status.services = self
            .live()
            .services
            .iter()
            .map(|s| {
                let (state, public) = match self.registration(&st, &s.name) {
                    Registration::Pending => ("registering".to_owned(), None),
                    Registration::Public(p) => ("serving".to_owned(), Some(p)),
                    Registration::Refused(why) => (format!("refused: {why}"), None),
                };
                ServiceStatus {
                    name: s.name.clone(),
                    state,
                    public,
                    local: Some(s.local.clone()),
                    client: None,
                    visitors: self
                        .counters
                        .service(&s.name)
                        .map(|c| c.traffic.totals())
                        .unwrap_or_default(),
                }
            })
            .collect();
        status
    }
}
