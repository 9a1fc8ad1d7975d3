//! Deadlines: every async test runs under [`TEST_DEADLINE`], and every wait for
//! something the code should do soon goes through [`within`], so a hang fails
//! the test instead of stalling CI. These timers are the only ones: nothing
//! sleeps to synchronise.

use futures_lite::FutureExt;
use smol::Timer;
use std::future::Future;
use std::time::Duration;

/// Whole-test deadline: generous, because the machine is shared and noisy.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);
/// What "promptly" means for a close or a reaction the code should make at once.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// Runs an async test body under [`TEST_DEADLINE`], so a deadlock fails the test.
pub fn run_test<F: Future<Output = ()>>(body: F) {
    smol::block_on(body.or(async {
        Timer::after(TEST_DEADLINE).await;
        panic!("test timed out after {TEST_DEADLINE:?}");
    }))
}

/// Awaits `fut` for at most `limit`; panics naming `what` if it takes longer.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let fut = async { Some(fut.await) };
    let timeout = async {
        Timer::after(limit).await; // ok-sleep: the deadline itself
        None
    };
    match fut.or(timeout).await {
        Some(value) => value,
        None => panic!("{what}: not done within {limit:?}"),
    }
}
