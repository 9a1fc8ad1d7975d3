//! The data plane's runtime: one loop per worker thread, literally.
//!
//! Each worker thread owns an epoll instance (through `nix`'s safe wrapper), a
//! run queue of `async-task` tasks, a timer map and a cross-thread injector woken
//! through an eventfd ([`worker`] has the loop). Sockets ([`Socket`],
//! [`TcpStream`], [`TcpListener`]) are registered once with the poller of the
//! worker they are created on, edge-triggered for both directions, and stay
//! there; readiness never re-arms with `epoll_ctl` ([`reactor`] says why no edge
//! is lost). Deadlines ([`sleep`], [`timeout`]) live in the worker's timer map,
//! not in a `timerfd` per operation.
//!
//! Who may touch what:
//! - A task runs only on the worker it was spawned on; its wakers, wherever they
//!   are fired, queue it back there.
//! - A socket created on a worker belongs to it: only tasks of that worker may
//!   do I/O on it (elsewhere the I/O fails with an error, never a wrong wake-up).
//!   Moving it is explicit: [`Socket::rehome`] deregisters it and registers it
//!   with the calling worker.
//! - Off the workers (the control plane on smol's executor, tests) the same
//!   socket types register with async-io's shared reactor instead, so control
//!   links, handshakes and heartbeats never queue behind bulk data; a link
//!   handshaken there moves onto a worker when a visitor takes it.
//! - One more loop of the same kind, the control loop ([`spawn_control`]), runs
//!   no data-plane task: the server accepts its control port there, so accepts
//!   keep up while every worker is busy and a data link handed to a worker
//!   costs one eventfd write.
//!
//! Dialling a `host:port` ([`TcpStream::connect`], for control links, data
//! links and local services alike) goes through [`dial`]: `localhost` is
//! loopback without asking DNS, and the addresses of a name are raced
//! happy-eyeballs style, so a dead first address costs 250 ms, not the dial.
//!
//! The visitor path, end to end (server): the kernel spreads connections over
//! one `SO_REUSEPORT` listener per worker; the worker that accepts a visitor
//! takes an idle data link from its own shard of the pool (links are
//! handshaken on the worker whose shard they join), writes `Start` and relays
//! there. Client: each data link is dialled, started, connected to the local
//! service and relayed on one worker. Per visitor that is two `epoll_ctl`
//! (two registrations), no futex and no timerfd on either side.
//!
//! Why `nix`'s epoll and not `polling::Poller`: `Poller::add` is `unsafe` (the
//! source must be deleted before it is closed), and this crate forbids unsafe
//! code. Linux removes a registration when its last descriptor closes, which is
//! the invariant our sockets keep (they are never `dup`ed), so the safe wrapper
//! is all we need. One caveat to "no unsafe": [`sys`] defines the
//! `TCP_DEFER_ACCEPT` option, which nix lacks, with nix's own `sockopt_impl!`
//! macro, and that macro expands nix's `unsafe` `setsockopt` call into this
//! crate (the lint does not look inside external macros). It is the code nix
//! uses for every option it ships, with an `i32` value.

mod abort;
pub mod dial;
pub mod fds;
mod reactor;
mod socket;
pub mod sys;
mod timer;
mod worker;

pub use abort::AbortGuard;
pub use socket::{SharedTcpStream, Socket, TcpListener, TcpStream, std_listener};
pub use timer::{Sleep, sleep, sleep_until, timeout};

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A spawned task; dropping it cancels the task (on its worker).
pub type Task<T> = async_task::Task<T>;

/// Most worker threads accepted from the command line.
pub const MAX_WORKERS: usize = 256;

struct Runtime {
    /// The data-plane workers, then the control loop.
    loops: Vec<worker::Shared>,
    /// How many of `loops` are data-plane workers.
    workers: usize,
    next: AtomicUsize,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

thread_local! {
    /// This thread's loop index, on the runtime's threads (the control loop's
    /// index is the worker count).
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// One worker per core by default.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Starts `workers` worker threads (clamped to 1..=MAX_WORKERS). Only the first
/// call (or the first spawn) decides; later calls return false.
pub fn init(workers: usize) -> bool {
    let mut started = false;
    RUNTIME.get_or_init(|| {
        started = true;
        Runtime::new(workers)
    });
    if started {
        runtime().start_threads();
    }
    started
}

/// How many worker threads run (starting them with the default if none run yet).
pub fn workers() -> usize {
    runtime().workers
}

/// Spawns a data-plane task on the next worker. Consecutive calls with no other
/// spawn in between land on distinct workers (round-robin).
pub fn spawn<F, T>(fut: F) -> Task<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    spawn_at(next_worker(), fut)
}

/// The worker the next [`spawn`] would use; pass it to [`spawn_at`] to keep
/// tasks that talk to each other on one thread.
pub fn next_worker() -> usize {
    let rt = runtime();
    rt.next.fetch_add(1, Ordering::Relaxed) % rt.workers
}

/// The data-plane worker running the calling task, if it runs on one.
pub fn current_worker() -> Option<usize> {
    current_loop().filter(|&i| i < runtime().workers)
}

/// How many slots a per-thread counter block needs (`crate::metrics`): one
/// per loop (the workers and the control loop), one shared by every other
/// thread.
pub fn slots() -> usize {
    runtime().loops.len() + 1
}

/// The calling thread's slot in such a block.
pub fn slot() -> usize {
    current_loop().unwrap_or_else(|| runtime().loops.len())
}

/// The runtime loop (a worker or the control loop) running the calling task.
fn current_loop() -> Option<usize> {
    CURRENT.with(|c| c.get())
}

/// Spawns on the control loop: one more thread of this runtime that runs no
/// data-plane task, for accept loops that must keep up while every worker is
/// busy (the server's control port). Its sockets and timers cost what a
/// worker's do: no re-arm, no timerfd, and a hand-off to a worker is one
/// eventfd write.
pub fn spawn_control<F, T>(fut: F) -> Task<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime();
    spawn_on(&rt.loops[rt.workers], fut)
}

/// The calling task's worker, or the next one round-robin off the workers.
pub fn this_or_next_worker() -> usize {
    current_worker().unwrap_or_else(next_worker)
}

/// Spawns on worker `index` (modulo the worker count). A panic in the task is
/// caught and re-raised where the [`Task`] is awaited; the worker lives on.
pub fn spawn_at<F, T>(index: usize, fut: F) -> Task<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    spawn_on(shared(index), fut)
}

fn spawn_on<F, T>(worker: &'static worker::Shared, fut: F) -> Task<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (runnable, task) = async_task::Builder::new()
        .propagate_panic(true)
        .spawn(|()| fut, move |r| worker.schedule(r));
    runnable.schedule();
    task
}

/// Worker `index`'s shared half (modulo the worker count).
fn shared(index: usize) -> &'static worker::Shared {
    let rt = runtime();
    &rt.loops[index % rt.workers]
}

/// Loop `index`'s shared half (a worker, or the control loop).
fn loop_shared(index: usize) -> &'static worker::Shared {
    &runtime().loops[index]
}

fn runtime() -> &'static Runtime {
    let mut started = false;
    let rt = RUNTIME.get_or_init(|| {
        started = true;
        Runtime::new(default_workers())
    });
    if started {
        rt.start_threads();
    }
    rt
}

impl Runtime {
    fn new(workers: usize) -> Runtime {
        let n = workers.clamp(1, MAX_WORKERS);
        let loops = (0..=n)
            .map(worker::Shared::new)
            .collect::<std::io::Result<Vec<_>>>()
            // Only fails when the process is out of descriptors at start-up,
            // before any network input: nothing sensible can run then.
            .expect("cannot create the runtime's pollers");
        Runtime {
            loops,
            workers: n,
            next: AtomicUsize::new(0),
        }
    }

    /// Called once, after the runtime is in its `static`, so every thread gets
    /// a `'static` reference to its worker.
    fn start_threads(&'static self) {
        for (i, w) in self.loops.iter().enumerate() {
            let name = if i < self.workers {
                format!("porthole-worker-{i}")
            } else {
                "porthole-control".to_owned()
            };
            // Loops live as long as the process; their tasks are owned (and
            // cancelled) by the task sets that spawned them.
            std::thread::Builder::new()
                .name(name)
                .spawn(move || w.run())
                .expect("cannot start a data-plane worker thread");
        }
    }
}

#[cfg(test)]
mod tests;
