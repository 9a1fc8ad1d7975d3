//! The PROXY protocol settings, both directions: a service's `proxy_protocol`
//! (the client writes a header to the local service) and the server's
//! `accept_proxy_protocol` (trusted balancers write one on public ports).

use super::*;
use crate::cidr::Cidr;

/// Which PROXY protocol header a service's local connections begin with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ProxyProtocol {
    /// The text header (`PROXY TCP4 …\r\n`), for services that only speak v1.
    V1,
    /// The binary header: shorter, and what nginx, haproxy and most servers
    /// prefer.
    V2,
}

/// Raw `accept_proxy_protocol: (from: [...])` of `server.ron`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptProxyConfig {
    /// The balancers' addresses (IPs or CIDR blocks): a connection from one
    /// of them must start with a PROXY header.
    pub from: Vec<String>,
    /// How long a balancer may take to send the header.
    #[serde(
        default = "secs::<PROXY_HEADER_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub timeout: Duration,
    /// Longest header accepted, TLVs included (v2 allows 16 + 65,535).
    #[serde(default = "default_max_header_len")]
    pub max_header_len: usize,
}

/// Default of `accept_proxy_protocol.timeout`. A balancer writes the header
/// with its first packet; the deadline only bounds a connection that claims
/// to come from it and says nothing.
pub const PROXY_HEADER_TIMEOUT_SECS: u64 = 3;
/// Default of `accept_proxy_protocol.max_header_len`: the spec's 536-byte
/// receive buffer with room for TLVs (haproxy's unique id, AWS's VPC
/// endpoint id). Each connection waiting for its header holds this much.
pub const PROXY_HEADER_LEN: usize = 1024;
/// Smallest `max_header_len`: a v1 header with two IPv6 addresses (107
/// bytes) must always fit.
pub const MIN_PROXY_HEADER_LEN: usize = 107;
/// Largest `max_header_len`: the v2 format's own bound (16 + 65,535).
pub const MAX_PROXY_HEADER_LEN: usize = 16 + u16::MAX as usize;
/// Most `from` entries: each public connection is checked against all.
pub const MAX_PROXY_SOURCES: usize = 256;

fn default_max_header_len() -> usize {
    PROXY_HEADER_LEN
}

/// Validated `accept_proxy_protocol`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyTrust {
    pub from: Vec<Cidr>,
    pub timeout: Duration,
    pub max_header_len: usize,
}

impl ProxyTrust {
    /// Whether a connection from `ip` must begin with a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|c| c.contains(ip))
    }
}

/// Checks `accept_proxy_protocol`; errors point at the offending entry.
pub(super) fn proxy_trust(
    at: &Locator,
    raw: Option<AcceptProxyConfig>,
) -> Result<Option<ProxyTrust>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    const FIELD: &str = "accept_proxy_protocol";
    if raw.from.is_empty() || raw.from.len() > MAX_PROXY_SOURCES {
        let msg = format!(
            "{FIELD}.from lists {} addresses; list 1 to {MAX_PROXY_SOURCES} balancer addresses or CIDR blocks (e.g. [\"10.0.0.0/8\"]), or leave {FIELD} out",
            raw.from.len()
        );
        return Err(at.error(&[&format!("{FIELD}.from"), FIELD], msg));
    }
    let mut from = Vec::with_capacity(raw.from.len());
    for (i, text) in raw.from.iter().enumerate() {
        let cidr = Cidr::parse(text).map_err(|e| {
            let msg = format!("{FIELD}.from[{i}]: {e}; write an IP address or a CIDR block");
            at.error(
                &[&format!("{FIELD}.from[{i}]"), &format!("{FIELD}.from")],
                msg,
            )
        })?;
        from.push(cidr);
    }
    if raw.timeout.is_zero() {
        let msg = format!("{FIELD}.timeout must be more than zero");
        return Err(at.error(&[&format!("{FIELD}.timeout"), FIELD], msg));
    }
    let len = raw.max_header_len;
    if !(MIN_PROXY_HEADER_LEN..=MAX_PROXY_HEADER_LEN).contains(&len) {
        let msg = format!(
            "{FIELD}.max_header_len {len} is out of range; use {MIN_PROXY_HEADER_LEN} to {MAX_PROXY_HEADER_LEN}"
        );
        return Err(at.error(&[&format!("{FIELD}.max_header_len"), FIELD], msg));
    }
    Ok(Some(ProxyTrust {
        from,
        timeout: raw.timeout,
        max_header_len: len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(from: &[&str]) -> AcceptProxyConfig {
        AcceptProxyConfig {
            from: from.iter().map(|s| s.to_string()).collect(),
            timeout: secs::<PROXY_HEADER_TIMEOUT_SECS>(),
            max_header_len: PROXY_HEADER_LEN,
        }
    }

    #[test]
    fn trusts_listed_blocks_only() {
        let at = Locator::new(&None);
        let trust = proxy_trust(&at, Some(raw(&["10.0.0.0/8", "::1"])))
            .expect("valid")
            .expect("some");
        assert!(trust.trusts("10.1.2.3".parse().expect("ip")));
        assert!(trust.trusts("::1".parse().expect("ip")));
        assert!(trust.trusts("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!trust.trusts("127.0.0.1".parse().expect("ip")));
        assert!(!trust.trusts("11.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn bad_entries_are_refused() {
        let at = Locator::new(&None);
        let err = proxy_trust(&at, Some(raw(&[]))).expect_err("empty");
        assert!(err.message.contains("lists 0 addresses"), "{err}");
        let err = proxy_trust(&at, Some(raw(&["10.0.0.0/33"]))).expect_err("prefix");
        assert!(err.message.contains("from[0]"), "{err}");
        let mut small = raw(&["127.0.0.1"]);
        small.max_header_len = 100;
        let err = proxy_trust(&at, Some(small)).expect_err("small");
        assert!(err.message.contains("max_header_len 100"), "{err}");
    }
}
