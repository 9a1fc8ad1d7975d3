//! One of the client's servers and what the client keeps of its sessions
//! with it: the transport that dials it, the control queue a reload reaches
//! it through, the credentials its links prove, its state (for status and
//! health), its link counters and its folded failure log.
//!
//! The client has one [`Upstream`] per configured server, each driven by its
//! own session loop (`reconnect.rs`). Nothing here is shared between
//! servers: one that is down, draining or refusing the client leaves the
//! others' sessions, schedules and logs alone.

use arc_swap::ArcSwap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::live::{Control, Credentials};
use super::metrics::{LinkCounters, State};
use crate::logfold::Fold;
use crate::transport::Transport;

/// See the module docs.
pub(super) struct Upstream<T: Transport> {
    /// As configured (`host:port`): how logs, status and metrics name it.
    pub address: String,
    /// Dials this server (for TLS, expecting its name).
    pub transport: T,
    /// The session that is up, for a reload to reach this server (see
    /// `super::live`).
    pub(super) control: smol::lock::Mutex<Option<Control>>,
    /// What the session that is up (or last was) authenticated with: its
    /// data links prove the same.
    pub(super) session_credentials: ArcSwap<Credentials>,
    /// Failed reconnects and data-link dials, folded: a long outage is a
    /// few lines, not one per attempt. One per server, so one server's
    /// outage never folds away the first failure of another.
    pub log: Arc<Fold>,
    pub(super) links: LinkCounters,
    pub(super) state: Mutex<State>,
}

impl<T: Transport> Upstream<T> {
    pub fn new(address: String, transport: T, credentials: Arc<Credentials>) -> Self {
        let log = Arc::new(Fold::new(format!("failures with {address}")));
        Upstream {
            address,
            transport,
            control: smol::lock::Mutex::new(None),
            session_credentials: ArcSwap::new(credentials),
            log,
            links: LinkCounters::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// The host part of the address, for printing public addresses.
    pub fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
    }
}

impl<T: Transport> fmt::Display for Upstream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}
