//! A session's multiplexed data links: visitors become streams on them,
//! spread round-robin, with no per-visitor connection or handshake.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::debug;

use crate::mux::{self, Side};
use crate::protocol::Frame;
use crate::tasks::{TaskSet, lock};
use crate::transport::Transport;

/// Multiplexed links one session may hold: each carries any number of visitors,
/// so more than a few only costs memory.
pub const MAX_MUX_LINKS: usize = 16;

pub(super) struct MuxLinks {
    /// Each link with the worker its driver runs on.
    links: Mutex<Vec<(mux::Session, usize)>>,
    next: AtomicUsize,
    /// The links' drivers; cancelled (links closed) with the session.
    drivers: TaskSet,
    /// Streams per link (`max_streams_per_link`).
    max_streams: usize,
}

impl MuxLinks {
    pub fn new(max_streams: usize) -> Self {
        MuxLinks {
            links: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            drivers: TaskSet::new(),
            max_streams,
        }
    }

    /// Starts a mux session on an authenticated link (dropped beyond the cap).
    pub fn add<T: Transport>(&self, link: T::Stream) {
        let mut links = lock(&self.links);
        links.retain(|(l, _)| l.closed().is_none());
        if links.len() >= MAX_MUX_LINKS {
            debug!("mux link dropped: {MAX_MUX_LINKS} already open");
            return;
        }
        // Only the server opens streams on a tunnel's mux link.
        let config = mux::Config {
            accept_streams: false,
            ..mux::Config::for_streams(self.max_streams)
        };
        // The driver runs where the link was handshaken when that is a
        // worker; a link from the control plane moves to the driver's worker
        // on its first I/O.
        let worker = crate::runtime::this_or_next_worker();
        let link = crate::transport::Homed::<T>::new(link);
        let (session, driver) = mux::Session::new(link, Side::Server, config);
        links.push((session, worker));
        self.drivers.spawn_at(worker, async move {
            if let Err(e) = driver.await {
                debug!("mux link ended: {e}");
            }
        });
    }

    /// Opens a stream for a visitor (its `Open` carries the `Start` frame) on
    /// the next live link that has room, round-robin, with the worker its
    /// driver runs on (the visitor's relay should run there too). `None` when
    /// no link has room: the visitor takes a pooled link instead. `udp`: a
    /// UDP flow (its `Start` says so).
    pub fn open(
        &self,
        service: &str,
        visitor: super::proxied::Visitor,
        udp: bool,
    ) -> Option<(mux::Stream, usize)> {
        let mut links = lock(&self.links);
        links.retain(|(l, _)| l.closed().is_none());
        if links.is_empty() {
            // The common pooled case: nothing to serialise.
            return None;
        }
        let start = Frame::Start {
            service: service.to_owned(),
            visitor: visitor.addr,
            public: visitor.public,
            udp,
        };
        let payload = crate::protocol::to_bytes(&start).ok()?;
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..links.len()).find_map(|k| {
            let (link, worker) = &links[(first + k) % links.len()];
            link.open(payload.clone())
                .ok()
                .map(|stream| (stream, *worker))
        })
    }

    /// Live links and the streams open on them (for the admin endpoint).
    pub fn counts(&self) -> (usize, usize) {
        let links = lock(&self.links);
        let live = links.iter().filter(|(l, _)| l.closed().is_none());
        live.fold((0, 0), |(n, streams), (l, _)| {
            (n + 1, streams + l.stream_count())
        })
    }

    /// Asks every link to go away (server shutdown): open streams finish.
    pub fn go_away(&self) {
        for (link, _) in lock(&self.links).iter() {
            link.go_away();
        }
    }
}
