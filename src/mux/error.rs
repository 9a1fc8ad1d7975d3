//! The mux's errors, layered: [`Error`] is everything a session or a stream
//! reports; inside it, [`Violation`] is what the peer did wrong (its frames
//! decoded, but broke the protocol) and [`Refused`] is why a local
//! [`Session::open`](super::Session::open) was refused.
//!
//! Every variant carries the offending values. The data path speaks
//! `io::Error`: the mux hands out `io::Error::new(kind, Error)` (see
//! [`Error::kind`]), so a caller can `downcast_ref::<mux::Error>()` it.
//!
//! A variant that wraps another error prints as that error and passes its
//! source on (it is only a classification), so a printed chain shows every
//! message once.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::frame::FrameError;

/// Why a session ended, or why a mux operation failed.
///
/// `Clone` because one session's end is every stream's error: the I/O error
/// that ended it is shared behind an `Arc`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the link failed.
    Io(Arc<io::Error>),
    /// The peer sent a header the codec refuses.
    Frame(FrameError),
    /// The peer sent a frame that breaks the protocol.
    Violation(Violation),
    /// No answer to a ping within `timeout`: the link is dead.
    PingTimeout { timeout: Duration },
    /// The link ended cleanly: EOF from the peer, or a drained go-away.
    LinkClosed,
    /// The driver was dropped (its owner cancelled it) before it ended.
    LinkDropped,
    /// A local `open` was refused.
    Refused(Refused),
    /// The peer reset the stream (or this side did, and it is still used).
    StreamReset,
    /// A write after this side's `close` (its `Fin`).
    WriteClosed,
}

/// What the peer did wrong: each ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// `Open` of an id this side opens (client odd, server even).
    WrongParity { stream: u32 },
    /// `Open` of an id not above `last`, the highest the peer opened before.
    ReusedId { stream: u32, last: u32 },
    /// `Data` after the peer's own `Fin` on that stream.
    DataAfterFin { stream: u32 },
    /// `Data` of `len` bytes with only `credit` left on the stream.
    BeyondCredit { stream: u32, len: u64, credit: u64 },
    /// A `Window` grant that takes the stream's credit to `credit`, above `max`.
    CreditOverflow { stream: u32, credit: u64, max: u64 },
}

/// Why a local `open` was refused.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Refused {
    /// The session has ended, for this reason.
    Closed(Box<Error>),
    /// A `GoAway` was sent or received: no new streams either way.
    GoingAway,
    /// The `Open` payload of `len` bytes exceeds `max`.
    OpenTooLarge { len: usize, max: u32 },
    /// Every id of this side's parity has been used.
    IdsExhausted,
    /// `open` streams are in the table, the most it holds (`max`).
    TooManyStreams { open: usize, max: usize },
    /// `used` bytes of windows plus a new stream's `window` exceed `budget`.
    BudgetExhausted { used: u64, window: u64, budget: u64 },
}

impl Error {
    /// The `io::ErrorKind` this error has on the data path.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(e) => e.kind(),
            Error::Frame(_) | Error::Violation(_) => io::ErrorKind::InvalidData,
            Error::PingTimeout { .. } => io::ErrorKind::TimedOut,
            Error::LinkClosed | Error::LinkDropped => io::ErrorKind::ConnectionAborted,
            Error::Refused(_) => io::ErrorKind::ConnectionRefused,
            Error::StreamReset => io::ErrorKind::ConnectionReset,
            Error::WriteClosed => io::ErrorKind::BrokenPipe,
        }
    }

    /// The mux error inside an `io::Error` the mux handed out, if it is one.
    pub fn of(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        Error::Frame(e)
    }
}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Error::Violation(v)
    }
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Self {
        Error::Refused(r)
    }
}

/// `io::Error::new(err.kind(), err)`: downcasts back to [`Error`].
impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.kind(), e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Frame(e) => e.fmt(f),
            Error::Violation(v) => v.fmt(f),
            Error::PingTimeout { timeout } => write!(f, "no answer to a ping within {timeout:?}"),
            Error::LinkClosed => f.write_str("mux link closed"),
            Error::LinkDropped => f.write_str("mux link dropped"),
            Error::Refused(r) => r.fmt(f),
            Error::StreamReset => f.write_str("mux stream reset"),
            Error::WriteClosed => f.write_str("mux stream already closed for writing"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            Error::Refused(r) => r.source(),
            // A codec error, a violation and the rest have no cause below them.
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::WrongParity { stream } => {
                write!(f, "peer opened stream {stream} of the wrong parity")
            }
            Violation::ReusedId { stream, last } => {
                write!(f, "peer reused stream id {stream} (not above {last})")
            }
            Violation::DataAfterFin { stream } => {
                write!(f, "data on stream {stream} after its fin")
            }
            Violation::BeyondCredit {
                stream,
                len,
                credit,
            } => write!(
                f,
                "peer sent {len} bytes on stream {stream} with {credit} credit left"
            ),
            Violation::CreditOverflow {
                stream,
                credit,
                max,
            } => write!(f, "credit on stream {stream} above {max} ({credit})"),
        }
    }
}

impl StdError for Violation {}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Closed(why) => write!(f, "mux session closed: {why}"),
            Refused::GoingAway => f.write_str("mux session is going away"),
            Refused::OpenTooLarge { len, max } => {
                write!(f, "open payload too large: {len} bytes, max {max}")
            }
            Refused::IdsExhausted => f.write_str("mux stream ids exhausted"),
            Refused::TooManyStreams { open, max } => {
                write!(f, "{open} streams open (max {max})")
            }
            Refused::BudgetExhausted {
                used,
                window,
                budget,
            } => write!(
                f,
                "mux memory budget exhausted ({used} + {window} > {budget} bytes)"
            ),
        }
    }
}

impl StdError for Refused {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            // Its message is printed above; what caused it is the source.
            Refused::Closed(why) => why.source(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::frame::Kind;

    #[test]
    fn io_errors_downcast_back_and_keep_kind_and_text() {
        let v = Violation::BeyondCredit {
            stream: 1,
            len: 10,
            credit: 3,
        };
        let e = io::Error::from(Error::from(v));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "peer sent 10 bytes on stream 1 with 3 credit left"
        );
        let back = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(back, Some(Error::Violation(got)) if *got == v));

        let frame = Error::from(FrameError::UnknownVersion(9));
        assert_eq!(frame.kind(), io::ErrorKind::InvalidData);
        assert_eq!(frame.to_string(), "unknown mux version 9");
        let large = Error::from(FrameError::TooLarge {
            kind: Kind::Data,
            len: 5,
            max: 4,
        });
        assert!(large.to_string().contains("exceeds"));

        let closed = Error::from(Refused::Closed(Box::new(Error::LinkDropped)));
        assert_eq!(closed.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(closed.to_string(), "mux session closed: mux link dropped");
        let timeout = Error::PingTimeout {
            timeout: Duration::from_millis(100),
        };
        assert_eq!(timeout.kind(), io::ErrorKind::TimedOut);
        assert_eq!(timeout.to_string(), "no answer to a ping within 100ms");
    }

    /// An I/O error whose payload has a cause, as a TLS error inside an
    /// `io::Error` does.
    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn wrappers_pass_the_source_on_without_repeating_it() {
        let cause = io::Error::from(io::ErrorKind::UnexpectedEof);
        let e = Error::from(io::Error::new(io::ErrorKind::BrokenPipe, Outer(cause)));
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), "outer");
        let kind = |e: &dyn StdError| {
            e.source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(io::Error::kind)
        };
        assert_eq!(kind(&e), Some(io::ErrorKind::UnexpectedEof));
        let refused = Error::from(Refused::Closed(Box::new(e)));
        assert_eq!(refused.to_string(), "mux session closed: outer");
        assert_eq!(kind(&refused), Some(io::ErrorKind::UnexpectedEof));
        assert!(Error::LinkClosed.source().is_none());
    }
}
