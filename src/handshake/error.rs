//! Why a handshake failed, typed: the server's log folding, the client's
//! give-up decision and the `Error` frame sent to the peer all come from the
//! variant, never from a message text or an `io::ErrorKind`.

use std::fmt;
use std::io;

use crate::protocol::{ErrorCode, Frame, clamp_message};
use crate::transport::{TlsFailure, is_permanent_tls};

/// Why a link was not authenticated.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The client's `Hello` names a protocol version this server does not speak.
    Version { theirs: u8, ours: u8 },
    /// The client's proof does not verify: it holds a different token.
    BadProof,
    /// The server's `AuthOk` carries a proof that does not verify: a
    /// different token, or not the server we meant to reach.
    ServerUnproven,
    /// The server runs without authentication (`--insecure-no-auth`) and this
    /// client was not told to accept that.
    ServerUnauthenticated,
    /// A frame other than the one due at this step.
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    /// A data link names a session the server does not have (ended, or never was).
    UnknownSession,
    /// The server holds as many sessions as it may.
    SessionLimit,
    /// The peer refused us with an `Error` frame.
    Refused { code: ErrorCode, message: String },
    /// Bytes that are not a frame.
    Malformed(io::Error),
    /// Server side: the client opened with a TLS handshake, and this server
    /// runs plain TCP.
    ClientSpeaksTls,
    /// Client side: the server answered our plain-TCP hello with TLS (an
    /// alert): it runs with TLS, and this client without.
    ServerSpeaksTls,
    /// The transport's own handshake (TLS) failed; the error inside is a
    /// [`TlsFailure`] when TLS said why.
    Transport(io::Error),
    /// A step took longer than the handshake deadline allows.
    Timeout(io::Error),
    /// The peer closed the connection before the handshake ended.
    Closed,
    /// Any other I/O failure (connect, write, local resources).
    Io(io::Error),
}

impl HandshakeError {
    /// The code an `Error` frame carries for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            HandshakeError::Version { .. } => ErrorCode::UnsupportedVersion,
            HandshakeError::BadProof
            | HandshakeError::ServerUnproven
            | HandshakeError::ServerUnauthenticated => ErrorCode::AuthFailed,
            // A late, missing or undecodable frame is a violation too
            // (PROTOCOL.md: pre-auth timeouts are reported as 3).
            HandshakeError::Unexpected { .. }
            | HandshakeError::Malformed(_)
            | HandshakeError::ClientSpeaksTls
            | HandshakeError::ServerSpeaksTls
            | HandshakeError::Timeout(_)
            | HandshakeError::Closed
            | HandshakeError::Io(_) => ErrorCode::ProtocolViolation,
            HandshakeError::UnknownSession => ErrorCode::UnknownSession,
            HandshakeError::Refused { code, .. } => *code,
            HandshakeError::SessionLimit | HandshakeError::Transport(_) => ErrorCode::Internal,
        }
    }

    /// The `Error` frame that tells the peer why it is refused.
    pub fn to_frame(&self) -> Frame {
        Frame::Error {
            code: self.code(),
            message: clamp_message(&self.to_string()),
        }
    }

    /// The failure a peer's `Error` frame reports.
    pub fn from_wire(code: ErrorCode, message: String) -> Self {
        HandshakeError::Refused { code, message }
    }

    /// Whether trying again with the same settings can never succeed: a
    /// token or version mismatch, a server we may not trust, TLS on one side
    /// only, or a TLS failure only an operator can fix (a certificate that is
    /// untrusted, for another name, out of its dates, missing or refused; see
    /// [`TlsFailure::is_permanent`]). A closed connection, a timeout, a reset
    /// or a server at its limit can pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            HandshakeError::Version { .. }
            | HandshakeError::BadProof
            | HandshakeError::ServerUnproven
            | HandshakeError::ServerUnauthenticated
            | HandshakeError::ClientSpeaksTls
            | HandshakeError::ServerSpeaksTls => true,
            HandshakeError::Refused { code, .. } => {
                matches!(code, ErrorCode::AuthFailed | ErrorCode::UnsupportedVersion)
            }
            HandshakeError::Transport(e) | HandshakeError::Io(e) | HandshakeError::Malformed(e) => {
                is_permanent_tls(e)
            }
            _ => false,
        }
    }

    /// The cause in a few words, the same for every instance: what folded
    /// logs count by.
    pub fn cause(&self) -> &'static str {
        match self {
            HandshakeError::Version { .. } => "unsupported protocol version",
            HandshakeError::BadProof => "authentication failed",
            HandshakeError::ServerUnproven | HandshakeError::ServerUnauthenticated => {
                "server not authenticated"
            }
            HandshakeError::Unexpected { .. } | HandshakeError::Malformed(_) => "handshake refused",
            HandshakeError::ClientSpeaksTls => "TLS client at a plain-TCP server",
            HandshakeError::ServerSpeaksTls => "plain-TCP client at a TLS server",
            HandshakeError::UnknownSession => "data link for an unknown session",
            HandshakeError::SessionLimit => "session limit reached",
            HandshakeError::Refused { .. } => "refused by the peer",
            HandshakeError::Transport(_) => "TLS handshake failed",
            HandshakeError::Timeout(_) => "handshake timed out",
            HandshakeError::Closed => "closed during the handshake",
            HandshakeError::Io(_) => "I/O error during the handshake",
        }
    }
}

/// Classifies a failed frame read or write: a TLS failure (on a TLS link a
/// refusal of our certificate arrives on the first read), end of stream,
/// deadline, bytes that are no frame, or another I/O error.
impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>()) {
            return HandshakeError::Transport(e);
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
            io::ErrorKind::TimedOut => HandshakeError::Timeout(e),
            io::ErrorKind::InvalidData => HandshakeError::Malformed(e),
            _ => HandshakeError::Io(e),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Version { theirs, ours } => write!(
                f,
                "client speaks protocol version {theirs}; this server speaks {ours}"
            ),
            HandshakeError::BadProof => {
                f.write_str("authentication failed: the client's token does not match the server's")
            }
            HandshakeError::ServerUnproven => f.write_str(
                "authentication failed: the server could not prove it knows the token \
                 (wrong server, or a different token)",
            ),
            HandshakeError::ServerUnauthenticated => f.write_str(
                "authentication failed: the server runs without authentication \
                 (--insecure-no-auth) and cannot prove it is the real server; \
                 pass --insecure-no-auth to the client to accept that",
            ),
            HandshakeError::Unexpected { expected, got } => {
                write!(f, "expected {expected}, got {got}")
            }
            HandshakeError::UnknownSession => {
                f.write_str("data link names an unknown or ended session")
            }
            HandshakeError::SessionLimit => {
                f.write_str("the server is at its session limit; try again later")
            }
            HandshakeError::Refused { code, message } => match code {
                // The server's own words already say what failed.
                ErrorCode::AuthFailed | ErrorCode::UnsupportedVersion => f.write_str(message),
                code => write!(f, "server error {code:?}: {message}"),
            },
            HandshakeError::ClientSpeaksTls => f.write_str(
                "the client tried TLS, and this server runs plain TCP \
                 — start the server with --tls, or the client without",
            ),
            HandshakeError::ServerSpeaksTls => f.write_str(
                "the server speaks TLS: add --tls \
                 (and --ca if its certificate is from gen-cert)",
            ),
            HandshakeError::Malformed(e) | HandshakeError::Timeout(e) | HandshakeError::Io(e) => {
                write!(f, "{e}")
            }
            // A TLS failure's message says what failed already.
            HandshakeError::Transport(e) if e.get_ref().is_some_and(|i| i.is::<TlsFailure>()) => {
                write!(f, "{e}")
            }
            HandshakeError::Transport(e) => write!(f, "transport handshake failed: {e}"),
            HandshakeError::Closed => f.write_str("connection closed by peer"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Malformed(e)
            | HandshakeError::Transport(e)
            | HandshakeError::Timeout(e)
            | HandshakeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HandshakeError> for io::Error {
    fn from(e: HandshakeError) -> io::Error {
        let kind = match &e {
            HandshakeError::Closed => io::ErrorKind::UnexpectedEof,
            HandshakeError::Timeout(_) => io::ErrorKind::TimedOut,
            HandshakeError::Io(inner) | HandshakeError::Transport(inner) => inner.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// The name of a frame's type, for `Unexpected` (never its contents: a
/// hostile peer's bytes do not belong in our logs at length).
pub(super) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "hello",
        Frame::Challenge { .. } => "challenge",
        Frame::AuthResponse { .. } => "auth response",
        Frame::AuthOk { .. } => "auth ok",
        Frame::Register { .. } => "register",
        Frame::Registered { .. } => "registered",
        Frame::RegisterFailed { .. } => "register failed",
        Frame::Heartbeat => "heartbeat",
        Frame::OpenData { .. } => "open data",
        Frame::Start { .. } => "start",
        Frame::Error { .. } => "error",
        Frame::Goodbye { .. } => "goodbye",
        Frame::Unregister { .. } => "unregister",
        Frame::Unregistered { .. } => "unregistered",
    }
}
