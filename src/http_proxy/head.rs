//! Pure HTTP/1.x message-head codec: request heads from clients, response heads
//! from origins, and the header rewriting a forward proxy does. No I/O.
//!
//! Parsing is strict where leniency lets two parties disagree about where a
//! message ends (request smuggling): lines end in CRLF, header names are tokens
//! with no space before the colon, obsolete line folding is refused, and a
//! message with both `Content-Length` and `Transfer-Encoding` is refused.
//! `Ok(None)` means "need more bytes"; every bound is checked before the bytes
//! that would exceed it are kept.

use std::fmt;

/// Largest request or response head, request line and CRLFs included. A head
/// must sit whole in the connection's buffer, so this is also what one idle
/// client can make the proxy hold; 16 KiB fits every browser and curl request.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Longest request line: bounds the target we copy into the origin request.
/// Longer lines are refused with `414` rather than the head-wide `431`.
pub const MAX_REQUEST_LINE_LEN: usize = 8 * 1024;
/// Most header fields in one head: bounds the per-request vector and the
/// quadratic work of header lookups an attacker could otherwise force.
pub const MAX_HEADERS: usize = 100;
/// Most empty lines skipped before a request line (RFC 9112 §2.2 asks servers to
/// ignore at least one, as some clients send a CRLF after a body).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Header fields in order: (name as sent, value trimmed).
pub type Headers = Vec<(String, String)>;

/// Why a head was refused; each maps to one status code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head exceeds [`MAX_HEAD_LEN`] or has more than [`MAX_HEADERS`] fields.
    TooLarge { len: usize, max: usize },
    /// The request line exceeds [`MAX_REQUEST_LINE_LEN`].
    LineTooLong { len: usize, max: usize },
    /// Not HTTP/1.x syntax.
    Malformed(&'static str),
    /// A method this proxy does not forward.
    Method(String),
    /// A target form this proxy does not serve (origin form, `*`, `https://`).
    Target(&'static str),
    /// A transfer coding other than `chunked`.
    Coding(String),
}

impl HeadError {
    /// The status code answering this error.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } => 431,
            HeadError::LineTooLong { .. } => 414,
            HeadError::Malformed(_) | HeadError::Target(_) => 400,
            HeadError::Method(_) => 405,
            HeadError::Coding(_) => 501,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge { len, max } => write!(f, "head too large ({len} > {max})"),
            HeadError::LineTooLong { len, max } => {
                write!(f, "request line too long ({len} > {max})")
            }
            HeadError::Malformed(what) => write!(f, "malformed request: {what}"),
            HeadError::Method(m) => write!(f, "method {m:?} is not supported"),
            HeadError::Target(what) => write!(f, "unsupported request target: {what}"),
            HeadError::Coding(c) => write!(f, "transfer coding {c:?} is not supported"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Methods forwarded in absolute form (TRACE is left out: it reflects
/// credentials back to scripts; anything else gets `405`).
pub const FORWARDED_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// HTTP/1.0 or HTTP/1.1 (minor version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

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

/// How a message body is delimited (RFC 9112 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub dest: Destination,
    /// Origin-form path and query for forwarded requests; empty for CONNECT.
    pub path: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Body framing of the request; a request never reads until close.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        match body_framing(&self.headers)? {
            Framing::UntilClose => Ok(Framing::None),
            framing => Ok(framing),
        }
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        let tokens = connection_tokens(&self.headers);
        let has = |t: &str| tokens.iter().any(|x| x == t);
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive"),
        }
    }
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// Body framing given the request method (RFC 9112 §6.3).
    pub fn framing(&self, method: &str) -> Result<Framing, HeadError> {
        if method == "HEAD" || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            return Ok(Framing::None);
        }
        body_framing(&self.headers)
    }
}

/// The value of the first `name` field.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Lower-case tokens of every `Connection` and `Proxy-Connection` field.
pub fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("connection") || n.eq_ignore_ascii_case("proxy-connection")
        })
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn body_framing(headers: &[(String, String)]) -> Result<Framing, HeadError> {
    let mut codings = Vec::new();
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(value.split(',').map(|c| c.trim().to_ascii_lowercase()));
        } else if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n = parse_length(part.trim())?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                length = Some(n);
            }
        }
    }
    codings.retain(|c| !c.is_empty());
    match (codings.as_slice(), length) {
        ([], Some(0)) => Ok(Framing::None),
        ([], Some(n)) => Ok(Framing::Length(n)),
        ([], None) => Ok(Framing::UntilClose),
        (_, Some(_)) => Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        ([only], None) if only == "chunked" => Ok(Framing::Chunked),
        (all, None) => Err(HeadError::Coding(all.join(", "))),
    }
}

fn parse_length(text: &str) -> Result<u64, HeadError> {
    // At most 19 digits always fits a u64; the parse also rejects signs.
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Malformed("invalid Content-Length"));
    }
    text.parse()
        .map_err(|_| HeadError::Malformed("invalid Content-Length"))
}

/// Where a complete head ends in `buf` (the index after its blank line), after
/// skipping leading empty lines; `Ok(None)` if it is not all there yet.
fn find_head(buf: &[u8]) -> Result<Option<(usize, usize)>, HeadError> {
    let start = skip_empty_lines(buf);
    let window = &buf[..buf.len().min(MAX_HEAD_LEN)];
    match window[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some((start, start + i + 4))),
        None if buf.len() >= MAX_HEAD_LEN => Err(HeadError::TooLarge {
            len: buf.len(),
            max: MAX_HEAD_LEN,
        }),
        None => Ok(None),
    }
}

/// How many bytes of leading empty lines to skip.
fn skip_empty_lines(buf: &[u8]) -> usize {
    let mut start = 0;
    for _ in 0..MAX_LEADING_EMPTY_LINES {
        if buf[start..].starts_with(b"\r\n") {
            start += 2;
        }
    }
    start
}

/// Splits a head into its first line and its fields.
fn lines(head: &[u8]) -> Result<(&str, Headers), HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(HeadError::TooLarge {
                len: headers.len() + 1,
                max: MAX_HEADERS,
            });
        }
        headers.push(field(line)?);
    }
    Ok((first, headers))
}

fn field(line: &str) -> Result<(String, String), HeadError> {
    if line.starts_with([' ', '\t']) {
        return Err(HeadError::Malformed("obsolete line folding"));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or(HeadError::Malformed("header line without a colon"))?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeadError::Malformed("invalid header name"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(HeadError::Malformed("invalid header value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn version(text: &str) -> Result<Version, HeadError> {
    match text {
        "HTTP/1.1" => Ok(Version::Http11),
        "HTTP/1.0" => Ok(Version::Http10),
        _ => Err(HeadError::Malformed("unsupported HTTP version")),
    }
}

/// Parses a request head at the start of `buf`. Returns the request and how many
/// bytes of `buf` it used; bytes after that belong to the body or the next
/// request (or, after CONNECT, to the tunnel).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let start = skip_empty_lines(buf);
    let line_len = buf[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len() - start);
    if line_len > MAX_REQUEST_LINE_LEN {
        return Err(HeadError::LineTooLong {
            len: line_len,
            max: MAX_REQUEST_LINE_LEN,
        });
    }
    let Some((start, end)) = find_head(buf)? else {
        return Ok(None);
    };
    let (first, headers) = lines(&buf[start..end])?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(ver), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(HeadError::Malformed("invalid method"));
    }
    let version = version(ver)?;
    let (dest, path) = if method == "CONNECT" {
        (parse_authority(target, None)?, String::new())
    } else if FORWARDED_METHODS.contains(&method) {
        parse_absolute(target)?
    } else {
        return Err(HeadError::Method(method.to_owned()));
    };
    let request = Request {
        method: method.to_owned(),
        dest,
        path,
        version,
        headers,
    };
    request.framing()?;
    Ok(Some((request, end)))
}

/// `http://authority[/path][?query]` → destination and origin-form target.
fn parse_absolute(target: &str) -> Result<(Destination, String), HeadError> {
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
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed("invalid character in the path"));
    }
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
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad);
        }
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(bad.clone())?,
        (None, Some(p)) => p,
        (None, None) => return Err(HeadError::Target("CONNECT needs host:port")),
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
    if host.is_empty() || host.len() > 253 || !host.bytes().all(valid) {
        return Err(bad);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    Ok(Destination { host, port })
}

/// Parses a response head at the start of `buf` (same bounds as requests).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HeadError> {
    let Some((start, end)) = find_head(buf)? else {
        return Ok(None);
    };
    let (first, headers) = lines(&buf[start..end])?;
    let mut parts = first.splitn(3, ' ');
    let version = version(parts.next().unwrap_or_default())?;
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(HeadError::Malformed("invalid status code"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let response = Response {
        version,
        status,
        reason,
        headers,
    };
    Ok(Some((response, end)))
}

pub use super::rewrite::{client_response, end_to_end, origin_request, proxy_response, reason};

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
