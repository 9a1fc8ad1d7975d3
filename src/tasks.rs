//! A set of spawned tasks owned by one object (a session, a server).
//!
//! Dropping the set cancels every task in it; a task that finishes removes its own
//! handle, so a long-lived set does not accumulate finished tasks. This is how
//! porthole keeps every spawned task owned (no fire-and-forget `.detach()`).

use smol::Task;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

type Tasks = Mutex<HashMap<u64, Task<()>>>;

/// Which executor a task runs on.
enum Place {
    /// smol's executor: accept loops, handshakes, sessions.
    Control,
    /// A data-plane worker (see [`crate::runtime`]).
    Worker,
    /// That data-plane worker.
    At(usize),
}

/// See the module docs.
#[derive(Default)]
pub struct TaskSet {
    tasks: Arc<Tasks>,
    next_id: Mutex<u64>,
}

impl TaskSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` on smol's executor (control plane); it is cancelled when the
    /// set is dropped.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(fut, Place::Control);
    }

    /// Spawns `fut` on a data-plane worker (see [`crate::runtime`]).
    pub fn spawn_worker<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(fut, Place::Worker);
    }

    /// Spawns `fut` on data-plane worker `index` (see [`crate::runtime::spawn_at`]).
    pub fn spawn_at<F>(&self, index: usize, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(fut, Place::At(index));
    }

    fn spawn_on<F>(&self, fut: F, place: Place)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut next = lock(&self.next_id);
        let id = *next;
        *next += 1;
        let weak: Weak<Tasks> = Arc::downgrade(&self.tasks);
        // Holding `tasks` while spawning means the task's own removal (which
        // takes the same lock) cannot run before its handle is inserted.
        let mut tasks = lock(&self.tasks);
        // Boxed: an async block that awaits a future it captured keeps two
        // copies of its state (the capture, and the future being awaited;
        // rustc does not overlap them), which made every task, a held
        // visitor's among them, twice its size. A box costs one allocation
        // per spawn and holds the state once.
        let fut = Box::pin(fut);
        let owned = async move {
            fut.await;
            if let Some(tasks) = weak.upgrade() {
                // Detaching our own, already finishing, handle is harmless.
                if let Some(me) = lock(&tasks).remove(&id) {
                    me.detach();
                }
            }
        };
        // Each arm spawns the concrete wrapper (no second box).
        let task = match place {
            Place::Control => smol::spawn(owned),
            Place::Worker => crate::runtime::spawn(owned),
            Place::At(index) => crate::runtime::spawn_at(index, owned),
        };
        tasks.insert(id, task);
    }

    /// How many tasks are still running.
    pub fn len(&self) -> usize {
        lock(&self.tasks).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels every task now.
    pub fn cancel_all(&self) {
        let drained: Vec<Task<()>> = lock(&self.tasks).drain().map(|(_, t)| t).collect();
        drop(drained);
    }

    /// Waits up to `limit` for the running tasks to finish on their own, then
    /// cancels whatever is left.
    pub async fn join(&self, limit: Duration) {
        let drained: Vec<Task<()>> = lock(&self.tasks).drain().map(|(_, t)| t).collect();
        let all = async {
            for task in drained {
                task.await;
            }
            Ok(())
        };
        crate::wire::with_timeout(limit, "joining tasks", all)
            .await
            .ok();
    }
}

/// Locks a mutex, recovering from poisoning: the maps guarded here stay
/// consistent even if a holder panicked, because every update is one call.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
