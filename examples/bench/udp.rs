//! `--udp`: UDP services through each mode (issue 19).
//!
//! The services are the bench's own UDP echo and sink (`udpload.rs`) on
//! loopback. Modes: `direct` (to the services themselves, the baseline of
//! every ratio), `tunnel` (porthole server + client, pooled data links),
//! `tunnel-mux` (multiplexed), and `rathole` (`type = "udp"` services) when
//! installed. frp is left out. Per mode and run, in order:
//!
//! 1. Round trip: [`Plan::rtt_count`] sequential 64 B requests on one flow,
//!    each answered within [`RTT_TIMEOUT`] or counted lost; p50, p99, and
//!    p50 over direct's in the same run.
//! 2. Rate and loss: per datagram size ([`SIZES`]), every rate of [`RATES`]
//!    offered for [`Plan::step`] from [`FLOWS`] flows (sockets) in turn,
//!    paced to the schedule; the sink counts what arrived of that step.
//!    Delivered datagrams/s and loss %, and the sustained rate: the highest
//!    rate offered with at most [`LOSS_OK_PCT`] lost.
//! 3. Idle flows: [`IDLE_FLOWS`] flows opened, [`udpload`]'s batch at a
//!    time, each sending one 64 B datagram and waiting for its echo; time
//!    to open, errors, and (modes with processes) the growth of VmRSS of the
//!    server and the client (and the sum) per flow. Kernel socket memory
//!    does not show in RSS.
//!
//! The modes are started by `udpmodes.rs`; a porthole server there keeps
//! every flow of a run open until the run ends.

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use crate::child::find_tool;
use crate::procstat;
use crate::report::{Metric, Row, RunResult, owned_row, percentile, row};
use crate::udpload::{self, UdpServices};
use crate::udpmodes::{self, UdpMode};

/// Modes of `--udp`, in run order.
pub const ALL: &[&str] = &["direct", "tunnel", "tunnel-mux", "rathole"];
/// Flows (client sockets) the rate ladder sends from, in turn.
pub const FLOWS: usize = 4;
/// Datagram sizes of the rate ladder (B).
const SIZES: [u16; 2] = [64, 1400];
/// Offered rates of the ladder, all flows together (datagrams/s).
const RATES: [u32; 7] = [10_000, 20_000, 40_000, 80_000, 160_000, 240_000, 320_000];
/// A rate is sustained when at most this share of it is lost (%).
const LOSS_OK_PCT: f64 = 1.0;
/// A sender that offered less than this share of a rate is noted.
const SENDER_SHORT: f64 = 0.95;
/// How long a request (round trip, idle flow) waits for its echo.
const RTT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on all round trips of one mode and run.
const RTT_MAX: Duration = Duration::from_secs(60);
/// Idle flows held at once (the table's labels say 2,000).
pub const IDLE_FLOWS: usize = 2000;
const _: () = assert!(IDLE_FLOWS == 2000);
/// Bound on opening the idle flows.
const IDLE_MAX: Duration = Duration::from_secs(60);
/// Time for relays to settle before RSS is read.
const SETTLE: Duration = Duration::from_millis(300);
/// Sizes that `--quick` shortens.
struct Plan {
    step: Duration,
    rtt_count: u32,
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            step: Duration::from_millis(if quick { 500 } else { 2000 }),
            rtt_count: if quick { 1_000 } else { 5_000 },
        }
    }
}

/// What `--udp` takes from the command line.
pub struct Options<'a> {
    pub only: Option<&'a str>,
    pub runs: usize,
    pub quick: bool,
    pub porthole: &'a Path,
}

/// Every selected mode per run, then the table on stdout.
pub fn run(o: &Options) -> Result<(), String> {
    let selected = select(o)?;
    let dir = super::temp_dir()?;
    let svc = UdpServices::start().map_err(|e| format!("udp services: {e}"))?;
    let plan = Plan::new(o.quick);
    let mut results: Vec<(String, Vec<RunResult>)> =
        selected.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut notes = Vec::new();
    for run in 1..=o.runs {
        let (mut direct_p50, mut direct_pinned) = (None, None);
        for (name, per_run) in results.iter_mut() {
            eprintln!("run {run}/{}: {name} (udp)", o.runs);
            let label = format!("{name}, run {run}");
            let Some(mode) = start_with_retry(name, &svc, o.porthole, &dir, &label, &mut notes)
            else {
                continue;
            };
            let mut r = measure(&mode, &svc, &plan, &label, &mut notes);
            let p50 = r.values.get(&Metric::UdpRttP50).copied();
            let pinned = r.values.get(&Metric::UdpRttPinnedP50).copied();
            if name == "direct" {
                (direct_p50, direct_pinned) = (p50, pinned);
            }
            if let (Some(d), Some(p)) = (direct_p50, p50) {
                r.values.insert(Metric::UdpRttAdded, p - d);
            }
            if let (Some(d), Some(p)) = (direct_pinned, pinned) {
                r.values.insert(Metric::UdpRttPinnedAdded, p - d);
            }
            let samples = mode.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
            for line in samples.iter() {
                eprintln!("    log: {line}");
            }
            eprintln!("  raw {name} run {run}: {:?}", r.values);
            per_run.push(r);
        }
    }
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
    let command: Vec<String> = std::env::args().collect();
    println!(
        "\nporthole bench --udp: {} run(s){}, medians; (×) = ratio to direct in the same runs",
        o.runs,
        if o.quick { ", --quick" } else { "" },
    );
    println!("command: {}", command.join(" "));
    println!(
        "round trip: {} × 64 B on one flow, {RTT_TIMEOUT:?} timeout; rates: {FLOWS} flows to a sink, {:?} per rate; idle: {IDLE_FLOWS} flows, one echoed datagram each\n",
        plan.rtt_count, plan.step
    );
    println!("{}", crate::report::table_of(&results, &rows(&plan)));
    for note in notes {
        println!("> {note}");
    }
    Ok(())
}

/// The modes to run: `only` (comma-separated) or all, `direct` first. A
/// missing rathole is skipped (said on stdout); a missing porthole is an error.
fn select(o: &Options) -> Result<Vec<String>, String> {
    let wanted: Vec<String> = match o.only {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => ALL.iter().map(|s| s.to_string()).collect(),
    };
    let mut names: Vec<String> = Vec::new();
    for name in wanted {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if let Some(bad) = names.iter().find(|n| !ALL.contains(&n.as_str())) {
        return Err(format!(
            "unknown --udp mode {bad:?}; known: {}",
            ALL.join(",")
        ));
    }
    names.sort_by_key(|n| n != "direct");
    let mut selected = Vec::new();
    for name in names {
        match name.as_str() {
            "tunnel" | "tunnel-mux" if !o.porthole.is_file() => {
                return Err(format!(
                    "{} missing; run cargo build --release",
                    o.porthole.display()
                ));
            }
            "rathole" if find_tool("rathole").is_none() => {
                println!("> skipped rathole: rathole not installed");
            }
            _ => selected.push(name),
        }
    }
    Ok(selected)
}

/// Starts `name`, with one retry on fresh ports; failures become notes.
fn start_with_retry(
    name: &str,
    svc: &UdpServices,
    porthole: &Path,
    dir: &Path,
    label: &str,
    notes: &mut Vec<String>,
) -> Option<UdpMode> {
    for attempt in 1..=2 {
        match udpmodes::start(name, svc, porthole, dir) {
            Ok(mode) => return Some(mode),
            Err(e) => {
                eprintln!("  {name} failed to start (attempt {attempt}): {e}");
                notes.push(format!("start failure: {label}, attempt {attempt}: {e}"));
            }
        }
    }
    None
}

/// Every phase against `mode`; `label` ("MODE, run N") starts its notes.
fn measure(
    mode: &UdpMode,
    svc: &UdpServices,
    plan: &Plan,
    label: &str,
    notes: &mut Vec<String>,
) -> RunResult {
    let mut r = RunResult::default();
    let pids: Vec<u32> = mode.children.iter().map(|c| c.1.pid()).collect();
    if !pids.is_empty() {
        let kb = procstat::usage(&pids).rss_kb;
        r.values.insert(Metric::RssStart, kb as f64 / 1024.0);
    }
    match udpload::round_trips(mode.echo, plan.rtt_count, RTT_TIMEOUT, RTT_MAX) {
        Ok(rt) => {
            for (metric, p) in [(Metric::UdpRttP50, 50.0), (Metric::UdpRttP99, 99.0)] {
                if let Some(ns) = percentile(&rt.sorted_ns, p) {
                    r.values.insert(metric, ns as f64 / 1000.0);
                }
            }
            r.values.insert(Metric::UdpRttLost, rt.lost as f64);
        }
        Err(e) => notes.push(format!("{label}: round trips: {e}")),
    }
    pinned_round_trips(mode, &pids, plan, label, notes, &mut r);
    ladder(mode, svc, plan, label, notes, &mut r);
    idle_flows(mode, &mut r);
    let warnings = mode
        .logs
        .warnings
        .load(std::sync::atomic::Ordering::Relaxed);
    r.values.insert(Metric::LogWarnings, warnings as f64);
    r
}

/// The round trip again with every thread of the mode's processes and of
/// the bench (sender and echo) on one CPU, as the TCP phases' `--pin`: the
/// path's own work and wake-ups, without cross-CPU scheduling, which on a
/// VM swings unpinned figures between runs.
fn pinned_round_trips(
    mode: &UdpMode,
    pids: &[u32],
    plan: &Plan,
    label: &str,
    notes: &mut Vec<String>,
    r: &mut RunResult,
) {
    let pinned = match crate::pin::pin_all(pids) {
        Ok(p) => p,
        Err(e) => return notes.push(format!("{label}: pinning: {e}")),
    };
    match udpload::round_trips(mode.echo, plan.rtt_count, RTT_TIMEOUT, RTT_MAX) {
        Ok(rt) => {
            if let Some(ns) = percentile(&rt.sorted_ns, 50.0) {
                r.values.insert(Metric::UdpRttPinnedP50, ns as f64 / 1000.0);
            }
        }
        Err(e) => notes.push(format!("{label}: pinned round trips: {e}")),
    }
    drop(pinned);
}

/// Every rate of the ladder at every size, from the same [`FLOWS`] flows.
fn ladder(
    mode: &UdpMode,
    svc: &UdpServices,
    plan: &Plan,
    label: &str,
    notes: &mut Vec<String>,
    r: &mut RunResult,
) {
    let flows: Result<Vec<UdpSocket>, _> = (0..FLOWS).map(|_| udpload::flow(mode.sink)).collect();
    let flows = match flows {
        Ok(f) => f,
        Err(e) => return notes.push(format!("{label}: flow sockets: {e}")),
    };
    for size in SIZES {
        let mut sustained = 0.0f64;
        for rate in RATES {
            let d = udpload::offer(svc, &flows, usize::from(size), rate, plan.step);
            eprintln!("    {size} B at {rate}/s: {d:?}");
            r.values
                .insert(Metric::UdpDelivered { size, rate }, d.delivered_per_sec());
            r.values
                .insert(Metric::UdpLoss { size, rate }, d.loss_pct());
            let offered = d.offered_per_sec();
            let short = offered < SENDER_SHORT * f64::from(rate);
            if short {
                notes.push(format!(
                    "{label}: {size} B at {rate}/s: the sender offered only {offered:.0}/s"
                ));
            }
            if d.wrong_len > 0 || d.send_errors > 0 {
                notes.push(format!(
                    "{label}: {size} B at {rate}/s: {} datagrams arrived with another length, {} sends failed",
                    d.wrong_len, d.send_errors
                ));
            }
            if d.loss_pct() <= LOSS_OK_PCT {
                let reached = if short { offered } else { f64::from(rate) };
                sustained = sustained.max(reached);
            }
        }
        r.values.insert(Metric::UdpSustained(size), sustained);
    }
}

/// Time to open the idle flows, and (modes with processes) the RSS growth
/// of the server and the client per flow.
fn idle_flows(mode: &UdpMode, r: &mut RunResult) {
    let rss = |role: &str| -> u64 {
        let pids: Vec<u32> = (mode.children.iter())
            .filter(|c| c.0 == role)
            .map(|c| c.1.pid())
            .collect();
        procstat::usage(&pids).rss_kb
    };
    std::thread::sleep(SETTLE);
    let before = [rss("server"), rss("client")];
    let held = udpload::hold_flows(mode.echo, IDLE_FLOWS, RTT_TIMEOUT, IDLE_MAX);
    std::thread::sleep(SETTLE);
    let after = [rss("server"), rss("client")];
    drop(held.sockets);
    let per_flow = |i: usize| (after[i] as f64 - before[i] as f64) / IDLE_FLOWS as f64;
    r.values.insert(Metric::UdpFlowSecs, held.secs);
    r.values.insert(Metric::UdpFlowErrors, held.errors as f64);
    if mode.children.is_empty() {
        return;
    }
    r.values.insert(Metric::UdpFlowServerKb, per_flow(0));
    r.values.insert(Metric::UdpFlowClientKb, per_flow(1));
    r.values
        .insert(Metric::UdpFlowKb, per_flow(0) + per_flow(1));
    r.values.insert(Metric::UdpFlowErrors, held.errors as f64);
}

/// The table's rows, in order.
fn rows(plan: &Plan) -> Vec<Row> {
    let mut rows = vec![
        row(
            Metric::RssStart,
            "RSS at start, all processes (MB)",
            1,
            false,
        ),
        row(Metric::UdpRttP50, "64 B round trip p50 (µs)", 1, true),
        row(Metric::UdpRttP99, "64 B round trip p99 (µs)", 1, true),
        row(Metric::UdpRttAdded, "added p50 over direct (µs)", 1, false),
        row(
            Metric::UdpRttPinnedP50,
            "64 B round trip p50, all on one CPU (µs)",
            1,
            true,
        ),
        row(
            Metric::UdpRttPinnedAdded,
            "added pinned p50 over direct (µs)",
            1,
            false,
        ),
        owned_row(
            Metric::UdpRttLost,
            format!("round trips lost (of {})", plan.rtt_count),
            0,
            false,
        ),
    ];
    for size in SIZES {
        for rate in RATES {
            let at = format!("{size} B, {}k/s offered", rate / 1000);
            rows.push(owned_row(
                Metric::UdpDelivered { size, rate },
                format!("{at}: delivered (dgram/s)"),
                0,
                true,
            ));
            rows.push(owned_row(
                Metric::UdpLoss { size, rate },
                format!("{at}: loss (%)"),
                2,
                false,
            ));
        }
        rows.push(owned_row(
            Metric::UdpSustained(size),
            format!("{size} B sustained rate, loss ≤ {LOSS_OK_PCT} % (dgram/s)"),
            0,
            true,
        ));
    }
    rows.extend([
        row(
            Metric::UdpFlowSecs,
            "2,000 idle flows: time to open (s)",
            2,
            false,
        ),
        row(
            Metric::UdpFlowKb,
            "2,000 idle flows: RSS per flow, server + client (KB)",
            2,
            false,
        ),
        row(
            Metric::UdpFlowServerKb,
            "2,000 idle flows: server RSS per flow (KB)",
            2,
            false,
        ),
        row(
            Metric::UdpFlowClientKb,
            "2,000 idle flows: client RSS per flow (KB)",
            2,
            false,
        ),
        row(Metric::UdpFlowErrors, "2,000 idle flows: errors", 0, false),
        row(Metric::LogWarnings, "warning/error log lines", 0, false),
    ]);
    rows
}
