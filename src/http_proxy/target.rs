//! Request targets (RFC 9112 §3.2): the absolute form of a forwarded request
//! and the authority form of CONNECT, read exactly one way — an IPv6 literal
//! only in brackets with nothing but `:port` after them, a port of digits only,
//! no user information. Pure.

use super::syntax::HeadError;

/// Where a request wants to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `http://authority[/path][?query]` → destination and origin-form target.
pub(super) fn parse_absolute(target: &str) -> Result<(Destination, String), HeadError> {
    if target.starts_with('/') || target == "*" {
        return Err(HeadError::Target(
            "a proxy needs an absolute URI (http://host/path) or CONNECT",
        ));
    }
    let (scheme, rest) = target
        .split_once("://")
        .ok_or(HeadError::Target("not an absolute URI"))?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(HeadError::Target(
            "only http:// is forwarded; use CONNECT for https",
        ));
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok((parse_authority(authority, Some(80))?, path))
}

/// `host:port` (IPv6 in brackets); `default_port` when the port may be omitted.
pub fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Destination, HeadError> {
    let bad = HeadError::Target("invalid host or port");
    if text.contains('@') {
        return Err(HeadError::Target("user information in the URI"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(bad.clone())?;
        // Nothing but `:port` may follow the bracket.
        if host.parse::<std::net::Ipv6Addr>().is_err()
            || !(after.is_empty() || after.starts_with(':'))
        {
            return Err(bad);
        }
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            // A colon in the host needs brackets: `::1:8080` reads two ways.
            Some((host, _)) if host.contains(':') => return Err(bad),
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match (port, default_port) {
        // Digits only: `u16::from_str` would also take a `+` sign.
        (Some(p), _) => Some(p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or(bad.clone())?,
        (None, Some(p)) => p,
        (None, None) => return Err(HeadError::Target("CONNECT needs host:port")),
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
    // Trailing dots off first: `.` alone would leave no host at all.
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.len() > 253 || !host.bytes().all(valid) {
        return Err(bad);
    }
    let host = host.to_ascii_lowercase();
    Ok(Destination { host, port })
}
