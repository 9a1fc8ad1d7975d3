//! Why the client gave up (see the fatal policy in the module docs).

use std::fmt;
use std::io;
use std::time::Duration;

use crate::handshake::HandshakeError;

/// Why the client gave up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Retrying cannot help: the server refused our token, could not prove
    /// it knows it, runs without authentication unasked, or speaks another
    /// protocol version ([`HandshakeError::is_permanent`]).
    Handshake(HandshakeError),
    /// The server refused every service, none of them for a port in use.
    EveryServiceRefused,
    /// The server refused every service, a port in use among them, and
    /// still did after `waited` (`port_in_use_timeout`).
    PortInUse { waited: Duration },
    /// The client could not start: `what` failed.
    Start {
        what: &'static str,
        source: io::Error,
    },
    /// With several servers: each of them (by address) ended the client's
    /// sessions with it for good, for these reasons.
    EveryServer(Vec<(String, ClientError)>),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Handshake(e) => write!(f, "{e}"),
            ClientError::EveryServiceRefused => f.write_str(
                "the server refused every service (the reasons are logged above); fix the services and start again",
            ),
            ClientError::PortInUse { waited } => write!(
                f,
                "the server refused every service and a port was still in use after {}: stop what holds it (another client?) or choose another remote_port",
                crate::logging::Rounded(*waited)
            ),
            ClientError::Start { what, source } => write!(f, "cannot start {what}: {source}"),
            ClientError::EveryServer(failed) => {
                f.write_str("gave up on every server: ")?;
                for (i, (server, e)) in failed.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{server}: {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Handshake(e) => Some(e),
            ClientError::Start { source, .. } => Some(source),
            ClientError::EveryServiceRefused
            | ClientError::PortInUse { .. }
            | ClientError::EveryServer(_) => None,
        }
    }
}
