//! What `porthole http-proxy` reports through the admin endpoint: the
//! proxy's counters ([`super::stats`]), its health and its status.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Proxy;
use crate::admin::{Health, Probe, Status};
use crate::metrics::Exposition;

/// The proxy's [`Probe`]; it exists once the listeners are bound.
pub struct ProxyProbe {
    pub proxy: Arc<Proxy>,
    /// The address the proxy really listens on.
    pub listen: SocketAddr,
}

impl Probe for ProxyProbe {
    fn metrics(&self, out: &mut Exposition) {
        self.proxy.stats.write_metrics(out);
    }

    fn health(&self) -> Health {
        Health::Serving
    }

    fn status(&self) -> Status {
        let mut status = Status::new("http-proxy", None);
        status.listen = Some(self.listen.to_string());
        status.traffic = Some(self.proxy.stats.traffic());
        status
    }
}
