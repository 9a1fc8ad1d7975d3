//! A session's multiplexed data links: visitors become streams on them,
//! spread round-robin, with no per-visitor connection or handshake.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::debug;

use crate::mux::{self, Side};
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
}

impl MuxLinks {
    pub fn new() -> Self {
        MuxLinks {
            links: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            drivers: TaskSet::new(),
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
            ..mux::Config::default()
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

    /// A live link for the next visitor, round-robin, with the worker its
    /// driver runs on (the visitor's relay should run there too); `None` when
    /// there is none.
    pub fn pick(&self) -> Option<(mux::Session, usize)> {
        let mut links = lock(&self.links);
        links.retain(|(l, _)| l.closed().is_none());
        if links.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % links.len();
        Some(links[i].clone())
    }

    /// Asks every link to go away (server shutdown): open streams finish.
    pub fn go_away(&self) {
        for (link, _) in lock(&self.links).iter() {
            link.go_away();
        }
    }
}
