//! `--udp`'s services and load (`udp.rs` drives them through the modes).
//!
//! Two services on `127.0.0.1:0`, each one thread of the bench: an echo that
//! answers every datagram to its source with `send_to` (so it serves any
//! number of flows on one socket), and a sink that counts what it receives.
//!
//! Every bench datagram starts with a tag (u32 LE) and a sequence number
//! (u32 LE). The sink counts only datagrams of the current tag and the
//! expected length, so datagrams of an earlier step that a tunnel delivers
//! late never count for a later one, and a truncated datagram shows as
//! `wrong_len` instead of as delivered. Tag 0 is for readiness probes.
//!
//! Every loop here is bounded in count and in time.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tag and sequence number at the start of every datagram.
const HEADER_LEN: usize = 8;
/// The services' read buffer: larger than any datagram on loopback, so a
/// datagram is never cut by the bench itself.
const RECV_BUF_LEN: usize = 65_536;
/// Receive buffer asked for the services and the load's sockets, so that a
/// burst a mode delivers at once is lost in the mode, not in the bench.
const RCVBUF_BYTES: usize = 8 << 20;
/// How often a service thread looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// The sender sleeps when the next datagram is due later than this, and
/// yields the CPU (spins) when it is due sooner: a sleep overshoots by tens
/// of microseconds.
const SLEEP_ABOVE: Duration = Duration::from_micros(300);
/// Most datagrams sent back to back to catch up with the schedule.
const BURST_MAX: u64 = 64;
/// How late the sender may finish its schedule before it gives up on it.
const SEND_SLACK: Duration = Duration::from_millis(500);
/// After sending, the sink is read once its count has not risen for
/// [`DRAIN_QUIET`], at least [`DRAIN_MIN`] and at most [`DRAIN_MAX`] after
/// the last datagram was sent.
const DRAIN_MIN: Duration = Duration::from_millis(200);
const DRAIN_QUIET: Duration = Duration::from_millis(50);
const DRAIN_MAX: Duration = Duration::from_secs(1);
/// A readiness probe waits this long for its answer before the next one.
const PROBE_WAIT: Duration = Duration::from_millis(200);
/// The round trips stop after this many losses in a row (the rest count as lost).
const RTT_LOST_IN_A_ROW_MAX: u64 = 20;
/// Idle flows are opened this many at a time: each sends its datagram, then
/// the batch waits (one shared deadline) for its echoes.
const FLOW_BATCH: usize = 50;
/// The tag of round trips and idle flows (the echo ignores tags).
const ECHO_TAG: u32 = u32::MAX;

pub struct UdpServices {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    counts: Arc<SinkCounts>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct SinkCounts {
    /// The tag counted now, and the length its datagrams have.
    tag: AtomicU32,
    len: AtomicU64,
    /// Datagrams of `tag` and `len`.
    counted: AtomicU64,
    /// Datagrams of `tag` with another length (truncated or corrupt).
    wrong_len: AtomicU64,
    /// Every datagram received, any tag (readiness probes).
    seen: AtomicU64,
}

impl UdpServices {
    pub fn start() -> io::Result<Self> {
        let (echo, sink) = (bind_loopback()?, bind_loopback()?);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(SinkCounts::default());
        let mut me = Self {
            echo: echo.local_addr()?,
            sink: sink.local_addr()?,
            counts: counts.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let stopped = stop.clone();
        me.threads.push(std::thread::spawn(move || {
            serve(&echo, &stopped, |n, buf, from| {
                let _ = echo.send_to(&buf[..n], from);
            });
        }));
        me.threads.push(std::thread::spawn(move || {
            serve(&sink, &stop, |n, buf, _| counts.count(n, buf));
        }));
        Ok(me)
    }

    /// Starts counting datagrams of `len` bytes under a new tag; returns it.
    fn begin(&self, len: usize) -> u32 {
        let c = &self.counts;
        let tag = c.tag.load(Ordering::SeqCst).wrapping_add(1).max(1);
        c.len.store(len as u64, Ordering::SeqCst);
        c.counted.store(0, Ordering::SeqCst);
        c.wrong_len.store(0, Ordering::SeqCst);
        c.tag.store(tag, Ordering::SeqCst);
        tag
    }

    fn counted(&self) -> u64 {
        self.counts.counted.load(Ordering::SeqCst)
    }
}

impl SinkCounts {
    fn count(&self, n: usize, buf: &[u8]) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        if n < HEADER_LEN || header(buf).0 != self.tag.load(Ordering::Relaxed) {
            return;
        }
        if n as u64 == self.len.load(Ordering::Relaxed) {
            self.counted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.wrong_len.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for UdpServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Receives until `stop`, handing each datagram to `handle`.
fn serve(sock: &UdpSocket, stop: &AtomicBool, mut handle: impl FnMut(usize, &[u8], SocketAddr)) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let _ = sock.set_read_timeout(Some(STOP_POLL));
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            handle(n, &buf, from);
        }
    }
}

/// A socket on `127.0.0.1:0` with a large receive buffer (forced past
/// `rmem_max` when the bench may, else as large as the kernel allows).
fn bind_loopback() -> io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF_BYTES).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF_BYTES);
    }
    Ok(sock)
}

/// A flow: a socket of its own on loopback, connected to `target`.
pub fn flow(target: SocketAddr) -> io::Result<UdpSocket> {
    let sock = bind_loopback()?;
    sock.connect(target)?;
    sock.set_write_timeout(Some(Duration::from_millis(100)))?;
    Ok(sock)
}

fn datagram(len: usize, tag: u32) -> Vec<u8> {
    let mut buf = vec![0x5au8; len.max(HEADER_LEN)];
    buf[..4].copy_from_slice(&tag.to_le_bytes());
    buf
}

fn set_seq(buf: &mut [u8], seq: u32) {
    buf[4..HEADER_LEN].copy_from_slice(&seq.to_le_bytes());
}

/// (tag, sequence number) of a datagram of at least [`HEADER_LEN`] bytes.
fn header(buf: &[u8]) -> (u32, u32) {
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    (word(0), word(4))
}

/// Probes until a 64 B datagram to `addr` comes back (the path through a
/// mode to the echo is up), for at most `max`.
pub fn wait_echo(addr: SocketAddr, max: Duration) -> Result<(), String> {
    let sock = flow(addr).map_err(|e| format!("probe socket: {e}"))?;
    let probe = datagram(64, 0);
    let mut buf = [0u8; 128];
    let end = Instant::now() + max;
    while Instant::now() < end {
        // A refused send (nothing bound yet) fails fast; wait before the next.
        if sock.send(&probe).is_err() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let _ = sock.set_read_timeout(Some(PROBE_WAIT));
        if matches!(sock.recv(&mut buf), Ok(64)) {
            return Ok(());
        }
    }
    Err(format!("no echo from {addr} within {max:?}"))
}

/// Probes until a datagram to `addr` reaches the sink, for at most `max`.
pub fn wait_sink(svc: &UdpServices, addr: SocketAddr, max: Duration) -> Result<(), String> {
    let sock = flow(addr).map_err(|e| format!("probe socket: {e}"))?;
    let probe = datagram(64, 0);
    let end = Instant::now() + max;
    while Instant::now() < end {
        let before = svc.counts.seen.load(Ordering::SeqCst);
        if sock.send(&probe).is_err() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let wait = Instant::now() + PROBE_WAIT;
        while Instant::now() < wait {
            if svc.counts.seen.load(Ordering::SeqCst) > before {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Err(format!(
        "no datagram from {addr} reached the sink within {max:?}"
    ))
}

/// What one step of the rate ladder got through.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub sent: u64,
    pub received: u64,
    /// Datagrams of the step that reached the sink with another length.
    pub wrong_len: u64,
    pub send_errors: u64,
    /// The schedule's length, or how long sending took when it fell behind.
    pub send_secs: f64,
}

impl Delivery {
    pub fn offered_per_sec(&self) -> f64 {
        self.sent as f64 / self.send_secs.max(1e-9)
    }

    pub fn delivered_per_sec(&self) -> f64 {
        self.received as f64 / self.send_secs.max(1e-9)
    }

    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }
}

/// Offers `rate` datagrams/s of `len` bytes for `secs` over `flows` in turn,
/// paced to the schedule, and counts what reached the sink.
pub fn offer(
    svc: &UdpServices,
    flows: &[UdpSocket],
    len: usize,
    rate: u32,
    secs: Duration,
) -> Delivery {
    let tag = svc.begin(len.max(HEADER_LEN));
    let mut buf = datagram(len, tag);
    let rate = f64::from(rate.max(1));
    let planned = (rate * secs.as_secs_f64()) as u64;
    let start = Instant::now();
    let deadline = start + secs + SEND_SLACK;
    let (mut sent, mut send_errors) = (0u64, 0u64);
    while sent < planned && !flows.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate) as u64 + 1;
        if sent >= due {
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            let wait = next.saturating_duration_since(now);
            if wait > SLEEP_ABOVE {
                std::thread::sleep(wait - SLEEP_ABOVE / 2);
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        for _ in 0..(due.min(planned) - sent).min(BURST_MAX) {
            set_seq(&mut buf, sent as u32);
            if flows[sent as usize % flows.len()].send(&buf).is_err() {
                send_errors += 1;
            }
            sent += 1;
        }
    }
    // The last datagram is due 1/rate before the schedule ends.
    let send_secs = start.elapsed().as_secs_f64().max(secs.as_secs_f64());
    let received = drain(svc);
    Delivery {
        sent,
        received,
        wrong_len: svc.counts.wrong_len.load(Ordering::SeqCst),
        send_errors,
        send_secs,
    }
}

/// Waits for the sink's count to settle (see [`DRAIN_MIN`]) and returns it.
fn drain(svc: &UdpServices) -> u64 {
    let start = Instant::now();
    std::thread::sleep(DRAIN_MIN);
    let mut last = svc.counted();
    while start.elapsed() < DRAIN_MAX {
        std::thread::sleep(DRAIN_QUIET);
        let now = svc.counted();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Sequential round trips on one flow.
pub struct RoundTrips {
    /// Round-trip times of the answered requests, sorted (ns).
    pub sorted_ns: Vec<u64>,
    pub lost: u64,
}

/// `count` sequential 64 B requests to the echo at `target`, each answered
/// within `timeout` or lost; stops after `max` in all (the rest are lost).
pub fn round_trips(
    target: SocketAddr,
    count: u32,
    timeout: Duration,
    max: Duration,
) -> io::Result<RoundTrips> {
    let sock = flow(target)?;
    let mut buf = datagram(64, ECHO_TAG);
    let mut answer = [0u8; 128];
    let (mut sorted_ns, mut lost, mut in_a_row) = (Vec::new(), 0u64, 0u64);
    let end = Instant::now() + max;
    for seq in 0..count {
        if Instant::now() >= end || in_a_row >= RTT_LOST_IN_A_ROW_MAX {
            lost += u64::from(count - seq);
            break;
        }
        set_seq(&mut buf, seq);
        let sent = Instant::now();
        let answered = sock.send(&buf).is_ok()
            && wait_answer(&sock, &mut answer, (ECHO_TAG, seq), sent + timeout);
        if answered {
            sorted_ns.push(sent.elapsed().as_nanos() as u64);
            in_a_row = 0;
        } else {
            lost += 1;
            in_a_row += 1;
        }
    }
    sorted_ns.sort_unstable();
    Ok(RoundTrips { sorted_ns, lost })
}

/// Reads until the answer with `want` (tag, seq) comes, skipping stale
/// answers, until `deadline`.
fn wait_answer(sock: &UdpSocket, buf: &mut [u8], want: (u32, u32), deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match sock.recv(buf) {
            Ok(n) if n >= HEADER_LEN && header(buf) == want => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => return false,
        }
    }
}

/// Idle flows held open: each sent one datagram and (unless counted in
/// `errors`) had its echo.
pub struct HeldFlows {
    pub sockets: Vec<UdpSocket>,
    pub errors: usize,
    pub secs: f64,
}

/// Opens `count` flows to the echo at `target`, [`FLOW_BATCH`] at a time,
/// each waiting at most `timeout` for its echo; stops after `max` (the
/// flows not opened count as errors).
pub fn hold_flows(target: SocketAddr, count: usize, timeout: Duration, max: Duration) -> HeldFlows {
    let start = Instant::now();
    let mut held = HeldFlows {
        sockets: Vec::with_capacity(count),
        errors: 0,
        secs: 0.0,
    };
    let mut buf = [0u8; 128];
    let mut tried = 0;
    while tried < count && start.elapsed() < max {
        let first = held.sockets.len();
        let batch = FLOW_BATCH.min(count - tried);
        tried += batch;
        for _ in 0..batch {
            match flow(target) {
                Ok(s) => held.sockets.push(s),
                Err(_) => held.errors += 1,
            }
        }
        let deadline = Instant::now() + timeout;
        let seq = |i: usize| (first + i) as u32;
        let mut sent = Vec::with_capacity(batch);
        for (i, s) in held.sockets[first..].iter().enumerate() {
            let mut d = datagram(64, ECHO_TAG);
            set_seq(&mut d, seq(i));
            sent.push(s.send(&d).is_ok());
        }
        for (i, s) in held.sockets[first..].iter().enumerate() {
            if !(sent[i] && wait_answer(s, &mut buf, (ECHO_TAG, seq(i)), deadline)) {
                held.errors += 1;
            }
        }
    }
    held.errors += count - tried;
    held.secs = start.elapsed().as_secs_f64();
    held
}
