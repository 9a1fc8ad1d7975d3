//! `--proxy`: HTTP forward proxies between wrk and nginx on loopback.
//!
//! Modes: `direct` (wrk straight to nginx, the baseline of every ratio),
//! `http-proxy` (`porthole http-proxy` beside the bench binary),
//! `http-proxy@base` (the `--baseline` binary), and `squid` and `tinyproxy`
//! when installed. Every proxy is started afresh per mode and run, listening
//! on a loopback port, with room for [`MAX_CONNECTIONS`] clients; the bench
//! has raised its descriptor limit to the hard limit and the proxy inherits
//! it. Per proxy, in order:
//!
//! 1. [`TUNNELS`] idle CONNECT tunnels, opened one after another to a
//!    loopback listener of the bench that accepts and holds connections
//!    silently ([`Holder`]); each waits for its `200` answer. Once all are
//!    open: (the proxy's RSS − its RSS just before) / tunnels, in KB. Then
//!    every tunnel is closed.
//! 2. Keep-alive requests: `wrk -t2 -c32` for [`wrk_secs`] with a Lua script
//!    that asks for the absolute-form `http://ORIGIN/1k.bin` with `Host:
//!    ORIGIN` (a 1 KiB static file). Requests a second; the proxy's and
//!    nginx's CPU (`/proc`) per 1,000 requests; nginx's accepted connections
//!    per request (`stub_status` `accepts`, before and after, the query's own
//!    connection taken off).
//! 3. The same with `Connection: close`: requests a second and the proxy's
//!    CPU per 1,000 requests.
//!
//! `direct` runs 2 and 3 with an origin-form path. A porthole proxy is
//! stopped with SIGINT at the end and its final stats line goes to stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::child::{self, ChildGuard, LogStats, collect, find_tool, free_port, spawn};
use crate::modes::{BASE_SUFFIX, parse_addr, split_base, write};
use crate::nginx;
use crate::procstat;
use crate::report::{Metric, RunResult};
use crate::wrk;

/// Modes of `--proxy`, in run order (each `@base` twin right after its mode).
pub const ALL: &[&str] = &["direct", "http-proxy", "squid", "tinyproxy"];
/// The mode run by a porthole binary (and so also available as `@base`).
pub const PORTHOLE: &str = "http-proxy";
/// Idle CONNECT tunnels held at once (the table's labels say 1,000).
pub const TUNNELS: usize = 1000;
const _: () = assert!(TUNNELS == 1000);
/// wrk threads and connections (the table's labels say -c32).
const THREADS: usize = 2;
const CONNECTIONS: usize = 32;
const _: () = assert!(CONNECTIONS == 32);
/// Client connections each proxy accepts at once: the tunnels, wrk, spare.
const MAX_CONNECTIONS: usize = 4096;
const _: () = assert!(MAX_CONNECTIONS >= TUNNELS + CONNECTIONS + 100);
/// Descriptors the bench needs besides two per tunnel (its end, and the
/// holder's end).
const FDS_SPARE: usize = 500;
/// Opening the tunnels stops here (the rest count as errors).
const TUNNEL_MAX: Duration = Duration::from_secs(30);
/// Bound on each tunnel's connect, and on its wait for the answer.
const TUNNEL_IO: Duration = Duration::from_secs(5);
/// Bound on the holder's wait for the proxy's last connections.
const HOLD_WAIT: Duration = Duration::from_secs(2);
/// Longest proxy answer head read (a CONNECT answer or the probe's).
const HEAD_MAX: usize = 16 * 1024;
/// Time for relays to close and allocators to settle.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a porthole proxy gets to stop on SIGINT before it is killed.
const STOP: Duration = Duration::from_secs(3);
/// The environment of porthole (as for the other modes).
const PORTHOLE_ENV: [(&str, &str); 2] = [("PORTHOLE_LOG", "info"), ("NO_COLOR", "1")];

/// `wrk -d` of each request run, in whole seconds.
pub fn wrk_secs(quick: bool) -> u64 {
    if quick { 3 } else { 10 }
}

/// The header's description of the phase.
pub fn label(secs: u64, nginx: &nginx::Server) -> String {
    format!(
        "requests: wrk -t{THREADS} -c{CONNECTIONS} -d{secs}s → GET http://{}{} ({} B), keep-alive then Connection: close",
        nginx.addr,
        nginx::SMALL_PATH,
        nginx::SMALL_LEN
    )
}

/// The modes to run: `only` (comma-separated) or all, `direct` first, the
/// `@base` twin after `http-proxy` when a baseline is given. A missing peer
/// is skipped (said on stdout); a missing porthole binary is an error.
pub fn select(
    only: Option<&str>,
    baseline: Option<&Path>,
    porthole: &Path,
) -> Result<Vec<String>, String> {
    let wanted: Vec<String> = match only {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => ALL.iter().map(|s| s.to_string()).collect(),
    };
    let mut names: Vec<String> = Vec::new();
    for name in wanted {
        let (mode, base) = split_base(&name);
        if !ALL.contains(&mode) || (base && mode != PORTHOLE) {
            return Err(format!(
                "unknown --proxy mode {name:?}; known: {}, {PORTHOLE}{BASE_SUFFIX}",
                ALL.join(",")
            ));
        }
        if base && baseline.is_none() {
            return Err(format!("{name} needs --baseline PATH"));
        }
        let twin = format!("{PORTHOLE}{BASE_SUFFIX}");
        let with_twin = baseline.is_some() && mode == PORTHOLE;
        for n in [Some(name.clone()), with_twin.then_some(twin)]
            .into_iter()
            .flatten()
        {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names.sort_by_key(|n| {
        let (mode, base) = split_base(n);
        (ALL.iter().position(|m| *m == mode), base)
    });
    let mut selected = Vec::new();
    for name in names {
        match split_base(&name) {
            ("direct", _) => {}
            (PORTHOLE, base) => {
                let bin = if base {
                    baseline.unwrap_or(porthole)
                } else {
                    porthole
                };
                if !bin.is_file() {
                    return Err(format!("{name}: {} missing", bin.display()));
                }
            }
            (peer, _) if find_tool(peer).is_none() => {
                println!("> skipped {name}: {peer} not installed");
                continue;
            }
            _ => {}
        }
        selected.push(name);
    }
    if selected.is_empty() {
        return Err("--proxy: no selected mode can run here".to_owned());
    }
    Ok(selected)
}

/// One mode, one run: starts the proxy (one retry on fresh ports), proves the
/// path with one request, measures, stops it.
pub fn run_mode(
    name: &str,
    porthole: &Path,
    dir: &Path,
    origin: Option<&nginx::Server>,
    secs: u64,
) -> Result<RunResult, String> {
    let mut r = RunResult::default();
    if name == "direct" {
        if let Some(o) = origin {
            requests(None, o, dir, secs, &mut r);
        }
        return Ok(r);
    }
    let mut proxy = None;
    let mut errors = Vec::new();
    for attempt in 1..=2 {
        match Proxy::start(name, porthole, dir).and_then(|p| {
            origin.map_or(Ok(()), |o| probe(p.addr, o))?;
            Ok(p)
        }) {
            Ok(p) => {
                proxy = Some(p);
                break;
            }
            Err(e) => {
                eprintln!("  {name} failed to start (attempt {attempt}): {e}");
                errors.push(format!("attempt {attempt}: {e}"));
            }
        }
    }
    let proxy = proxy.ok_or_else(|| errors.join("; "))?;
    eprintln!(
        "    {name} listening on {} (pid {})",
        proxy.addr,
        proxy.pid()
    );
    tunnels(&proxy, &mut r);
    if let Some(o) = origin {
        requests(Some(&proxy), o, dir, secs, &mut r);
    }
    r.values.insert(
        Metric::LogWarnings,
        proxy.logs.warnings.load(Ordering::Relaxed) as f64,
    );
    let samples = proxy
        .logs
        .samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    for line in samples {
        eprintln!("    log: {line}");
    }
    if let Some(line) = proxy.stop() {
        eprintln!("    {line}");
    }
    Ok(r)
}

/// A proxy process, killed when dropped.
struct Proxy {
    addr: SocketAddr,
    logs: Arc<LogStats>,
    child: ChildGuard,
    /// porthole's output, read at the end for its stats line.
    lines: Option<Receiver<String>>,
}

impl Proxy {
    fn start(name: &str, porthole: &Path, dir: &Path) -> Result<Self, String> {
        let (mode, base) = split_base(name);
        let sub = dir.join(if base { "http-proxy-base" } else { mode });
        std::fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        match mode {
            PORTHOLE => Self::porthole(porthole, &sub),
            "squid" => Self::squid(&sub),
            "tinyproxy" => Self::tinyproxy(&sub),
            other => Err(format!("unknown proxy {other:?}")),
        }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `porthole http-proxy` on a port of its choosing (it logs the address).
    /// Loopback destinations are allowed: `deny_local` is off by default.
    fn porthole(bin: &Path, dir: &Path) -> Result<Self, String> {
        let conf = dir.join("http-proxy.ron");
        write(
            &conf,
            &format!(
                "(\n    listen: \"127.0.0.1:0\",\n    max_connections: {MAX_CONNECTIONS},\n)\n"
            ),
        )?;
        let mut cmd = Command::new(bin);
        cmd.envs(PORTHOLE_ENV)
            .arg("http-proxy")
            .arg("-c")
            .arg(&conf);
        let logs = Arc::<LogStats>::default();
        let (child, rx) = spawn(cmd, &logs)?;
        let addr = collect(&rx, 1, "`http proxy listening on`", |l| {
            parse_addr(l.split_once("http proxy listening on ")?.1)
        })?[0];
        Ok(Self {
            addr,
            logs,
            child,
            lines: Some(rx),
        })
    }

    /// squid in the foreground without a cache, logs in `dir`. Untested here
    /// (not installed on the machine the phase was written on).
    fn squid(dir: &Path) -> Result<Self, String> {
        let bin = find_tool("squid").ok_or("squid not installed")?;
        let addr = free_port()?;
        let d = dir.display();
        // As root, squid drops to its cache_effective_user, which must be
        // able to write its logs here.
        open_up(dir)?;
        let conf = dir.join("squid.conf");
        write(
            &conf,
            &format!(
                "http_port {addr}\n\
                 acl localhost src 127.0.0.1/32 ::1\n\
                 http_access allow localhost\n\
                 http_access deny all\n\
                 cache deny all\n\
                 cache_mem 8 MB\n\
                 access_log none\n\
                 cache_store_log none\n\
                 cache_log {d}/cache.log\n\
                 pid_filename {d}/squid.pid\n\
                 coredump_dir {d}\n\
                 max_filedescriptors {}\n\
                 shutdown_lifetime 1 seconds\n\
                 forwarded_for delete\n\
                 via off\n",
                crate::fd_hard_limit().min(65536)
            ),
        )?;
        let mut cmd = Command::new(bin);
        cmd.arg("-N").arg("-f").arg(&conf);
        Self::peer(cmd, addr, dir.join("cache.log"))
    }

    /// tinyproxy in the foreground; with no `ConnectPort` line CONNECT may go
    /// to any port. Untested here (not installed on the machine the phase was
    /// written on).
    fn tinyproxy(dir: &Path) -> Result<Self, String> {
        let bin = find_tool("tinyproxy").ok_or("tinyproxy not installed")?;
        let addr = free_port()?;
        let d = dir.display();
        open_up(dir)?;
        let user = if nix::unistd::geteuid().is_root() {
            "User nobody\nGroup nogroup\n"
        } else {
            ""
        };
        let conf = dir.join("tinyproxy.conf");
        write(
            &conf,
            &format!(
                "{user}Port {}\n\
                 Listen 127.0.0.1\n\
                 Timeout 600\n\
                 MaxClients {MAX_CONNECTIONS}\n\
                 Allow 127.0.0.1\n\
                 LogLevel Warning\n\
                 LogFile \"{d}/tinyproxy.log\"\n\
                 PidFile \"{d}/tinyproxy.pid\"\n\
                 DisableViaHeader Yes\n",
                addr.port()
            ),
        )?;
        let mut cmd = Command::new(bin);
        cmd.arg("-d").arg("-c").arg(&conf);
        Self::peer(cmd, addr, dir.join("tinyproxy.log"))
    }

    /// Starts a peer and waits for its listener; `log` is quoted on failure.
    fn peer(cmd: Command, addr: SocketAddr, log: std::path::PathBuf) -> Result<Self, String> {
        let logs = Arc::<LogStats>::default();
        let child = spawn(cmd, &logs)?.0;
        child::wait_listening(addr).map_err(|e| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            format!("{e}; {}: {tail:?}", log.display())
        })?;
        Ok(Self {
            addr,
            logs,
            child,
            lines: None,
        })
    }

    /// Stops the proxy: porthole with SIGINT (returning its `http proxy
    /// stopped: ...` stats line), a peer by kill (on drop).
    fn stop(mut self) -> Option<String> {
        let rx = self.lines.take()?;
        self.child.interrupt(STOP);
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("http proxy stopped") => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// Lets a peer that drops root privileges write its logs and pid in `dir`.
fn open_up(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// One `GET http://ORIGIN/1k.bin` through the proxy must come back `200`
/// with the whole file.
fn probe(proxy: SocketAddr, origin: &nginx::Server) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("probe through {proxy}: {e}");
    let mut s = TcpStream::connect_timeout(&proxy, TUNNEL_IO).map_err(fail)?;
    s.set_read_timeout(Some(TUNNEL_IO)).map_err(fail)?;
    s.set_write_timeout(Some(TUNNEL_IO)).map_err(fail)?;
    let o = origin.addr;
    write!(
        s,
        "GET http://{o}{} HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n",
        nginx::SMALL_PATH
    )
    .map_err(fail)?;
    let mut answer = Vec::new();
    s.take((HEAD_MAX + nginx::SMALL_LEN) as u64)
        .read_to_end(&mut answer)
        .map_err(fail)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !is_200(status) || body.len() != nginx::SMALL_LEN {
        return Err(format!(
            "probe through {proxy}: {status:?} with a {} B body, wanted 200 with {} B",
            body.len(),
            nginx::SMALL_LEN
        ));
    }
    Ok(())
}

fn is_200(status_line: &str) -> bool {
    let mut parts = status_line.split_whitespace();
    matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")) && parts.next() == Some("200")
}

/// CPU ticks of `pids`' trees → milliseconds per 1,000 of `requests`.
fn ms_per_k(ticks: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| {
        let ms = ticks as f64 * 1000.0 / procstat::clock_ticks_per_sec();
        ms * 1000.0 / requests as f64
    })
}

/// Keep-alive, then `Connection: close`, through `proxy` (or straight to
/// `origin` when `None`).
fn requests(
    proxy: Option<&Proxy>,
    origin: &nginx::Server,
    dir: &Path,
    secs: u64,
    r: &mut RunResult,
) {
    let pids: Vec<u32> = proxy.map(|p| p.pid()).into_iter().collect();
    let nginx_pid = [origin.pid()];
    let mut errors = 0;
    for close in [false, true] {
        let script = match script(proxy.is_some(), origin.addr, close, dir) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("    wrk script: {e}");
                return;
            }
        };
        let target = proxy.map_or(origin.addr, |p| p.addr);
        let accepts0 = origin.accepts();
        let (p0, o0) = (
            procstat::usage(&pids).cpu_ticks,
            procstat::usage(&nginx_pid).cpu_ticks,
        );
        let run = wrk::run_script(target, &script, THREADS, CONNECTIONS, secs);
        let (p1, o1) = (
            procstat::usage(&pids).cpu_ticks,
            procstat::usage(&nginx_pid).cpu_ticks,
        );
        let accepts1 = origin.accepts();
        let what = if close { "close" } else { "keep-alive" };
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                eprintln!("    {what} failed: {e}");
                continue;
            }
        };
        errors += run.errors;
        let proxy_cpu = ms_per_k(p1.saturating_sub(p0), run.requests);
        let origin_cpu = ms_per_k(o1.saturating_sub(o0), run.requests);
        // The second query's own connection is counted in its answer.
        let accepts = match (accepts0, accepts1) {
            (Ok(a), Ok(b)) => Some(b.saturating_sub(a).saturating_sub(1)),
            (a, b) => {
                eprintln!("    stub_status: {:?} {:?}", a.err(), b.err());
                None
            }
        };
        eprintln!(
            "    {what}: {:.0} req/s, {} requests, {} errors; proxy {} ticks, nginx {} ticks; nginx accepted {accepts:?}",
            run.per_sec,
            run.requests,
            run.errors,
            p1.saturating_sub(p0),
            o1.saturating_sub(o0),
        );
        if close {
            r.values.insert(Metric::ProxyClose, run.per_sec);
            if let Some(v) = proxy_cpu.filter(|_| proxy.is_some()) {
                r.values.insert(Metric::ProxyCloseCpuPerK, v);
            }
        } else {
            r.values.insert(Metric::ProxyKeepAlive, run.per_sec);
            if let Some(v) = proxy_cpu.filter(|_| proxy.is_some()) {
                r.values.insert(Metric::ProxyCpuPerK, v);
            }
            if let Some(v) = origin_cpu {
                r.values.insert(Metric::OriginCpuPerK, v);
            }
            if let (Some(a), true) = (accepts, run.requests > 0) {
                r.values
                    .insert(Metric::OriginAcceptsPerReq, a as f64 / run.requests as f64);
            }
        }
        thread::sleep(SETTLE);
    }
    r.values.insert(Metric::ProxyWrkErrors, errors as f64);
}

/// The wrk script: absolute-form requests through a proxy (origin-form
/// straight to nginx), `Host` the origin, `Connection: close` when `close`.
fn script(
    via_proxy: bool,
    origin: SocketAddr,
    close: bool,
    dir: &Path,
) -> Result<std::path::PathBuf, String> {
    let path = if via_proxy {
        format!("http://{origin}{}", nginx::SMALL_PATH)
    } else {
        nginx::SMALL_PATH.to_owned()
    };
    let mut text = format!(
        "wrk.method = \"GET\"\nwrk.path = \"{path}\"\nwrk.headers[\"Host\"] = \"{origin}\"\n"
    );
    if close {
        text += "wrk.headers[\"Connection\"] = \"close\"\n";
    }
    let file = dir.join(format!(
        "proxy-{}-{}.lua",
        if via_proxy { "via" } else { "direct" },
        if close { "close" } else { "keepalive" }
    ));
    write(&file, &text)?;
    Ok(file)
}

/// Opens [`TUNNELS`] idle CONNECT tunnels through `proxy` to a [`Holder`],
/// records the proxy's RSS growth per tunnel, then closes them.
fn tunnels(proxy: &Proxy, r: &mut RunResult) {
    let limit = crate::fd_hard_limit();
    let need = 2 * TUNNELS + FDS_SPARE;
    if need > limit {
        eprintln!(
            "    tunnels: skipped: needs about {need} descriptors in the bench, the hard limit is {limit}"
        );
        return;
    }
    let holder = match Holder::start(TUNNELS) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("    tunnels: no holder: {e}");
            return;
        }
    };
    let pids = [proxy.pid()];
    let before = procstat::usage(&pids).rss_kb;
    let started = Instant::now();
    let end = started + TUNNEL_MAX;
    let mut open = Vec::with_capacity(TUNNELS);
    let mut first_errors = Vec::new();
    for _ in 0..TUNNELS {
        match connect_tunnel(proxy.addr, holder.addr, end) {
            Ok(s) => open.push(s),
            Err(e) if first_errors.len() < 3 => first_errors.push(e),
            Err(_) => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let held = holder.wait_for(open.len(), HOLD_WAIT);
    thread::sleep(SETTLE);
    let after = procstat::usage(&pids).rss_kb;
    let errors = TUNNELS - open.len();
    eprintln!(
        "    tunnels: {} open in {secs:.2} s ({held} held at the far end), {errors} errors {first_errors:?}, proxy RSS {before} KB -> {after} KB",
        open.len()
    );
    r.values
        .insert(Metric::TunnelRssStart, before as f64 / 1024.0);
    r.values.insert(Metric::TunnelSecs, secs);
    r.values.insert(Metric::TunnelErrors, errors as f64);
    if !open.is_empty() {
        let per = (after as f64 - before as f64) / open.len() as f64;
        r.values.insert(Metric::TunnelKb, per);
    }
    drop(open);
    drop(holder);
    thread::sleep(SETTLE);
}

/// One CONNECT through `proxy` to `target`, answered `200`.
fn connect_tunnel(
    proxy: SocketAddr,
    target: SocketAddr,
    end: Instant,
) -> Result<TcpStream, String> {
    let left = end.saturating_duration_since(Instant::now()).min(TUNNEL_IO);
    if left.is_zero() {
        return Err("out of time".to_owned());
    }
    let fail = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect_timeout(&proxy, left).map_err(fail)?;
    s.set_read_timeout(Some(left)).map_err(fail)?;
    s.set_write_timeout(Some(left)).map_err(fail)?;
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").map_err(fail)?;
    // The far end never writes: everything read is the proxy's answer head.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_MAX {
            return Err("answer head too long".to_owned());
        }
        match s.read(&mut buf).map_err(fail)? {
            0 => return Err(format!("closed after {:?}", String::from_utf8_lossy(&head))),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or("");
    if !is_200(status) {
        return Err(format!("answered {status:?}"));
    }
    Ok(s)
}

/// A loopback listener of the bench that accepts up to `max` connections
/// (for at most [`TUNNEL_MAX`] + [`HOLD_WAIT`]) and holds them silently
/// until dropped.
struct Holder {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Holder {
    fn start(max: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let held = Arc::new(Mutex::new(Vec::with_capacity(max)));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (held.clone(), stop.clone());
        let end = Instant::now() + TUNNEL_MAX + HOLD_WAIT;
        let thread = thread::spawn(move || {
            let count = || h.lock().map_or(max, |v| v.len());
            while !s.load(Ordering::Relaxed) && count() < max && Instant::now() < end {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Ok(mut v) = h.lock() {
                            v.push(conn);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Ok(Self {
            addr,
            held,
            stop,
            thread: Some(thread),
        })
    }

    fn count(&self) -> usize {
        self.held.lock().map_or(0, |v| v.len())
    }

    /// Waits up to `max` for `n` held connections; returns how many there are.
    fn wait_for(&self, n: usize, max: Duration) -> usize {
        let end = Instant::now() + max;
        while self.count() < n && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
        self.count()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(mut v) = self.held.lock() {
            v.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert!(is_200("HTTP/1.1 200 Connection established"));
        assert!(is_200("HTTP/1.0 200 OK"));
        assert!(!is_200("HTTP/1.1 403 Forbidden"));
        assert!(!is_200("HTTP/1.1 2000"));
    }

    #[test]
    fn cpu_per_thousand() {
        // 100 ticks/s on Linux: 50 ticks = 500 ms over 10,000 requests.
        let hz = procstat::clock_ticks_per_sec();
        let v = ms_per_k(50, 10_000).unwrap_or(0.0);
        assert!((v - 50.0 * 1000.0 / hz * 1000.0 / 10_000.0).abs() < 1e-9);
        assert_eq!(ms_per_k(5, 0), None);
    }

    #[test]
    fn selects_in_order_with_twin() {
        let me = std::env::current_exe().unwrap_or_default();
        let names = select(Some("http-proxy,direct"), Some(&me), &me).unwrap_or_default();
        assert_eq!(names, ["direct", "http-proxy", "http-proxy@base"]);
        assert!(select(Some("http-proxy@base"), None, &me).is_err());
        assert!(select(Some("squid@base"), Some(&me), &me).is_err());
        assert!(select(Some("tunnel"), None, &me).is_err());
    }
}
