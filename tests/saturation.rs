//! The control plane never waits behind the data plane: with every data-plane
//! worker pinned by a task that does not yield, the server keeps sending
//! heartbeats on time and a new client still connects and registers.
//!
//! This file holds one test on purpose: it owns the process-wide worker pool, so
//! no other test's relays share (or steal) the pinned workers.

// `pub`: a binary of its own uses a few shared helpers (see tests/common/mod.rs).
pub mod common;

use common::*;
use porthole::protocol::Frame;
use porthole::wire::{read_frame, write_frame};
use smol::channel::unbounded;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Server heartbeat period in this test.
const INTERVAL: Duration = Duration::from_millis(20);
/// How long the workers stay pinned while heartbeats are counted.
const WINDOW: Duration = Duration::from_millis(600);
/// A spinner gives up after this, so a failing test cannot pin a core forever.
const SPIN_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn heartbeats_keep_flowing_and_clients_register_while_every_worker_is_busy() {
    run_test(async {
        let mut settings = server_settings();
        settings.heartbeat_interval = INTERVAL;
        settings.heartbeat_timeout = INTERVAL * 10;
        let server = start_server(settings).await.expect("server starts");

        // Pin every worker: one non-yielding task each. Round-robin placement
        // puts consecutive spawns on distinct workers; each reports when it runs,
        // so waiting for all reports proves every worker is occupied at once.
        let workers = porthole::runtime::workers();
        let stop = Arc::new(AtomicBool::new(false));
        let (running_tx, running) = unbounded();
        let spinners: Vec<_> = (0..workers)
            .map(|_| {
                let (stop, running_tx) = (stop.clone(), running_tx.clone());
                porthole::runtime::spawn(async move {
                    let _ = running_tx.try_send(());
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < SPIN_LIMIT {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        within(PROMPTLY, "every worker pinned", async {
            for _ in 0..workers {
                running.recv().await.expect("spinner reports");
            }
        })
        .await;

        // A hand-driven control session counts the server's heartbeats and
        // answers each one, as a client would.
        let (mut control, _) = raw_control_handshake(server.addr, TOKEN).await;
        let started = Instant::now();
        let mut beats = 0u32;
        let mut longest_gap = Duration::ZERO;
        let mut last = started;
        while started.elapsed() < WINDOW {
            let frame = within(INTERVAL * 10, "a heartbeat", read_frame(&mut control)).await;
            match frame.expect("control link stays up") {
                Frame::Heartbeat => {
                    beats += 1;
                    longest_gap = longest_gap.max(last.elapsed());
                    last = Instant::now();
                    write_frame(&mut control, &Frame::Heartbeat)
                        .await
                        .expect("answer heartbeat");
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        // 600 ms at one beat per 20 ms is 30 beats; a stalled control plane
        // would deliver none (the read above would time out first).
        assert!(beats >= 10, "only {beats} heartbeats in {WINDOW:?}");

        // Handshake, pool links and registration all still work. (Hand-written:
        // the client starts only now, on a server already running.)
        let echo = echo_service().await;
        let client = start_client(client_settings(
            server.addr,
            TOKEN,
            &[("echo", echo.addr, 0)],
        ));
        within(
            PROMPTLY,
            "registration while pinned",
            client.registered("echo"),
        )
        .await;
        assert!(
            spinners.iter().all(|s| !s.is_finished()),
            "a spinner ended early, so the workers were not pinned throughout"
        );

        stop.store(true, Ordering::Relaxed);
        for spinner in spinners {
            within(PROMPTLY, "spinner stops", spinner).await;
        }
        eprintln!("{beats} heartbeats, longest gap {longest_gap:?} with {workers} workers pinned");
        client.stop().await;
        server.stop().await;
    });
}
