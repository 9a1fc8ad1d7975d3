//! Worker threads for the data plane: one executor per thread.
//!
//! Relays (the bulk bytes) run on workers; the control plane (accept loops,
//! handshakes, sessions, heartbeats) stays on smol's global executor, so it never
//! queues behind bulk transfers. A relay task owns both of its sockets, so both
//! ends of a relay always live on the same worker. Tasks are placed round-robin.
//!
//! Readiness comes from async-io's reactor, which whichever idle worker (or
//! async-io's own thread) drives; a per-thread `polling::Poller` backend could
//! replace it behind [`spawn`] without changing callers.

use smol::{Executor, Task};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Most worker threads accepted from the command line.
pub const MAX_WORKERS: usize = 256;

struct Runtime {
    workers: Vec<Arc<Executor<'static>>>,
    next: AtomicUsize,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// One worker per core by default.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Starts `workers` worker threads (clamped to 1..=MAX_WORKERS). Only the first
/// call (or the first relay) decides; later calls return false.
pub fn init(workers: usize) -> bool {
    let mut started = false;
    RUNTIME.get_or_init(|| {
        started = true;
        Runtime::start(workers)
    });
    started
}

/// How many worker threads run (starting them with the default if none run yet).
pub fn workers() -> usize {
    runtime().workers.len()
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
/// tasks that talk to each other (a mux driver and its streams' relays) on one
/// thread, so their wake-ups never cross threads.
pub fn next_worker() -> usize {
    let rt = runtime();
    rt.next.fetch_add(1, Ordering::Relaxed) % rt.workers.len()
}

/// The worker running the calling task, if it runs on one.
pub fn current_worker() -> Option<usize> {
    CURRENT.with(|c| c.get())
}

/// Spawns on worker `index` (modulo the worker count).
pub fn spawn_at<F, T>(index: usize, fut: F) -> Task<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime();
    rt.workers[index % rt.workers.len()].spawn(fut)
}

fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| Runtime::start(default_workers()))
}

thread_local! {
    /// This thread's worker index, on worker threads.
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Runtime {
    fn start(workers: usize) -> Runtime {
        let n = workers.clamp(1, MAX_WORKERS);
        let workers = (0..n)
            .filter_map(|i| {
                let ex = Arc::new(Executor::new());
                let run = ex.clone();
                // Workers live as long as the process; their tasks are owned
                // (and cancelled) by the task sets that spawned them.
                std::thread::Builder::new()
                    .name(format!("porthole-worker-{i}"))
                    .spawn(move || {
                        CURRENT.with(|c| c.set(Some(i)));
                        async_io::block_on(run.run(std::future::pending::<()>()))
                    })
                    .ok()
                    .map(|_| ex)
            })
            .collect::<Vec<_>>();
        // If no thread could be started, fall back to smol's global executor's
        // threads by running an executor there.
        let workers = if workers.is_empty() {
            let ex = Arc::new(Executor::new());
            let run = ex.clone();
            smol::spawn(async move { run.run(std::future::pending::<()>()).await }).detach();
            vec![ex]
        } else {
            workers
        };
        Runtime {
            workers,
            next: AtomicUsize::new(0),
        }
    }
}
