//! A worker's registrations and timers. Thread-local: only the worker that owns
//! a registration or a timer ever touches it, so none of this takes a lock.
//!
//! A socket is registered once, edge-triggered for both directions
//! (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`), and never re-armed. Its slot
//! keeps, per direction, one waker and a `ready` flag: set by every edge (and at
//! registration, when nothing is known yet), cleared only by an operation that
//! returned `EAGAIN`. An operation is tried only while its direction is ready,
//! so a task woken for one direction does not pay an `EAGAIN` syscall on the
//! other. Why no edge is lost: the `EAGAIN`, the clearing of the flag and the
//! storing of the waker happen within one poll of the task, on this thread,
//! and events are dispatched only between polls. An edge that comes after the
//! `EAGAIN` is either already queued in the kernel's ready list (dispatched by
//! the next `epoll_wait`, which sets the flag and wakes the waker just stored)
//! or comes later still.
//!
//! Keys are `generation << 32 | slot`, so an event for a slot freed and reused in
//! the same batch (impossible with no `dup`ed descriptors, since closing the
//! last descriptor removes the registration) can never wake the new owner.

use nix::sys::epoll::{EpollEvent, EpollFlags};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::task::Waker;
use std::time::Instant;

/// Poller key of the worker's eventfd; socket keys never reach it (see the
/// key layout in the module docs).
pub(super) const NOTIFY_KEY: u64 = u64::MAX;

/// A direction of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Read = 0,
    Write = 1,
}

#[derive(Default)]
struct Source {
    generation: u32,
    live: bool,
    wakers: [Option<Waker>; 2],
    ready: [bool; 2],
}

#[derive(Default)]
struct State {
    sources: Vec<Source>,
    free: Vec<u32>,
    /// Deadline and a unique id, so equal deadlines coexist.
    timers: BTreeMap<(Instant, u64), Waker>,
    next_timer_id: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Registers `fd` with the calling worker's poller; returns its key.
pub fn register(epoll: &nix::sys::epoll::Epoll, fd: BorrowedFd<'_>) -> io::Result<u64> {
    let key = with(|s| {
        let index = match s.free.pop() {
            Some(i) => i,
            None => {
                s.sources.push(Source::default());
                u32::try_from(s.sources.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let source = &mut s.sources[index as usize];
        source.generation = source.generation.wrapping_add(1);
        source.live = true;
        source.ready = [true, true];
        key_of(source.generation, index)
    });
    let interest =
        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
    if key == NOTIFY_KEY {
        forget(key);
        return Err(io::Error::other(
            "worker poller is out of registration slots",
        ));
    }
    if let Err(e) = epoll.add(fd, EpollEvent::new(interest, key)) {
        forget(key);
        return Err(e.into());
    }
    Ok(key)
}

/// Frees a registration's slot (its descriptor is closed or deregistered by
/// the caller). Pending wakers are dropped.
pub fn forget(key: u64) {
    with(|s| {
        let (generation, index) = split(key);
        if let Some(source) = s.sources.get_mut(index as usize) {
            if source.live && source.generation == generation {
                source.live = false;
                source.wakers = [None, None];
                s.free.push(index);
            }
        }
    });
}

/// Records an edge from the poller and wakes whoever waits for it.
pub fn dispatch(key: u64, flags: EpollFlags) {
    let hangup = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
    let read = hangup || flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP);
    let write = hangup || flags.contains(EpollFlags::EPOLLOUT);
    let mut woken: [Option<Waker>; 2] = [None, None];
    with(|s| {
        let (generation, index) = split(key);
        let Some(source) = s.sources.get_mut(index as usize) else {
            return;
        };
        if !source.live || source.generation != generation {
            return;
        }
        for (dir, ready) in [(Dir::Read, read), (Dir::Write, write)] {
            if ready {
                source.ready[dir as usize] = true;
                woken[dir as usize] = source.wakers[dir as usize].take();
            }
        }
    });
    // Woken outside the borrow: waking schedules, which may touch this state.
    for waker in woken.into_iter().flatten() {
        waker.wake();
    }
}

/// Whether `dir` may be ready; if not, stores the waker for the next edge.
pub fn ready_or_park(key: u64, dir: Dir, waker: &Waker) -> bool {
    with(|s| {
        let (_, index) = split(key);
        match s.sources.get(index as usize) {
            Some(source) if source.ready[dir as usize] => true,
            _ => {
                park_in(s, index, dir, waker);
                false
            }
        }
    })
}

/// An operation in `dir` returned `EAGAIN`: not ready until the next edge,
/// whose waker this stores.
pub fn clear_and_park(key: u64, dir: Dir, waker: &Waker) {
    with(|s| {
        let (_, index) = split(key);
        if let Some(source) = s.sources.get_mut(index as usize) {
            source.ready[dir as usize] = false;
        }
        park_in(s, index, dir, waker);
    })
}

fn park_in(s: &mut State, index: u32, dir: Dir, waker: &Waker) {
    if let Some(source) = s.sources.get_mut(index as usize) {
        let slot = &mut source.wakers[dir as usize];
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }
}

/// Whether `key` is a live registration on this thread.
#[cfg(test)]
pub fn is_live(key: u64) -> bool {
    with(|s| {
        let (generation, index) = split(key);
        s.sources
            .get(index as usize)
            .is_some_and(|src| src.live && src.generation == generation)
    })
}

/// Adds a timer; returns its id.
pub fn add_timer(deadline: Instant, waker: &Waker) -> u64 {
    with(|s| {
        s.next_timer_id += 1;
        let id = s.next_timer_id;
        s.timers.insert((deadline, id), waker.clone());
        id
    })
}

/// Refreshes a pending timer's waker.
pub fn update_timer(deadline: Instant, id: u64, waker: &Waker) {
    with(|s| {
        if let Some(w) = s.timers.get_mut(&(deadline, id)) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    });
}

pub fn remove_timer(deadline: Instant, id: u64) {
    with(|s| s.timers.remove(&(deadline, id)));
}

/// The nearest deadline.
pub fn next_timer() -> Option<Instant> {
    with(|s| s.timers.keys().next().map(|(d, _)| *d))
}

/// The furthest deadline (for tests).
#[cfg(test)]
pub fn last_timer() -> Option<Instant> {
    with(|s| s.timers.keys().next_back().map(|(d, _)| *d))
}

/// Wakes every timer whose deadline is at or before `now`.
pub fn fire_timers(now: Instant) {
    loop {
        let due = with(|s| {
            let first = s.timers.first_key_value().map(|(k, _)| *k)?;
            if first.0 > now {
                return None;
            }
            s.timers.remove(&first)
        });
        match due {
            Some(waker) => waker.wake(),
            None => return,
        }
    }
}

fn key_of(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}
