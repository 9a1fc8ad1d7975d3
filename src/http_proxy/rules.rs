//! Destination rules: which hosts, ports and addresses the proxy may connect to.
//!
//! A rule is written `TARGET` or `TARGET:PORTS`. TARGET is a host glob
//! (`example.com`, `*.example.com`, `*` for anything), an IP address or a CIDR
//! block (`10.0.0.0/8`, `fe80::/10`; an IPv6 target with ports goes in brackets:
//! `[::1]:8080`, `[fe80::/10]:443`). PORTS is a port, a range `8000-9000` or `*`.
//!
//! Order of decisions (see [`Policy::check_name`] and [`Policy::check_addrs`]):
//! 1. a deny rule that matches the name or any resolved address refuses;
//! 2. with `deny_local`, a loopback, unspecified or link-local address refuses
//!    unless an allow rule names that address (by IP or CIDR) — a host-name
//!    allow rule is not enough, since DNS can point any name at 127.0.0.1;
//! 3. a non-empty allow list must match: the name by a glob, or every resolved
//!    address by an IP/CIDR rule;
//! 4. otherwise the destination is allowed.
//!
//! Addresses are checked after resolution, and every resolved address must
//! pass, so a DNS name that points at a denied address is denied.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use crate::cidr::Cidr;
use crate::cidr::CidrError;
use std::ops::RangeInclusive;

/// Most rules per list: each destination is checked against every rule.
pub const MAX_RULES: usize = 1024;

/// The ranges `deny_local` refuses: loopback, "this host" (connecting to
/// 0.0.0.0 reaches local listeners on Linux) and link-local (which holds cloud
/// metadata services at 169.254.169.254).
const LOCAL_RANGES: [&str; 6] = [
    "127.0.0.0/8",
    "0.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "::/128",
    "fe80::/10",
];

/// Why a rule (or an IP block) does not parse; each variant carries the
/// offending text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    NotAnIp {
        text: String,
    },
    /// The prefix length is not a number from 0 to `max` (32 or 128).
    BadPrefix {
        prefix: String,
        max: u8,
    },
    NotAHost {
        text: String,
    },
    /// `[` without its `]`.
    MissingBracket {
        text: String,
    },
    /// Something other than `:PORTS` after `]`.
    ExpectedPorts {
        text: String,
    },
    BadPort {
        port: String,
    },
    ReversedPorts {
        ports: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnIp { text } => write!(f, "{text:?} is not an IP address"),
            Self::BadPrefix { prefix, max } => write!(f, "prefix {prefix:?} is not 0 to {max}"),
            Self::NotAHost { text } => {
                write!(f, "{text:?} is not a host name, glob, IP or CIDR")
            }
            Self::MissingBracket { text } => write!(f, "{text:?}: missing ']'"),
            Self::ExpectedPorts { text } => write!(f, "{text:?}: expected :PORTS after ']'"),
            Self::BadPort { port } => write!(f, "port {port:?} is not 1 to 65535"),
            Self::ReversedPorts { ports } => write!(f, "port range {ports:?} is reversed"),
        }
    }
}

impl std::error::Error for RuleError {}

impl From<CidrError> for RuleError {
    fn from(e: CidrError) -> Self {
        match e {
            CidrError::NotAnIp { text } => RuleError::NotAnIp { text },
            CidrError::BadPrefix { prefix, max } => RuleError::BadPrefix { prefix, max },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// Lower-case glob; `*` matches any run of characters.
    Host(String),
    Block(Cidr),
}

/// One allow or deny rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    target: Target,
    ports: RangeInclusive<u16>,
}

impl Rule {
    /// Parses the syntax in the module docs.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let (target, ports) = split_ports(text.trim())?;
        let ports = parse_ports(ports)?;
        let target = if target.contains('/') || target.parse::<IpAddr>().is_ok() {
            Target::Block(Cidr::parse(target)?)
        } else {
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*');
            if target.is_empty() || !target.chars().all(valid) {
                return Err(RuleError::NotAHost {
                    text: target.into(),
                });
            }
            Target::Host(target.trim_end_matches('.').to_ascii_lowercase())
        };
        Ok(Rule { target, ports })
    }

    fn matches_name(&self, host: &str, port: u16) -> bool {
        match &self.target {
            Target::Host(glob) => self.ports.contains(&port) && glob_match(glob, host),
            Target::Block(_) => false,
        }
    }

    fn matches_addr(&self, addr: SocketAddr) -> bool {
        match &self.target {
            Target::Block(block) => self.ports.contains(&addr.port()) && block.contains(addr.ip()),
            Target::Host(glob) => glob == "*" && self.ports.contains(&addr.port()),
        }
    }
}

fn split_ports(text: &str) -> Result<(&str, Option<&str>), RuleError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (target, after) = rest
            .split_once(']')
            .ok_or_else(|| RuleError::MissingBracket { text: text.into() })?;
        return match after.strip_prefix(':') {
            Some(ports) => Ok((target, Some(ports))),
            None if after.is_empty() => Ok((target, None)),
            None => Err(RuleError::ExpectedPorts { text: text.into() }),
        };
    }
    match text.split_once(':') {
        // Exactly one colon: TARGET:PORTS.
        Some((target, ports)) if !ports.contains(':') => Ok((target, Some(ports))),
        // None, or a bare IPv6 address (or IPv6 CIDR) without ports.
        _ => Ok((text, None)),
    }
}

fn parse_ports(ports: Option<&str>) -> Result<RangeInclusive<u16>, RuleError> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| RuleError::BadPort { port: p.into() })
    };
    match ports {
        None | Some("*") => Ok(1..=u16::MAX),
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) if port(lo)? <= port(hi)? => Ok(port(lo)?..=port(hi)?),
            Some(_) => Err(RuleError::ReversedPorts { ports: p.into() }),
            None => Ok(port(p)?..=port(p)?),
        },
    }
}

/// Matches `*` against any run of characters (iterative; no backtracking blow-up).
fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] != b'*' && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

/// Why a destination was refused (for the log and the `403` body).
pub type Refusal = String;

/// The allow and deny lists and the local-network default.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// Refuse loopback and link-local destinations unless allowed by address.
    pub deny_local: bool,
}

impl Policy {
    /// The checks that need no resolution: deny globs, and an allow glob that
    /// settles the allow list. Returns whether an allow glob matched.
    pub fn check_name(&self, host: &str, port: u16) -> Result<bool, Refusal> {
        if self.deny.iter().any(|r| r.matches_name(host, port)) {
            return Err(format!("{host}:{port} is denied by a rule"));
        }
        Ok(self.allow.iter().any(|r| r.matches_name(host, port)))
    }

    /// The checks on every resolved address; `name_allowed` from `check_name`.
    pub fn check_addrs(&self, addrs: &[SocketAddr], name_allowed: bool) -> Result<(), Refusal> {
        for &addr in addrs {
            if self.deny.iter().any(|r| r.matches_addr(addr)) {
                return Err(format!("{addr} is denied by a rule"));
            }
            let allowed_by_addr = self
                .allow
                .iter()
                .any(|r| matches!(r.target, Target::Block(_)) && r.matches_addr(addr));
            if self.deny_local && is_local(addr.ip()) && !allowed_by_addr {
                return Err(format!(
                    "{addr} is a loopback or link-local address (allow it by address to reach it)"
                ));
            }
            if !self.allow.is_empty() && !name_allowed && !allowed_by_addr {
                return Err(format!("{addr} is not in the allow list"));
            }
        }
        Ok(())
    }
}

/// The rule in the syntax [`Rule::parse`] reads, and parses back to the same
/// rule: host globs lower-case, an address as a /32 or /128 block, no port
/// suffix for all ports, IPv6 blocks with ports in brackets.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Host(glob) => glob.clone(),
            Target::Block(block) => block.to_string(),
        };
        match (*self.ports.start(), *self.ports.end()) {
            (1, u16::MAX) => f.write_str(&target),
            _ if target.contains(':') => write!(f, "[{target}]:{}", PortsText(&self.ports)),
            _ => write!(f, "{target}:{}", PortsText(&self.ports)),
        }
    }
}

/// `80` or `8000-9000`.
struct PortsText<'a>(&'a RangeInclusive<u16>);

impl fmt::Display for PortsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = (self.0.start(), self.0.end());
        if lo == hi {
            write!(f, "{lo}")
        } else {
            write!(f, "{lo}-{hi}")
        }
    }
}

/// Whether `ip` is in one of [`LOCAL_RANGES`].
pub fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The ranges `deny_local` covers, for docs and messages.
pub fn local_ranges() -> &'static [&'static str] {
    &LOCAL_RANGES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str], deny_local: bool) -> Policy {
        let rules = |list: &[&str]| list.iter().map(|r| Rule::parse(r).expect(r)).collect();
        Policy {
            allow: rules(allow),
            deny: rules(deny),
            deny_local,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    /// Name check then address check, as the proxy does.
    fn allowed(p: &Policy, host: &str, addrs: &[&str]) -> bool {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| addr(a)).collect();
        let port = addrs[0].port();
        p.check_name(host, port)
            .and_then(|named| p.check_addrs(&addrs, named))
            .is_ok()
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b", "aXbY"));
        assert!(glob_match(&"*a".repeat(50), &"a".repeat(100)));
    }

    #[test]
    fn rule_syntax() {
        for good in [
            "*",
            "*.example.com:443",
            "10.0.0.0/8",
            "10.0.0.1:80-90",
            "fe80::/10",
            "[::1]:8080",
            "[fe80::/10]:*",
        ] {
            assert!(Rule::parse(good).is_ok(), "{good}");
        }
        use RuleError as E;
        let s = |t: &str| t.to_owned();
        for (bad, kind) in [
            ("", E::NotAHost { text: s("") }),
            ("a b", E::NotAHost { text: s("a b") }),
            ("host:0", E::BadPort { port: s("0") }),
            ("host:9-1", E::ReversedPorts { ports: s("9-1") }),
            ("[::1", E::MissingBracket { text: s("[::1") }),
            ("[::1]x", E::ExpectedPorts { text: s("[::1]x") }),
            (
                "10.0.0.0/99",
                E::BadPrefix {
                    prefix: s("99"),
                    max: 32,
                },
            ),
            ("h:70000", E::BadPort { port: s("70000") }),
        ] {
            assert_eq!(Rule::parse(bad), Err(kind), "{bad}");
        }
        // The text a config error shows (see the fixture
        // `client_http_proxy_bad_rule.ron`).
        let err = Rule::parse("10.0.0.0/99").expect_err("prefix");
        assert_eq!(err.to_string(), "prefix \"99\" is not 0 to 32");
    }

    #[test]
    fn decisions() {
        let open = policy(&[], &[], false);
        assert!(allowed(&open, "localhost", &["127.0.0.1:80"]));
        let local = policy(&[], &[], true);
        for a in [
            "127.0.0.1:80",
            "[::1]:80",
            "0.0.0.0:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(!allowed(&local, "x", &[a]), "{a}");
        }
        assert!(allowed(&local, "x", &["192.0.2.1:80"]));
        // A name pointing at loopback, among other addresses, is still refused.
        assert!(!allowed(
            &local,
            "evil.test",
            &["192.0.2.1:80", "127.0.0.1:80"]
        ));
        let opened = policy(&["127.0.0.1:8080"], &[], true);
        assert!(allowed(&opened, "127.0.0.1", &["127.0.0.1:8080"]));
        assert!(!allowed(&opened, "127.0.0.1", &["127.0.0.1:22"]));
        let by_name = policy(&["*.example.com"], &[], true);
        assert!(allowed(&by_name, "a.example.com", &["192.0.2.1:443"]));
        assert!(!allowed(&by_name, "a.example.com", &["127.0.0.1:443"]));
        assert!(!allowed(&by_name, "other.test", &["192.0.2.1:443"]));
        let deny = policy(&["*"], &["*:25", "192.0.2.0/24", "bad.test"], false);
        assert!(!allowed(&deny, "mail.test", &["198.51.100.1:25"]));
        assert!(!allowed(&deny, "ok.test", &["192.0.2.7:80"]));
        assert!(!allowed(&deny, "bad.test", &["198.51.100.1:80"]));
        assert!(allowed(&deny, "ok.test", &["198.51.100.1:80"]));
    }

    #[test]
    fn rules_display_as_they_parse() {
        for (text, shown) in [
            ("*.Example.com.", "*.example.com"),
            ("*:*", "*"),
            ("*:443", "*:443"),
            ("10.0.0.0/8:8000-9000", "10.0.0.0/8:8000-9000"),
            ("10.0.0.1", "10.0.0.1/32"),
            ("[fe80::/10]:443", "[fe80::/10]:443"),
            ("::1", "::1/128"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:10.0.0.1", "10.0.0.1/32"),
            ("::ffff:0.0.0.0/80", "::ffff:0.0.0.0/80"),
        ] {
            let rule = Rule::parse(text).expect(text);
            assert_eq!(rule.to_string(), shown, "{text}");
            assert_eq!(Rule::parse(shown).expect(shown), rule, "{text} round trip");
        }
    }
}
