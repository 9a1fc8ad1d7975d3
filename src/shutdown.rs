//! A one-shot, clonable shutdown signal.
//!
//! [`Trigger::fire`] (or dropping the last `Trigger`) wakes every [`Signal`] at
//! once; a signal that is awaited after the trigger fired completes immediately.
//! Built on a closed channel, so it needs no lock and cannot be missed.

use smol::channel::{Receiver, Sender, bounded};

/// Fires the shutdown; dropping every trigger fires it too.
#[derive(Clone, Debug)]
pub struct Trigger(Sender<()>);

/// Completes once the trigger fired.
#[derive(Clone, Debug)]
pub struct Signal(Receiver<()>);

/// A connected trigger and signal.
pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = bounded(1);
    (Trigger(tx), Signal(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.close();
    }
}

impl Signal {
    /// A signal that never fires (for callers with no shutdown of their own).
    pub fn never() -> Signal {
        let (tx, rx) = bounded(1);
        std::mem::forget(tx);
        Signal(rx)
    }

    pub async fn wait(&self) {
        // recv only fails once the channel is closed, which is the signal.
        while self.0.recv().await.is_ok() {}
    }

    pub fn is_fired(&self) -> bool {
        self.0.is_closed()
    }
}
