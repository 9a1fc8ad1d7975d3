//! `--admin`: the porthole modes (not their `@base` twins) run with their
//! admin endpoint on, and a thread scrapes `/metrics` of each once a second
//! for as long as the mode runs, so a table shows what metrics cost against
//! a baseline build (or the same build without `--admin`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Set once from the command line.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Time between two scrapes of one endpoint (Prometheus' usual interval is
/// 15 s; once a second is a harsher test).
const EVERY: Duration = Duration::from_secs(1);
/// Deadline of one scrape.
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether porthole modes run with `--admin`.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The address in a porthole `admin endpoint on http://ADDR` log line.
pub fn admin_line(line: &str) -> Option<SocketAddr> {
    super::modes::parse_addr(line.split_once("admin endpoint on http://")?.1)
}

/// Scrapes its endpoints until dropped.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    /// Scrapes that failed (reported when the mode stops).
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<u64>>,
}

pub fn start(endpoints: Vec<SocketAddr>) -> Scraper {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let (halt, errors) = (stop.clone(), failed.clone());
    let thread = std::thread::spawn(move || {
        let mut scrapes = 0;
        // Bounded by the mode's life: `Drop` sets `halt`.
        while !halt.load(Ordering::Relaxed) {
            for &addr in &endpoints {
                if scrape(addr).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                scrapes += 1;
            }
            std::thread::park_timeout(EVERY);
        }
        scrapes
    });
    Scraper {
        stop,
        failed,
        thread: Some(thread),
    }
}

fn scrape(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(std::io::Error::other("scrape not answered 200"))
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let scrapes = thread.join().unwrap_or(0);
            let failed = self.failed.load(Ordering::Relaxed);
            if failed > 0 {
                eprintln!("bench: {failed} of {scrapes} scrapes failed");
            }
        }
    }
}
