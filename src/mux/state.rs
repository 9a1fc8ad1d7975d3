//! The session's state machine, without I/O: streams, credit, the send
//! schedule. The driver feeds it decoded frames ([`State::on_frame`]) and asks it
//! for bytes to write ([`State::fill`]); streams call [`State::read`],
//! [`State::queue`], [`State::finish`] and [`State::release`].
//! Everything here is synchronous, so the fuzzer can drive it directly.
//!
//! Invariants (checked by the fuzz target `mux_session`):
//! - a stream never holds more unread bytes than the credit it granted: a `Data`
//!   frame beyond the remaining credit is a session error, never buffered;
//! - the sum of every stream's receive window stays within `Config::budget`;
//! - credit never overflows (a grant past [`MAX_CREDIT`] is a session error);
//! - stream ids are never reused: a peer-opened id must exceed every earlier one.

use std::collections::{HashMap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::error::{Error, Refused, Violation};
use super::frame::{FLAG_ACK, Header, Kind, MAX_DATA_LEN};

mod invariants;
mod peer;
mod send;

pub use invariants::Invariant;

/// Most credit a stream can hold; more is a broken or hostile peer.
pub const MAX_CREDIT: u64 = 1 << 30;
/// Bytes a stream may queue for sending before its writer waits.
pub const SEND_BUF_LEN: usize = 128 * 1024;
/// Write batches stop growing past this many bytes.
const BATCH_LEN: usize = 256 * 1024;
/// Reset codes.
pub const RESET_CANCEL: u32 = 1;
pub const RESET_REFUSED: u32 = 2;

/// The first `n` bytes of `q` (n ≤ len) as its two contiguous parts, so they
/// are copied with `memcpy` rather than byte by byte.
pub(super) fn front(q: &VecDeque<u8>, n: usize) -> (&[u8], &[u8]) {
    let (a, b) = q.as_slices();
    if n <= a.len() {
        (&a[..n], &[])
    } else {
        (a, &b[..n - a.len()])
    }
}

/// Which ids this side opens: the client odd, the server even.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Limits and timers of one session.
#[derive(Clone, Debug)]
pub struct Config {
    /// Window every stream starts with (both sides must agree: it is the
    /// credit each side assumes without a `Window` frame).
    pub initial_window: u32,
    /// Largest window auto-tuning may grow one stream to.
    pub max_window: u32,
    /// Sum of all streams' receive windows: the session's memory bound.
    pub budget: u64,
    /// Streams open at once.
    pub max_streams: usize,
    /// Whether the peer may open streams. The tunnel's server side says no:
    /// only it opens streams, and a client opening its own would only be a
    /// way to make the server buffer data nobody reads.
    pub accept_streams: bool,
    pub ping_interval: Duration,
    /// No answer to a ping within this: the link is dead.
    pub ping_timeout: Duration,
}

/// The protocol's initial window (PROTOCOL.md): 256 KiB.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Memory for windows grown past their initial size (auto-tuning), on top of
/// every stream's initial window.
pub const GROWTH_BUDGET: u64 = 256 * 1024 * 1024;

impl Config {
    /// A session for up to `max_streams` streams: the budget covers every
    /// stream's initial window (so the stream count, not the budget, is what
    /// refuses a stream) plus [`GROWTH_BUDGET`] for windows grown past it.
    /// That is also the memory bound: each stream may buffer its window.
    pub fn for_streams(max_streams: usize) -> Self {
        let initial = u64::from(INITIAL_WINDOW) * max_streams as u64;
        Config {
            initial_window: INITIAL_WINDOW,
            max_window: 16 * 1024 * 1024,
            budget: initial + GROWTH_BUDGET,
            max_streams,
            accept_streams: true,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::for_streams(1024)
    }
}

#[derive(Default)]
pub(super) struct StreamState {
    pub recv: VecDeque<u8>,
    /// Credit the peer still has on this stream.
    recv_credit: u64,
    /// This stream's receive window (what it has granted in all).
    window: u64,
    /// Bytes the application read since the last `Window` frame.
    consumed: u64,
    last_grant: Option<Instant>,
    pub send: VecDeque<u8>,
    /// Credit we still have to send.
    credit: u64,
    in_ready: bool,
    pub fin_requested: bool,
    fin_sent: bool,
    pub remote_fin: bool,
    pub reset: bool,
    /// The handle was dropped after a clean close; remove once drained.
    orphan: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
}

impl StreamState {
    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// The whole session's state.
pub struct State {
    config: Config,
    side: Side,
    pub(super) streams: HashMap<u32, StreamState>,
    next_id: u32,
    last_peer_id: u32,
    /// Control frames (and Open payloads) to send before any data.
    control: VecDeque<(Header, Vec<u8>)>,
    ready: VecDeque<u32>,
    pub(super) accepted: VecDeque<(u32, Vec<u8>)>,
    pub(super) accept_waker: Option<Waker>,
    /// Sum of receive windows.
    budget_used: u64,
    go_away_sent: bool,
    go_away_received: bool,
    /// Why the session ended, once it has.
    pub(super) closed: Option<Error>,
    rtt: Option<Duration>,
    ping: Option<(u32, Instant)>,
    ping_nonce: u32,
}

impl State {
    pub fn new(side: Side, config: Config) -> State {
        State {
            side,
            next_id: if side == Side::Client { 1 } else { 2 },
            config,
            streams: HashMap::new(),
            last_peer_id: 0,
            control: VecDeque::new(),
            ready: VecDeque::new(),
            accepted: VecDeque::new(),
            accept_waker: None,
            budget_used: 0,
            go_away_sent: false,
            go_away_received: false,
            closed: None,
            rtt: None,
            ping: None,
            ping_nonce: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Streams in the table (open, or closing and draining).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn budget_used(&self) -> u64 {
        self.budget_used
    }

    /// Opens a local stream; the `Open` frame carries `payload`.
    pub fn open(&mut self, payload: Vec<u8>) -> Result<u32, Refused> {
        if let Some(why) = &self.closed {
            return Err(Refused::Closed(Box::new(why.clone())));
        }
        if self.go_away_sent || self.go_away_received {
            return Err(Refused::GoingAway);
        }
        let max = super::frame::MAX_OPEN_LEN;
        if payload.len() > max as usize {
            let len = payload.len();
            return Err(Refused::OpenTooLarge { len, max });
        }
        let id = self.next_id;
        let next = id.checked_add(2).ok_or(Refused::IdsExhausted)?;
        self.admit()?;
        self.next_id = next;
        self.insert(id);
        let len = payload.len() as u32;
        self.control
            .push_back((Header::new(Kind::Open, 0, id, len), payload));
        Ok(id)
    }

    /// Room for one more stream, or why not.
    fn admit(&self) -> Result<(), Refused> {
        let (open, max) = (self.streams.len(), self.config.max_streams);
        if open >= max {
            return Err(Refused::TooManyStreams { open, max });
        }
        let (used, budget) = (self.budget_used, self.config.budget);
        let window = u64::from(self.config.initial_window);
        if used + window > budget {
            return Err(Refused::BudgetExhausted {
                used,
                window,
                budget,
            });
        }
        Ok(())
    }

    fn insert(&mut self, id: u32) {
        let window = u64::from(self.config.initial_window);
        self.budget_used += window;
        self.streams.insert(
            id,
            StreamState {
                recv_credit: window,
                window,
                credit: window,
                ..StreamState::default()
            },
        );
    }

    /// Moves up to `buf.len()` received bytes of stream `id` into `buf`.
    pub fn read(&mut self, id: u32, buf: &mut [u8]) -> usize {
        let Some(s) = self.streams.get_mut(&id) else {
            return 0;
        };
        let n = buf.len().min(s.recv.len());
        let (a, b) = front(&s.recv, n);
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..n].copy_from_slice(b);
        s.recv.drain(..n);
        self.consumed(id, n);
        n
    }

    /// The application read `n` bytes of stream `id`: grant credit back once
    /// half the window is consumed, and grow the window when it was consumed
    /// within two round trips (the link could carry more than the window).
    fn consumed(&mut self, id: u32, n: usize) {
        let (budget, max, rtt) = (
            self.config.budget,
            u64::from(self.config.max_window),
            self.rtt,
        );
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.consumed += n as u64;
        if s.consumed < s.window / 2 || s.remote_fin || s.reset {
            return;
        }
        let now = Instant::now();
        let fast = match (rtt, s.last_grant) {
            (Some(rtt), Some(at)) => now.duration_since(at) < rtt * 2,
            _ => false,
        };
        let mut grant = s.consumed;
        if fast && s.window < max {
            let grown = (s.window * 2).min(max);
            let extra = grown - s.window;
            if self.budget_used + extra <= budget {
                self.budget_used += extra;
                s.window = grown;
                grant += extra;
            }
        }
        s.consumed = 0;
        s.last_grant = Some(now);
        s.recv_credit += grant;
        // `grant` ≤ window ≤ max_window < 2^32.
        let h = Header::new(Kind::Window, 0, id, grant as u32);
        self.control.push_back((h, Vec::new()));
    }

    /// Queues bytes of stream `id`; returns how many fit.
    pub fn queue(&mut self, id: u32, data: &[u8]) -> usize {
        let Some(s) = self.streams.get_mut(&id) else {
            return 0;
        };
        let n = data.len().min(SEND_BUF_LEN.saturating_sub(s.send.len()));
        s.send.extend(&data[..n]);
        if n > 0 && s.credit > 0 && !s.in_ready {
            s.in_ready = true;
            self.ready.push_back(id);
        }
        n
    }

    /// Half-closes stream `id` once its queued bytes are out.
    pub fn finish(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.fin_requested || s.reset {
            return;
        }
        s.fin_requested = true;
        if s.send.is_empty() {
            s.fin_sent = true;
            self.control
                .push_back((Header::new(Kind::Fin, 0, id, 0), Vec::new()));
        }
    }

    /// The stream's handle is gone: a cleanly closed stream drains its queue and
    /// goes; anything else is reset (abort).
    pub fn release(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.fin_requested && s.remote_fin && !s.reset {
            s.orphan = true;
        } else if !s.reset {
            s.reset = true;
            s.send.clear();
            self.control
                .push_back((Header::new(Kind::Reset, 0, id, RESET_CANCEL), Vec::new()));
        }
        s.orphan = true;
        self.reap(id);
    }

    /// Removes a stream nobody needs any more.
    fn reap(&mut self, id: u32) {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|s| s.orphan && (s.reset || (s.fin_sent && s.remote_fin)));
        if done {
            if let Some(s) = self.streams.remove(&id) {
                self.budget_used -= s.window;
            }
        }
    }

    /// Starts a ping unless one is outstanding; `Err` if the outstanding one
    /// has waited longer than the timeout (the link is dead).
    pub fn ping(&mut self, now: Instant) -> Result<(), Error> {
        if let Some((_, sent)) = self.ping {
            let timeout = self.config.ping_timeout;
            if now.duration_since(sent) >= timeout {
                return Err(Error::PingTimeout { timeout });
            }
            return Ok(());
        }
        self.ping_nonce = self.ping_nonce.wrapping_add(1);
        self.ping = Some((self.ping_nonce, now));
        let h = Header::new(Kind::Ping, 0, 0, self.ping_nonce);
        self.control.push_back((h, Vec::new()));
        Ok(())
    }

    /// Whether [`State::fill`] has anything to write, so that waking the
    /// writer is worth a task switch.
    pub fn wants_write(&self) -> bool {
        !self.control.is_empty() || !self.ready.is_empty() || self.drained()
    }

    /// Sends `GoAway`: no new streams either way; open ones finish.
    pub fn go_away(&mut self) {
        if !self.go_away_sent {
            self.go_away_sent = true;
            let h = Header::new(Kind::GoAway, 0, self.last_peer_id, 0);
            self.control.push_back((h, Vec::new()));
        }
    }

    /// Whether a going-away session has nothing left to carry.
    pub fn drained(&self) -> bool {
        (self.go_away_sent || self.go_away_received)
            && self.streams.is_empty()
            && self.control.is_empty()
    }

    /// Ends the session: every stream fails, the acceptor wakes.
    pub fn close(&mut self, why: Error) {
        if self.closed.is_none() {
            self.closed = Some(why);
        }
        for s in self.streams.values_mut() {
            s.wake();
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
    }
}
