//! `--syscalls N`: what one visitor costs each process of a mode in wake-up
//! and poller syscalls. After a warm-up, `strace -f -c` is attached to every
//! process of the mode (with `-p PID`, `-f` attaches to all of its existing
//! threads and follows new ones), N sequential visitors each make one 64 B
//! echo round trip, strace is detached with SIGINT, and its `-c` summary is
//! divided by N. Heartbeats and other timers fall into the same window; at a
//! few seconds per run they are noise next to N visitors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::{self, ChildGuard, LogStats};
use crate::load;
use crate::modes::Mode;
use crate::report::{RunResult, median};

/// Syscalls strace counts (`-e trace=`).
const TRACED: &str =
    "futex,epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,timerfd_settime,eventfd2,write";
/// Table columns and the syscalls summed into each.
const COLUMNS: &[(&str, &[&str])] = &[
    ("futex", &["futex"]),
    ("epoll_ctl", &["epoll_ctl"]),
    (
        "epoll_wait*",
        &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    ),
    ("timerfd_settime", &["timerfd_settime"]),
    ("write", &["write"]),
];
/// Untraced visitors first, so pools and caches are in their steady state.
const WARMUP_VISITORS: usize = 20;
/// Bound on the traced visitors' wall time (strace slows every syscall).
const VISITORS_MAX_TIME: Duration = Duration::from_secs(60);
/// How long strace may take to attach to every thread, and to detach.
const STRACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the last visitor's teardown (relay close, pool refill) to finish
/// inside the traced window.
const SETTLE: Duration = Duration::from_millis(300);

/// Per-visitor counts of one process (`role`), one value per column.
pub type Counts = (&'static str, Vec<f64>);

/// Whether `--syscalls` applies to mode `name` (not `direct`, which has no
/// process, nor socat, which forks one per connection).
pub fn applies(name: &str) -> bool {
    !matches!(name, "direct" | "socat")
}

pub fn measure(mode: &Mode, visitors: usize, dir: &Path) -> Result<Vec<Counts>, String> {
    let visitors = visitors.max(1);
    let (_, errors) = load::visitors(mode.echo, WARMUP_VISITORS, VISITORS_MAX_TIME);
    if !errors.is_empty() {
        return Err(format!("warm-up visitors failed: {errors:?}"));
    }
    let mut traces = Vec::new();
    for (i, (role, pid)) in mode.roles().into_iter().enumerate() {
        let out = dir.join(format!("strace-{i}-{role}.txt"));
        let _ = std::fs::remove_file(&out);
        traces.push((role, attach(pid, &out)?, out));
    }
    let (ok, errors) = load::visitors(mode.echo, visitors, VISITORS_MAX_TIME);
    std::thread::sleep(SETTLE);
    let mut counts = Vec::new();
    for (role, mut strace, out) in traces {
        if !strace.interrupt(STRACE_TIMEOUT) {
            return Err(format!("strace for {role} did not exit on SIGINT"));
        }
        let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let per = per_column(&parse(&text))
            .into_iter()
            .map(|c| c as f64 / visitors as f64)
            .collect();
        counts.push((role, per));
    }
    if ok < visitors as u64 {
        return Err(format!(
            "{ok}/{visitors} traced visitors passed: {errors:?}"
        ));
    }
    Ok(counts)
}

/// Starts `strace -f -c` on `pid` and waits until it traces every thread.
fn attach(pid: u32, out: &Path) -> Result<ChildGuard, String> {
    let bin = child::find_tool("strace").ok_or("strace not installed")?;
    let mut cmd = Command::new(bin);
    cmd.args(["-f", "-c", "-e"])
        .arg(format!("trace={TRACED}"))
        .arg("-o")
        .arg(out)
        .arg("-p")
        .arg(pid.to_string());
    let (guard, rx) = child::spawn(cmd, &Arc::<LogStats>::default())?;
    drop(rx);
    let tracer = guard.pid().to_string();
    let end = Instant::now() + STRACE_TIMEOUT;
    loop {
        let tids = crate::procstat::threads(pid);
        let traced = tids
            .iter()
            .all(|tid| tracer_pid(pid, *tid) == Some(tracer.clone()));
        if traced && !tids.is_empty() {
            return Ok(guard);
        }
        if Instant::now() >= end {
            return Err(format!(
                "strace did not attach to every thread of {pid} in {STRACE_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tracer_pid(pid: u32, tid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("TracerPid:"))?;
    Some(line.trim().to_owned())
}

/// `(syscall, calls)` rows of a `strace -c` summary.
pub fn parse(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('%') && !l.starts_with('-'))
        .filter_map(|l| {
            let tokens: Vec<&str> = l.split_whitespace().collect();
            let name = *tokens.last()?;
            let calls = tokens.get(3)?.parse().ok()?;
            (name != "total").then(|| (name.to_owned(), calls))
        })
        .collect()
}

fn per_column(rows: &[(String, u64)]) -> Vec<u64> {
    COLUMNS
        .iter()
        .map(|(_, names)| {
            rows.iter()
                .filter(|(n, _)| names.contains(&n.as_str()))
                .map(|r| r.1)
                .sum()
        })
        .collect()
}

/// The markdown table (mode × process rows, syscall columns), medians over runs.
pub fn table(modes: &[(String, Vec<RunResult>)], visitors: usize) -> Option<String> {
    let mut out = format!(
        "syscalls per visitor (strace -f -c over {visitors} sequential 64 B echo visitors, \
         median over runs; epoll_wait* = epoll_wait + epoll_pwait + epoll_pwait2):\n\n\
         | mode | process |"
    );
    for (label, _) in COLUMNS {
        out += &format!(" {label} |");
    }
    out += &format!("\n|---|---|{}\n", "---|".repeat(COLUMNS.len()));
    let mut rows = 0;
    for (name, runs) in modes {
        let Some(first) = runs.iter().find(|r| !r.syscalls.is_empty()) else {
            continue;
        };
        for (i, (role, _)) in first.syscalls.iter().enumerate() {
            out += &format!("| {name} | {role} |");
            for col in 0..COLUMNS.len() {
                let values = runs
                    .iter()
                    .filter_map(|r| r.syscalls.get(i)?.1.get(col).copied())
                    .collect();
                match median(values) {
                    Some(v) => out += &format!(" {v:.1} |"),
                    None => out += " n/a |",
                }
            }
            out += "\n";
            rows += 1;
        }
    }
    (rows > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summary() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 60.00    0.000600          12        50         3 futex\n\
 30.00    0.000300           3       100           epoll_pwait\n\
 10.00    0.000100           1        20           epoll_wait\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.001000           5       170         3 total\n";
        let rows = parse(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(per_column(&rows), vec![50, 0, 120, 0, 0]);
    }
}
