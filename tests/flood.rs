//! A flood of connections that never authenticate — silent ones and ones that
//! trickle a byte a second — against the control port, from the client's own
//! address (the hardest case: the per-address budget cannot tell them apart).
//! The client keeps serving every visitor, a second client still registers,
//! and the server's warnings stay a handful of folded lines.

// `pub`: a binary of its own uses a few shared helpers (see tests/common/mod.rs).
pub mod common;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::protocol::{Frame, LinkHello, VERSION};
use smol::channel::{Receiver, Sender, unbounded};
use smol::net::TcpStream;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections that connect and never send a byte.
const SILENT: usize = 2_000;
/// Connections that send one byte a second.
const TRICKLING: usize = 500;
/// Pause before a flood connection that was closed comes back, so the churn
/// is sustained but does not take the machine's two cores from the test.
const REOPEN_PAUSE: Duration = Duration::from_millis(250);
/// Sequential visitors served during the flood.
const VISITORS: u64 = 100;
/// Visitors held open at once during the flood (each needs its own link).
const CONCURRENT: usize = 32;
/// Warnings the server may write over the whole test: a few per cause.
const MAX_SERVER_WARNINGS: usize = 16;

#[test]
fn a_flood_of_silent_and_trickling_connections_starves_no_client() {
    porthole::runtime::fds::raise_limit().expect("raise RLIMIT_NOFILE");
    let warnings = capture_warnings();
    run_test(async {
        let tunnel = TunnelBuilder::new()
            .server(|s| s.hello_timeout = Duration::from_secs(1))
            .start()
            .await;
        let mut flood = Flood::start(tunnel.server.addr);
        // In place once the server has closed (shed or timed out) a thousand
        // of them and they came back: silent ones reach the process only
        // after TCP_DEFER_ACCEPT gave up waiting for their first bytes.
        let in_place = SILENT + TRICKLING + 1_000;
        within(
            PROMPTLY * 3,
            "the flood to be in place",
            flood.opened(in_place),
        )
        .await;
        let started = Instant::now();
        for seed in 0..VISITORS {
            within(
                PROMPTLY,
                "a visitor during the flood",
                assert_echoes(tunnel.public, seed, 1024),
            )
            .await;
        }
        within(
            PROMPTLY * 2,
            "a bulk visitor during the flood",
            assert_echoes(tunnel.public, 7, 4 << 20),
        )
        .await;
        eprintln!(
            "{VISITORS} visitors and 4 MiB served in {:?} under the flood",
            started.elapsed()
        );

        // Visitors at once need links the client must dial under the flood.
        let held = within(PROMPTLY, "concurrent visitors during the flood", async {
            let mut held = Vec::new();
            for _ in 0..CONCURRENT {
                held.push(
                    TcpStream::connect(tunnel.public)
                        .await
                        .expect("visitor connects"),
                );
            }
            held
        })
        .await;
        for (seed, visitor) in held.into_iter().enumerate() {
            let data = payload(seed as u64, 1024);
            let echoed = within(
                PROMPTLY,
                "a concurrent visitor",
                exchange_on(visitor, &data),
            )
            .await;
            assert_eq!(echoed.expect("concurrent visitor served"), data);
        }
        // Hand-written: a second client of the same server.
        let service = echo_service().await;
        let second = client_settings(tunnel.server.addr, TOKEN, &[("second", service.addr, 0)]);
        let registering = Instant::now();
        let second = start_client(second);
        let public = within(
            PROMPTLY,
            "a second client registering",
            second.registered("second"),
        )
        .await;
        eprintln!("second client registered in {:?}", registering.elapsed());
        assert_echoes(public, 99, 1024).await;
        let churned = flood.stop().await;
        eprintln!("the flood opened {churned} connections");
        assert!(
            churned > SILENT + TRICKLING,
            "the server shed flood connections"
        );
        second.stop().await;
        tunnel.stop().await;
    });
    let lines = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    let server: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("porthole::server"))
        .collect();
    eprintln!(
        "server warnings:\n{}",
        server.iter().map(|s| s.as_str()).collect::<String>()
    );
    assert!(
        server.len() <= MAX_SERVER_WARNINGS,
        "{} server warnings under the flood:\n{}",
        server.len(),
        server
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("")
    );
    assert!(
        server
            .iter()
            .any(|l| l.contains("shed") || l.contains("timed out")),
        "the flood is reported: {server:?}"
    );
}

/// Silent and trickling connections from 127.0.0.1, each reopened (after
/// [`REOPEN_PAUSE`]) when the server closes it, on a thread of their own.
struct Flood {
    stop: Arc<AtomicBool>,
    opens: Receiver<()>,
    opened: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(server: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, opens) = unbounded();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let ex = smol::LocalExecutor::new();
            let tasks: Vec<_> = (0..SILENT + TRICKLING)
                .map(|i| ex.spawn(flood_one(server, i >= SILENT, flag.clone(), tx.clone())))
                .collect();
            smol::block_on(ex.run(async {
                for task in tasks {
                    task.await;
                }
            }));
        });
        Flood {
            stop,
            opens,
            opened: 0,
            thread: Some(thread),
        }
    }

    /// Waits until `count` connections in all were opened.
    async fn opened(&mut self, count: usize) {
        while self.opened < count {
            self.opens.recv().await.expect("the flood runs");
            self.opened += 1;
        }
    }

    /// Stops the flood (every connection closes within one trickle pace) and
    /// returns how many connections it opened.
    async fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take();
        smol::unblock(move || thread.map(|t| t.join())).await;
        self.opened + std::iter::from_fn(|| self.opens.try_recv().ok()).count()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn flood_one(server: SocketAddr, trickle: bool, stop: Arc<AtomicBool>, opens: Sender<()>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(conn) = TcpStream::connect(server).await {
            let _ = opens.try_send(());
            hold(conn, trickle, &stop).await;
        }
        smol::Timer::after(REOPEN_PAUSE).await; // ok-sleep: the flood's pace
    }
}

/// Holds one flood connection until the server closes it or the flood stops;
/// a trickling one sends a control-link hello, one byte a second.
async fn hold(mut conn: TcpStream, trickle: bool, stop: &AtomicBool) {
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Control {
            client_id: [7; 16],
            nonce: [9; 32],
        },
    };
    let hello = porthole::protocol::to_bytes(&hello).expect("a hello encodes");
    let mut next = hello.iter().cycle();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let tick = async {
            smol::Timer::after(Duration::from_secs(1)).await; // ok-sleep: the trickle's pace
            Ok::<_, std::io::Error>(None)
        };
        let read = async { conn.read(&mut buf).await.map(Some) };
        match futures_lite::future::or(read, tick).await {
            Ok(Some(0)) | Err(_) => return,
            Ok(None) if trickle => {
                let byte = next.next().copied().unwrap_or(0);
                if conn.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

/// Installs a subscriber that keeps every warning and error, formatted.
fn capture_warnings() -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let writer = Capture(lines.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    lines
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(String::from_utf8_lossy(buf).into_owned());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
