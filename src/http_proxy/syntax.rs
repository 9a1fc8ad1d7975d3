//! The smallest pieces of HTTP/1.x syntax that every layer of the proxy's
//! codec shares: why a head is refused, the version, header lookup, OWS and
//! tokens (RFC 9110 §5.6). It imports nothing from the other layers, which
//! all build on it ([`super::target`], [`super::framing`], [`super::head`],
//! [`super::rewrite`]).

use std::fmt;

/// Header fields in order: (name as sent, value without surrounding OWS).
pub type Headers = Vec<(String, Vec<u8>)>;

/// Why a head was refused; each maps to one status code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head exceeds [`MAX_HEAD_LEN`] or has more than [`MAX_HEADERS`] fields.
    TooLarge { len: usize, max: usize },
    /// The request line exceeds [`MAX_REQUEST_LINE_LEN`].
    LineTooLong { len: usize, max: usize },
    /// Not HTTP/1.x syntax, or framing fields that do not add up.
    Malformed(&'static str),
    /// A method this proxy refuses by rule (TRACE).
    Method(String),
    /// A target form this proxy does not serve (origin form, `*`, `https://`).
    Target(&'static str),
    /// A transfer coding other than `chunked`.
    Coding(String),
    /// An HTTP major version other than 1.
    Version(String),
}

impl HeadError {
    /// The status code answering this error in a request.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } => 431,
            HeadError::LineTooLong { .. } => 414,
            HeadError::Malformed(_) | HeadError::Target(_) => 400,
            HeadError::Method(_) => 405,
            HeadError::Coding(_) => 501,
            HeadError::Version(_) => 505,
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
            HeadError::Malformed(what) => write!(f, "malformed message: {what}"),
            HeadError::Method(m) => write!(f, "method {m} is not forwarded"),
            HeadError::Target(what) => write!(f, "unsupported request target: {what}"),
            HeadError::Coding(c) => write!(f, "transfer coding {c:?} is not supported"),
            HeadError::Version(v) => write!(f, "{v} is not supported"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Methods a `405` names in `Allow`. Any other token is forwarded too (a
/// method is a token, RFC 9110 §9.1); only TRACE is refused, since it reflects
/// credentials back to scripts (cross-site tracing).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT";

/// HTTP/1.0 or HTTP/1.1 (1.2 and later minors count as 1.1, RFC 9110 §2.5).
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

    /// The protocol as `Via` names it (`1.0`, `1.1`).
    pub fn via(self) -> &'static str {
        &self.as_str()[5..]
    }
}

/// The value of the first `name` field.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// `bytes` without leading and trailing OWS: SP and HTAB only (RFC 9110 §5.6.3),
/// the one definition used for every field.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(*b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether `bytes` is a non-empty token (RFC 9110 §5.6.2).
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
