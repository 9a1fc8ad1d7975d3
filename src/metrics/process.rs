//! The `process_*` metrics, named and computed as the Prometheus client
//! libraries export them on Linux: from `/proc/self` and `getrlimit`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Exposition, Kind};

/// When the process started, in seconds since the epoch: the kernel's boot
/// time (`/proc/stat`) plus the process's start in clock ticks after boot
/// (`/proc/self/stat`), as the Prometheus client libraries compute it; the
/// first call's time if `/proc` says nothing.
pub fn start_time() -> f64 {
    static STARTED: OnceLock<f64> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let (ticks, page) = clock_ticks_and_page_size();
        let from_proc = || {
            let boot = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            let usage = parse_stat(&stat, ticks, page)?;
            Some(boot as f64 + usage.start_ticks as f64 / ticks.max(1) as f64)
        };
        from_proc().unwrap_or_else(now)
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds since the process started.
pub fn uptime_seconds() -> u64 {
    (now() - start_time()).max(0.0) as u64
}

/// The `btime` line of `/proc/stat`: boot time, seconds since the epoch.
pub fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// What `/proc/self/stat` says, in base units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/self/stat`: the fields after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<Usage> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); utime is field 14, stime 15,
    // starttime 22, vsize 23, rss 24 (proc(5)).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)?.checked_add(field(15)?)?;
    Some(Usage {
        cpu_seconds: ticks as f64 / ticks_per_second.max(1) as f64,
        virtual_bytes: field(23)?,
        start_ticks: field(22)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
    })
}

/// `sysconf` values, with the usual Linux defaults if unavailable.
fn clock_ticks_and_page_size() -> (u64, u64) {
    use nix::unistd::{SysconfVar, sysconf};
    let get = |v, default| {
        sysconf(v)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(default)
    };
    (
        get(SysconfVar::CLK_TCK, 100),
        get(SysconfVar::PAGE_SIZE, 4096),
    )
}

/// Writes the `process_*` families; a value Linux does not give is left out.
pub fn write(out: &mut Exposition) {
    let (ticks, page) = clock_ticks_and_page_size();
    let usage = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, ticks, page));
    if let Some(u) = usage {
        out.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            u.cpu_seconds,
        );
        out.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            u.resident_bytes,
        );
        out.single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            u.virtual_bytes,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is in the listing; not counted.
        let open = dir.count().saturating_sub(1);
        out.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            open,
        );
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        out.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            soft,
        );
    }
    out.single(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        start_time(),
    );
}
