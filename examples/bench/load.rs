//! The load generator: plain blocking sockets on their own threads, every loop
//! bounded by a deadline and an iteration cap, every socket operation by a timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Connect, read and write timeout for every load-generator socket.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Bulk buffer size per write/read call.
const BULK_BUF_LEN: usize = 256 * 1024;
/// Cap on bulk calls per stream (256 KiB each: 1 TiB), a bound besides the clock.
const BULK_MAX_CALLS: u64 = 4 * 1024 * 1024;
/// Data moved before the measured window starts (TCP ramp-up, buffers filling).
pub const WARMUP: Duration = Duration::from_millis(250);
/// Request/response message size.
pub const MSG_LEN: usize = 64;
/// Cap on connections per short-connection worker.
const SHORT_MAX_PER_WORKER: u64 = 200_000;

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One bulk measurement.
pub struct Bulk {
    /// Throughput over the measured window, Gbit/s.
    pub gbps: f64,
    /// Bytes moved during the whole measurement (warm-up and tail included).
    pub total_bytes: u64,
    /// Streams that failed (connect or I/O error before the deadline).
    pub errors: u64,
}

/// `streams` connections write to the sink for `WARMUP + window`; the rate is what
/// the sink received during the window.
pub fn upload(addr: SocketAddr, streams: usize, window: Duration, sunk: &AtomicU64) -> Bulk {
    let before = sunk.load(Ordering::Relaxed);
    let start = Instant::now();
    let end = start + WARMUP + window;
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            thread::spawn(move || -> io::Result<()> {
                let mut s = connect(addr)?;
                let buf = vec![0xa5u8; BULK_BUF_LEN];
                for _ in 0..BULK_MAX_CALLS {
                    if Instant::now() >= end {
                        break;
                    }
                    s.write_all(&buf)?;
                }
                let _ = s.shutdown(Shutdown::Write);
                Ok(())
            })
        })
        .collect();
    sleep_until(start + WARMUP);
    let (t0, b0) = (Instant::now(), sunk.load(Ordering::Relaxed));
    sleep_until(end);
    let (t1, b1) = (Instant::now(), sunk.load(Ordering::Relaxed));
    let errors = join_errors(workers);
    // Let the tail drain into the sink so the next measurement starts clean.
    thread::sleep(Duration::from_millis(200));
    Bulk {
        gbps: gbit(b1 - b0, t1 - t0),
        total_bytes: sunk.load(Ordering::Relaxed) - before,
        errors,
    }
}

/// `streams` connections read from the source; bytes are counted only while
/// the window is open.
pub fn download(addr: SocketAddr, streams: usize, window: Duration) -> Bulk {
    let start = Instant::now();
    let (w0, end) = (start + WARMUP, start + WARMUP + window);
    let counted = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            let (counted, total) = (counted.clone(), total.clone());
            thread::spawn(move || -> io::Result<()> {
                let mut s = connect(addr)?;
                let mut buf = vec![0u8; BULK_BUF_LEN];
                for _ in 0..BULK_MAX_CALLS {
                    let n = s.read(&mut buf)?;
                    let now = Instant::now();
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "early eof"));
                    }
                    total.fetch_add(n as u64, Ordering::Relaxed);
                    if now >= end {
                        break;
                    }
                    if now >= w0 {
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let errors = join_errors(workers);
    thread::sleep(Duration::from_millis(200));
    Bulk {
        gbps: gbit(counted.load(Ordering::Relaxed), window),
        total_bytes: total.load(Ordering::Relaxed),
        errors,
    }
}

fn join_errors(workers: Vec<thread::JoinHandle<io::Result<()>>>) -> u64 {
    let mut errors = 0;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("    bulk stream error: {e}");
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    errors
}

fn gbit(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e9
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

/// Round-trip times (ns) of up to `count` 64-byte echoes on one connection,
/// stopping at `max_time`.
pub fn latency(addr: SocketAddr, count: usize, max_time: Duration) -> io::Result<Vec<u64>> {
    let mut s = connect(addr)?;
    let msg = [0x42u8; MSG_LEN];
    let mut back = [0u8; MSG_LEN];
    for _ in 0..count.min(200) {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
    }
    let mut times = Vec::with_capacity(count);
    let end = Instant::now() + max_time;
    for _ in 0..count {
        let t = Instant::now();
        if t >= end {
            break;
        }
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        times.push(t.elapsed().as_nanos() as u64);
    }
    if back != msg {
        return Err(io::Error::other("echo returned different bytes"));
    }
    Ok(times)
}

/// Outcome of the short-connection test.
pub struct Short {
    pub per_sec: f64,
    /// Connection times (connect → echo read), µs, sorted.
    pub times_us: Vec<u64>,
    pub errors: u64,
    pub first_errors: Vec<String>,
}

/// `workers` threads loop connect → 64 B → 64 B echo → close for `window`.
pub fn short_connections(addr: SocketAddr, workers: usize, window: Duration) -> Short {
    let start = Instant::now();
    let end = start + window;
    let barrier = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let (mut times, mut errors) = (Vec::new(), Vec::new());
                for _ in 0..SHORT_MAX_PER_WORKER {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    match one_exchange(addr) {
                        Ok(()) => times.push(t.elapsed().as_micros() as u64),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let (mut times_us, mut all_errors) = (Vec::new(), Vec::new());
    for h in handles {
        if let Ok((t, e)) = h.join() {
            times_us.extend(t);
            all_errors.extend(e);
        }
    }
    let elapsed = start.elapsed();
    times_us.sort_unstable();
    let errors = all_errors.len() as u64;
    all_errors.sort();
    all_errors.dedup();
    all_errors.truncate(5);
    Short {
        per_sec: times_us.len() as f64 / elapsed.as_secs_f64(),
        times_us,
        errors,
        first_errors: all_errors,
    }
}

/// Outcome of [`downloads`].
pub struct Downloads {
    /// Wall time of the whole sequence.
    pub elapsed: Duration,
    /// Whether every download was attempted before `max_time`.
    pub finished: bool,
    pub failed: u64,
    pub first_errors: Vec<String>,
}

/// Up to `count` sequential downloads of `len` bytes each from the source
/// (connect, read `len` bytes, close), stopping at `max_time`. A failed
/// download (connect refused or timed out, reset, early EOF, a read timeout)
/// is counted and the next one starts.
pub fn downloads(addr: SocketAddr, count: usize, len: usize, max_time: Duration) -> Downloads {
    let start = Instant::now();
    let end = start + max_time;
    let mut buf = vec![0u8; BULK_BUF_LEN];
    let (mut failed, mut first_errors, mut finished) = (0, Vec::new(), true);
    for _ in 0..count {
        if Instant::now() >= end {
            finished = false;
            break;
        }
        let download = connect(addr).and_then(|mut s| {
            let mut left = len;
            while left > 0 {
                // Bounded by `max_time` too, not only by the per-read timeout.
                let now = Instant::now();
                if now >= end {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "cut at the time limit",
                    ));
                }
                s.set_read_timeout(Some(IO_TIMEOUT.min(end - now)))?;
                match s.read(&mut buf[..left.min(BULK_BUF_LEN)])? {
                    0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "early eof")),
                    n => left -= n,
                }
            }
            Ok(())
        });
        if let Err(e) = download {
            failed += 1;
            if first_errors.len() < 5 {
                first_errors.push(e.to_string());
            }
        }
    }
    Downloads {
        elapsed: start.elapsed(),
        finished,
        failed,
        first_errors,
    }
}

/// Up to `count` sequential visitors (connect, 64 B echo, close), stopping at
/// `max_time`. Returns how many succeeded and the first few distinct errors.
pub fn visitors(addr: SocketAddr, count: usize, max_time: Duration) -> (u64, Vec<String>) {
    let end = Instant::now() + max_time;
    let (mut ok, mut errors) = (0, Vec::new());
    for _ in 0..count {
        if Instant::now() >= end {
            errors.push(format!("stopped at the {max_time:?} limit"));
            break;
        }
        match one_exchange(addr) {
            Ok(()) => ok += 1,
            Err(e) if errors.len() < 5 => errors.push(e.to_string()),
            Err(_) => {}
        }
    }
    (ok, errors)
}

fn one_exchange(addr: SocketAddr) -> io::Result<()> {
    let mut s = connect(addr)?;
    let msg = [0x37u8; MSG_LEN];
    let mut back = [0u8; MSG_LEN];
    s.write_all(&msg)?;
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo mismatch"));
    }
    Ok(())
}

/// Opens up to `count` connections, each proven by a 1-byte echo, within `max_time`.
/// Returns the open connections and the number that failed.
pub fn open_idle(addr: SocketAddr, count: usize, max_time: Duration) -> (Vec<TcpStream>, u64) {
    let end = Instant::now() + max_time;
    let (mut open, mut failed) = (Vec::with_capacity(count), 0);
    for _ in 0..count {
        if Instant::now() >= end {
            break;
        }
        let proven = connect(addr).and_then(|mut s| {
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            Ok(s)
        });
        match proven {
            Ok(s) => open.push(s),
            Err(_) => failed += 1,
        }
    }
    (open, failed)
}

/// One echo round trip, retried until `max_time`: is the path up yet?
pub fn wait_ready(addr: SocketAddr, max_time: Duration) -> io::Result<()> {
    let end = Instant::now() + max_time;
    loop {
        let attempt = connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            s.write_all(b"r")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        });
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= end => {
                return Err(io::Error::other(format!("{addr} not ready: {e}")));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}
