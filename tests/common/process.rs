//! The real `porthole` binary as a child process of a test: long-lived ones
//! ([`Proc`]) and one-shot commands run to completion ([`run`]).
//!
//! Every child is owned by a [`Proc`] guard that kills and reaps it on drop;
//! its stderr is read by a thread into a channel, so a test waits for a log
//! line with a deadline instead of sleeping, and a chatty child never blocks on
//! a full pipe.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `porthole` with `args`, run from the crate's directory, with no token,
/// log level or log format from the environment and no colours.
pub fn porthole(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_porthole"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PORTHOLE_TOKEN")
        .env_remove("PORTHOLE_LOG")
        .env_remove("PORTHOLE_LOG_FORMAT")
        .env("NO_COLOR", "1")
        .args(args);
    cmd
}

/// Strips ANSI escape sequences, in case the logger colours its output.
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte(@..~)
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running porthole process: killed and reaped on drop. Its stderr lines arrive
/// on `lines`; `seen` keeps the ones read so far, for failure messages.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn porthole");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        // Ends by itself at EOF, when the child is gone.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(plain(&line)).is_err() {
                    return;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (blocking) for a stderr line containing `needle`; returns the
    /// text after it.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(at) = line.find(needle) {
                        return line[at + needle.len()..].to_owned();
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// [`Proc::wait_for`], then the first word after `needle` as an address.
    pub fn address_after(&mut self, needle: &str, limit: Duration) -> SocketAddr {
        let rest = self.wait_for(needle, limit);
        rest.split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {rest:?}"))
    }

    /// Waits for the process to exit on its own (its stderr closes first) and
    /// returns its status and every stderr line.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "process did not exit within {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        let status = self.child.wait().expect("reap porthole");
        (status, self.seen.join("\n"))
    }

    /// Sends `signal` and returns at once.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("send a signal");
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for the exit: a graceful stop, for programs (nginx)
    /// whose main process must stop its own workers.
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// SIGKILL: the process gets no chance to close anything itself.
    pub fn kill9(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- one-shot commands

/// Deadline for a short-lived command (help, check, demo) to finish.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- one-shot commands

/// What a finished command printed (ANSI colour removed, but kept in
/// `raw_stderr`) and how it ended.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub raw_stderr: String,
}

/// Runs `cmd` to completion within [`COMMAND_DEADLINE`], killing it if it overruns.
pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn porthole");
    let (tx, rx) = mpsc::channel();
    let readers: Vec<JoinHandle<String>> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|mut pipe| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(());
            text
        })
    })
    .collect();
    // Both pipes reach EOF when the process exits.
    let started = Instant::now();
    for _ in 0..2 {
        let left = COMMAND_DEADLINE.saturating_sub(started.elapsed());
        if rx.recv_timeout(left).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {COMMAND_DEADLINE:?}");
        }
    }
    let status = child.wait().expect("reap porthole");
    let mut texts = readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"));
    let stdout = texts.next().unwrap_or_default();
    let raw_stderr = texts.next().unwrap_or_default();
    Output {
        status,
        stdout: plain(&stdout),
        stderr: plain(&raw_stderr),
        raw_stderr,
    }
}
