//! Pure HTTP/1.x message-head codec: request heads from clients and response
//! heads from origins. No I/O. What the fields mean for framing is in
//! [`super::framing`]; what the proxy sends on is in [`super::rewrite`].
//!
//! Parsing is strict where leniency lets two parties disagree about where a
//! message ends (request smuggling): every line ends in CRLF (a bare LF is
//! refused at once), header names are tokens with no space before the colon,
//! obsolete line folding is refused, and optional whitespace is SP or HTAB,
//! nothing else. Field values are bytes: obs-text (0x80–0xFF, RFC 9110 §5.5)
//! passes through untouched; only NUL, CR and LF are refused in them.
//! `Ok(None)` means "need more bytes"; every bound is checked before the bytes
//! that would exceed it are kept.

use super::framing::{self, Declared, Framing};
pub use super::syntax::{ALLOWED_METHODS, HeadError, Headers, Version, header, is_token, trim_ows};
use super::target::parse_absolute;
pub use super::target::{Destination, parse_authority};

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

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub dest: Destination,
    /// Origin-form path and query for forwarded requests; empty for CONNECT.
    pub path: String,
    pub version: Version,
    pub headers: Headers,
    /// How the body is delimited, checked at parse time.
    pub framing: Framing,
}

impl Request {
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// The value of the first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        framing::keep_alive(self.version, &self.headers)
    }
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: u16,
    pub reason: Vec<u8>,
    pub headers: Headers,
    /// What the framing fields say, whatever the request was.
    pub declared: Declared,
}

impl Response {
    /// Body framing given the request method (RFC 9112 §6.3).
    pub fn framing(&self, method: &str) -> Framing {
        framing::response_body(method, self.status, self.declared)
    }

    /// Whether the origin lets the connection be used again.
    pub fn keep_alive(&self) -> bool {
        framing::keep_alive(self.version, &self.headers)
    }
}

/// Where a complete head lies in `buf` (after leading empty lines, up to and
/// including its blank line); `Ok(None)` if it is not all there yet. A bare LF
/// anywhere before the blank line is refused as soon as it arrives.
fn find_head(buf: &[u8]) -> Result<Option<(usize, usize)>, HeadError> {
    let start = skip_empty_lines(buf);
    let window = &buf[..buf.len().min(MAX_HEAD_LEN)];
    let mut line_start = start;
    for (i, _) in window
        .iter()
        .enumerate()
        .skip(start)
        .filter(|(_, b)| **b == b'\n')
    {
        if i == 0 || window[i - 1] != b'\r' {
            return Err(HeadError::Malformed("bare LF in the head"));
        }
        if i + 1 - line_start == 2 {
            if line_start == start {
                return Err(HeadError::Malformed("empty first line"));
            }
            return Ok(Some((start, i + 1)));
        }
        line_start = i + 1;
    }
    if buf.len() >= MAX_HEAD_LEN {
        return Err(HeadError::TooLarge {
            len: buf.len(),
            max: MAX_HEAD_LEN,
        });
    }
    Ok(None)
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

/// Splits a head (ending in its blank line) into its first line and fields.
fn lines(head: &[u8]) -> Result<(&[u8], Headers), HeadError> {
    // Without the blank line every line ends in CRLF (find_head checked each
    // LF), so the split leaves one empty piece at the end; exactly one CR is
    // taken off each line, so a stray CR before it stays and is refused.
    let body = head.strip_suffix(b"\r\n").unwrap_or(head);
    let mut lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut headers = Vec::new();
    for line in lines {
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

fn field(line: &[u8]) -> Result<(String, Vec<u8>), HeadError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(HeadError::Malformed("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::Malformed("header line without a colon"))?;
    let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
    if !is_token(name) {
        return Err(HeadError::Malformed("invalid header name"));
    }
    if value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(HeadError::Malformed("NUL, CR or LF in a header value"));
    }
    // A token is ASCII, so the name is valid UTF-8.
    let name = String::from_utf8_lossy(name).into_owned();
    Ok((name, value.to_vec()))
}

/// `HTTP/1.x`; any other `HTTP/d.d` is a version we do not speak.
fn version(text: &[u8]) -> Result<Version, HeadError> {
    match text {
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Ok(Version::Http11)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HeadError::Version(
                String::from_utf8_lossy(text).into_owned(),
            ))
        }
        _ => Err(HeadError::Malformed("invalid HTTP version")),
    }
}

/// A request head before its target is interpreted: what an origin server
/// (the admin endpoint) needs, and what [`parse_request`] builds on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Printable ASCII, not empty; any form (origin, absolute, authority).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

/// Parses the request line and fields at the start of `buf`, with every bound
/// of [`parse_request`]; returns the head and how many bytes of `buf` it used.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let start = skip_empty_lines(buf);
    let line_len = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
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
    let mut parts = first.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(ver), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if !is_token(method) {
        return Err(HeadError::Malformed("invalid method"));
    }
    let version = version(ver)?;
    let target = std::str::from_utf8(target)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(HeadError::Malformed("invalid request target"))?;
    let head = RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        target: target.to_owned(),
        version,
        headers,
    };
    Ok(Some((head, end)))
}

/// Parses a request head at the start of `buf`. Returns the request and how many
/// bytes of `buf` it used; bytes after that belong to the body or the next
/// request (or, after CONNECT, to the tunnel).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let Some((head, end)) = parse_request_head(buf)? else {
        return Ok(None);
    };
    let RequestHead {
        method,
        target,
        version,
        headers,
    } = head;
    let (dest, path) = if method == "CONNECT" {
        (parse_authority(&target, None)?, String::new())
    } else {
        parse_absolute(&target)?
    };
    let framing = framing::request_body(version, &headers, method == "CONNECT")?;
    let request = Request {
        method,
        dest,
        path,
        version,
        headers,
        framing,
    };
    Ok(Some((request, end)))
}

/// Parses a response head at the start of `buf` (same bounds as requests).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HeadError> {
    let Some((start, end)) = find_head(buf)? else {
        return Ok(None);
    };
    let (first, headers) = lines(&buf[start..end])?;
    let mut parts = first.splitn(3, |&b| b == b' ');
    let version = version(parts.next().unwrap_or_default())?;
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.iter().all(u8::is_ascii_digit))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(HeadError::Malformed("invalid status code"))?;
    let reason = parts.next().unwrap_or_default().to_vec();
    if reason.iter().any(|&b| b < b' ' && b != b'\t') {
        return Err(HeadError::Malformed("control character in the reason"));
    }
    let declared = framing::response_declared(version, &headers)?;
    let response = Response {
        version,
        status,
        reason,
        headers,
        declared,
    };
    Ok(Some((response, end)))
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
