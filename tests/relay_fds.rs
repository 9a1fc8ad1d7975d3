//! No descriptor leak in either relay engine, on clean endings and on resets.
//!
//! Alone in its own test binary because it counts `/proc/self/fd` for the whole
//! process: any other test running next to it would disturb the count.
//!
//! The relays run on a `LocalExecutor` on one dedicated thread, so every pooled
//! pipe sits in that thread's pool and `pipe::pooled()` accounts for all of them
//! (2 descriptors each). Running it off the test thread keeps the deadline: if a
//! relay spun and never yielded, `run_test`'s timer could not fire on that thread,
//! but the test thread's `recv_timeout` still fails the test.

// `pub`: a binary of its own uses a few shared helpers (see tests/common/mod.rs).
pub mod common;
#[path = "common/fds.rs"]
mod fds;

use futures_lite::future::{self, try_zip};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::LocalExecutor;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use fds::open_fds;
use porthole::relay::pipe::{self, POOL_CAP};
use porthole::relay::{Engine, Meter, Moved, relay_tcp_with};

const ENGINES: [Engine; 2] = [Engine::Splice, Engine::Copy];
/// Relays per engine in the measured batch.
const BATCH: usize = 50;
const LEN: usize = 64 * 1024 + 1;

/// One relay, both ways, clean FINs; checks bytes and counts.
async fn clean(engine: Engine, seed: u64) {
    let RelaySockets {
        visitor,
        near,
        far,
        service,
    } = relay_sockets(None).await;
    let up = payload(seed, LEN);
    let down = payload(!seed, LEN);
    let ends = try_zip(exchange_on(visitor, &up), exchange_on(service, &down));
    let (moved, (at_visitor, at_service)) = try_zip(
        relay_tcp_with(engine, on_runtime(near), on_runtime(far), Meter::NONE),
        ends,
    )
    .await
    .unwrap_or_else(|e| panic!("{engine:?}: clean relay {seed} failed: {e}"));
    assert_eq!(sha256(&at_service), sha256(&up), "{engine:?}: up bytes");
    assert_eq!(sha256(&at_visitor), sha256(&down), "{engine:?}: down bytes");
    let len = LEN as u64;
    assert_eq!(
        moved,
        Moved {
            a_to_b: len,
            b_to_a: len
        }
    );
}

/// One relay whose service resets (SO_LINGER 0) while the visitor is sending.
async fn reset(engine: Engine, seed: u64) {
    let RelaySockets {
        mut visitor,
        near,
        far,
        mut service,
    } = relay_sockets(None).await;
    reset_on_close(&service);
    let chunk = payload(seed, LEN);
    let keep_sending = async {
        // Bounded: 16 Ki chunks of ~64 KiB is 1 GiB, far past every buffer.
        for _ in 0..16 * 1024 {
            if visitor.write_all(&chunk).await.is_err() {
                return true;
            }
        }
        false
    };
    let reset_early = async {
        let mut first = vec![0u8; LEN];
        service
            .read_exact(&mut first)
            .await
            .expect("service receives the start");
        drop(service);
    };
    let relay = relay_tcp_with(engine, on_runtime(near), on_runtime(far), Meter::NONE);
    let (_result, (write_failed, ())) =
        future::zip(relay, future::zip(keep_sending, reset_early)).await;
    assert!(write_failed, "{engine:?}: visitor's writes never failed");
}

/// Descriptor counts seen on the relay thread.
#[derive(Debug)]
struct Counts {
    before: usize,
    pooled_before: usize,
    after: usize,
    pooled_after: usize,
}

#[test]
fn no_fd_leak_after_many_relays() {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let ex = LocalExecutor::new();
        let mut counts = None;
        run_test(ex.run(async {
            // Warm up: the reactor's descriptors, this thread's pipe pool.
            for engine in ENGINES {
                clean(engine, 1).await;
                reset(engine, 2).await;
            }
            let before = open_fds();
            let pooled_before = pipe::pooled();

            let mut tasks = Vec::new();
            for i in 0..BATCH as u64 {
                for engine in ENGINES {
                    // Every fifth relay ends in a reset: error paths leak first.
                    tasks.push(if i % 5 == 4 {
                        ex.spawn(reset(engine, i))
                    } else {
                        ex.spawn(clean(engine, i))
                    });
                }
            }
            for task in tasks {
                task.await;
            }
            counts = Some(Counts {
                before,
                pooled_before,
                after: open_fds(),
                pooled_after: pipe::pooled(),
            });
        }));
        let _ = done_tx.send(counts.expect("batch ran"));
    });
    let counts = match done_rx.recv_timeout(TEST_DEADLINE + Duration::from_secs(5)) {
        Ok(counts) => counts,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("relay thread ended without a report"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("relay thread hung past the deadline (a relay never yields?)")
        }
    };
    worker.join().expect("relay thread exits");
    eprintln!("{counts:?}");

    assert!(counts.pooled_after <= POOL_CAP, "pool exceeds its cap");
    let pool_growth = 2 * counts.pooled_after.saturating_sub(counts.pooled_before);
    assert!(
        counts.after <= counts.before + pool_growth,
        "descriptors leaked: {counts:?} (pool growth allows {pool_growth})"
    );
    // The pool is thread-local: the relay thread's exit closed it, so now the
    // process holds fewer descriptors than before the batch, by the warm pool.
    let after_exit = open_fds();
    assert!(
        after_exit <= counts.before - 2 * counts.pooled_before,
        "descriptors left after the relay thread exited: {after_exit}, {counts:?}"
    );
}
