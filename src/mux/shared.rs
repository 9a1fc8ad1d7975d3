//! What a session's handle, its streams and its driver share: the state
//! machine behind one lock, and the writer's wake-up.

use smol::channel::Sender;
use std::sync::{Mutex, MutexGuard};

use super::state::State;

pub(super) struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (capacity 1: a pending wake-up is enough).
    wake_tx: Sender<()>,
}

impl Shared {
    pub(super) fn new(state: State, wake_tx: Sender<()>) -> Self {
        Shared {
            state: Mutex::new(state),
            wake_tx,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way that matters more than losing the session; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn wake_writer(&self) {
        let _ = self.wake_tx.try_send(());
    }
}
