//! A failed TLS handshake (or TLS record), typed: what went wrong
//! ([`TlsCause`]), which side is telling ([`Side`]), and the sentence the
//! user reads. It travels inside the `io::Error` the transport returns, so
//! the data path keeps speaking `io::Error` while the client can still ask
//! [`is_permanent_tls`] whether retrying can ever help.

use std::error::Error;
use std::fmt;
use std::io;

use super::describe::describe_for;

/// The side of the link that meets (and prints) a failure: its hints name
/// this side's own options (`ca` on a client, `client_ca` on a server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// This side, as a noun.
    pub(super) fn own(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    /// The other end, as a noun.
    pub(super) fn peer(self) -> &'static str {
        match self {
            Side::Client => "server",
            Side::Server => "client",
        }
    }
}

/// Why a TLS handshake failed, in the classes that decide what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsCause {
    /// The peer's certificate is signed by a CA we do not trust, or the
    /// signature does not verify (a look-alike CA).
    UntrustedCertificate,
    /// The server's certificate does not name the host we asked for.
    WrongName,
    /// The peer's certificate is past its notAfter date.
    Expired,
    /// The peer's certificate is before its notBefore date.
    NotValidYet,
    /// The peer's certificate has been revoked.
    Revoked,
    /// The peer's certificate is unusable otherwise (malformed, wrong key
    /// usage, an unsupported algorithm).
    BadCertificate,
    /// Mutual TLS without a client certificate: the client sent none, or the
    /// server tells us it requires one.
    CertificateMissing,
    /// The peer refused our certificate (it sent a certificate alert).
    CertificateRefused,
    /// The peer does not speak TLS at all.
    NotTls,
    /// No TLS version, cipher suite or protocol in common.
    Incompatible,
    /// The peer speaks TLS but broke it (a malformed or out-of-turn message,
    /// a record that does not decrypt, an internal error at its end).
    Protocol,
    /// The peer closed the connection before the handshake ended.
    Closed,
    /// An I/O error under TLS: reset, refused, unreachable.
    Io,
    /// Anything else (a local failure: clock, random source).
    Other,
}

impl TlsCause {
    /// Whether only an operator can fix it: retrying with the same settings
    /// meets the same refusal. A closed or reset connection, a garbled record
    /// or a peer's internal error can pass (a restart, a flaky path).
    pub fn is_permanent(self) -> bool {
        match self {
            TlsCause::UntrustedCertificate
            | TlsCause::WrongName
            | TlsCause::Expired
            | TlsCause::NotValidYet
            | TlsCause::Revoked
            | TlsCause::BadCertificate
            | TlsCause::CertificateMissing
            | TlsCause::CertificateRefused
            | TlsCause::NotTls
            | TlsCause::Incompatible => true,
            TlsCause::Protocol | TlsCause::Closed | TlsCause::Io | TlsCause::Other => false,
        }
    }
}

/// A TLS failure, as the transport reports it inside an `io::Error`.
#[derive(Debug)]
pub struct TlsFailure {
    cause: TlsCause,
    side: Side,
    message: String,
    /// What rustls said, when it was rustls that failed.
    tls: Option<rustls::Error>,
    /// The I/O error underneath, when it was not.
    io: Option<io::Error>,
}

impl TlsFailure {
    /// The failure `tls` (a rustls error) means to `side`.
    pub fn from_rustls(tls: rustls::Error, side: Side, handshaking: bool) -> Self {
        let (cause, words) = describe_for(&tls, side);
        TlsFailure {
            cause,
            side,
            message: format!("{}: {words}", stage(handshaking)),
            tls: Some(tls),
            io: None,
        }
    }

    pub fn cause(&self) -> TlsCause {
        self.cause
    }

    /// The side that met the failure (and whose options its hints name).
    pub fn side(&self) -> Side {
        self.side
    }

    /// See [`TlsCause::is_permanent`].
    pub fn is_permanent(&self) -> bool {
        self.cause.is_permanent()
    }

    /// rustls's own error, for code that needs the detail. Its `Display`
    /// prints rustls's types with `Debug`: not for users.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        self.tls.as_ref()
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for TlsFailure {
    /// The I/O error underneath; never the rustls error (see
    /// [`TlsFailure::rustls_error`]), so a printed chain stays in words.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.io.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

fn stage(handshaking: bool) -> &'static str {
    if handshaking {
        "TLS handshake failed"
    } else {
        "TLS"
    }
}

/// Turns a TLS failure into an `io::Error` carrying a [`TlsFailure`] (same
/// kind); other I/O errors pass unchanged once the handshake is done.
pub(super) fn explain(e: io::Error, side: Side, handshaking: bool) -> io::Error {
    let kind = e.kind();
    let inner = e.get_ref();
    if inner.is_some_and(|i| i.is::<TlsFailure>()) {
        return e;
    }
    if inner.is_some_and(|i| i.is::<rustls::Error>()) {
        return match e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
            Some(Ok(tls)) => {
                tracing::debug!("TLS error in detail: {tls:?}");
                io::Error::new(kind, TlsFailure::from_rustls(*tls, side, handshaking))
            }
            // Not reached (checked above); both keep what there was.
            Some(Err(other)) => io::Error::new(kind, other),
            None => io::Error::from(kind),
        };
    }
    if !handshaking {
        return e;
    }
    let (cause, words) = match kind {
        io::ErrorKind::UnexpectedEof => (
            TlsCause::Closed,
            format!(
                "the {} closed the connection (is it running without --tls? both sides need it)",
                side.peer()
            ),
        ),
        _ => (TlsCause::Io, e.to_string()),
    };
    let failure = TlsFailure {
        cause,
        side,
        message: format!("{}: {words}", stage(true)),
        tls: None,
        io: Some(e),
    };
    io::Error::new(kind, failure)
}

/// Whether `e` is (or wraps, at any depth of `source()` or nested
/// `io::Error`s) a TLS failure that only an operator can fix: an untrusted,
/// misnamed, expired, not yet valid, missing or refused certificate, or a
/// peer that does not speak TLS. False for everything else, TLS or not.
pub fn is_permanent_tls(e: &io::Error) -> bool {
    find_failure(e).is_some_and(TlsFailure::is_permanent)
}

/// The [`TlsFailure`] inside `e`, if any (see [`is_permanent_tls`]).
pub fn tls_failure(e: &io::Error) -> Option<&TlsFailure> {
    find_failure(e)
}

/// How deep [`find_failure`] looks: error chains are short, and a bound
/// keeps a pathological (self-referencing) `source()` from looping.
const MAX_CHAIN_DEPTH: usize = 16;

fn find_failure(e: &io::Error) -> Option<&TlsFailure> {
    let mut next: Option<&(dyn Error + 'static)> = e.get_ref().map(|i| i as _);
    for _ in 0..MAX_CHAIN_DEPTH {
        let err = next?;
        if let Some(failure) = err.downcast_ref::<TlsFailure>() {
            return Some(failure);
        }
        // `io::Error::source` skips its own inner error: look inside.
        next = match err.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|i| i as _),
            None => err.source(),
        };
    }
    None
}
