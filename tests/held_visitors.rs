//! Tens of thousands of idle visitors held open at once through one client,
//! pooled and multiplexed: every one is served (no constant caps them at 1,024
//! or 4,096 any more), and when they close, the descriptors come back.
//!
//! Everything (visitors, server, client, service) runs in this one process, so
//! each visitor costs six descriptors here with a pooled link (visitor, server
//! side, link at both ends, local connection, service side) and four
//! multiplexed. The test holds [`TARGET`] visitors where the descriptor limit
//! allows and otherwise as many as it does, and says so.

// `pub`: a binary of its own uses a few shared helpers (see tests/common/mod.rs).
pub mod common;
#[path = "common/fds.rs"]
mod fds;

use common::*;
use fds::open_fds;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use porthole::config::DataLinks;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

/// What the issue asks for.
const TARGET: usize = 20_000;
/// Descriptors left for everything else in the process (runtime, pipes, the
/// test harness).
const SPARE_FDS: usize = 1_000;
/// Visitors opened at once.
const BATCH: usize = 250;
/// The whole test, both modes.
const DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn thousands_of_idle_visitors_are_all_held_then_all_released() {
    let limit = porthole::runtime::fds::raise_limit().expect("raise RLIMIT_NOFILE");
    let body = async {
        hold(DataLinks::Pooled { size: 4 }, 6, limit).await;
        hold(DataLinks::Multiplexed { links: 1 }, 4, limit).await;
    };
    smol::block_on(body.or(async {
        smol::Timer::after(DEADLINE).await; // ok-sleep: the deadline itself
        panic!("held visitors: not done within {DEADLINE:?}");
    }));
}

async fn hold(mode: DataLinks, fds_per_visitor: usize, limit: u64) {
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(SPARE_FDS);
    let count = TARGET.min(room / fds_per_visitor);
    if count < TARGET {
        eprintln!(
            "{mode:?}: holding {count} visitors, not {TARGET}: the descriptor limit is {limit} and each visitor costs {fds_per_visitor} descriptors in this one process"
        );
    }
    assert!(
        count >= 1000,
        "a descriptor limit of {limit} is too low for this test"
    );
    let links = mode.clone();
    let t = TunnelBuilder::new()
        .client(move |c| c.data_links = links)
        .start()
        .await;
    let public = t.public;
    assert_echoes(public, 1, 100).await;
    let baseline = open_fds();

    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let batch: Vec<_> = (held.len()..count.min(held.len() + BATCH))
            .map(|i| smol::spawn(open_one(public, i)))
            .collect();
        for visitor in batch {
            held.push(visitor.await);
        }
    }
    assert_eq!(held.len(), count, "{mode:?}: every visitor served");
    // The first and the last are still live: one more round trip each.
    for i in [0, count - 1] {
        round_trip(&mut held[i]).await;
    }
    drop(held);

    // Closing is asynchronous on the far side of every hop; no event says
    // "all closed", so the descriptor table is polled, within a bound.
    let settled = within(PROMPTLY * 6, "descriptors released", async {
        loop {
            let now = open_fds();
            if now <= baseline + SETTLE_SLACK {
                return now;
            }
            smol::Timer::after(Duration::from_millis(20)).await; // ok-sleep: bounded poll of /proc
        }
    })
    .await;
    eprintln!("{mode:?}: held {count}, descriptors {baseline} before, {settled} after");
    t.stop().await;
}

/// Links a pool may keep beyond the baseline (it refills up to its size while
/// the last visitors close), in descriptors at both ends.
const SETTLE_SLACK: usize = 16;

async fn open_one(public: SocketAddr, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(public)
        .await
        .unwrap_or_else(|e| panic!("visitor {i}: connect: {e}"));
    round_trip(&mut stream).await;
    stream
}

/// One byte through the echo and back: the visitor is served end to end.
async fn round_trip(stream: &mut TcpStream) {
    stream.write_all(b"x").await.expect("write");
    let mut back = [0u8; 1];
    stream.read_exact(&mut back).await.expect("echo");
    assert_eq!(&back, b"x");
}
