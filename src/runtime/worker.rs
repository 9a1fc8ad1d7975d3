//! One worker thread: its run queue, its injector, its poller and its loop.
//!
//! The loop, forever:
//! 1. move whatever other threads injected into the local queue, then run at
//!    most [`BATCH`] tasks, so a busy relay cannot starve event dispatch;
//! 2. wait on the poller: zero timeout while tasks are queued, else until the
//!    nearest timer (rounded *up* to a millisecond, so no timer fires early), or
//!    for ever;
//! 3. wake the wakers of every ready socket, then fire due timers.
//!
//! Waking a task of this worker from this worker pushes to a thread-local queue:
//! no lock, no atomic read-modify-write, no syscall. From another thread it pushes
//! to the lock-free injector and writes the eventfd only if the worker said it
//! is about to sleep (`sleeping`), so a burst of cross-thread wakes costs one
//! `write(2)` and never a futex.

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{CURRENT, reactor};

/// Tasks run between two looks at the poller. Large enough that the poller's
/// syscall is amortised under load, small enough that socket events and timers
/// are dispatched within a few hundred microseconds of busy work.
pub const BATCH: usize = 64;
/// Events taken from the poller per wait.
const EVENTS_PER_WAIT: usize = 256;

thread_local! {
    /// Tasks woken on this worker by this worker.
    static LOCAL: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
}

/// What other threads may touch of a worker.
pub(super) struct Shared {
    pub index: usize,
    /// Tasks spawned or woken from other threads.
    injector: ConcurrentQueue<Runnable>,
    /// The worker's poller. Only the worker registers with it; other threads
    /// use it only to take back a socket dropped away from its worker.
    pub epoll: Epoll,
    notify: EventFd,
    /// Set by the worker just before it may block in `epoll_wait`; whoever
    /// swaps it back to false owes the worker one eventfd write.
    pub(super) sleeping: AtomicBool,
    /// Registrations whose socket was dropped on another thread; the worker
    /// frees their slots (a fallback: sockets normally die on their worker).
    pub orphans: ConcurrentQueue<u64>,
}

impl Shared {
    pub fn new(index: usize) -> io::Result<Shared> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let notify = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(
            &notify,
            EpollEvent::new(EpollFlags::EPOLLIN, reactor::NOTIFY_KEY),
        )?;
        Ok(Shared {
            index,
            injector: ConcurrentQueue::unbounded(),
            epoll,
            notify,
            sleeping: AtomicBool::new(false),
            orphans: ConcurrentQueue::unbounded(),
        })
    }

    /// Queues a task to run on this worker (the `async-task` schedule function).
    pub fn schedule(&self, runnable: Runnable) {
        if CURRENT.with(|c| c.get()) == Some(self.index) {
            LOCAL.with(|q| q.borrow_mut().push_back(runnable));
            return;
        }
        // Unbounded and never closed, so the push cannot fail.
        let _ = self.injector.push(runnable);
        self.wake();
    }

    /// Makes sure the worker looks at its queues soon.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            // Only fails if the counter would overflow, i.e. wakes are pending.
            let _ = self.notify.write(1);
        }
    }

    /// The worker's loop; never returns.
    pub fn run(&'static self) {
        CURRENT.with(|c| c.set(Some(self.index)));
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        loop {
            let ran = self.run_batch();
            self.free_orphans();
            let timeout = self.wait_timeout(ran == BATCH);
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    // Cannot happen with a valid epoll fd and buffer; do not spin.
                    tracing::error!("worker {}: epoll_wait failed: {e}", self.index);
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            self.sleeping.store(false, Ordering::Relaxed);
            for event in &events[..n] {
                if event.data() == reactor::NOTIFY_KEY {
                    let _ = self.notify.read();
                } else {
                    reactor::dispatch(event.data(), event.events());
                }
            }
            reactor::fire_timers(Instant::now());
        }
    }

    fn run_batch(&self) -> usize {
        // Injected tasks join the back of the local queue, so neither source
        // can starve the other.
        LOCAL.with(|q| {
            let mut q = q.borrow_mut();
            while let Ok(r) = self.injector.pop() {
                q.push_back(r);
            }
        });
        let mut ran = 0;
        while ran < BATCH {
            // The borrow ends before `run`, which may wake (push) more tasks.
            let Some(runnable) = LOCAL.with(|q| q.borrow_mut().pop_front()) else {
                break;
            };
            runnable.run();
            ran += 1;
        }
        ran
    }

    /// How long the next `epoll_wait` may block.
    fn wait_timeout(&self, batch_full: bool) -> EpollTimeout {
        let queued = batch_full || LOCAL.with(|q| !q.borrow().is_empty());
        if queued {
            return EpollTimeout::ZERO;
        }
        self.sleeping.store(true, Ordering::SeqCst);
        // A task injected before `sleeping` was visible would not notify us.
        if !self.injector.is_empty() {
            self.sleeping.store(false, Ordering::Relaxed);
            return EpollTimeout::ZERO;
        }
        match reactor::next_timer() {
            None => EpollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                millis_up(left)
            }
        }
    }

    fn free_orphans(&self) {
        while let Ok(key) = self.orphans.pop() {
            reactor::forget(key);
        }
    }
}

/// `d` in whole milliseconds, rounded up (a timer must never fire early).
fn millis_up(d: Duration) -> EpollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000);
    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
}
