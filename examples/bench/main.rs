//! Benchmark porthole against a direct loopback connection and peer tools.
//!
//! The echo, sink and source services run inside this process on loopback;
//! porthole (and any installed peer: rathole, haproxy, socat) run as child
//! processes so their CPU time and RSS can be read from `/proc`. Every mode is
//! a path from the load generator to the same services; `direct` is the
//! baseline every ratio refers to, measured in the same run.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example bench -- [--runs 3] [--quick] [--only direct,tunnel,forward]
//! ```
//!
//! Prints a markdown table (medians over runs) on stdout and the raw per-run
//! numbers on stderr. Loopback only; every load loop is bounded in count and time.

mod load;
mod modes;
mod procstat;
mod report;
mod services;

use argh::FromArgs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modes::Mode;
use report::{Metric, RunResult, percentile};

#[derive(FromArgs)]
/// Benchmark porthole (tunnel, forward) against direct loopback and peer tools.
struct Args {
    /// repeat every measurement N times and report the median (default 1)
    #[argh(option, default = "1")]
    runs: usize,
    /// shorter measurements (a full run in under a minute)
    #[argh(switch)]
    quick: bool,
    /// comma-separated modes: direct,tunnel,forward,rathole,haproxy,socat (default all)
    #[argh(option)]
    only: Option<String>,
}

/// Sizes of every measurement.
struct Plan {
    bulk_window: Duration,
    latency_count: usize,
    latency_max: Duration,
    short_workers: usize,
    short_window: Duration,
    idle_conns: usize,
    idle_max: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            bulk_window: Duration::from_millis(if quick { 500 } else { 2000 }),
            latency_count: if quick { 2_000 } else { 20_000 },
            latency_max: Duration::from_secs(if quick { 1 } else { 4 }),
            short_workers: 50,
            short_window: Duration::from_millis(if quick { 500 } else { 2000 }),
            idle_conns: 1000,
            idle_max: Duration::from_secs(if quick { 10 } else { 30 }),
        }
    }
}

fn main() {
    let args: Args = argh::from_env();
    let started = Instant::now();
    if let Err(e) = run(&args) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
    eprintln!("total time: {:.1} s", started.elapsed().as_secs_f64());
}

fn run(args: &Args) -> Result<(), String> {
    raise_fd_limit();
    let porthole = porthole_path();
    let wanted: Vec<String> = match &args.only {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => modes::ALL.iter().map(|s| s.to_string()).collect(),
    };
    let mut selected = Vec::new();
    for name in &wanted {
        if !modes::ALL.contains(&name.as_str()) {
            return Err(format!(
                "unknown mode {name:?}; known: {}",
                modes::ALL.join(",")
            ));
        }
        match modes::unavailable(name, &porthole) {
            Some(why) if name == "tunnel" || name == "forward" => return Err(why),
            Some(why) => println!("> skipped {name}: {why}"),
            None => selected.push(name.clone()),
        }
    }
    let dir = std::env::temp_dir().join(format!("porthole-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let svc = services::Services::start(2).map_err(|e| format!("services: {e}"))?;
    let plan = Plan::new(args.quick);
    let mut results: Vec<(String, Vec<RunResult>)> =
        selected.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut notes = Vec::new();
    for run in 0..args.runs.max(1) {
        let mut direct_p50 = None;
        for (name, runs) in results.iter_mut() {
            eprintln!("run {}/{}: {name}", run + 1, args.runs.max(1));
            let Some(mode) = start_mode(name, &svc, &porthole, &dir, run, &mut notes) else {
                continue;
            };
            let mut r = measure(&mode, &svc, &plan);
            if name == "direct" {
                direct_p50 = r.values.get(&Metric::LatP50).copied();
            }
            if let (Some(d), Some(p)) = (direct_p50, r.values.get(&Metric::LatP50).copied()) {
                r.values.insert(Metric::LatAddedP50, p - d);
            }
            for line in mode
                .logs
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                eprintln!("    log: {line}");
            }
            eprintln!("  raw {name} run {}: {:?}", run + 1, r.values);
            runs.push(r);
        }
    }
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nporthole bench: {} run(s){}, medians; (×) = ratio to direct in the same runs\n",
        args.runs.max(1),
        if args.quick { ", --quick" } else { "" }
    );
    println!("{}", report::table(&results));
    for note in notes {
        println!("> start failure: {note}");
    }
    Ok(())
}

/// Starts `name`, with one retry on fresh ports; failures become notes.
fn start_mode(
    name: &str,
    svc: &services::Services,
    porthole: &Path,
    dir: &Path,
    run: usize,
    notes: &mut Vec<String>,
) -> Option<Mode> {
    for attempt in 1..=2 {
        match modes::start(name, svc, porthole, dir) {
            Ok(mode) => return Some(mode),
            Err(e) => {
                eprintln!("  {name} failed to start (attempt {attempt}): {e}");
                notes.push(format!("run {}, attempt {attempt}: {e}", run + 1));
            }
        }
    }
    None
}

/// `target/release/porthole` next to this example's own binary
/// (`target/release/examples/bench`), else under the manifest directory.
fn porthole_path() -> PathBuf {
    let near = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("porthole")));
    match near {
        Some(p) if p.is_file() => p,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/porthole"),
    }
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("cannot raise the fd limit from {soft} to {hard}: {e}");
            }
        }
        if hard < 4096 {
            eprintln!("warning: fd limit {hard} is low; the idle test needs ~3 per connection");
        }
    }
}

fn measure(mode: &Mode, svc: &services::Services, plan: &Plan) -> RunResult {
    let mut r = RunResult::default();
    let pids = mode.pids();
    idle(mode, plan, &pids, &mut r);
    latency(mode, plan, &mut r);
    bulk(mode, svc, plan, &pids, &mut r);
    short(mode, plan, &mut r);
    r.values.insert(
        Metric::LogWarnings,
        mode.logs
            .warnings
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    r
}

fn idle(mode: &Mode, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let before = procstat::usage(pids).rss_kb;
    if !pids.is_empty() {
        r.values.insert(Metric::RssStart, before as f64 / 1024.0);
    }
    let (open, failed) = load::open_idle(mode.echo, plan.idle_conns, plan.idle_max);
    // Give pools time to refill and allocators time to settle.
    std::thread::sleep(Duration::from_millis(300));
    let after = procstat::usage(pids).rss_kb;
    eprintln!(
        "    idle: {} open, {failed} failed, RSS {before} KB -> {after} KB",
        open.len()
    );
    if !pids.is_empty() && !open.is_empty() {
        let per = (after as f64 - before as f64) / open.len() as f64;
        r.values.insert(Metric::IdleKbPerConn, per);
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
}

fn latency(mode: &Mode, plan: &Plan, r: &mut RunResult) {
    match load::latency(mode.echo, plan.latency_count, plan.latency_max) {
        Ok(mut t) => {
            t.sort_unstable();
            let us = |p| percentile(&t, p).map(|ns| ns as f64 / 1000.0);
            eprintln!("    latency: {} round trips", t.len());
            if let (Some(p50), Some(p99)) = (us(50.0), us(99.0)) {
                r.values.insert(Metric::LatP50, p50);
                r.values.insert(Metric::LatP99, p99);
            }
        }
        Err(e) => eprintln!("    latency failed: {e}"),
    }
}

fn bulk(mode: &Mode, svc: &services::Services, plan: &Plan, pids: &[u32], r: &mut RunResult) {
    let cpu0 = procstat::usage(pids).cpu_ticks;
    let mut bytes = 0u64;
    for (metric, streams, up) in [
        (Metric::Up1, 1, true),
        (Metric::Down1, 1, false),
        (Metric::Up8, 8, true),
        (Metric::Down8, 8, false),
    ] {
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
