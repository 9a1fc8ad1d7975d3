//! Bulk throughput with iperf3 when it is installed: one `iperf3 -s` on
//! loopback is a service behind every mode, and each bulk test is one
//! `iperf3 -c ... -J` run through the mode's public port (its control
//! connection and data connections all take the mode's path). The server runs
//! one test at a time, so tests run one after another.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::child::{self, ChildGuard, LogStats};

/// Slack over the test length before a client run is killed (connect, the
/// control exchange, and the server's end-of-test report).
const CLIENT_SLACK: Duration = Duration::from_secs(20);
/// The server drops a test that has been idle this long (a client died mid-test),
/// so one stuck test cannot make it refuse every later one as busy.
const SERVER_IDLE_TIMEOUT_SECS: u32 = 15;

/// The iperf3 server, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub logs: Arc<LogStats>,
    _child: ChildGuard,
}

impl Server {
    pub fn start() -> Result<Self, String> {
        let bin = child::find_tool("iperf3").ok_or("iperf3 not installed")?;
        let addr = child::free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(["-s", "-B", "127.0.0.1", "-p"])
            .arg(addr.port().to_string())
            .arg("--idle-timeout")
            .arg(SERVER_IDLE_TIMEOUT_SECS.to_string())
            // Its stdout is a pipe: without this the banner waits in a buffer.
            .arg("--forceflush");
        let logs = Arc::<LogStats>::default();
        let (guard, rx) = child::spawn(cmd, &logs)?;
        // Not probed with a connect: a connection without a test cookie makes
        // iperf3 log an error.
        child::collect(&rx, 1, "iperf3 `Server listening on`", |l| {
            l.contains("Server listening on").then_some(())
        })?;
        Ok(Self {
            addr,
            logs,
            _child: guard,
        })
    }
}

/// One iperf3 test.
#[derive(Debug, PartialEq)]
pub struct Test {
    pub gbps: f64,
    /// Bytes the receiving side got over the whole test.
    pub bytes: u64,
}

/// `iperf3 -c` through `addr` for `secs` seconds with `streams` parallel
/// streams; `reverse`: the server sends (download).
pub fn run(addr: SocketAddr, streams: usize, reverse: bool, secs: u64) -> Result<Test, String> {
    let bin = child::find_tool("iperf3").ok_or("iperf3 not installed")?;
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-t")
        .arg(secs.to_string())
        .args(["-J", "--connect-timeout", "3000"]);
    if streams > 1 {
        cmd.arg("-P").arg(streams.to_string());
    }
    if reverse {
        cmd.arg("-R");
    }
    let out = child::run_bounded(cmd, Duration::from_secs(secs) + CLIENT_SLACK)?;
    match parse(&out.stdout) {
        Ok(t) if out.status.success() => Ok(t),
        Ok(_) => Err(format!("iperf3 exited with {}", out.status)),
        Err(e) => Err(format!("{e}; stderr: {}", out.stderr.trim())),
    }
}

/// Reads `end.sum_received` (else `end.sum_sent`) from iperf3's `-J` output.
/// A hand parser: these objects are flat, and it saves a JSON dependency.
pub fn parse(json: &str) -> Result<Test, String> {
    if let Some(e) = string_field(json, "error") {
        return Err(format!("iperf3: {e}"));
    }
    let end = json
        .find("\"end\"")
        .map(|i| &json[i..])
        .ok_or("iperf3 output has no \"end\" section")?;
    let sum = ["sum_received", "sum_sent"]
        .iter()
        .find_map(|k| object(end, k))
        .ok_or("iperf3 output has neither sum_received nor sum_sent")?;
    let bps = number(sum, "bits_per_second").ok_or("no bits_per_second")?;
    let bytes = number(sum, "bytes").ok_or("no bytes")?;
    if !(bps.is_finite() && bps >= 0.0 && bytes >= 0.0) {
        return Err(format!("iperf3 reported {bps} bit/s, {bytes} bytes"));
    }
    Ok(Test {
        gbps: bps / 1e9,
        bytes: bytes as u64,
    })
}

/// The text of the flat object `"key": { ... }` (braces excluded).
fn object<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = &text[at..];
    let open = rest.find('{')?;
    let close = rest[open..].find('}')? + open;
    Some(&rest[open + 1..close])
}

/// The number after `"key":`.
fn number(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":`, if the value is a string.
fn string_field(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sum_received() {
        let json = "{\"start\":{\"x\":1},\"end\":{\"streams\":[],\n\t\t\"sum_sent\":\t{\"bytes\":\t10,\"bits_per_second\":\t80},\n\t\t\"sum_received\":\t{\n\t\t\t\"start\":\t0,\n\t\t\t\"bytes\":\t1731461120,\n\t\t\t\"bits_per_second\":\t1.3844752738877821e+10,\n\t\t\t\"sender\":\ttrue\n\t\t}}}";
        let t = parse(json).expect("parses");
        assert_eq!(t.bytes, 1_731_461_120);
        assert!((t.gbps - 13.844752738877821).abs() < 1e-9);
    }

    #[test]
    fn falls_back_to_sum_sent_and_reports_errors() {
        let sent = "{\"end\":{\"sum_sent\":{\"bytes\":100,\"bits_per_second\":8e9}}}";
        assert_eq!(
            parse(sent),
            Ok(Test {
                gbps: 8.0,
                bytes: 100
            })
        );
        let err = "{\"start\":{},\"end\":{},\"error\":\"unable to connect to server\"}";
        assert_eq!(
            parse(err),
            Err("iperf3: unable to connect to server".to_owned())
        );
        assert!(parse("").is_err());
    }
}
