//! The phases run against one started mode, in order: syscall counts
//! (`--syscalls`), idle memory, latency, bulk (iperf3 or built-in), short
//! connections, requests (wrk → nginx), pinned latency (`--pin`).

use std::path::Path;
use std::time::Duration;

use crate::modes::Mode;
use crate::report::{Metric, RunResult, percentile};
use crate::services::Services;
use crate::{iperf, load, pin, procstat, syscalls, wrk};

/// Sizes of every measurement.
pub struct Plan {
    pub bulk_window: Duration,
    /// `iperf3 -t` (whole seconds).
    pub iperf_secs: u64,
    /// `wrk -d` (whole seconds).
    pub wrk_secs: u64,
    pub latency_count: usize,
    pub latency_max: Duration,
    pub short_workers: usize,
    pub short_window: Duration,
    /// Idle visitors held at once, in turn: each count is one phase.
    pub held: Vec<usize>,
    pub idle_max: Duration,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        Self {
            bulk_window: Duration::from_millis(if quick { 500 } else { 2000 }),
            iperf_secs: if quick { 1 } else { 3 },
            wrk_secs: if quick { 1 } else { 3 },
            latency_count: if quick { 2_000 } else { 20_000 },
            latency_max: Duration::from_secs(if quick { 1 } else { 4 }),
            short_workers: 50,
            short_window: Duration::from_millis(if quick { 500 } else { 2000 }),
            held: if quick {
                vec![1000]
            } else {
                vec![1000, 5000, 20_000]
            },
            idle_max: Duration::from_secs(if quick { 10 } else { 60 }),
        }
    }
}

/// What the run does besides the fixed phases.
pub struct Setup<'a> {
    pub plan: Plan,
    pub svc: &'a Services,
    pub dir: &'a Path,
    /// Bulk through iperf3 (else the built-in sink and source).
    pub iperf: bool,
    /// The wrk → nginx request phase.
    pub wrk: bool,
    /// `--syscalls N`.
    pub syscalls: Option<usize>,
    /// `--pin`.
    pub pin: bool,
}

/// Every selected phase against `mode` (named `name`).
pub fn measure(name: &str, mode: &Mode, s: &Setup) -> RunResult {
    let mut r = RunResult::default();
    let pids = mode.pids();
    if let Some(n) = s.syscalls.filter(|_| syscalls::applies(name)) {
        match syscalls::measure(mode, n, s.dir) {
            Ok(counts) => {
                eprintln!("    syscalls per visitor: {counts:?}");
                r.syscalls = counts;
            }
            Err(e) => eprintln!("    syscalls failed: {e}"),
        }
    }
    for &count in &s.plan.held {
        held(mode, count, &s.plan, &pids, &mut r);
    }
    if let Some(p50) = latency(mode, &s.plan) {
        r.values.insert(Metric::LatP50, p50.0);
        r.values.insert(Metric::LatP99, p50.1);
    }
    match (s.iperf, mode.iperf) {
        (true, Some(addr)) => bulk_iperf(addr, &s.plan, &pids, &mut r),
        _ => bulk(mode, s.svc, &s.plan, &pids, &mut r),
    }
    short(mode, &s.plan, &mut r);
    if let (true, Some(addr)) = (s.wrk, mode.http) {
        requests(addr, &s.plan, &mut r);
    }
    if s.pin {
        pinned(mode, &s.plan, &pids, &mut r);
    }
    r.values.insert(
        Metric::LogWarnings,
        mode.logs
            .warnings
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    r
}

/// Descriptors a process needs per held visitor: the bench holds the visitor
/// and the echo service's side; a tunnel server holds the visitor and (pooled)
/// a data link; a client the link and the local connection.
const FDS_PER_HELD: usize = 2;
/// Descriptors each process needs besides the held visitors.
const FDS_SPARE: usize = 500;

/// Opens `count` idle visitors one after another (a 1-byte echo proves each),
/// holds them all, and records the time, the RSS growth per visitor of the
/// mode's processes, and the visitors that failed. Skipped (and said so) when
/// a process would run out of descriptors.
fn held(mode: &Mode, count: usize, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let limit = crate::fd_hard_limit();
    let need = FDS_PER_HELD * count + FDS_SPARE;
    if need > limit {
        eprintln!(
            "    held {count}: skipped: needs about {need} descriptors in one process, the hard limit is {limit}"
        );
        return;
    }
    let before = procstat::usage(pids).rss_kb;
    if !pids.is_empty() && count == plan.held[0] {
        r.values.insert(Metric::RssStart, before as f64 / 1024.0);
    }
    let started = std::time::Instant::now();
    let (open, failed) = load::open_idle(mode.echo, count, plan.idle_max);
    let secs = started.elapsed().as_secs_f64();
    // Give pools time to refill and allocators time to settle.
    std::thread::sleep(Duration::from_millis(300));
    let after = procstat::usage(pids).rss_kb;
    let errors = count - open.len();
    eprintln!(
        "    held {count}: {} open in {secs:.2} s, {failed} failed, {errors} errors, RSS {before} KB -> {after} KB",
        open.len()
    );
    let key = u32::try_from(count).unwrap_or(u32::MAX);
    r.values.insert(Metric::HeldSecs(key), secs);
    r.values.insert(Metric::HeldErrors(key), errors as f64);
    if !pids.is_empty() && !open.is_empty() {
        let per = (after as f64 - before as f64) / open.len() as f64;
        r.values.insert(Metric::HeldKb(key), per);
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
}

/// 64 B round-trip (p50, p99) in µs.
fn latency(mode: &Mode, plan: &Plan) -> Option<(f64, f64)> {
    match load::latency(mode.echo, plan.latency_count, plan.latency_max) {
        Ok(mut t) => {
            t.sort_unstable();
            let us = |p| percentile(&t, p).map(|ns| ns as f64 / 1000.0);
            eprintln!("    latency: {} round trips", t.len());
            Some((us(50.0)?, us(99.0)?))
        }
        Err(e) => {
            eprintln!("    latency failed: {e}");
            None
        }
    }
}

/// The four bulk tests, in the order both bulk phases run them.
const BULK_TESTS: [(Metric, usize, bool); 4] = [
    (Metric::Up1, 1, true),
    (Metric::Down1, 1, false),
    (Metric::Up8, 8, true),
    (Metric::Down8, 8, false),
];

fn bulk(mode: &Mode, svc: &Services, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let cpu0 = procstat::usage(pids).cpu_ticks;
    let mut bytes = 0u64;
    for (metric, streams, up) in BULK_TESTS {
        let b = if up {
            load::upload(mode.sink, streams, plan.bulk_window, &svc.sunk)
        } else {
            load::download(mode.source, streams, plan.bulk_window)
        };
        eprintln!(
            "    {metric:?}: {:.2} Gbit/s, {} MB moved, {} stream errors",
            b.gbps,
            b.total_bytes / 1_000_000,
            b.errors
        );
        bytes += b.total_bytes;
        r.values.insert(metric, b.gbps);
    }
    cpu_per_gb(pids, cpu0, bytes, r);
}

fn bulk_iperf(addr: std::net::SocketAddr, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let cpu0 = procstat::usage(pids).cpu_ticks;
    let mut bytes = 0u64;
    for (metric, streams, up) in BULK_TESTS {
        match iperf::run(addr, streams, !up, plan.iperf_secs) {
            Ok(t) => {
                eprintln!(
                    "    {metric:?} (iperf3): {:.2} Gbit/s, {} MB",
                    t.gbps,
                    t.bytes / 1_000_000
                );
                bytes += t.bytes;
                r.values.insert(metric, t.gbps);
            }
            Err(e) => eprintln!("    {metric:?} (iperf3) failed: {e}"),
        }
    }
    cpu_per_gb(pids, cpu0, bytes, r);
}

/// CPU seconds the mode's processes spent since `cpu0`, per GB moved.
fn cpu_per_gb(pids: &[u32], cpu0: u64, bytes: u64, r: &mut RunResult) {
    let ticks = procstat::usage(pids).cpu_ticks.saturating_sub(cpu0);
    if !pids.is_empty() && bytes > 0 {
        let secs = ticks as f64 / procstat::clock_ticks_per_sec();
        r.values
            .insert(Metric::CpuPerGb, secs / (bytes as f64 / 1e9));
    }
}

fn short(mode: &Mode, plan: &Plan, r: &mut RunResult) {
    let s = load::short_connections(mode.echo, plan.short_workers, plan.short_window);
    eprintln!(
        "    short: {} ok, {} errors {:?}",
        s.times_us.len(),
        s.errors,
        s.first_errors
    );
    r.values.insert(Metric::ShortPerSec, s.per_sec);
    r.values.insert(Metric::ShortErrors, s.errors as f64);
    if let Some(p99) = percentile(&s.times_us, 99.0) {
        r.values.insert(Metric::ShortP99, p99 as f64 / 1000.0);
    }
    // TIME_WAIT and relay teardown settle before the next mode starts.
    std::thread::sleep(Duration::from_millis(300));
}

fn requests(addr: std::net::SocketAddr, plan: &Plan, r: &mut RunResult) {
    let mut errors = 0;
    for (metric, close) in [(Metric::WrkClose, true), (Metric::WrkKeepAlive, false)] {
        match wrk::run(addr, plan.wrk_secs, close) {
            Ok(run) => {
                eprintln!(
                    "    {metric:?}: {:.0} req/s, {} errors",
                    run.per_sec, run.errors
                );
                r.values.insert(metric, run.per_sec);
                errors += run.errors;
            }
            Err(e) => eprintln!("    {metric:?} failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    r.values.insert(Metric::WrkErrors, errors as f64);
}

fn pinned(mode: &Mode, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let guard = match pin::pin_all(pids) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("    pinning failed: {e}");
            return;
        }
    };
    let lat = latency(mode, plan);
    eprintln!("    (pinned to CPU {})", guard.cpu);
    drop(guard);
    if let Some((p50, _)) = lat {
        r.values.insert(Metric::PinnedLatP50, p50);
    }
}
