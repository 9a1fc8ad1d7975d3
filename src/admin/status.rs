//! What `GET /status` returns and `porthole status` prints: one shape for
//! every role (fields a role does not have stay empty), JSON for scripts and a
//! table for people.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

use crate::logging::Rounded;
use crate::metrics::TrafficTotals;

/// A running instance, as its admin endpoint reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// `server`, `client`, `forward` or `http-proxy`.
    pub role: String,
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub healthy: bool,
    /// Why it is not healthy.
    pub problem: Option<String>,
    /// Where it listens: the server's control port, forward's or the proxy's
    /// listener.
    pub listen: Option<String>,
    /// Where it connects: the client's servers, forward's target.
    pub upstream: Option<String>,
    /// A server's connected clients.
    pub clients: Vec<ClientStatus>,
    /// A client's servers: its session with each.
    pub servers: Vec<ServerStatus>,
    /// A server's registered services, or a client's configured ones.
    pub services: Vec<ServiceStatus>,
    /// forward's and the HTTP proxy's connections.
    pub traffic: Option<TrafficTotals>,
}

/// A client connected to a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientStatus {
    /// The session id's first 8 hex digits (as the logs print it).
    pub session: String,
    /// Its id among the server's `clients`; `None` for the shared token.
    pub id: Option<String>,
    pub address: String,
    pub connected_seconds: u64,
    pub transport: String,
    pub services: Vec<String>,
}

/// A client's session with one of its servers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerStatus {
    /// As configured (`host:port`).
    pub address: String,
    /// `connected`, `connecting`, `reconnecting: <why the last session
    /// ended>`, or `gave up: <why>` (the client no longer tries it).
    pub state: String,
    /// The session id's first 8 hex digits (as the logs print it), while
    /// connected.
    pub session: Option<String>,
    pub connected_seconds: u64,
    pub transport: String,
    /// The services this server accepted in the session.
    pub services: Vec<String>,
}

/// A service, at a server or a client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStatus {
    pub name: String,
    /// `serving`, `lingering` (its client is gone; kept for `reconnect_grace`),
    /// `registering`, or why it is not registered.
    pub state: String,
    /// The public address (server) or the public port the server gave (client).
    pub public: Option<String>,
    /// The local service (client).
    pub local: Option<String>,
    /// The owning client's address (server).
    pub client: Option<String>,
    pub visitors: TrafficTotals,
}

impl Status {
    /// A status of `role` for this process, healthy unless `problem`.
    pub fn new(role: &str, problem: Option<String>) -> Status {
        Status {
            role: role.to_owned(),
            version: crate::VERSION.to_owned(),
            pid: std::process::id(),
            uptime_seconds: crate::metrics::process::uptime_seconds(),
            healthy: problem.is_none(),
            problem,
            ..Status::default()
        }
    }

    /// The table `porthole status` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let health = match &self.problem {
            None => "healthy".to_owned(),
            Some(why) => format!("NOT HEALTHY: {why}"),
        };
        let uptime = Rounded(std::time::Duration::from_secs(self.uptime_seconds));
        let _ = writeln!(
            out,
            "porthole {} {} (pid {}), up {uptime}, {health}",
            self.role, self.version, self.pid
        );
        if let Some(listen) = &self.listen {
            let _ = writeln!(out, "listening on {listen}");
        }
        if let Some(upstream) = &self.upstream {
            let _ = writeln!(out, "upstream {upstream}");
        }
        if let Some(t) = &self.traffic {
            let _ = writeln!(
                out,
                "connections: {} active, {} total, {} failed; received {}, sent {}",
                t.active,
                t.total,
                t.failed,
                Bytes(t.received_bytes),
                Bytes(t.sent_bytes)
            );
        }
        if self.role == "server" {
            out.push('\n');
            out.push_str(&self.clients_table());
        }
        if self.role == "client" {
            out.push('\n');
            out.push_str(&self.servers_table());
        }
        if self.role == "server" || self.role == "client" {
            out.push('\n');
            out.push_str(&self.services_table());
        }
        out
    }

    fn clients_table(&self) -> String {
        let mut rows = vec![row(&[
            "SESSION",
            "ID",
            "ADDRESS",
            "TRANSPORT",
            "CONNECTED",
            "SERVICES",
        ])];
        for c in &self.clients {
            rows.push(vec![
                c.session.clone(),
                c.id.clone().unwrap_or_else(|| "-".to_owned()),
                c.address.clone(),
                c.transport.clone(),
                Rounded(std::time::Duration::from_secs(c.connected_seconds)).to_string(),
                c.services.join(", "),
            ]);
        }
        table(&rows, "no clients connected")
    }

    fn servers_table(&self) -> String {
        let mut rows = vec![row(&[
            "SERVER",
            "STATE",
            "SESSION",
            "TRANSPORT",
            "CONNECTED",
            "SERVICES",
        ])];
        for s in &self.servers {
            let connected = match s.session {
                Some(_) => Rounded(std::time::Duration::from_secs(s.connected_seconds)).to_string(),
                None => "-".to_owned(),
            };
            rows.push(vec![
                s.address.clone(),
                s.state.clone(),
                s.session.clone().unwrap_or_else(|| "-".to_owned()),
                s.transport.clone(),
                connected,
                s.services.join(", "),
            ]);
        }
        table(&rows, "no servers")
    }

    fn services_table(&self) -> String {
        let mut rows = vec![row(&[
            "SERVICE", "STATE", "PUBLIC", "LOCAL", "CLIENT", "ACTIVE", "VISITORS", "RECEIVED",
            "SENT",
        ])];
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        for s in &self.services {
            rows.push(vec![
                s.name.clone(),
                s.state.clone(),
                dash(&s.public),
                dash(&s.local),
                dash(&s.client),
                s.visitors.active.to_string(),
                s.visitors.total.to_string(),
                Bytes(s.visitors.received_bytes).to_string(),
                Bytes(s.visitors.sent_bytes).to_string(),
            ]);
        }
        table(&rows, "no services")
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns two spaces apart; `empty` under the header when there
/// are no rows.
fn table(rows: &[Vec<String>], empty: &str) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if rows.len() == 1 {
        let _ = writeln!(out, "({empty})");
    }
    out
}

/// A byte count for people: `812 B`, `1.5 KiB`, `40.0 MiB`.
#[derive(Clone, Copy, Debug)]
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}
