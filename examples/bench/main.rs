//! Benchmark porthole against a direct loopback connection and peer tools.
//!
//! The echo, sink and source services run inside this process on loopback;
//! porthole (and any installed peer: rathole, haproxy, socat) run as child
//! processes so their CPU time and RSS can be read from `/proc`. Every mode is
//! a path from the load generator to the same services; `direct` is the
//! baseline every ratio refers to, measured in the same run.
//!
//! ```sh
//! cargo build --release --bins --example bench
//! cargo run --release --example bench -- [--runs 3] [--quick] [--only direct,tunnel,forward]
//!     [--syscalls 500] [--pin] [--baseline /work/base/target/release/porthole]
//! cargo run --release --example bench -- --flood [--flood-from 127.0.0.2] [--only tunnel]
//! cargo run --release --example bench -- --proxy [--runs 3] [--quick] [--baseline PATH]
//!     [--only direct,http-proxy,http-proxy@base,squid,tinyproxy]
//! cargo run --release --example bench -- --udp [--runs 3] [--quick]
//!     [--only direct,tunnel,tunnel-mux,rathole]
//! examples/bench/install-peers.sh   # iperf3 wrk nginx haproxy socat strace rathole
//! ```
//!
//! - `--syscalls N`: per porthole mode (and rathole, haproxy), `strace -f -c`
//!   on each process while N sequential visitors make one 64 B echo each;
//!   prints futex / epoll_ctl / epoll_wait* / timerfd_settime / write calls per
//!   visitor as a second table (`syscalls.rs`). Needs strace.
//! - `--pin`: a last phase per mode measures 64 B latency with every thread
//!   of the mode and of the bench on one CPU (rows "all on one CPU" and
//!   "added pinned p50 over direct"), then restores the old masks (`pin.rs`).
//! - `--baseline PATH`: a second porthole binary; every selected porthole
//!   mode also runs as `MODE@base` with it, next to it in the table.
//!   `--only` accepts `MODE@base` names too.
//! - `--flood`: instead of the phases above, per tunnel mode (porthole's four,
//!   their `@base` twins, rathole and rathole-tls) quiet figures and then the
//!   same under a flood of 2,000 silent and 500 one-byte-per-second
//!   connections to the server's control port (`flood.rs`, `flooder.rs`): new
//!   client registration time, short-connection rate, 64 sequential 4 MiB
//!   downloads, failed visitors, server log lines. `--flood-from ADDR` is the
//!   flood's loopback source address (default 127.0.0.1, the client's own).
//! - `--proxy`: instead of the phases above, HTTP forward proxies between
//!   wrk and nginx (`proxy.rs`), per mode: `direct` (wrk straight to nginx,
//!   the baseline of the ratios), `http-proxy` (`porthole http-proxy` beside
//!   this binary), `http-proxy@base` (the `--baseline` binary), and `squid`
//!   and `tinyproxy` when installed (skipped otherwise). Each proxy starts
//!   afresh per run on loopback, with `max_connections: 4096` and the bench's
//!   raised descriptor limit, and answers one probe request first. Rows:
//!   keep-alive requests a second (`wrk -t2 -c32`, 10 s, 3 s with `--quick`,
//!   a Lua script asking for the absolute-form `http://NGINX/1k.bin`, a 1 KiB
//!   static file, with `Host: NGINX`); the proxy's and nginx's CPU ms per
//!   1,000 of those requests; nginx's accepted connections per request (its
//!   `stub_status` `accepts` counter on a second loopback port, before and
//!   after); the same with `Connection: close` (requests a second, proxy CPU
//!   per 1,000); and 1,000 idle CONNECT tunnels to a loopback listener of the
//!   bench that holds connections silently, opened one after another, each
//!   answered `200`: the proxy's RSS growth per tunnel in KB (VmRSS, before
//!   and with all open), time to open, errors. `--only` takes these mode names.
//! - `--udp`: instead of the phases above, UDP services (a UDP echo and a
//!   counting UDP sink in this process) through each mode (`udp.rs`,
//!   `udpload.rs`, `udpmodes.rs`): `direct` (the baseline), `tunnel`
//!   (pooled links) and `tunnel-mux` (multiplexed), porthole exposing them
//!   with `protocol: Udp`, and `rathole` (`type = "udp"`) when installed.
//!   Rows: 64 B round trips on one flow (5,000, 1,000 with `--quick`, 1 s
//!   timeout each; p50, p99, added p50 over direct, lost); at 64 B and
//!   1,400 B, 10k to 320k datagrams/s (doubling) offered from 4 flows to the
//!   sink, paced, 2 s each (0.5 s with `--quick`): delivered datagrams/s and
//!   loss %, and the sustained rate (the highest with loss ≤ 1 %); 2,000
//!   idle flows, one echoed datagram each: time to open, errors, server and
//!   client RSS growth per flow (KB). Notes under the table name any rate
//!   the sender itself fell short of. `--only` takes these mode names.
//!
//! With iperf3 installed, the bulk rows come from `iperf3 -c ... -J` through
//! each mode to an `iperf3 -s` on loopback (`iperf.rs`), else from the
//! built-in sink and source; the header says which. With wrk and nginx
//! installed, a request phase runs `wrk` through each mode to nginx, with
//! `Connection: close` and keep-alive (`wrk.rs`, `nginx.rs`).
//!
//! Prints a markdown table (medians over runs) on stdout and the raw per-run
//! numbers on stderr. Loopback only; every load loop is bounded in count and time.

mod child;
mod flood;
mod flooder;
mod iperf;
mod load;
mod measure;
mod modes;
mod nginx;
mod peers;
mod pin;
mod procstat;
mod proxy;
mod report;
mod scrape;
mod services;
mod syscalls;
mod udp;
mod udpload;
mod udpmodes;
mod wrk;

use argh::FromArgs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use measure::{Plan, Setup};
use modes::{BASE_SUFFIX, Mode, PORTHOLE, split_base};
use report::{Metric, RunResult};

#[derive(FromArgs)]
/// Benchmark porthole (tunnel, forward) against direct loopback and peer tools.
struct Args {
    /// repeat every measurement N times and report the median (default 1)
    #[argh(option, default = "1")]
    runs: usize,
    /// shorter measurements (a full run in under a minute)
    #[argh(switch)]
    quick: bool,
    /// comma-separated modes: direct,tunnel,forward,rathole,haproxy,socat,... and
    /// MODE@base for porthole modes (default all)
    #[argh(option)]
    only: Option<String>,
    /// count syscalls per visitor over N sequential visitors with strace
    #[argh(option)]
    syscalls: Option<usize>,
    /// also measure latency with the mode and the bench pinned to one CPU
    #[argh(switch)]
    pin: bool,
    /// a second porthole binary, run as MODE@base next to every porthole mode
    #[argh(option)]
    baseline: Option<PathBuf>,
    /// only the flood phase: per tunnel mode, quiet figures, then the same
    /// under a flood of unauthenticated connections to its control port
    #[argh(switch)]
    flood: bool,
    /// source address of the flood's connections, on loopback (default
    /// 127.0.0.1, the same as the client's)
    #[argh(option, default = "Ipv4Addr::LOCALHOST")]
    flood_from: Ipv4Addr,
    /// only the HTTP-proxy phase: porthole http-proxy (and its @base twin,
    /// squid, tinyproxy) between wrk and nginx, and idle CONNECT tunnels;
    /// --only takes direct,http-proxy,http-proxy@base,squid,tinyproxy
    #[argh(switch)]
    proxy: bool,
    /// porthole modes (not @base) run with their admin endpoint on, scraped
    /// once a second: what metrics cost, against --baseline
    #[argh(switch)]
    admin: bool,
    /// only the UDP phase: round trips, rate and loss, idle flows through
    /// direct,tunnel,tunnel-mux,rathole (--only takes these)
    #[argh(switch)]
    udp: bool,
}

fn main() {
    let args: Args = argh::from_env();
    if args.admin {
        scrape::enable();
    }
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
    if args.udp {
        return run_udp(args, &porthole);
    }
    if args.proxy {
        return run_proxy(args, &porthole);
    }
    let selected = select(args, &porthole)?;
    if args.syscalls.is_some() && child::find_tool("strace").is_none() {
        return Err("--syscalls needs strace".to_owned());
    }
    if args.flood && (args.syscalls.is_some() || args.pin) {
        return Err("--flood runs only the flood phase; drop --syscalls and --pin".to_owned());
    }
    if !args.flood_from.is_loopback() {
        return Err(format!(
            "--flood-from {}: not a loopback address",
            args.flood_from
        ));
    }
    let dir = temp_dir()?;
    let svc = services::Services::start(2).map_err(|e| format!("services: {e}"))?;
    let mut targets = svc.targets();
    let mut header = Vec::new();
    if args.flood {
        header.push(format!(
            "flood: {} silent + {} one-byte-per-second connections to the control port from {}",
            flood::SILENT,
            flood::TRICKLING,
            args.flood_from
        ));
    }
    // The flood phase uses the built-in services only.
    let iperf = (!args.flood)
        .then(|| start_extra("iperf3", iperf::Server::start, &mut header))
        .flatten();
    match &iperf {
        Some(s) => {
            targets.push(("iperf", s.addr));
            header.push(format!(
                "bulk: iperf3 (-t {} s per test)",
                Plan::new(args.quick).iperf_secs
            ));
        }
        None if args.flood => {}
        None => header.push("bulk: built-in sink/source".to_owned()),
    }
    let nginx = if args.flood {
        None
    } else if child::find_tool("wrk").is_some() {
        start_extra("nginx", || nginx::Server::start(&dir), &mut header)
    } else {
        header.push("requests: skipped (wrk not installed)".to_owned());
        None
    };
    if let Some(s) = &nginx {
        targets.push(("http", s.addr));
        header.push(format!("requests: {} → nginx", wrk::label()));
    }
    if let Some(base) = &args.baseline {
        header.push(format!("@base: {}", base.display()));
    }
    let setup = Setup {
        plan: Plan::new(args.quick),
        svc: &svc,
        dir: &dir,
        iperf: iperf.is_some(),
        wrk: nginx.is_some(),
        syscalls: args.syscalls,
        pin: args.pin,
    };
    let mut results: Vec<(String, Vec<RunResult>)> =
        selected.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut notes = Vec::new();
    for run in 0..args.runs.max(1) {
        run_once(
            args,
            &porthole,
            &targets,
            &setup,
            run,
            &mut results,
            &mut notes,
        );
    }
    for (what, logs) in [
        ("iperf3", iperf.as_ref().map(|s| &s.logs)),
        ("nginx", nginx.as_ref().map(|s| &s.logs)),
    ] {
        if let Some(logs) = logs {
            let samples = logs.samples.lock().unwrap_or_else(|e| e.into_inner());
            if !samples.is_empty() {
                eprintln!("{what} warnings: {samples:?}");
            }
        }
    }
    drop((iperf, nginx, svc));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nporthole bench: {} run(s){}, medians; (×) = ratio to {}",
        args.runs.max(1),
        if args.quick { ", --quick" } else { "" },
        if args.flood {
            "the same mode's quiet figure"
        } else {
            "direct in the same runs"
        }
    );
    println!("{}\n", header.join("; "));
    println!("{}", report::table(&results));
    if let Some(t) = args.syscalls.and_then(|n| syscalls::table(&results, n)) {
        println!("{t}");
    }
    for note in notes {
        println!("> start failure: {note}");
    }
    Ok(())
}

/// The bench's scratch directory (removed at the end).
fn temp_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("porthole-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `--proxy`: every selected proxy mode per run (`proxy.rs`), then the table.
fn run_proxy(args: &Args, porthole: &Path) -> Result<(), String> {
    if args.flood || args.syscalls.is_some() || args.pin {
        return Err(
            "--proxy runs only the proxy phase; drop --flood, --syscalls and --pin".to_owned(),
        );
    }
    let selected = proxy::select(args.only.as_deref(), args.baseline.as_deref(), porthole)?;
    let dir = temp_dir()?;
    let mut header = Vec::new();
    let nginx = if child::find_tool("wrk").is_some() {
        start_extra("nginx", || nginx::Server::start(&dir), &mut header)
    } else {
        header.push("requests: skipped (wrk not installed)".to_owned());
        None
    };
    let secs = proxy::wrk_secs(args.quick);
    if let Some(s) = &nginx {
        header.push(proxy::label(secs, s));
    }
    header.push(format!(
        "tunnels: {} idle CONNECT to a silent loopback listener",
        proxy::TUNNELS
    ));
    if let Some(base) = &args.baseline {
        header.push(format!("@base: {}", base.display()));
    }
    let runs = args.runs.max(1);
    let mut results: Vec<(String, Vec<RunResult>)> =
        selected.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut notes = Vec::new();
    for run in 0..runs {
        for (name, per_run) in results.iter_mut() {
            eprintln!("run {}/{runs}: {name}", run + 1);
            let bin = binary(name, args, porthole);
            match proxy::run_mode(name, &bin, &dir, nginx.as_ref(), secs) {
                Ok(r) => {
                    eprintln!("  raw {name} run {}: {:?}", run + 1, r.values);
                    per_run.push(r);
                }
                Err(e) => notes.push(format!("{name}, run {}: {e}", run + 1)),
            }
        }
    }
    if let Some(s) = &nginx {
        let samples = s.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
        if !samples.is_empty() {
            eprintln!("nginx warnings: {samples:?}");
        }
    }
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nporthole bench --proxy: {runs} run(s){}, medians; (×) = ratio to direct in the same runs",
        if args.quick { ", --quick" } else { "" },
    );
    println!("{}\n", header.join("; "));
    println!("{}", report::table(&results));
    for note in notes {
        println!("> start failure: {note}");
    }
    Ok(())
}

/// `--udp`: the UDP phase alone (`udp.rs`).
fn run_udp(args: &Args, porthole: &Path) -> Result<(), String> {
    let others = args.flood || args.proxy || args.admin || args.pin;
    if others || args.syscalls.is_some() || args.baseline.is_some() {
        return Err("--udp runs only the UDP phase; drop --flood, --proxy, --admin, --pin, --syscalls and --baseline".to_owned());
    }
    udp::run(&udp::Options {
        only: args.only.as_deref(),
        runs: args.runs.max(1),
        quick: args.quick,
        porthole,
    })
}

/// Starts an optional service; a failure (or a missing tool) becomes a header note.
fn start_extra<T>(
    what: &str,
    start: impl FnOnce() -> Result<T, String>,
    header: &mut Vec<String>,
) -> Option<T> {
    if child::find_tool(what).is_none() {
        header.push(format!("{what} not installed"));
        return None;
    }
    start()
        .map_err(|e| {
            eprintln!("{what}: {e}");
            header.push(format!("{what} failed to start"));
        })
        .ok()
}

/// One pass over every selected mode.
fn run_once(
    args: &Args,
    porthole: &Path,
    targets: &[services::Target],
    setup: &Setup,
    run: usize,
    results: &mut [(String, Vec<RunResult>)],
    notes: &mut Vec<String>,
) {
    let runs = args.runs.max(1);
    let (mut direct_p50, mut direct_pinned) = (None, None);
    for (name, per_run) in results.iter_mut() {
        eprintln!("run {}/{runs}: {name}", run + 1);
        let bin = binary(name, args, porthole);
        let Some(mode) = start_mode(name, targets, &bin, setup.dir, run, notes) else {
            continue;
        };
        let mut r = if args.flood {
            flood::measure(name, &mode, &setup.plan, args.flood_from)
        } else {
            measure::measure(split_base(name).0, &mode, setup)
        };
        if name == "direct" {
            direct_p50 = r.values.get(&Metric::LatP50).copied();
            direct_pinned = r.values.get(&Metric::PinnedLatP50).copied();
        }
        for (base, metric, added) in [
            (direct_p50, Metric::LatP50, Metric::LatAddedP50),
            (direct_pinned, Metric::PinnedLatP50, Metric::PinnedAddedP50),
        ] {
            if let (Some(d), Some(p)) = (base, r.values.get(&metric).copied()) {
                r.values.insert(added, p - d);
            }
        }
        let samples = mode.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
        for line in samples.iter() {
            eprintln!("    log: {line}");
        }
        eprintln!("  raw {name} run {}: {:?}", run + 1, r.values);
        per_run.push(r);
    }
}

/// The modes to run, `direct` first (the others' "added over direct" need its
/// numbers from the same run), each `@base` twin right after its mode.
fn select(args: &Args, porthole: &Path) -> Result<Vec<String>, String> {
    let wanted: Vec<String> = match &args.only {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => modes::ALL.iter().map(|s| s.to_string()).collect(),
    };
    let mut names: Vec<String> = Vec::new();
    for name in wanted {
        let (mode, base) = split_base(&name);
        if !modes::ALL.contains(&mode) || (base && !PORTHOLE.contains(&mode)) {
            return Err(format!(
                "unknown mode {name:?}; known: {}, and {{{}}}{BASE_SUFFIX}",
                modes::ALL.join(","),
                PORTHOLE.join(",")
            ));
        }
        if base && args.baseline.is_none() {
            return Err(format!("{name} needs --baseline PATH"));
        }
        let twin = format!("{mode}{BASE_SUFFIX}");
        for n in [
            Some(name.clone()),
            (args.baseline.is_some() && PORTHOLE.contains(&mode)).then_some(twin),
        ]
        .into_iter()
        .flatten()
        {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names.sort_by_key(|n| n != "direct");
    let mut selected = Vec::new();
    for name in names {
        if args.flood && !flood::applies(&name) {
            if args.only.is_some() {
                println!("> skipped {name}: no control port to flood");
            }
            continue;
        }
        let bin = binary(&name, args, porthole);
        match modes::unavailable(&name, &bin) {
            Some(why) if ["tunnel", "forward"].contains(&name.as_str()) => return Err(why),
            Some(why) if split_base(&name).1 => {
                return Err(format!("{name}: {why} (from --baseline)"));
            }
            Some(why) => println!("> skipped {name}: {why}"),
            None => selected.push(name),
        }
    }
    Ok(selected)
}

/// The porthole binary mode `name` runs (the baseline for `@base` names).
fn binary(name: &str, args: &Args, porthole: &Path) -> PathBuf {
    match (&args.baseline, split_base(name).1) {
        (Some(base), true) => base.clone(),
        _ => porthole.to_path_buf(),
    }
}

/// Starts `name`, with one retry on fresh ports; failures become notes.
fn start_mode(
    name: &str,
    targets: &[services::Target],
    porthole: &Path,
    dir: &Path,
    run: usize,
    notes: &mut Vec<String>,
) -> Option<Mode> {
    for attempt in 1..=2 {
        match modes::start(name, targets, porthole, dir) {
            Ok(mode) => return Some(mode),
            Err(e) => {
                eprintln!("  {name} failed to start (attempt {attempt}): {e}");
                notes.push(format!("{name}, run {}, attempt {attempt}: {e}", run + 1));
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
            eprintln!(
                "warning: fd limit {hard} is low; the held-visitor phases need ~2 per visitor"
            );
        }
    }
}

/// The hard descriptor limit of this process (and of the modes it starts).
pub fn fd_hard_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(_, hard)| {
        usize::try_from(hard).unwrap_or(usize::MAX)
    })
}
