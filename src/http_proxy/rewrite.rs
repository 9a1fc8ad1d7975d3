//! Pure header rewriting: the request a proxy sends on, the response head it
//! sends back, and the short responses it makes itself.
//!
//! Framing fields never pass through as received: the proxy drops every
//! `Content-Length` and `Transfer-Encoding` and writes the one canonical field
//! the body it forwards really has (see [`super::framing`]). Requests go
//! upstream as HTTP/1.1 whatever the client spoke (RFC 9110 §6.2); both
//! directions get a `Via` (§7.6.3).

use super::framing::{Declared, Framing, connection_tokens};
use super::head::{Request, Response};
use super::syntax::{ALLOWED_METHODS, Version, header};

/// Fields that describe one hop and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];
/// Fields replaced by their canonical form.
const REFRAMED: [&str; 2] = ["content-length", "transfer-encoding"];
/// The name this proxy gives itself in `Via`.
const VIA_NAME: &str = "porthole";
/// Fields a TRACE answer never reflects: credentials are what cross-site
/// tracing steals.
const NOT_REFLECTED: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// `headers` without hop-by-hop fields, without every field `Connection`
/// names, and without the framing fields (sent again in canonical form).
pub fn end_to_end(headers: &[(String, Vec<u8>)]) -> impl Iterator<Item = &(String, Vec<u8>)> {
    let named = connection_tokens(headers).unwrap_or_default();
    headers.iter().filter(move |(n, _)| {
        let n = n.to_ascii_lowercase();
        let n = n.as_str();
        !(HOP_BY_HOP.contains(&n) || REFRAMED.contains(&n) || named.iter().any(|t| t == n))
    })
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a request goes upstream, besides its own fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upstream<'a> {
    /// The `Max-Forwards` to send (already decremented), if any.
    pub max_forwards: Option<u32>,
    /// The `Upgrade` value to forward with `Connection: upgrade`.
    pub upgrade: Option<&'a [u8]>,
}

/// The origin-form HTTP/1.1 request head sent to the origin: `Host` from the
/// URI, hop-by-hop fields removed, one canonical framing field, `Via`. The
/// connection stays persistent (HTTP/1.1's default) unless it is upgraded.
pub fn origin_request(req: &Request, up: Upstream<'_>) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.path).into_bytes();
    let host = match (req.dest.port, req.dest.host.contains(':')) {
        (80, true) => format!("[{}]", req.dest.host),
        (80, false) => req.dest.host.clone(),
        _ => req.dest.authority(),
    };
    push_field(&mut out, "Host", host.as_bytes());
    for (name, value) in end_to_end(&req.headers) {
        let skip = name.eq_ignore_ascii_case("host")
            || (up.max_forwards.is_some() && name.eq_ignore_ascii_case("max-forwards"))
            // An HTTP/1.0 expectation is ignored (RFC 9110 §10.1.1); upstream
            // it would become a 1.1 one.
            || (req.version == Version::Http10 && name.eq_ignore_ascii_case("expect"));
        if !skip {
            push_field(&mut out, name, value);
        }
    }
    if let Some(n) = up.max_forwards {
        push_field(&mut out, "Max-Forwards", n.to_string().as_bytes());
    }
    match req.framing {
        Framing::Length(n) => push_field(&mut out, "Content-Length", n.to_string().as_bytes()),
        Framing::Chunked => push_field(&mut out, "Transfer-Encoding", b"chunked"),
        Framing::None | Framing::UntilClose => {}
    }
    via(&mut out, req.version);
    if let Some(protocol) = up.upgrade {
        push_field(&mut out, "Connection", b"upgrade");
        push_field(&mut out, "Upgrade", protocol);
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn via(out: &mut Vec<u8>, received: Version) {
    push_field(
        out,
        "Via",
        format!("{} {VIA_NAME}", received.via()).as_bytes(),
    );
}

/// Whether the body of `resp` reaches a client of `version` de-chunked (an
/// HTTP/1.0 client never gets chunked; it reads until close instead).
pub fn dechunks(resp: &Response, version: Version) -> bool {
    version == Version::Http10 && resp.declared == Declared::Chunked
}

/// The response head sent to a client of `version`: the origin's status and
/// end-to-end fields, one canonical framing field, `Via`, and our own
/// `Connection` (`upgrade` with the origin's `Upgrade` on a `101`).
pub fn client_response(resp: &Response, version: Version, keep_alive: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} ", resp.status).into_bytes();
    out.extend_from_slice(&resp.reason);
    out.extend_from_slice(b"\r\n");
    for (name, value) in end_to_end(&resp.headers) {
        push_field(&mut out, name, value);
    }
    let bodiless = (100..200).contains(&resp.status) || resp.status == 204;
    match resp.declared {
        _ if bodiless => {}
        Declared::Length(n) => push_field(&mut out, "Content-Length", n.to_string().as_bytes()),
        Declared::Chunked if !dechunks(resp, version) => {
            push_field(&mut out, "Transfer-Encoding", b"chunked")
        }
        Declared::Chunked | Declared::Nothing => {}
    }
    via(&mut out, resp.version);
    if resp.status == 101 {
        push_field(&mut out, "Connection", b"upgrade");
        let protocol = header(&resp.headers, "upgrade").unwrap_or_default();
        push_field(&mut out, "Upgrade", protocol);
    } else if !bodiless || resp.status == 204 {
        let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
        push_field(&mut out, "Connection", connection);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A short plain-text response generated by the proxy itself.
pub fn proxy_response(
    status: u16,
    extra: &[(&str, &str)],
    text: &str,
    keep_alive: bool,
) -> Vec<u8> {
    let body = format!("{text}\n");
    generated(
        status,
        extra,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        keep_alive,
    )
}

/// `200` to `OPTIONS` with `Max-Forwards: 0`: the proxy answers as the final
/// recipient (RFC 9110 §7.6.2), with what it forwards in `Allow`.
pub fn options_response(keep_alive: bool) -> Vec<u8> {
    let allow = [("Allow", ALLOWED_METHODS)];
    generated(200, &allow, "text/plain; charset=utf-8", b"", keep_alive)
}

/// `200` to `TRACE` with `Max-Forwards: 0`: the request as received, without
/// credentials (RFC 9110 §9.3.8).
pub fn trace_response(req: &Request, keep_alive: bool) -> Vec<u8> {
    let target = format!("http://{}{}", req.dest.authority(), req.path);
    let mut body = format!("TRACE {target} {}\r\n", req.version.as_str()).into_bytes();
    for (name, value) in &req.headers {
        if !NOT_REFLECTED.contains(&name.to_ascii_lowercase().as_str()) {
            push_field(&mut body, name, value);
        }
    }
    body.extend_from_slice(b"\r\n");
    generated(200, &[], "message/http", &body, keep_alive)
}

fn generated(
    status: u16,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (name, value) in extra {
        push_field(&mut out, name, value.as_bytes());
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    out.extend_from_slice(
        format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Reason phrases for the statuses the proxy itself produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}
