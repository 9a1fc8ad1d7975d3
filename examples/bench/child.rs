//! Child processes of the bench: spawning with drained output, guards that kill
//! and reap on drop, bounded runs of one-shot tools, and the port and tool
//! look-ups the modes and services share.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a mode or service may take to print its addresses and come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process killed and reaped when the guard drops.
pub struct ChildGuard {
    child: Child,
    /// Lines the child has written so far (stdout and stderr; counted by the
    /// drain threads, so a line shows up here a moment after it is written).
    lines: Arc<AtomicU64>,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Output lines (both streams) drained so far.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Sends SIGINT and waits up to `max` for the child to exit; kills it after
    /// that. Returns whether it exited on its own.
    pub fn interrupt(&mut self, max: Duration) -> bool {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return false;
        };
        if kill(Pid::from_raw(raw), Signal::SIGINT).is_err() {
            return false;
        }
        let end = Instant::now() + max;
        while Instant::now() < end {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return false,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Warning/error lines a mode's children printed.
#[derive(Default)]
pub struct LogStats {
    pub warnings: AtomicU64,
    pub samples: Mutex<Vec<String>>,
}

/// Where a tool binary lives, if installed.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Starts `cmd` with no stdin and piped output; returns it and its description.
fn start_piped(mut cmd: Command) -> Result<(Child, String), String> {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    Ok((child, what))
}

/// Spawns `cmd` with piped output drained by threads; lines go to the returned
/// channel (until it is dropped), warnings are counted in `logs`, every line
/// in the guard's [`ChildGuard::lines`].
pub fn spawn(cmd: Command, logs: &Arc<LogStats>) -> Result<(ChildGuard, Receiver<String>), String> {
    let (mut child, _) = start_piped(cmd)?;
    let (tx, rx) = mpsc::channel();
    let lines = Arc::new(AtomicU64::new(0));
    if let Some(out) = child.stdout.take() {
        drain(out, tx.clone(), logs.clone(), lines.clone());
    }
    if let Some(err) = child.stderr.take() {
        drain(err, tx, logs.clone(), lines.clone());
    }
    Ok((ChildGuard { child, lines }, rx))
}

fn drain(
    pipe: impl Read + Send + 'static,
    tx: Sender<String>,
    logs: Arc<LogStats>,
    lines: Arc<AtomicU64>,
) {
    // Detached: the thread ends at EOF, which the child's death guarantees.
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.fetch_add(1, Ordering::Relaxed);
            let line = strip_ansi(&line);
            let upper = line.to_ascii_uppercase();
            let bad = ["WARN", "ERROR", "ALERT", "PANICKED"];
            if bad.iter().any(|b| upper.contains(b)) {
                logs.warnings.fetch_add(1, Ordering::Relaxed);
                let mut samples = logs.samples.lock().unwrap_or_else(|e| e.into_inner());
                if samples.len() < 10 {
                    samples.push(line.clone());
                }
            }
            let _ = tx.send(line);
        }
    });
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte(@..~)
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads lines until `pick` has returned `Some` `want` times.
pub fn collect<T>(
    rx: &Receiver<String>,
    want: usize,
    what: &str,
    pick: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    let end = Instant::now() + START_TIMEOUT;
    let mut got = Vec::new();
    let mut seen = Vec::new();
    while got.len() < want {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = pick(&line) {
                    got.push(v);
                }
                seen.push(line);
            }
            Err(_) => return Err(format!("no {what} line; output was:\n{}", seen.join("\n"))),
        }
    }
    Ok(got)
}

/// What a one-shot tool printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it if it takes longer than `max`.
pub fn run_bounded(cmd: Command, max: Duration) -> Result<Output, String> {
    let (mut child, what) = start_piped(cmd)?;
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let end = Instant::now() + max;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} ran longer than {max:?}; killed"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// A port that was free a moment ago (peers take fixed ports in their configs).
///
/// Chosen below the ephemeral range, where the short-connection test leaves
/// thousands of TIME_WAIT sockets, and probed without SO_REUSEADDR (which std
/// sets): rathole binds without it and fails with EADDRINUSE on such a port.
pub fn free_port() -> Result<SocketAddr, String> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
    for _ in 0..500 {
        let port = fastrand::u16(20_000..32_000);
        let Ok(fd) = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        ) else {
            continue;
        };
        if bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).is_ok() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err("no free port in 20000..32000".to_owned())
}

/// Polls until something accepts on `addr` (the probe connection is closed at once).
pub fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let end = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() >= end {
            return Err(format!("nothing listens on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Polls `/proc/net/tcp{,6}` until a socket listens on `addr`'s port, without
/// connecting to it.
pub fn wait_bound(addr: SocketAddr) -> Result<(), String> {
    let port = format!(":{:04X}", addr.port());
    let end = Instant::now() + START_TIMEOUT;
    loop {
        let listening = ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            // "sl local_address rem_address st ...": state 0A is LISTEN.
            text.lines().any(|l| {
                let mut fields = l.split_whitespace().skip(1);
                let local = fields.next().unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                local.ends_with(&port) && state == "0A"
            })
        });
        if listening {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("nothing listens on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
