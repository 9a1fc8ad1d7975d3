//! A session's idle data links, sharded by worker, and the visitors waiting
//! for one.
//!
//! A link joins the shard of the worker its socket is registered with; a
//! visitor takes from its own worker's shard, so its link, its socket and its
//! relay share one thread, and steals from another shard only when its own is
//! empty (the stolen link then moves to the visitor's worker). One lock guards
//! every shard and the waiters: it is held for a few pointer moves, and a
//! single lock is what makes the invariant easy to keep — a link is either
//! idle in one shard or handed to exactly one waiter, so no race can give a
//! link to two visitors or leave one idle while a visitor waits. A waiter that
//! gave up (timed out) has dropped its receiver; `try_send` to it fails and
//! returns the link, which then goes to the next waiter.

use smol::channel::{Receiver, Sender, TrySendError, bounded};
use std::collections::VecDeque;
use std::sync::Mutex;

use crate::tasks::lock;

/// Idle links kept per session; more are closed. Bounds what one client can make
/// the server hold open (the client's pool size is capped lower than this).
pub const MAX_IDLE_LINKS: usize = 512;
pub(crate) struct Pool<S> {
    inner: Mutex<Inner<S>>,
    /// Visitors that may wait for a link (`max_waiting_visitors`); more are
    /// refused at once. Bounds memory and descriptors when a client stops
    /// answering link requests: a waiter costs its socket, a small task and a
    /// channel slot (under 2 KiB), so the default 16,384 stay under 32 MiB,
    /// while a burst of thousands of visitors (faster than the client can dial
    /// links) is served instead of refused.
    max_waiting: usize,
}

struct Inner<S> {
    /// Idle links by worker.
    shards: Vec<VecDeque<S>>,
    idle: usize,
    /// Waiting visitors with their worker, oldest first.
    waiters: VecDeque<(usize, Sender<S>)>,
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
    /// A pool with one shard per worker.
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        Pool {
            max_waiting,
            inner: Mutex::new(Inner {
                shards: (0..workers.max(1)).map(|_| VecDeque::new()).collect(),
                idle: 0,
                waiters: VecDeque::new(),
                closed: false,
            }),
        }
    }

    /// A link for a visitor on `worker`: from its own shard, else stolen from
    /// the fullest other shard, else a place in the queue.
    pub fn take(&self, worker: usize) -> Take<S> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Take::Refused;
        }
        let own = worker % inner.shards.len();
        let from = if inner.shards[own].is_empty() {
            (0..inner.shards.len()).max_by_key(|&i| inner.shards[i].len())
        } else {
            Some(own)
        };
        if let Some(link) = from.and_then(|i| inner.shards[i].pop_front()) {
            inner.idle -= 1;
            return Take::Ready(link);
        }
        inner.waiters.retain(|(_, w)| !w.is_closed());
        if inner.waiters.len() >= self.max_waiting {
            return Take::Refused;
        }
        let (tx, rx) = bounded(1);
        inner.waiters.push_back((own, tx));
        Take::Wait(rx)
    }

    /// A freshly authenticated link registered with `worker`: to the oldest
    /// live waiter of that worker, else the oldest live waiter, else idle in
    /// that worker's shard.
    pub fn add(&self, worker: usize, mut link: S) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        let own = worker % inner.shards.len();
        inner.waiters.retain(|(_, w)| !w.is_closed());
        let mine = inner.waiters.iter().position(|(w, _)| *w == own);
        let mut order: Vec<usize> = mine.into_iter().collect();
        order.extend((0..inner.waiters.len()).filter(|&i| Some(i) != mine));
        for i in order {
            match inner.waiters[i].1.try_send(link) {
                Ok(()) => {
                    inner.waiters.remove(i);
                    return;
                }
                Err(TrySendError::Closed(back) | TrySendError::Full(back)) => link = back,
            }
        }
        if inner.idle < MAX_IDLE_LINKS {
            inner.shards[own].push_back(link);
            inner.idle += 1;
        }
    }

    /// Idle links in every shard (for tests and the admin endpoint).
    pub fn idle_len(&self) -> usize {
        lock(&self.inner).idle
    }

    /// Drops every idle link and waiter and refuses new ones (session ended).
    pub fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        inner.shards.iter_mut().for_each(VecDeque::clear);
        inner.idle = 0;
        inner.waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_goes_to_exactly_one_waiter_and_skips_gone_ones() {
        let pool: Pool<u32> = Pool::new(1, 8);
        let Take::Wait(gone) = pool.take(0) else {
            panic!("empty pool must wait")
        };
        let Take::Wait(live) = pool.take(0) else {
            panic!("empty pool must wait")
        };
        drop(gone);
        pool.add(0, 7);
        assert_eq!(live.try_recv().ok(), Some(7));
        assert_eq!(pool.idle_len(), 0);
        pool.add(0, 8);
        assert!(matches!(pool.take(0), Take::Ready(8)));
        pool.close();
        assert!(matches!(pool.take(0), Take::Refused));
    }

    #[test]
    fn a_visitor_takes_from_its_own_shard_and_steals_only_when_it_is_empty() {
        let pool: Pool<u32> = Pool::new(2, 8);
        pool.add(0, 10);
        pool.add(1, 11);
        pool.add(1, 12);
        assert!(matches!(pool.take(0), Take::Ready(10)));
        // Shard 0 is empty now: steal from shard 1.
        assert!(matches!(pool.take(0), Take::Ready(11)));
        assert!(matches!(pool.take(1), Take::Ready(12)));
        assert!(matches!(pool.take(1), Take::Wait(_)));
    }

    #[test]
    fn a_new_link_goes_to_a_waiter_of_its_own_worker_first() {
        let pool: Pool<u32> = Pool::new(2, 8);
        let Take::Wait(on0) = pool.take(0) else {
            panic!("empty pool must wait")
        };
        let Take::Wait(on1) = pool.take(1) else {
            panic!("empty pool must wait")
        };
        pool.add(1, 5);
        assert_eq!(on1.try_recv().ok(), Some(5));
        pool.add(1, 6);
        assert_eq!(
            on0.try_recv().ok(),
            Some(6),
            "then the oldest waiter anywhere"
        );
    }
}
