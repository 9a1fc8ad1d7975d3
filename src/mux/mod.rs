//! porthole's stream multiplexer: many byte streams over one link.
//!
//! - [`frame`]: the pure codec (12-byte header, capped payloads).
//! - [`state`]: the session state machine without I/O — per-stream credit flow
//!   control with auto-tuned windows, a session-wide memory budget, round-robin
//!   scheduling, half-close, reset, ping, go-away.
//! - [`session`]: the handle and the driver future that moves frames.
//! - [`stream`]: one stream as `AsyncRead + AsyncWrite`; relays use the copy engine.
//! - [`error`]: [`Error`], what a session or stream reports (inside the
//!   `io::Error`s of the data path), with the peer's [`Violation`]s and the
//!   reasons a local `open` is [`Refused`].
//!
//! Flow control is per stream and credit-based: a stream never has more unread
//! bytes buffered than the credit it granted, so the driver never blocks on a
//! slow reader and one stalled stream cannot freeze the others.

pub mod error;
pub mod frame;
pub mod session;
mod shared;
pub mod state;
pub mod stream;

pub use error::{Error, Refused, Violation};
pub use session::Session;
pub use state::{Config, Side};
pub use stream::Stream;
