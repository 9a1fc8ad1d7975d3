//! CPU time and resident memory of a process tree, read from `/proc`.
//!
//! A mode's "processes" are the children the bench started plus all their
//! descendants (socat forks one process per connection). CPU time sums
//! utime+stime of every live process in the tree plus cutime+cstime (children
//! that already exited and were reaped), so no tick is counted twice.

use std::fs;

/// Resource usage of a process tree at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// utime+stime (+ reaped children), in clock ticks.
    pub cpu_ticks: u64,
    /// Sum of VmRSS over the tree, in KiB (shared pages count once per process).
    pub rss_kb: u64,
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_sec() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        // Linux has used 100 on every mainstream architecture for decades.
        _ => 100.0,
    }
}

/// The fields of `/proc/PID/stat` after the `(comm)` field, which may hold spaces.
/// Index 0 is field 3 (state), so field N of proc(5) is index N - 3.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // The state letter is not numeric; keep positions by mapping it to 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

fn cpu_ticks(pid: u32) -> u64 {
    // utime(14) stime(15) cutime(16) cstime(17)
    stat_fields(pid).map_or(0, |f| f.get(11..15).map_or(0, |s| s.iter().sum()))
}

fn rss_kb(pid: u32) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `roots` and every process whose ancestry leads to one of them.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).copied()) {
                parents.push((pid, ppid as u32));
            }
        }
    }
    let mut found: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found
}

/// Usage of the whole tree under `roots` (empty roots: zero).
pub fn usage(roots: &[u32]) -> Usage {
    if roots.is_empty() {
        return Usage::default();
    }
    let pids = tree(roots);
    Usage {
        cpu_ticks: pids.iter().map(|&p| cpu_ticks(p)).sum(),
        rss_kb: pids.iter().map(|&p| rss_kb(p)).sum(),
    }
}

/// Thread ids of `pid` (from `/proc/PID/task`).
pub fn threads(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}
