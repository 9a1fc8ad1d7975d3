//! A session's idle data links and the visitors waiting for one.
//!
//! Invariant: a link is either in `idle` or handed to exactly one waiter; both
//! moves happen under the one lock, so no race can give a link to two visitors.
//! A waiter that gave up (timed out) has dropped its receiver, and `try_send` to
//! it fails and returns the link, which then goes to the next waiter.

use smol::channel::{Receiver, Sender, TrySendError, bounded};
use std::collections::VecDeque;
use std::sync::Mutex;

use crate::tasks::lock;

/// Idle links kept per session; more are closed. Bounds what one client can make
/// the server hold open (the client's pool size is capped lower than this).
pub const MAX_IDLE_LINKS: usize = 512;
/// Visitors that may wait for a link per session; more are refused at once. Bounds
/// memory and descriptors when a client stops answering link requests.
pub const MAX_WAITING_VISITORS: usize = 1024;

pub(crate) struct Pool<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    idle: VecDeque<S>,
    waiters: VecDeque<Sender<S>>,
    closed: bool,
}

/// What `take` found.
pub(crate) enum Take<S> {
    /// An idle link, ready for `Start`.
    Ready(S),
    /// None idle: wait on this for the next link to arrive.
    Wait(Receiver<S>),
    /// Too many visitors are waiting already, or the session ended.
    Refused,
}

impl<S> Pool<S> {
    pub fn new() -> Self {
        Pool {
            inner: Mutex::new(Inner {
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
                closed: false,
            }),
        }
    }

    pub fn take(&self) -> Take<S> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Take::Refused;
        }
        if let Some(link) = inner.idle.pop_front() {
            return Take::Ready(link);
        }
        inner.waiters.retain(|w| !w.is_closed());
        if inner.waiters.len() >= MAX_WAITING_VISITORS {
            return Take::Refused;
        }
        let (tx, rx) = bounded(1);
        inner.waiters.push_back(tx);
        Take::Wait(rx)
    }

    /// Gives a freshly authenticated link to the oldest live waiter, or keeps it.
    pub fn add(&self, mut link: S) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        while let Some(waiter) = inner.waiters.pop_front() {
            match waiter.try_send(link) {
                Ok(()) => return,
                Err(TrySendError::Closed(back) | TrySendError::Full(back)) => link = back,
            }
        }
        if inner.idle.len() < MAX_IDLE_LINKS {
            inner.idle.push_back(link);
        }
    }

    #[cfg(test)]
    pub fn idle_len(&self) -> usize {
        lock(&self.inner).idle.len()
    }

    /// Drops every idle link and waiter and refuses new ones (session ended).
    pub fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        inner.idle.clear();
        inner.waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_goes_to_exactly_one_waiter_and_skips_gone_ones() {
        let pool: Pool<u32> = Pool::new();
        let Take::Wait(gone) = pool.take() else {
            panic!("empty pool must wait")
        };
        let Take::Wait(live) = pool.take() else {
            panic!("empty pool must wait")
        };
        drop(gone);
        pool.add(7);
        assert_eq!(live.try_recv().ok(), Some(7));
        assert_eq!(pool.idle_len(), 0);
        pool.add(8);
        assert!(matches!(pool.take(), Take::Ready(8)));
        pool.close();
        assert!(matches!(pool.take(), Take::Refused));
    }
}
