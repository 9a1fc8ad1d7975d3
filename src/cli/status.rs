//! `porthole status`: one `GET /status` to a running porthole's admin
//! endpoint, printed as a table for people or as JSON for scripts.
//!
//! Plain blocking `std::net` with socket timeouts: one request does not need
//! the data-plane runtime. Every wait (connect, write, each read) is bounded by
//! one deadline and the answer by [`MAX_RESPONSE_BYTES`], so a wedged or
//! hostile endpoint costs at most the timeout and that much memory.

use serde::Deserialize;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{AnyConfig, StatusArgs, load_any};
use crate::admin::Status;
use crate::config::{self, ConfigError, Locator};
use crate::http_proxy::framing::Framing;
use crate::http_proxy::head::{self, HeadError};
use crate::logging::Rounded;

/// Where `porthole status` asks without `--admin` or `-c`: the server
/// example's endpoint.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// The deadline for the whole exchange when `--timeout` is not given: the
/// endpoint answers from memory, so seconds mean it is wedged.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most `porthole status` reads. A status row is a few hundred bytes, so
/// this holds tens of thousands of clients and services; anything bigger is
/// not a porthole answering, and must not make us allocate without end.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// What one read asks the socket for.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Where to ask, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

/// The target from the flags: `--admin`, else the `admin` of the `-c` file,
/// else [`DEFAULT_ADMIN`]. A mistake here is a usage error.
pub fn target(args: &StatusArgs) -> Result<Target, ConfigError> {
    let at = Locator::new(&None);
    let timeout = match &args.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => {
            config::parse_duration(text).map_err(|e| at.error(&[], format!("--timeout: {e}")))?
        }
    };
    if timeout.is_zero() {
        return Err(at.error(&[], "--timeout 0 leaves no time to ask; use e.g. 5s"));
    }
    let addr = match (&args.admin, &args.config) {
        (Some(text), _) => config::check_address(&at, &[], "--admin", text, false)?,
        (None, Some(path)) => admin_of(path)?,
        (None, None) => DEFAULT_ADMIN,
    };
    Ok(Target {
        addr: reachable(addr),
        timeout,
    })
}

/// The admin address a config file of any role names.
fn admin_of(path: &Path) -> Result<SocketAddr, ConfigError> {
    let admin = match load_any(path)? {
        AnyConfig::Server(s) => s.admin,
        AnyConfig::Client(c) => c.admin,
        AnyConfig::Forward(f) => f.admin,
        AnyConfig::HttpProxy(p) => p.admin,
    };
    let message = match admin {
        Some(addr) if addr.port() != 0 => return Ok(addr),
        // The port is picked at start-up; only the process's log knows it.
        Some(_) => {
            "admin has port 0, so its port is picked at start-up: give --admin ADDR from the log"
        }
        None => {
            "has no admin endpoint: add admin: Some(\"127.0.0.1:9090\") and restart, or give --admin ADDR"
        }
    };
    Err(ConfigError {
        origin: path.to_owned(),
        line: 0,
        column: 0,
        message: message.to_owned(),
    })
}

/// An endpoint listening on every address (`0.0.0.0:9090`) is asked on
/// loopback: the unspecified address is for binding, not for dialling.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Why `porthole status` got no status (a runtime failure, exit 1).
#[derive(Debug)]
#[non_exhaustive]
pub enum StatusError {
    /// Nothing listens there: the likeliest mistake, so it gets the fix.
    Refused(SocketAddr),
    Connect {
        addr: SocketAddr,
        source: io::Error,
    },
    TimedOut {
        addr: SocketAddr,
        timeout: Duration,
    },
    Io {
        addr: SocketAddr,
        source: io::Error,
    },
    TooLarge {
        addr: SocketAddr,
        max: usize,
    },
    /// The answer is not HTTP/1.x, or its head never ended.
    NotHttp {
        addr: SocketAddr,
        source: HeadError,
    },
    /// The connection closed before the `Content-Length` bytes arrived.
    Truncated {
        addr: SocketAddr,
        got: usize,
        declared: u64,
    },
    NotOk {
        addr: SocketAddr,
        status: u16,
        reason: String,
    },
    Json {
        addr: SocketAddr,
        source: serde_json::Error,
    },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::Refused(addr) => write!(
                f,
                "nothing answers at {addr}: is porthole running with admin: Some(\"{addr}\") / --admin? (connection refused)"
            ),
            StatusError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            StatusError::TimedOut { addr, timeout } => write!(
                f,
                "{addr} did not answer GET /status within {} (--timeout sets the deadline)",
                Rounded(*timeout)
            ),
            StatusError::Io { addr, source } => write!(f, "reading the answer of {addr}: {source}"),
            StatusError::TooLarge { addr, max } => write!(
                f,
                "{addr} sent more than {max} bytes for GET /status: is it a porthole admin endpoint?"
            ),
            StatusError::NotHttp { addr, source } => write!(
                f,
                "{addr} did not answer in HTTP ({source}): is it a porthole admin endpoint?"
            ),
            StatusError::Truncated {
                addr,
                got,
                declared,
            } => write!(
                f,
                "{addr} closed the connection after {got} of the {declared} bytes of its status"
            ),
            StatusError::NotOk {
                addr,
                status,
                reason,
            } => write!(
                f,
                "{addr} answered GET /status with {status} {reason}: is it a porthole admin endpoint?"
            ),
            StatusError::Json { addr, source } => write!(
                f,
                "{addr} answered GET /status with something that is not a porthole status: {source}"
            ),
        }
    }
}

impl std::error::Error for StatusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StatusError::Connect { source, .. } | StatusError::Io { source, .. } => Some(source),
            StatusError::NotHttp { source, .. } => Some(source),
            StatusError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A status as received: parsed, and as the JSON it came in.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub status: Status,
    /// The body, kept whole (not only the fields this version knows), so
    /// that `--json` shows what a newer endpoint sends.
    pub json: serde_json::Value,
}

impl Fetched {
    /// What `porthole status` prints: the table, or pretty JSON.
    pub fn output(&self, json: bool) -> String {
        if json {
            // A `Value` always serialises; the fallback is for the type system.
            let text = serde_json::to_string_pretty(&self.json).unwrap_or_default();
            format!("{text}\n")
        } else {
            self.status.render()
        }
    }
}

/// Asks `target` for its status.
pub fn fetch(target: Target) -> Result<Fetched, StatusError> {
    let Target { addr, timeout } = target;
    let deadline = Instant::now() + timeout;
    let timed_out = || StatusError::TimedOut { addr, timeout };
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(StatusError::Refused(addr));
        }
        Err(e) if is_timeout(&e) => return Err(timed_out()),
        Err(source) => return Err(StatusError::Connect { addr, source }),
    };
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(left(deadline).ok_or_else(timed_out)?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| io_error(addr, timeout, e))?;
    let response = read_all(&mut stream, deadline, addr, timeout)?;
    parse(addr, &response)
}

/// Reads until the endpoint closes, at most [`MAX_RESPONSE_BYTES`], each
/// read bounded by what is left of the deadline (so a trickle of bytes
/// cannot stretch it).
fn read_all(
    stream: &mut TcpStream,
    deadline: Instant,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Vec<u8>, StatusError> {
    let mut response = Vec::new();
    let mut chunk = vec![0; READ_CHUNK_BYTES];
    loop {
        let left = left(deadline).ok_or(StatusError::TimedOut { addr, timeout })?;
        let read = stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.read(&mut chunk));
        match read {
            Ok(0) => return Ok(response),
            Ok(n) if response.len() + n > MAX_RESPONSE_BYTES => {
                let max = MAX_RESPONSE_BYTES;
                return Err(StatusError::TooLarge { addr, max });
            }
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(addr, timeout, e)),
        }
    }
}

/// What is left before `deadline`; `None` once it has passed (a zero
/// socket timeout would mean "wait for ever").
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// A socket timeout shows up as `WouldBlock` (Linux) or `TimedOut`.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_error(addr: SocketAddr, timeout: Duration, source: io::Error) -> StatusError {
    if is_timeout(&source) {
        StatusError::TimedOut { addr, timeout }
    } else {
        StatusError::Io { addr, source }
    }
}

/// The status in a whole response (no I/O): a `200` whose body is a
/// [`Status`] in JSON.
pub fn parse(addr: SocketAddr, response: &[u8]) -> Result<Fetched, StatusError> {
    let not_http = |source| StatusError::NotHttp { addr, source };
    let (head, end) = head::parse_response(response)
        .map_err(not_http)?
        .ok_or_else(|| not_http(HeadError::Malformed("the head never ended")))?;
    if head.status != 200 {
        let reason = String::from_utf8_lossy(&head.reason).into_owned();
        let status = head.status;
        return Err(StatusError::NotOk {
            addr,
            status,
            reason,
        });
    }
    let rest = &response[end..];
    let body = match head.framing("GET") {
        Framing::None => &[][..],
        Framing::UntilClose => rest,
        Framing::Length(declared) => match usize::try_from(declared) {
            Ok(len) if len <= rest.len() => &rest[..len],
            _ => {
                let got = rest.len();
                return Err(StatusError::Truncated {
                    addr,
                    got,
                    declared,
                });
            }
        },
        // The admin endpoint always sends a Content-Length.
        Framing::Chunked => {
            let why = "a chunked body, which porthole never sends";
            return Err(not_http(HeadError::Malformed(why)));
        }
    };
    let json_error = |source| StatusError::Json { addr, source };
    let json: serde_json::Value = serde_json::from_slice(body).map_err(json_error)?;
    let status = Status::deserialize(&json).map_err(json_error)?;
    Ok(Fetched { status, json })
}

#[cfg(test)]
mod tests;
