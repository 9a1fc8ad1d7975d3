//! Telling systemd how the service is doing (the sd_notify protocol), for
//! units with `Type=notify` such as `examples/porthole-server.service`. Owns
//! the notification socket's address, the messages and their limits.
//!
//! systemd passes the address of a Unix datagram socket in `NOTIFY_SOCKET`:
//! an absolute filesystem path, or a name in the abstract namespace written
//! `@name`. A notification is one datagram of newline-separated `KEY=value`
//! assignments. What a `Type=notify` unit is expected to say:
//!
//! - `READY=1` once the service is serving. `systemctl start` returns (and
//!   units ordered after this one start) only then; a service that never says
//!   it is killed after `TimeoutStartSec=`.
//! - `RELOADING=1` when a reload starts (porthole reloads on SIGHUP) and
//!   `READY=1` again when it is done. systemd 253 and later want the reload's
//!   start time with it, `MONOTONIC_USEC=` (`CLOCK_MONOTONIC` in µs), so that
//!   a stale notification cannot be mistaken for a new one.
//! - `STOPPING=1` when shutting down, while visitors drain, so that the unit
//!   shows as deactivating rather than failed or still active.
//! - `STATUS=` any one line of text, shown by `systemctl status`.
//!
//! Why not libsystemd: the protocol is a few bytes on a datagram socket;
//! linking the C library would be more code than the protocol, a dependency
//! on every build host, and `unsafe` (the crate forbids it).
//!
//! Notifying never fails the caller: outside systemd there is no
//! [`Notifier`] at all, and a failed send is logged (the first at warn, later
//! ones at debug) and otherwise ignored. A service that could not say it is
//! ready is still serving; systemd's start timeout deals with the silence.
//!
//! Invariant: a message never carries an assignment its caller did not ask
//! for: [`Notifier::status`] text is cut to one line, since a newline in it
//! would start a new assignment (`STATUS=x\nSTOPPING=1`), and bounded, since
//! systemd drops an oversize datagram whole.
//!
//! `NOTIFY_SOCKET` stays set for child processes (removing it from the
//! environment needs `unsafe` since Rust 2024); porthole starts none that
//! would speak to systemd.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};
use tracing::{debug, warn};

/// The environment variable in which systemd passes the socket's address.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Longest `STATUS=` text sent, in bytes; longer text is cut at a character
/// boundary. systemd reads a notification into a 4,096-byte buffer and drops
/// any datagram that fills it, so unbounded text could silently swallow the
/// whole message; a status is a line for people, and 1 KiB is plenty.
pub const MAX_STATUS_LEN_BYTES: usize = 1024;

/// The service is serving (after start, and again after a reload).
const READY: &str = "READY=1";
/// The service is shutting down.
const STOPPING: &str = "STOPPING=1";

/// Where notifications go: one systemd notification socket. See the module
/// docs.
#[derive(Debug)]
pub struct Notifier {
    /// The address as given, for log lines.
    address: OsString,
    socket_addr: SocketAddr,
    /// Whether a failed send has been logged at warn already.
    warned: AtomicBool,
}

/// A notification socket address porthole cannot send to.
#[derive(Debug)]
#[non_exhaustive]
pub enum AddressError {
    /// Neither an absolute path nor `@name`: e.g. the `vsock:` form systemd
    /// 254 and later use to reach a virtual machine's host, or a relative path.
    Unsupported(OsString),
    /// Not a valid Unix socket address: longer than `sun_path` holds (107
    /// bytes), or a path with a NUL byte.
    Invalid {
        address: OsString,
        source: io::Error,
    },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Unsupported(address) => write!(
                f,
                "notification socket {address:?} is neither an absolute path nor @name"
            ),
            AddressError::Invalid { address, .. } => {
                write!(
                    f,
                    "notification socket {address:?} is not a Unix socket address"
                )
            }
        }
    }
}

impl std::error::Error for AddressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AddressError::Unsupported(_) => None,
            AddressError::Invalid { source, .. } => Some(source),
        }
    }
}

/// The process's notifier, from `NOTIFY_SOCKET` as it was on first call;
/// `None` when not run by systemd with `Type=notify`. Call sites do
/// `if let Some(n) = porthole::notify::notifier() { n.ready() }`.
pub fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER.get_or_init(Notifier::from_env).as_ref()
}

impl Notifier {
    /// A notifier to `NOTIFY_SOCKET`; `None` when it is unset or empty, or
    /// (with a warning) holds an address porthole cannot send to.
    pub fn from_env() -> Option<Notifier> {
        Self::from_value(std::env::var_os(NOTIFY_SOCKET_ENV))
    }

    /// [`Notifier::from_env`] given the variable's value.
    fn from_value(value: Option<OsString>) -> Option<Notifier> {
        let value = value.filter(|v| !v.is_empty())?;
        match Notifier::new(&value) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                warn!(error = %e, "{NOTIFY_SOCKET_ENV} ignored: systemd will not be told when porthole is ready");
                None
            }
        }
    }

    /// A notifier to `address`: an absolute path, or `@name` for a name in
    /// the abstract namespace.
    pub fn new(address: impl AsRef<OsStr>) -> Result<Notifier, AddressError> {
        let address = address.as_ref();
        let bytes = address.as_bytes();
        let socket_addr = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(address),
            _ => return Err(AddressError::Unsupported(address.to_owned())),
        }
        .map_err(|source| AddressError::Invalid {
            address: address.to_owned(),
            source,
        })?;
        Ok(Notifier {
            address: address.to_owned(),
            socket_addr,
            warned: AtomicBool::new(false),
        })
    }

    /// The address as given.
    pub fn address(&self) -> &OsStr {
        &self.address
    }

    /// `READY=1`: serving, after start or after a reload.
    pub fn ready(&self) {
        self.notify(READY);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`: a reload has started; say
    /// [`Notifier::ready`] when it is done.
    pub fn reloading(&self) {
        match clock_gettime(ClockId::CLOCK_MONOTONIC) {
            Ok(now) => self.notify(&reloading_message(Duration::from(now))),
            Err(e) => {
                // Cannot happen on Linux; older systemd is content without it.
                debug!(error = %e, "CLOCK_MONOTONIC unreadable; RELOADING=1 sent without MONOTONIC_USEC");
                self.notify("RELOADING=1");
            }
        }
    }

    /// `STOPPING=1`: shutting down (draining).
    pub fn stopping(&self) {
        self.notify(STOPPING);
    }

    /// `STATUS=text` for `systemctl status`: control characters become spaces
    /// and the text is cut at [`MAX_STATUS_LEN_BYTES`].
    pub fn status(&self, text: &str) {
        self.notify(&status_message(text));
    }

    /// Sends `message`, logging a failure.
    fn notify(&self, message: &str) {
        let Err(e) = self.send(message) else { return };
        let first = !self.warned.swap(true, Ordering::Relaxed);
        let address = self.address.to_string_lossy();
        if first {
            warn!(%address, error = %e, "could not notify systemd; later failures are logged at debug");
        } else {
            debug!(%address, error = %e, "could not notify systemd");
        }
    }

    /// Sends `message` as one datagram from a fresh unbound socket: a handful
    /// of notifications per process lifetime do not justify keeping a
    /// descriptor open.
    fn send(&self, message: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(message.as_bytes(), &self.socket_addr)?;
        if sent != message.len() {
            // A datagram goes whole or not at all; this would be a kernel bug.
            return Err(io::Error::other("notification sent in part"));
        }
        Ok(())
    }
}

/// `RELOADING=1` stamped with `CLOCK_MONOTONIC` time `now`.
fn reloading_message(now: Duration) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", now.as_micros())
}

/// `STATUS=text` on one line, the text bounded by [`MAX_STATUS_LEN_BYTES`].
fn status_message(text: &str) -> String {
    let mut message = String::with_capacity("STATUS=".len() + text.len().min(MAX_STATUS_LEN_BYTES));
    message.push_str("STATUS=");
    let mut len = 0;
    for c in text.chars() {
        len += c.len_utf8();
        if len > MAX_STATUS_LEN_BYTES {
            break;
        }
        message.push(if c.is_control() { ' ' } else { c });
    }
    message
}

#[cfg(test)]
mod tests;
