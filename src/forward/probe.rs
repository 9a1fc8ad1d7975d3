//! What `porthole forward` counts and reports through the admin endpoint.
//!
//! Each forward rule owns one [`Rule`]: a [`Traffic`] block (connections and
//! the bytes its relays move, counted as they move) and a block of connect
//! failures, both [`Sharded`] so a relay on one worker never writes a line
//! another worker owns. The `listen` label is the address the rule really
//! bound; there are at most [`super::MAX_FORWARDS`] rules, so the label set is
//! bounded by the config, never by the network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::admin::{Health, Probe, Status};
use crate::metrics::{Exposition, Family, Kind, Sharded, Traffic, TrafficTotals};

/// One forward rule: where it listens, where it connects, what it counted.
#[derive(Debug)]
pub struct Rule {
    pub listen: SocketAddr,
    pub target: Arc<str>,
    /// Client connections and their bytes; "received" is from the client.
    pub traffic: Sharded<Traffic>,
    /// Connections whose target could not be reached (refused, timed out,
    /// not resolved).
    pub connect_failures: Sharded<AtomicU64>,
}

impl Rule {
    pub fn new(listen: SocketAddr, target: Arc<str>) -> Rule {
        Rule {
            listen,
            target,
            traffic: Sharded::new(),
            connect_failures: Sharded::new(),
        }
    }

    /// Counts a connection whose target could not be reached.
    pub fn connect_failed(&self) {
        crate::metrics::add(self.connect_failures.local(), 1);
    }

    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.sum(|c| c)
    }
}

/// The forwarder's [`Probe`]: every rule, read at scrape time.
#[derive(Debug)]
pub struct ForwardProbe {
    pub rules: Vec<Arc<Rule>>,
}

const FAMILIES: [Family<Rule>; 5] = [
    (
        "porthole_forward_connections_total",
        Kind::Counter,
        "Client connections accepted.",
        |r| r.traffic.sum(|t| &t.total),
    ),
    (
        "porthole_forward_connections_active",
        Kind::Gauge,
        "Client connections open now.",
        |r| r.traffic.sum_gauge(|t| &t.active),
    ),
    (
        "porthole_forward_received_bytes_total",
        Kind::Counter,
        "Bytes read from clients and relayed to the target.",
        |r| r.traffic.sum(|t| &t.received),
    ),
    (
        "porthole_forward_sent_bytes_total",
        Kind::Counter,
        "Bytes relayed from the target and written to clients.",
        |r| r.traffic.sum(|t| &t.sent),
    ),
    (
        "porthole_forward_connect_failures_total",
        Kind::Counter,
        "Client connections whose target could not be reached.",
        Rule::connect_failures,
    ),
];

impl Probe for ForwardProbe {
    fn metrics(&self, out: &mut Exposition) {
        let listens: Vec<String> = self.rules.iter().map(|r| r.listen.to_string()).collect();
        let rows: Vec<(&str, &Rule)> = listens
            .iter()
            .zip(&self.rules)
            .map(|(listen, rule)| (listen.as_str(), &**rule))
            .collect();
        out.by_label("listen", &FAMILIES, &rows);
    }

    /// The probe exists only once every listener is bound.
    fn health(&self) -> Health {
        Health::Serving
    }

    fn status(&self) -> Status {
        let mut status = Status::new("forward", None);
        let join = |part: fn(&Rule) -> String| {
            let parts: Vec<String> = self.rules.iter().map(|r| part(r)).collect();
            parts.join(", ")
        };
        status.listen = Some(join(|r| r.listen.to_string()));
        status.upstream = Some(join(|r| r.target.to_string()));
        status.traffic = Some(self.totals());
        status
    }
}

impl ForwardProbe {
    /// Every rule's traffic added up.
    pub fn totals(&self) -> TrafficTotals {
        let mut sum = TrafficTotals::default();
        for rule in &self.rules {
            sum += rule.traffic.totals();
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Meter;

    fn probe() -> ForwardProbe {
        let rule = |port, target: &str| {
            Arc::new(Rule::new(
                SocketAddr::from(([127, 0, 0, 1], port)),
                target.into(),
            ))
        };
        ForwardProbe {
            rules: vec![rule(8080, "10.0.0.5:80"), rule(8443, "10.0.0.6:443")],
        }
    }

    #[test]
    fn counts_by_listen_address() {
        let probe = probe();
        let first = &probe.rules[0];
        let open = first.traffic.open();
        let meter: Meter<'_> = first.traffic.meter();
        meter.a_to_b().add(100);
        meter.b_to_a().add(50);
        probe.rules[1].connect_failed();
        let mut out = Exposition::new();
        probe.metrics(&mut out);
        let text = out.finish();
        for line in [
            "porthole_forward_connections_total{listen=\"127.0.0.1:8080\"} 1\n",
            "porthole_forward_connections_active{listen=\"127.0.0.1:8080\"} 1\n",
            "porthole_forward_received_bytes_total{listen=\"127.0.0.1:8080\"} 100\n",
            "porthole_forward_sent_bytes_total{listen=\"127.0.0.1:8080\"} 50\n",
            "porthole_forward_connect_failures_total{listen=\"127.0.0.1:8443\"} 1\n",
            "porthole_forward_connect_failures_total{listen=\"127.0.0.1:8080\"} 0\n",
            "# TYPE porthole_forward_connections_active gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        drop(open);
        let status = probe.status();
        assert_eq!(status.role, "forward");
        assert_eq!(
            status.listen.as_deref(),
            Some("127.0.0.1:8080, 127.0.0.1:8443")
        );
        assert_eq!(
            status.upstream.as_deref(),
            Some("10.0.0.5:80, 10.0.0.6:443")
        );
        let totals = status.traffic.expect("traffic");
        assert_eq!((totals.total, totals.active), (1, 0));
        assert_eq!((totals.received_bytes, totals.sent_bytes), (100, 50));
    }
}
