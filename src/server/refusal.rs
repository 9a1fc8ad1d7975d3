//! Why the server refuses to register a service, typed: each variant carries
//! the values that broke a rule. [`Refusal::code`] is what `RegisterFailed`
//! carries, and the message its `Display`.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;

use crate::protocol::ErrorCode;

/// Why a registration was refused; the client's other services are unaffected.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// The name is not 1..=64 bytes of `[A-Za-z0-9_.-]`.
    BadName { name: String },
    /// This session already has a service of that name.
    AlreadyRegistered { name: String },
    /// The session has `max_services_per_client` services.
    TooManyServices { max: usize },
    /// The server has `MAX_PUBLIC_PORTS` public ports open.
    TooManyPorts { max: usize },
    /// The port is outside the server's `allow_ports`.
    PortNotAllowed {
        port: u16,
        allowed: Vec<RangeInclusive<u16>>,
    },
    /// Someone else holds the port.
    PortInUse { port: u16 },
    /// `remote_port` 0, and every allowed port is taken.
    NoFreePort,
    /// Binding the port failed for another reason.
    Bind(io::Error),
}

impl Refusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::BadName { .. } | Refusal::AlreadyRegistered { .. } => ErrorCode::BadService,
            Refusal::TooManyServices { .. } | Refusal::TooManyPorts { .. } => {
                ErrorCode::TooManyServices
            }
            Refusal::PortNotAllowed { .. } => ErrorCode::PortNotAllowed,
            Refusal::PortInUse { .. } | Refusal::NoFreePort => ErrorCode::PortInUse,
            Refusal::Bind(_) => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadName { name } => write!(f, "invalid service name {name:?}"),
            Refusal::AlreadyRegistered { name } => {
                write!(f, "service {name:?} is already registered")
            }
            Refusal::TooManyServices { max } => write!(f, "at most {max} services per client"),
            Refusal::TooManyPorts { max } => {
                write!(f, "the server already has {max} public ports open")
            }
            Refusal::PortNotAllowed { port, allowed } => {
                let ranges: Vec<String> = allowed
                    .iter()
                    .map(|r| format!("{}-{}", r.start(), r.end()))
                    .collect();
                let ranges = ranges.join(", ");
                write!(
                    f,
                    "port {port} is outside the server's allow_ports ({ranges})"
                )
            }
            Refusal::PortInUse { port } => write!(f, "port {port} is already in use on the server"),
            Refusal::NoFreePort => f.write_str("no free port is left in the server's allow_ports"),
            Refusal::Bind(e) => write!(f, "server could not open the port: {e}"),
        }
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refusal::Bind(e) => Some(e),
            _ => None,
        }
    }
}
