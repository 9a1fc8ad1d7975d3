//! Load through a pooled tunnel on the per-worker runtime: 20,000 short
//! visitors in a row, 2,000 at once, 200 bulk visitors at once, and a pool of
//! one link serving visitors that arrive on every worker (each must steal the
//! link from whichever worker's shard holds it).
//!
//! The tests take turns (one lock): each opens thousands of sockets, and they
//! would otherwise compete for descriptors and ephemeral ports.

// `pub`: a binary of its own uses a few shared helpers (see tests/common/mod.rs).
pub mod common;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Whole-test deadline of a load test (debug build, shared 2-core machine).
const LOAD_DEADLINE: Duration = Duration::from_secs(240);
/// The bytes of one short visit.
const SHORT_LEN: usize = 64;

static TURN: Mutex<()> = Mutex::new(());

fn run_load(body: impl std::future::Future<Output = ()>) {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    raise_fd_limit();
    smol::block_on(body.or(async {
        smol::Timer::after(LOAD_DEADLINE).await; // ok-sleep: the deadline itself
        panic!("load test timed out after {LOAD_DEADLINE:?}");
    }))
}

/// A few thousand sockets at once need more than the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
    assert!(
        hard >= 16_384,
        "RLIMIT_NOFILE hard limit {hard} is too low for the load tests"
    );
}

async fn pooled_tunnel(size: usize) -> Tunnel {
    TunnelBuilder::new().pooled(size).start().await
}

/// Connect, 64 bytes there and back, close.
async fn short_visit(public: SocketAddr, seed: u64) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(public).await?;
    let sent = payload(seed, SHORT_LEN);
    stream.write_all(&sent).await?;
    let mut got = vec![0u8; SHORT_LEN];
    stream.read_exact(&mut got).await?;
    if got != sent {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

/// `count` short visitors one after the other through a pool of `pool` links.
fn sequential_visitors(pool: usize, count: u64) {
    run_load(async {
        let tunnel = pooled_tunnel(pool).await;
        for i in 0..count {
            let visit = within(PROMPTLY, "a short visit", short_visit(tunnel.public, i));
            visit
                .await
                .unwrap_or_else(|e| panic!("visitor {i} failed: {e}"));
        }
        tunnel.stop().await;
    });
}

#[test]
fn twenty_thousand_sequential_short_visitors() {
    sequential_visitors(16, 20_000);
}

#[test]
fn two_thousand_concurrent_short_visitors() {
    run_load(async {
        let tunnel = pooled_tunnel(64).await;
        let public = tunnel.public;
        let visits: Vec<_> = (0..2_000u64)
            .map(|i| smol::spawn(async move { short_visit(public, i).await.err() }))
            .collect();
        let mut failures = Vec::new();
        for visit in visits {
            if let Some(e) = visit.await {
                failures.push(e.to_string());
            }
        }
        assert!(
            failures.is_empty(),
            "{} of 2000 visitors failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        tunnel.stop().await;
    });
}

#[test]
fn two_hundred_concurrent_bulk_visitors_arrive_intact() {
    const LEN: usize = 256 * 1024 + 1;
    run_load(async {
        let tunnel = pooled_tunnel(16).await;
        let public = tunnel.public;
        let visits: Vec<_> = (0..200u64)
            .map(|seed| smol::spawn(async move { assert_echoes(public, seed, LEN).await }))
            .collect();
        for visit in visits {
            visit.await;
        }
        tunnel.stop().await;
    });
}

/// With one pooled link, the link sits in one worker's shard while the kernel
/// spreads visitors over every worker's listener (by a hash of their address,
/// so which of the 300 visitors land on another worker is the kernel's choice):
/// each of those is served only by stealing the link from the other shard.
/// `server::pool`'s unit tests pin the steal itself down.
#[test]
fn a_pool_of_one_link_serves_visitors_on_every_worker() {
    sequential_visitors(1, 300);
}
