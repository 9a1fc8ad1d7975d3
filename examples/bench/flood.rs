//! `--flood`: a flood of connections that never authenticate, against a
//! tunnel server's control port (the port its clients dial), must not starve
//! the real client. Per tunnel mode the same figures are taken twice, first
//! quiet, then [`BUILD_UP`] into a flood (`flooder.rs`) of [`SILENT`] silent
//! and [`TRICKLING`] one-byte-per-second connections that lasts until the
//! figures are in (5 s to 30 s; at most about 45 s):
//!
//! 1. the short-connection rate (the main table's load: 50 workers,
//!    connect → 64 B echo → close);
//! 2. [`DOWNLOADS`] sequential [`DOWNLOAD_LEN`] downloads from the source
//!    service, timed, capped at [`BULK_MAX`];
//! 3. visitors of 1 and 2 that failed (connect refused or timed out, reset,
//!    EOF before all data, a 3 s read timeout): counted, never fatal;
//! 4. how long a new client takes to register: one more client process of the
//!    same server (the mode's own config, serving the echo service on another
//!    public port), timed from spawn to the first byte a visitor through its
//!    public port gets echoed, capped at [`REGISTER_MAX`]. Last, so that 1
//!    and 2 are taken at the same time into the flood for every mode;
//! 5. lines the server wrote (stdout and stderr) during each part: a server
//!    must keep its logs bounded under a flood too.
//!
//! The target: under the flood, short and bulk within 1.5× of quiet,
//! no failed visitor, a new client registered within 1 s.
//!
//! A trickling connection sends the first bytes of the hello its server
//! expects (see [`hello`]), never a whole one: the server waits for the rest
//! until its handshake timeout. A closed flood connection is reopened.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{self, LogStats};
use crate::flooder::{Flood, Spec};
use crate::measure::Plan;
use crate::modes::{LATE_SERVICE, LateClient, Mode, parse_addr, split_base};
use crate::report::{Metric, RunResult};
use crate::{load, procstat};

/// Flood connections that connect and send nothing.
pub const SILENT: usize = 2000;
/// Flood connections that send one byte per second.
pub const TRICKLING: usize = 500;
/// Flood time before the first figure is taken.
const BUILD_UP: Duration = Duration::from_secs(2);
/// A new client that has not echoed a byte by then counts as "> this".
/// Longer than porthole's handshake timeout (10 s) and rathole's TLS one (5 s,
/// by its logs), so a client that gets in once the flood's first handshakes
/// time out is seen.
pub const REGISTER_MAX: Duration = Duration::from_secs(20);
/// Sequential downloads of the bulk figure (the issue's own measure).
const DOWNLOADS: usize = 64;
const DOWNLOAD_LEN: usize = 4 * 1024 * 1024;
/// The downloads stop here; the figure then reads "> this".
pub const BULK_MAX: Duration = Duration::from_secs(15);
/// Time for relays to close and the server's output to be drained.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a late client gets to say goodbye (SIGINT) before it is killed;
/// killed at once, its half-open data links would make the server log resets.
const LATE_STOP: Duration = Duration::from_secs(2);

/// Whether mode `name` has a control port to flood.
pub fn applies(name: &str) -> bool {
    matches!(
        split_base(name).0,
        "tunnel" | "tunnel-tls" | "tunnel-mux" | "tunnel-tls-mux" | "rathole" | "rathole-tls"
    )
}

/// The bytes a trickling connection sends to mode `name`'s server: the start
/// of a TLS ClientHello for TLS modes (record and handshake headers, then
/// random), rathole's bincode `ControlChannelHello` (variant 0, protocol
/// version 1, a random digest), porthole's own control `Hello` frame (57
/// bytes). Each is longer than a flood lasts, at one byte per second.
fn hello(name: &str) -> Vec<u8> {
    let random = |n: usize| (0..n).map(|_| fastrand::u8(..)).collect::<Vec<u8>>();
    let mode = split_base(name).0;
    let mut bytes = if mode.ends_with("tls") || mode.contains("tls-") {
        // Record: handshake, TLS 1.0 legacy version, 512 bytes; ClientHello
        // of 508 bytes, client version TLS 1.2; then the client random.
        vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ]
    } else if mode == "rathole" {
        vec![0, 0, 0, 0, 1]
    } else {
        use porthole::protocol::{Frame, LinkHello, VERSION, to_bytes};
        let link = LinkHello::Control {
            client_id: [0x11; 16],
            nonce: [0x22; 32],
        };
        return to_bytes(&Frame::Hello {
            version: VERSION,
            link,
        })
        .unwrap_or_else(|_| random(57));
    };
    bytes.extend(random(32));
    bytes
}

/// Quiet figures, then the same under a flood from `from`, for mode `name`.
pub fn measure(name: &str, mode: &Mode, plan: &Plan, from: Ipv4Addr) -> RunResult {
    let mut r = RunResult::default();
    let Some(SocketAddr::V4(control)) = mode.control else {
        eprintln!("    flood: skipped: no IPv4 control port");
        return r;
    };
    let lines = || mode.lines_of("server").unwrap_or(0);
    let before = lines();
    let quiet = figures(mode, plan);
    thread::sleep(SETTLE);
    quiet.record("quiet", lines().saturating_sub(before), QUIET, &mut r);
    let before = lines();
    if let Some(under) = flooded(name, mode, plan, control, from) {
        // The settle after the flood is in: what the server logs as the
        // flood's sockets close counts too.
        under.record("flood", lines().saturating_sub(before), FLOODED, &mut r);
    }
    r.values.insert(
        Metric::LogWarnings,
        mode.logs
            .warnings
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    r
}

/// The figures under a flood against `control` (`None`: no flood started).
/// What the flood, the mode's processes and the kernel did goes to stderr.
fn flooded(
    name: &str,
    mode: &Mode,
    plan: &Plan,
    control: SocketAddrV4,
    from: Ipv4Addr,
) -> Option<Figures> {
    let spec = Spec {
        target: control,
        from,
        silent: SILENT,
        trickling: TRICKLING,
        hello: hello(name),
    };
    let (kernel0, cpu0) = (tcp_counters(), procstat::usage(&mode.pids()).cpu_ticks);
    let started = Instant::now();
    eprintln!("    flood: starting against {control} from {from}");
    let flood = Flood::start(spec)
        .map_err(|e| eprintln!("    flood: cannot start: {e}"))
        .ok()?;
    thread::sleep(BUILD_UP);
    let built = flood.open();
    let under = figures(mode, plan);
    let at_end = flood.open();
    let stats = flood.stop();
    let cpu = procstat::usage(&mode.pids()).cpu_ticks.saturating_sub(cpu0);
    let secs = started.elapsed().as_secs_f64();
    thread::sleep(SETTLE);
    eprintln!(
        "    flood: {built} of {} open after {BUILD_UP:?}, {at_end} at the end; {stats:?}",
        SILENT + TRICKLING
    );
    eprintln!(
        "    flood: the mode's processes used {:.1} CPU s in {secs:.1} s; host TCP counters: {:?}",
        cpu as f64 / procstat::clock_ticks_per_sec(),
        tcp_deltas(&kernel0, &tcp_counters())
    );
    Some(under)
}

/// Where each part's figures go: register, short, bulk, failed, log lines.
type Slots = [Metric; 5];
const QUIET: Slots = [
    Metric::QuietRegister,
    Metric::QuietShort,
    Metric::QuietBulkSecs,
    Metric::QuietFailed,
    Metric::QuietLogLines,
];
const FLOODED: Slots = [
    Metric::FloodRegister,
    Metric::FloodShort,
    Metric::FloodBulkSecs,
    Metric::FloodFailed,
    Metric::FloodLogLines,
];

/// One part's figures.
struct Figures {
    /// `None`: no echo within [`REGISTER_MAX`].
    register: Option<Duration>,
    short: load::Short,
    bulk: load::Downloads,
}

fn figures(mode: &Mode, plan: &Plan) -> Figures {
    let short = load::short_connections(mode.echo, plan.short_workers, plan.short_window);
    thread::sleep(SETTLE);
    let bulk = load::downloads(mode.source, DOWNLOADS, DOWNLOAD_LEN, BULK_MAX);
    let register = mode.late.as_ref().and_then(register);
    Figures {
        register,
        short,
        bulk,
    }
}

impl Figures {
    /// Records the figures (a capped one as its cap; the table prints "> cap").
    fn record(&self, part: &str, log_lines: u64, slots: Slots, r: &mut RunResult) {
        let (b, s) = (&self.bulk, &self.short);
        let bulk_secs = if b.finished && b.elapsed < BULK_MAX {
            b.elapsed.as_secs_f64()
        } else {
            BULK_MAX.as_secs_f64()
        };
        let failed = s.errors + b.failed;
        eprintln!(
            "    {part}: short {:.0}/s ({} errors {:?}), {DOWNLOADS} downloads {:.2} s{} ({} failed {:?}), register {:?}, server log lines {log_lines}",
            s.per_sec,
            s.errors,
            s.first_errors,
            b.elapsed.as_secs_f64(),
            if b.finished {
                ""
            } else {
                " (stopped at the limit)"
            },
            b.failed,
            b.first_errors,
            self.register,
        );
        let register = self.register.unwrap_or(REGISTER_MAX).as_secs_f64();
        let values = [
            register,
            s.per_sec,
            bulk_secs,
            failed as f64,
            log_lines as f64,
        ];
        for (metric, value) in slots.into_iter().zip(values) {
            r.values.insert(metric, value);
        }
    }
}

/// Starts `late` and times it from spawn to its first echoed byte; `None`
/// when that does not happen within [`REGISTER_MAX`]. The client is stopped
/// right after.
fn register(late: &LateClient) -> Option<Duration> {
    let start = Instant::now();
    let end = start + REGISTER_MAX;
    let logs = Arc::<LogStats>::default();
    let (mut guard, rx) = match child::spawn(late.command(), &logs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("    late client: {e}");
            return None;
        }
    };
    let public = late.public.or_else(|| announced(&rx, end));
    let echoed = public.is_some_and(|addr| echoes(addr, end));
    let took = start.elapsed();
    guard.interrupt(LATE_STOP);
    let samples = logs.samples.lock().unwrap_or_else(|e| e.into_inner());
    for line in samples.iter().take(3) {
        eprintln!("    late client log: {line}");
    }
    echoed.then_some(took)
}

/// The public address a porthole client prints for [`LATE_SERVICE`].
fn announced(rx: &Receiver<String>, end: Instant) -> Option<SocketAddr> {
    let marker = format!("service {LATE_SERVICE} is public at ");
    loop {
        let line = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .ok()?;
        if let Some(addr) = line.split_once(&marker).and_then(|(_, a)| parse_addr(a)) {
            return Some(addr);
        }
    }
}

/// Retries a 1-byte echo through `addr` until one comes back or `end`.
fn echoes(addr: SocketAddr, end: Instant) -> bool {
    use std::io::{Read, Write};
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // A probe waits for its echo as long as the cap allows: a visitor
        // that the server holds until the client is ready still counts.
        let echoed = std::net::TcpStream::connect_timeout(&addr, left).and_then(|mut s| {
            s.set_read_timeout(Some(left))?;
            s.write_all(b"f")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        });
        if echoed.is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `/proc/net/netstat` counters that show what the kernel did with the flood
/// (host-wide: other traffic on the host counts too).
const TCP_COUNTERS: &[&str] = &[
    "ListenOverflows",
    "ListenDrops",
    "TCPDeferAcceptDrop",
    "SyncookiesSent",
    "TCPReqQFullDoCookies",
    "TCPAbortOnData",
];

fn tcp_counters() -> Vec<(&'static str, u64)> {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    // Pairs of lines: "TcpExt: Name Name ...", then "TcpExt: 1 2 ...".
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return Vec::new();
    };
    let pairs: Vec<(&str, u64)> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
        .collect();
    TCP_COUNTERS
        .iter()
        .filter_map(|&want| Some((want, pairs.iter().find(|p| p.0 == want)?.1)))
        .collect()
}

fn tcp_deltas(
    before: &[(&'static str, u64)],
    after: &[(&'static str, u64)],
) -> Vec<(&'static str, u64)> {
    after
        .iter()
        .filter_map(|&(name, v)| {
            let b = before.iter().find(|p| p.0 == name)?.1;
            Some((name, v.saturating_sub(b)))
        })
        .collect()
}
