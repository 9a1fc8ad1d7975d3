//! The request phase: wrk against nginx through the mode, once with
//! `Connection: close` (a new visitor per request) and once with keep-alive.
//! `--proxy` runs wrk with a Lua script instead ([`run_script`]).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child;

/// wrk threads and connections.
const THREADS: usize = 2;
const CONNECTIONS: usize = 50;
/// Per-request timeout inside wrk.
const REQUEST_TIMEOUT: &str = "2s";
/// Slack over the test length before wrk is killed.
const SLACK: Duration = Duration::from_secs(15);

/// One wrk run.
#[derive(Debug, Default, PartialEq)]
pub struct Run {
    pub per_sec: f64,
    /// Responses completed (`N requests in ...`).
    pub requests: u64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses.
    pub errors: u64,
}

pub fn label() -> String {
    format!("wrk -t{THREADS} -c{CONNECTIONS}")
}

/// `wrk` against `http://addr/` for `secs` seconds.
pub fn run(addr: SocketAddr, secs: u64, close: bool) -> Result<Run, String> {
    let bin = child::find_tool("wrk").ok_or("wrk not installed")?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg(REQUEST_TIMEOUT);
    if close {
        cmd.arg("-H").arg("Connection: close");
    }
    cmd.arg(format!("http://{addr}/"));
    finish(cmd, secs)
}

/// `wrk -s script` with `threads` and `connections` against `http://addr/`
/// for `secs` seconds (the script may set another path, method or headers).
pub fn run_script(
    addr: SocketAddr,
    script: &Path,
    threads: usize,
    connections: usize,
    secs: u64,
) -> Result<Run, String> {
    let bin = child::find_tool("wrk").ok_or("wrk not installed")?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg(REQUEST_TIMEOUT)
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/"));
    finish(cmd, secs)
}

/// Runs a wrk command of a `secs` second test and parses its output.
fn finish(cmd: Command, secs: u64) -> Result<Run, String> {
    let out = child::run_bounded(cmd, Duration::from_secs(secs) + SLACK)?;
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {}",
            out.status,
            out.stderr.trim()
        ));
    }
    parse(&out.stdout)
}

/// Reads `N requests in`, `Requests/sec:`, `Socket errors:` and `Non-2xx or
/// 3xx responses:`.
pub fn parse(text: &str) -> Result<Run, String> {
    let mut run = Run::default();
    let mut rate = None;
    for line in text.lines().map(str::trim) {
        if line.contains(" requests in ") {
            let n = line.split_whitespace().next().and_then(|n| n.parse().ok());
            run.requests = n.unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rate = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let n = part.split_whitespace().nth(1).and_then(|n| n.parse().ok());
                run.errors += n.unwrap_or(0u64);
            }
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    run.per_sec = rate.ok_or_else(|| format!("no Requests/sec in wrk output: {text}"))?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rate_and_errors() {
        let out = "Running 1s test @ http://127.0.0.1:8080/\n  2 threads and 50 connections\n  12345 requests in 1.00s, 1.2MB read\n  Socket errors: connect 0, read 3, write 1, timeout 2\n  Non-2xx or 3xx responses: 4\nRequests/sec:  12340.50\nTransfer/sec:      1.20MB\n";
        assert_eq!(
            parse(out),
            Ok(Run {
                per_sec: 12340.5,
                requests: 12345,
                errors: 10
            })
        );
        assert!(parse("Running 1s test\n").is_err());
    }
}
