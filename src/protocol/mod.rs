//! The control and data-link wire format: pure encode/decode, no I/O.
//!
//! Every message is one frame: a big-endian `u16` length, then a one-byte type,
//! then the body (`length` counts type + body). Frames are capped at
//! [`MAX_FRAME_LEN`] so a peer can never make us allocate more than that, before or
//! after authentication. Decoding is strict and canonical: whatever decodes
//! re-encodes to exactly the same bytes (the fuzz target `control_frame` checks
//! this), so there is one spelling of every message. `PROTOCOL.md` is the normative
//! description and must change together with this file.

pub mod chunk;
mod codec;
pub mod datagram;
pub mod proxy_header;

pub use codec::{DecodeError, EncodeError, check_len, decode, decode_body, encode, to_bytes};

use std::net::SocketAddr;

/// The protocol version this build speaks. Sent in [`Frame::Hello`].
pub const VERSION: u8 = 3;
/// Four bytes at the start of every `Hello`, so a stray connection (a port
/// scanner, an HTTP client, a TLS client on a plain port) is told apart at once.
pub const MAGIC: [u8; 4] = *b"PTHL";
/// Largest frame (type byte + body) we encode or accept. The largest legal message
/// is a `RegisterFailed` (1 + 1 + 64 + 2 + 2 + 1024 = 1094 bytes), so 2 KiB bounds
/// every buffer a peer can make us fill, authenticated or not.
pub const MAX_FRAME_LEN: usize = 2048;
/// Longest service name (bytes). Config validation enforces the same bound.
pub const MAX_NAME_LEN: usize = 64;
/// Longest client id in a named control `Hello` (bytes); the same rule as
/// service names, see [`valid_name`].
pub const MAX_ID_LEN: usize = 64;
/// Longest human-readable text in an `Error` or `RegisterFailed` frame (bytes).
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 2;

/// Random value chosen by one side for one handshake.
pub type Nonce = [u8; 32];
/// HMAC-SHA256 output.
pub type Mac = [u8; 32];
/// Names a control session; data links present it to join their session.
pub type SessionId = [u8; 16];
/// Chosen once per client process; lets a reconnecting client reclaim ports.
pub type ClientId = [u8; 16];

/// What a new connection wants to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkHello {
    /// A client's control link, authenticated with the server's shared token.
    Control { client_id: ClientId, nonce: Nonce },
    /// A client's control link that names its per-client credentials: `id`
    /// (see [`valid_name`]) picks the token its proof is keyed with.
    NamedControl {
        client_id: ClientId,
        nonce: Nonce,
        id: String,
    },
    /// A data link joining an authenticated control session.
    Data { session_id: SessionId },
    /// A multiplexed data link (see `crate::mux`) joining a control session.
    Mux { session_id: SessionId },
}

/// Why a request failed; carried in `Error` and `RegisterFailed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    UnsupportedVersion,
    AuthFailed,
    ProtocolViolation,
    Timeout,
    PortNotAllowed,
    PortInUse,
    TooManyServices,
    BadService,
    UnknownSession,
    ShuttingDown,
    Internal,
    /// A code this build does not know (a newer peer); kept so it re-encodes.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::AuthFailed => 2,
            ErrorCode::ProtocolViolation => 3,
            ErrorCode::Timeout => 4,
            ErrorCode::PortNotAllowed => 5,
            ErrorCode::PortInUse => 6,
            ErrorCode::TooManyServices => 7,
            ErrorCode::BadService => 8,
            ErrorCode::UnknownSession => 9,
            ErrorCode::ShuttingDown => 10,
            ErrorCode::Internal => 11,
            ErrorCode::Other(n) => n,
        }
    }

    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::AuthFailed,
            3 => ErrorCode::ProtocolViolation,
            4 => ErrorCode::Timeout,
            5 => ErrorCode::PortNotAllowed,
            6 => ErrorCode::PortInUse,
            7 => ErrorCode::TooManyServices,
            8 => ErrorCode::BadService,
            9 => ErrorCode::UnknownSession,
            10 => ErrorCode::ShuttingDown,
            11 => ErrorCode::Internal,
            n => ErrorCode::Other(n),
        }
    }
}

/// Every message of the control and data-link protocol.
///
/// Direction is in the doc of each variant (C = client, S = server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// C→S, first frame of every link.
    Hello { version: u8, link: LinkHello },
    /// S→C, answer to `Hello`: the server's fresh nonce.
    Challenge { nonce: Nonce },
    /// C→S, HMAC proving knowledge of the token (see `auth`).
    AuthResponse { mac: Mac },
    /// S→C on a control link: accepted. `mac` proves the server knows the token
    /// too (all zero when `authenticated` is false: a `--insecure-no-auth` server).
    AuthOk {
        session_id: SessionId,
        authenticated: bool,
        mac: Mac,
        heartbeat_interval_ms: u32,
    },
    /// C→S: expose a service; `remote_port` 0 lets the server pick.
    /// `public_address`: each `Start` for it also names the address the
    /// visitor connected to (the service wants PROXY protocol headers).
    /// `udp`: a UDP service, whose public port is a UDP socket and whose
    /// links carry datagram records ([`datagram`]).
    Register {
        name: String,
        remote_port: u16,
        public_address: bool,
        udp: bool,
    },
    /// S→C: the service is listening on `port`.
    Registered { name: String, port: u16 },
    /// S→C: the service was refused; the client's other services are unaffected.
    RegisterFailed {
        name: String,
        code: ErrorCode,
        message: String,
    },
    /// Both ways, every heartbeat interval.
    Heartbeat,
    /// S→C: open `count` more data links.
    OpenData { count: u16 },
    /// S→C on an idle data link: a visitor for `service` arrived from `visitor`.
    /// After this frame the link carries the visitor's bytes in chunks
    /// ([`chunk`]) until both directions end and the client says `Idle`.
    /// `public` is the address the visitor connected to, present when the
    /// service registered with `public_address`.
    /// `udp`: a UDP flow's `Start` (type `0x0f`): datagram records
    /// ([`datagram`]) follow instead of chunks.
    Start {
        service: String,
        visitor: SocketAddr,
        public: Option<SocketAddr>,
        udp: bool,
    },
    /// Either way: fatal for this link; `message` says why.
    Error { code: ErrorCode, message: String },
    /// Either way on a control link: the sender is ending this session on
    /// purpose; `reason` says whether it will be back (see [`Farewell`]).
    Goodbye { reason: Farewell },
    /// C→S: stop exposing `name` (a reload removed or changed it): its public
    /// port closes and takes no more visitors; visitors already in finish.
    Unregister { name: String },
    /// S→C: answer to `Unregister`; the port is closed (or `name` was not
    /// registered in this session: nothing to do).
    Unregistered { name: String },
}

/// Why a peer says `Goodbye`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Farewell {
    /// Leaving for good (a client stopping, or a server shutting down without
    /// a drain). Spelled with no body, as before reasons existed.
    Leaving,
    /// The server is draining (a restart or a deploy): it takes no new
    /// visitors, the ones in flight finish on their links, and the client
    /// should expect it (or its successor) back and reconnect.
    Draining,
    /// A reason this build does not know (a newer peer); kept so it re-encodes.
    Other(u8),
}

impl Farewell {
    /// The body byte; `None` for [`Farewell::Leaving`] (no body).
    pub fn to_u8(self) -> Option<u8> {
        match self {
            Farewell::Leaving => None,
            Farewell::Draining => Some(1),
            Farewell::Other(n) => Some(n),
        }
    }

    /// The reason a body byte names; 0 is not a spelling (leaving has no
    /// body), so every reason has exactly one encoding.
    pub fn from_u8(n: u8) -> Option<Self> {
        match n {
            0 => None,
            1 => Some(Farewell::Draining),
            n => Some(Farewell::Other(n)),
        }
    }
}

/// Whether `name` may be a service name or a client id: 1..=64 bytes of
/// `[A-Za-z0-9_.-]` (printable in a log line and a metric label as it is).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Shortens `text` to at most [`MAX_MESSAGE_LEN`] bytes on a char boundary, so an
/// over-long error message degrades instead of failing to encode.
pub fn clamp_message(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests;
