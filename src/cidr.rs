//! IP blocks (`10.0.0.0/8`, `fe80::/10`): parsing, membership and the text
//! they are written back as. Pure, no I/O; shared by the HTTP proxy's
//! destination rules and the server's `accept_proxy_protocol` sources.

use std::fmt;
use std::net::IpAddr;

/// Why a block does not parse; each variant carries the offending text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrError {
    NotAnIp {
        text: String,
    },
    /// The prefix length is not a number from 0 to `max` (32 or 128).
    BadPrefix {
        prefix: String,
        max: u8,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnIp { text } => write!(f, "{text:?} is not an IP address"),
            Self::BadPrefix { prefix, max } => write!(f, "prefix {prefix:?} is not 0 to {max}"),
        }
    }
}

impl std::error::Error for CidrError {}

/// An IP block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| CidrError::NotAnIp { text: ip.into() })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| {
                    CidrError::BadPrefix {
                        prefix: p.into(),
                        max,
                    }
                })?,
            };
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it
        // maps (`10.0.0.0/8`); a wider IPv6 block stays IPv6.
        let (addr, prefix) = match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() && prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            IpAddr::V4(_) if addr.is_ipv6() => (addr, prefix),
            canonical => (canonical, prefix),
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let (net, width) = bits(self.addr);
        // IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is checked as the IPv4
        // address it is.
        let (ip, ip_width) = bits(ip.to_canonical());
        if width != ip_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

/// The block as it can be written back (an IPv4-mapped block as the IPv4
/// block it is, see [`Cidr::parse`]).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(Ipv4Addr::BROADCAST.into())
        );
        // A mapped block is its IPv4 block (once, 32 - 104 underflowed).
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").expect("cidr");
        assert_eq!(mapped, Cidr::parse("10.0.0.0/8").expect("cidr"));
        assert!(mapped.contains("10.9.9.9".parse().expect("ip")));
        assert!(!mapped.contains("11.0.0.1".parse().expect("ip")));
        let wide = Cidr::parse("::ffff:0.0.0.0/80").expect("cidr");
        assert!(!wide.contains("10.0.0.1".parse().expect("ip")));
        assert_eq!(wide.to_string(), "::ffff:0.0.0.0/80");
        let v6 = Cidr::parse("fe80::/10").expect("cidr");
        assert!(v6.contains("fe80::1".parse().expect("ip")));
        assert!(!v6.contains(Ipv6Addr::LOCALHOST.into()));
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::BadPrefix {
                prefix: "33".into(),
                max: 32
            })
        );
        assert_eq!(
            Cidr::parse("nope/8"),
            Err(CidrError::NotAnIp {
                text: "nope".into()
            })
        );
    }
}
