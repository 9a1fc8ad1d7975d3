//! The state's invariants (listed in the module docs of [`super`]) as a check
//! the fuzzer runs after every step, and [`Invariant`], the first one broken.

use std::fmt;

use super::*;

/// A broken invariant of [`State`], with the values that break it. Never a
/// peer's fault: any of these is a bug in the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invariant {
    /// The budget in use is not the sum of the streams' windows (`windows`),
    /// or exceeds the session's `budget`.
    Budget {
        used: u64,
        windows: u64,
        budget: u64,
    },
    /// A stream's unread, still grantable and read-but-not-yet-regranted
    /// bytes do not add up to its window.
    Window {
        stream: u32,
        buffered: usize,
        credit: u64,
        consumed: u64,
        window: u64,
    },
    /// A stream's send credit above [`MAX_CREDIT`], or its window above the
    /// configured maximum.
    Limits {
        stream: u32,
        credit: u64,
        window: u64,
    },
    /// More than [`SEND_BUF_LEN`] bytes queued on a stream.
    SendQueue { stream: u32, queued: usize },
    /// More streams in the table than `Config::max_streams`.
    Streams { count: usize, max: usize },
}

impl State {
    /// Checks the invariants listed in the module docs; the fuzzer calls it
    /// after every step. `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), Invariant> {
        let windows: u64 = self.streams.values().map(|s| s.window).sum();
        let (used, budget) = (self.budget_used, self.config.budget);
        if windows != used || used > budget {
            return Err(Invariant::Budget {
                used,
                windows,
                budget,
            });
        }
        let max_window =
            u64::from(self.config.max_window).max(u64::from(self.config.initial_window));
        for (&stream, s) in &self.streams {
            // Unread + still grantable + read-but-not-yet-regranted is exactly
            // the window: a stream never holds more than it granted.
            if s.recv.len() as u64 + s.recv_credit + s.consumed != s.window {
                return Err(Invariant::Window {
                    stream,
                    buffered: s.recv.len(),
                    credit: s.recv_credit,
                    consumed: s.consumed,
                    window: s.window,
                });
            }
            if s.credit > MAX_CREDIT || s.window > max_window {
                return Err(Invariant::Limits {
                    stream,
                    credit: s.credit,
                    window: s.window,
                });
            }
            if s.send.len() > SEND_BUF_LEN {
                let queued = s.send.len();
                return Err(Invariant::SendQueue { stream, queued });
            }
        }
        let (count, max) = (self.streams.len(), self.config.max_streams);
        if count > max {
            return Err(Invariant::Streams { count, max });
        }
        Ok(())
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Invariant::Budget {
                used,
                windows,
                budget,
            } => write!(f, "budget: used {used} windows {windows} cap {budget}"),
            Invariant::Window {
                stream,
                buffered,
                credit,
                consumed,
                window,
            } => write!(
                f,
                "stream {stream}: {buffered} buffered + {credit} credit + {consumed} consumed != window {window}"
            ),
            Invariant::Limits {
                stream,
                credit,
                window,
            } => write!(f, "stream {stream}: credit {credit} window {window}"),
            Invariant::SendQueue { stream, queued } => {
                write!(f, "stream {stream}: {queued} bytes queued")
            }
            Invariant::Streams { count, max } => write!(f, "{count} streams (max {max})"),
        }
    }
}

impl std::error::Error for Invariant {}
