//! What the fields of a head mean for where its message ends, and for the hop:
//! `Content-Length`, `Transfer-Encoding`, `Connection`, `Host` and
//! `Max-Forwards` (RFC 9112 §6, RFC 9110 §7.2, §7.6, §8.6). Pure.
//!
//! One rule throughout: a framing field the proxy cannot read exactly one way
//! refuses the message (`400` for a request, `502` for a response), because
//! the next hop might read it the other way. So: list elements are trimmed of
//! SP and HTAB only; `Content-Length` is digits, and repeated values must
//! agree (they are then forwarded as one); `Transfer-Encoding` is a list of
//! tokens of which only a lone `chunked` is served; both at once, chunked in
//! HTTP/1.0, or a `Connection` that names a framing field are refused.

use super::syntax::{HeadError, Version, header, is_token, trim_ows};
use super::target::parse_authority;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What a head's framing fields declare, in canonical form: the proxy drops the
/// fields as received and sends this instead (one `Content-Length`, one
/// `Transfer-Encoding: chunked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    Nothing,
    Length(u64),
    Chunked,
}

/// Fields that frame a message; `Connection` may never name them.
const FRAMING_FIELDS: [&str; 2] = ["content-length", "transfer-encoding"];

/// Body framing of a request, after checking its framing and hop fields.
/// `connect`: a CONNECT request, whose bytes after the head are the tunnel's,
/// so any declared body is refused.
pub fn request_body(
    version: Version,
    headers: &[(String, Vec<u8>)],
    connect: bool,
) -> Result<Framing, HeadError> {
    connection_tokens(headers)?;
    check_host(version, headers, connect)?;
    match (declared(headers)?, version) {
        (Declared::Chunked, Version::Http10) => {
            Err(HeadError::Malformed("chunked in an HTTP/1.0 request"))
        }
        (Declared::Nothing, _) => Ok(Framing::None),
        (Declared::Length(0), _) if connect => Ok(Framing::None),
        (_, _) if connect => Err(HeadError::Malformed("CONNECT with a body")),
        (Declared::Chunked, _) => Ok(Framing::Chunked),
        (Declared::Length(n), _) => Ok(Framing::Length(n)),
    }
}

/// The declared framing of a response, after checking its hop fields.
pub fn response_declared(
    version: Version,
    headers: &[(String, Vec<u8>)],
) -> Result<Declared, HeadError> {
    connection_tokens(headers)?;
    match declared(headers)? {
        Declared::Chunked if version == Version::Http10 => {
            Err(HeadError::Malformed("chunked in an HTTP/1.0 response"))
        }
        declared => Ok(declared),
    }
}

/// Body framing of a response to `method` (RFC 9112 §6.3).
pub fn response_body(method: &str, status: u16, declared: Declared) -> Framing {
    if method == "HEAD" || (100..200).contains(&status) || matches!(status, 204 | 304) {
        return Framing::None;
    }
    match declared {
        Declared::Nothing => Framing::UntilClose,
        Declared::Length(n) => Framing::Length(n),
        Declared::Chunked => Framing::Chunked,
    }
}

/// The framing fields of `headers`, read exactly one way (see the module docs).
pub fn declared(headers: &[(String, Vec<u8>)]) -> Result<Declared, HeadError> {
    let mut codings: Vec<String> = Vec::new();
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            let before = codings.len();
            for coding in elements(value) {
                if !is_token(coding) {
                    return Err(HeadError::Malformed("invalid Transfer-Encoding"));
                }
                codings.push(String::from_utf8_lossy(coding).to_ascii_lowercase());
            }
            if codings.len() == before {
                return Err(HeadError::Malformed("empty Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let mut any = false;
            for part in elements(value) {
                let n = parse_length(part)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                (length, any) = (Some(n), true);
            }
            if !any {
                return Err(HeadError::Malformed("empty Content-Length"));
            }
        }
    }
    let chunked = codings.iter().filter(|c| *c == "chunked").count();
    match (codings.as_slice(), length) {
        ([], Some(n)) => Ok(Declared::Length(n)),
        ([], None) => Ok(Declared::Nothing),
        (_, Some(_)) => Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        ([only], None) if only == "chunked" => Ok(Declared::Chunked),
        ([.., last], None) if chunked > 1 || (chunked == 1 && last != "chunked") => Err(
            HeadError::Malformed("chunked twice, or not the last coding"),
        ),
        (all, None) => Err(HeadError::Coding(all.join(", "))),
    }
}

/// The elements of a comma-separated list value: trimmed of OWS, empty ones
/// skipped (RFC 9110 §5.6.1).
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn parse_length(text: &[u8]) -> Result<u64, HeadError> {
    // At most 19 digits always fits a u64; digits only, so no sign.
    let digits = !text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit);
    std::str::from_utf8(text)
        .ok()
        .filter(|_| digits)
        .and_then(|t| t.parse().ok())
        .ok_or(HeadError::Malformed("invalid Content-Length"))
}

/// Lower-case tokens of every `Connection` and `Proxy-Connection` field;
/// refuses a value that is not a token list, or one naming a framing field
/// (dropping that field would unframe the message for the next hop).
pub fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Result<Vec<String>, HeadError> {
    let mut tokens = Vec::new();
    for (name, value) in headers {
        if !(name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("proxy-connection"))
        {
            continue;
        }
        for token in elements(value) {
            if !is_token(token) {
                return Err(HeadError::Malformed("invalid Connection"));
            }
            let token = String::from_utf8_lossy(token).to_ascii_lowercase();
            if FRAMING_FIELDS.contains(&token.as_str()) {
                return Err(HeadError::Malformed("Connection names a framing field"));
            }
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// Whether the sender keeps the connection open after this message.
pub fn keep_alive(version: Version, headers: &[(String, Vec<u8>)]) -> bool {
    let tokens = connection_tokens(headers).unwrap_or_default();
    let has = |t: &str| tokens.iter().any(|x| x == t);
    match version {
        Version::Http11 => !has("close"),
        Version::Http10 => has("keep-alive") && !has("close"),
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one valid `Host` (CONNECT
/// may omit it: some clients do, and its target already names the authority);
/// any request with two is refused.
fn check_host(
    version: Version,
    headers: &[(String, Vec<u8>)],
    connect: bool,
) -> Result<(), HeadError> {
    let mut hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"));
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Err(HeadError::Malformed("more than one Host")),
        (None, None) if version == Version::Http11 && !connect => {
            Err(HeadError::Malformed("missing Host"))
        }
        (None, None) => Ok(()),
        (Some((_, value)), None) => {
            let valid = value.is_empty()
                || std::str::from_utf8(value)
                    .ok()
                    .is_some_and(|v| parse_authority(v, Some(80)).is_ok());
            if valid {
                Ok(())
            } else {
                Err(HeadError::Malformed("invalid Host"))
            }
        }
    }
}

/// The `Max-Forwards` value, if any (RFC 9110 §7.6.2).
pub fn max_forwards(headers: &[(String, Vec<u8>)]) -> Result<Option<u32>, HeadError> {
    let Some(value) = header(headers, "max-forwards") else {
        return Ok(None);
    };
    // Digits only; a huge value is as good as the largest we keep.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Malformed("invalid Max-Forwards"));
    }
    let n = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    Ok(Some(n))
}
