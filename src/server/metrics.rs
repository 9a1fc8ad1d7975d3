//! What the server counts, and what its admin endpoint reports ([`Probe`]).
//!
//! Counted on the path (per worker, see [`crate::metrics`]): handshakes by
//! result, refusals by reason, the wait for a data link, and each service's
//! visitors and bytes (a [`Traffic`] block on its registry entry, so it
//! survives a client's reconnect within `reconnect_grace`). Read at scrape time
//! from the server's own state: clients, services, idle and multiplexed links.
//! Labels are bounded: a result or a reason from a closed list, a service name
//! (services are capped by `MAX_PUBLIC_PORTS`), a client id from the config's
//! `clients` (capped by `MAX_CLIENTS`; `""` is the shared token); never an
//! address, a session or a token.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Shared;
use super::refusal::Refusal;
use crate::admin::status::{ClientStatus, ServiceStatus};
use crate::admin::{Health, Probe, Status};
use crate::handshake::HandshakeError;
use crate::metrics::{ByLabel, Exposition, Family, Histogram, Kind, Sharded, TrafficTotals};
use crate::transport::Transport;

/// How a connection's handshake ended, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    Ok,
    BadToken,
    Timeout,
    Malformed,
    Version,
    Tls,
    /// The peer went away (EOF, reset) before the end.
    Closed,
    /// Authenticated, then refused by a limit or an unknown session (the
    /// reason is in `porthole_server_refusals_total`).
    Refused,
}

const HANDSHAKE_LABELS: [&str; 8] = [
    "ok",
    "bad_token",
    "timeout",
    "malformed",
    "version",
    "tls",
    "closed",
    "refused",
];

impl Handshake {
    pub fn of(e: &HandshakeError) -> Handshake {
        match e {
            HandshakeError::BadProof => Handshake::BadToken,
            HandshakeError::Timeout(_) => Handshake::Timeout,
            HandshakeError::Version { .. } => Handshake::Version,
            HandshakeError::Transport(_) | HandshakeError::ClientSpeaksTls => Handshake::Tls,
            HandshakeError::Closed | HandshakeError::Io(_) => Handshake::Closed,
            HandshakeError::UnknownSession | HandshakeError::SessionLimit => Handshake::Refused,
            _ => Handshake::Malformed,
        }
    }
}

/// Why the server turned something away, as the `reason` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    PortNotAllowed,
    PortInUse,
    NoFreePort,
    TooManyServices,
    TooManyPorts,
    BadService,
    BindFailed,
    /// A visitor past `max_visitors_per_client`.
    VisitorLimit,
    /// A visitor that no data link took in `visitor_timeout`.
    NoDataLink,
    /// A visitor of a lingering port (its client is gone).
    NoClient,
    SessionLimit,
    /// A data link naming a session the server does not have.
    UnknownSession,
    /// A pending connection shed to make room (see `admission`).
    Shed,
    /// A connection from an `accept_proxy_protocol` source without a valid
    /// PROXY header in time.
    ProxyHeader,
    /// A datagram from a new source past a UDP service's `max_udp_flows`.
    UdpFlowLimit,
}

const REASON_LABELS: [&str; 15] = [
    "port_not_allowed",
    "port_in_use",
    "no_free_port",
    "too_many_services",
    "too_many_ports",
    "bad_service",
    "bind_failed",
    "visitor_limit",
    "no_data_link",
    "no_client",
    "session_limit",
    "unknown_session",
    "shed",
    "proxy_header",
    "udp_flow_limit",
];

/// Where a UDP datagram was dropped (its queue or socket was full), as the
/// `direction` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// From a visitor, toward the client's data link.
    ToClient,
    /// From the client, toward the visitor (the public socket was full).
    ToVisitor,
}

const DROPPED_LABELS: [&str; 2] = ["to_client", "to_visitor"];

impl Reason {
    pub fn of(refusal: &Refusal) -> Reason {
        match refusal {
            Refusal::BadName { .. } | Refusal::AlreadyRegistered { .. } => Reason::BadService,
            Refusal::TooManyServices { .. } => Reason::TooManyServices,
            Refusal::TooManyPorts { .. } => Reason::TooManyPorts,
            Refusal::PortNotAllowed { .. } => Reason::PortNotAllowed,
            Refusal::PortInUse { .. } => Reason::PortInUse,
            Refusal::NoFreePort => Reason::NoFreePort,
            Refusal::Bind(_) => Reason::BindFailed,
        }
    }
}

/// The server's counters (per service ones live on the services).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    handshakes: Sharded<ByLabel<8>>,
    refusals: Sharded<ByLabel<{ REASON_LABELS.len() }>>,
    /// From a visitor's accept until a data link (or stream) took it.
    pub link_wait: Sharded<Histogram>,
    udp_dropped: Sharded<ByLabel<{ DROPPED_LABELS.len() }>>,
}

impl Counters {
    pub fn handshake(&self, result: Handshake) {
        self.handshakes.bump(result as usize);
    }

    pub fn refused(&self, reason: Reason) {
        self.refusals.bump(reason as usize);
    }

    pub fn dropped(&self, direction: Dropped) {
        self.udp_dropped.bump(direction as usize);
    }

    fn write(&self, out: &mut Exposition) {
        let handshakes = (
            "porthole_server_handshakes_total",
            Kind::Counter,
            "Connections to the control port, by how their handshake ended.",
        );
        out.indexed(handshakes, "result", &HANDSHAKE_LABELS, |i| {
            self.handshakes.get(i)
        });
        let refusals = (
            "porthole_server_refusals_total",
            Kind::Counter,
            "Registrations, visitors and connections refused, by reason.",
        );
        out.indexed(refusals, "reason", &REASON_LABELS, |i| self.refusals.get(i));
        let dropped = (
            "porthole_server_udp_dropped_total",
            Kind::Counter,
            "UDP datagrams dropped because a flow's queue or the public socket was full.",
        );
        out.indexed(dropped, "direction", &DROPPED_LABELS, |i| {
            self.udp_dropped.get(i)
        });
        let name = "porthole_server_link_wait_seconds";
        out.family(
            name,
            Kind::Histogram,
            "How long a visitor waited for a data link.",
        );
        out.histogram(name, &[], &self.link_wait.totals());
    }
}

/// A service's row, before rows of one name are summed.
struct ServiceRow {
    name: String,
    serving: bool,
    totals: TrafficTotals,
}

impl<T: Transport> Shared<T> {
    fn service_rows(&self) -> Vec<ServiceRow> {
        self.registry
            .services()
            .iter()
            .map(|s| ServiceRow {
                name: s.name(),
                serving: s.owner().is_some(),
                totals: s.traffic.totals(),
            })
            .collect()
    }
}

impl<T: Transport> Probe for Shared<T> {
    fn metrics(&self, out: &mut Exposition) {
        crate::reload::write_metrics(out);
        let sessions = self.registry.sessions();
        out.single(
            "porthole_server_clients",
            Kind::Gauge,
            "Clients connected (live control links).",
            sessions.len(),
        );
        write_client_sessions(out, &self.settings(), &sessions);
        let rows = self.service_rows();
        let serving = rows.iter().filter(|r| r.serving).count();
        let name = "porthole_server_services";
        out.family(name, Kind::Gauge, "Public ports open, by state (lingering: its client is gone, kept for reconnect_grace).");
        out.sample(name, &[("state", "serving")], serving);
        out.sample(name, &[("state", "lingering")], rows.len() - serving);
        write_services(out, &rows);
        self.counters.write(out);
        let idle: usize = sessions.iter().map(|s| s.pool.idle_len()).sum();
        let (links, streams) = sessions
            .iter()
            .map(|s| s.muxes.counts())
            .fold((0, 0), |(l, s), (l2, s2)| (l + l2, s + s2));
        out.single(
            "porthole_server_idle_links",
            Kind::Gauge,
            "Pooled data links idle, ready for a visitor.",
            idle,
        );
        out.single(
            "porthole_server_mux_links",
            Kind::Gauge,
            "Multiplexed data links open.",
            links,
        );
        out.single(
            "porthole_server_mux_streams",
            Kind::Gauge,
            "Streams open on multiplexed data links.",
            streams,
        );
    }

    fn health(&self) -> Health {
        if self.shutdown.is_fired() {
            return Health::Unavailable("draining: stopping".to_owned());
        }
        Health::Serving
    }

    fn status(&self) -> Status {
        let problem = match self.health() {
            Health::Serving => None,
            Health::Unavailable(why) => Some(why),
        };
        let mut status = Status::new("server", problem);
        status.listen = Some(self.bound.to_string());
        let now = Instant::now();
        status.clients = self
            .registry
            .sessions()
            .iter()
            .map(|s| ClientStatus {
                session: crate::wire::short_id(&s.id),
                id: Some(s.credential.principal.label().to_owned()).filter(|id| !id.is_empty()),
                address: s.peer.to_string(),
                connected_seconds: now.duration_since(s.connected).as_secs(),
                transport: self.transport.name().to_owned(),
                services: s.service_names(),
            })
            .collect();
        status.services = self
            .registry
            .services()
            .iter()
            .map(|s| {
                let owner = s.owner();
                ServiceStatus {
                    name: s.name(),
                    state: if owner.is_some() {
                        "serving"
                    } else {
                        "lingering"
                    }
                    .to_owned(),
                    public: Some(
                        std::net::SocketAddr::new(self.registry.public_ip(), s.port).to_string(),
                    ),
                    local: None,
                    client: owner.map(|o| super::credentials::who(&o)),
                    visitors: s.traffic.totals(),
                }
            })
            .collect();
        status
    }
}

/// Sessions per principal: every configured client id (0 when it has
/// none), and `""` for the shared token (or no authentication) when the
/// server takes it.
fn write_client_sessions<T: Transport>(
    out: &mut Exposition,
    settings: &crate::config::ServerSettings,
    sessions: &[std::sync::Arc<super::session::Session<T>>],
) {
    let mut counts: BTreeMap<&str, usize> = settings
        .clients
        .iter()
        .map(|c| (c.id.as_str(), 0))
        .collect();
    if settings.token.is_some() || !settings.authenticates() {
        counts.entry("").or_default();
    }
    for session in sessions {
        *counts
            .entry(session.credential.principal.label())
            .or_default() += 1;
    }
    let name = "porthole_server_client_sessions";
    out.family(
        name,
        Kind::Gauge,
        "Live control sessions by client id (per-client credentials; \"\" is the shared token).",
    );
    for (id, count) in counts {
        out.sample(name, &[("client", id)], count);
    }
}

/// The per-service families; services of one name (two clients may each
/// register one) are summed, so a name is one series.
fn write_services(out: &mut Exposition, rows: &[ServiceRow]) {
    let mut by_name: BTreeMap<&str, TrafficTotals> = BTreeMap::new();
    for r in rows {
        *by_name.entry(&r.name).or_default() += r.totals;
    }
    let families: [Family<TrafficTotals>; 5] = [
        (
            "porthole_server_visitors_total",
            Kind::Counter,
            "Visitors accepted at the service's public port.",
            |t| t.total,
        ),
        (
            "porthole_server_visitors_active",
            Kind::Gauge,
            "Visitors connected now.",
            |t| t.active,
        ),
        (
            "porthole_server_visitors_failed_total",
            Kind::Counter,
            "Visitors whose connection ended in an error (never served, reset, timed out).",
            |t| t.failed,
        ),
        (
            "porthole_server_received_bytes_total",
            Kind::Counter,
            "Bytes received from visitors.",
            |t| t.received_bytes,
        ),
        (
            "porthole_server_sent_bytes_total",
            Kind::Counter,
            "Bytes sent to visitors.",
            |t| t.sent_bytes,
        ),
    ];
    let rows: Vec<(&str, &TrafficTotals)> = by_name.iter().map(|(n, t)| (*n, t)).collect();
    out.by_label("service", &families, &rows);
}
