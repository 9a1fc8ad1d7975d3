//! Each mode is a path from the load generator to the services: nothing
//! (`direct`), porthole as child processes, or a peer tool as child processes.
//! Children are owned by guards that kill and reap them on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load;
use crate::services::Services;

/// How long a mode may take to print its addresses and pass an echo.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const TOKEN: &str = "bench-token-0123456789";

pub const ALL: &[&str] = &[
    "direct",
    "tunnel",
    "forward",
    "rathole",
    "haproxy",
    "socat",
    "tunnel-tls",
    "rathole-tls",
    "tunnel-mux",
    "tunnel-tls-mux",
];

/// A child process killed and reaped when the guard drops.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Warning/error lines a mode's children printed.
#[derive(Default)]
pub struct LogStats {
    pub warnings: AtomicU64,
    pub samples: Mutex<Vec<String>>,
}

pub struct Mode {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    pub source: SocketAddr,
    pub logs: Arc<LogStats>,
    children: Vec<ChildGuard>,
}

impl Mode {
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.0.id()).collect()
    }
}

/// Where a peer binary lives, if installed.
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

/// Why a mode cannot run here (`None`: it can).
pub fn unavailable(name: &str, porthole: &Path) -> Option<String> {
    match name {
        "direct" => None,
        "tunnel" | "forward" | "tunnel-tls" | "tunnel-mux" | "tunnel-tls-mux" => (!porthole
            .is_file())
        .then(|| format!("{} missing; run cargo build --release", porthole.display())),
        "rathole-tls" => ["rathole", "openssl"]
            .into_iter()
            .find(|tool| find_tool(tool).is_none())
            .map(|tool| format!("{tool} not installed")),
        peer => find_tool(peer)
            .is_none()
            .then(|| format!("{peer} not installed")),
    }
}

pub fn start(name: &str, svc: &Services, porthole: &Path, dir: &Path) -> Result<Mode, String> {
    let mode = match name {
        "direct" => Ok(Mode {
            echo: svc.echo,
            sink: svc.sink,
            source: svc.source,
            logs: Arc::default(),
            children: Vec::new(),
        }),
        "tunnel" => start_tunnel(svc, porthole, dir, false, false),
        "tunnel-tls" => start_tunnel(svc, porthole, dir, true, false),
        "tunnel-mux" => start_tunnel(svc, porthole, dir, false, true),
        "tunnel-tls-mux" => start_tunnel(svc, porthole, dir, true, true),
        "rathole-tls" => start_rathole(svc, porthole, dir, true),
        "forward" => start_forward(svc, porthole),
        "rathole" => start_rathole(svc, porthole, dir, false),
        "haproxy" => start_haproxy(svc, dir),
        "socat" => start_socat(svc),
        other => Err(format!("unknown mode {other:?}; known: {}", ALL.join(","))),
    }?;
    let fail = |e: String| {
        let logs = mode.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
        format!("{name}: {e}; its warnings: {logs:?}")
    };
    for addr in [mode.echo, mode.sink, mode.source] {
        // Sink and source never echo, so only prove the echo path end to end;
        // for the others a connect shows the listener is up.
        if addr == mode.echo {
            load::wait_ready(addr, START_TIMEOUT).map_err(|e| fail(e.to_string()))?;
        } else {
            std::net::TcpStream::connect_timeout(&addr, START_TIMEOUT)
                .map_err(|e| fail(format!("{addr}: {e}")))?;
        }
    }
    Ok(mode)
}

/// Spawns `cmd` with piped output drained by threads; lines go to the returned
/// channel (until it is dropped), warnings are counted in `logs`.
fn spawn(mut cmd: Command, logs: &Arc<LogStats>) -> Result<(ChildGuard, Receiver<String>), String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        drain(out, tx.clone(), logs.clone());
    }
    if let Some(err) = child.stderr.take() {
        drain(err, tx, logs.clone());
    }
    Ok((ChildGuard(child), rx))
}

fn drain(pipe: impl Read + Send + 'static, tx: Sender<String>, logs: Arc<LogStats>) {
    // Detached: the thread ends at EOF, which the child's death guarantees.
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
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
fn collect<T>(
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

fn porthole_cmd(porthole: &Path) -> Command {
    let mut cmd = Command::new(porthole);
    cmd.env("PORTHOLE_LOG", "info").env("NO_COLOR", "1");
    cmd
}

fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.split_whitespace().next()?.parse().ok()
}

/// A CA and a `localhost` server certificate in `dir/tls` (made once per run
/// with `porthole gen-cert`).
fn certificates(porthole: &Path, dir: &Path) -> Result<PathBuf, String> {
    let tls = dir.join("tls");
    if !tls.join("server.crt").is_file() {
        let out = porthole_cmd(porthole)
            .args(["gen-cert", "--name", "localhost", "--out"])
            .arg(&tls)
            .output()
            .map_err(|e| format!("gen-cert: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "gen-cert: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(tls)
}

fn start_tunnel(
    svc: &Services,
    porthole: &Path,
    dir: &Path,
    tls: bool,
    mux: bool,
) -> Result<Mode, String> {
    let data_links = if mux {
        "Multiplexed(links: 1)"
    } else {
        "Pooled(size: 64)"
    };
    let logs = Arc::<LogStats>::default();
    let mut server = porthole_cmd(porthole);
    server.args(["server", "--bind", "127.0.0.1:0", "--token", TOKEN]);
    let transport = if tls {
        let certs = certificates(porthole, dir)?;
        server
            .arg("--tls")
            .arg("--cert")
            .arg(certs.join("server.crt"))
            .arg("--key")
            .arg(certs.join("server.key"));
        format!(
            "Tls(ca: Some({:?}), server_name: Some(\"localhost\"))",
            certs.join("ca.crt")
        )
    } else {
        "Tcp".to_owned()
    };
    let (server, rx) = spawn(server, &logs)?;
    let control = collect(&rx, 1, "server `listening for clients on`", |l| {
        parse_addr(l.split_once("listening for clients on ")?.1)
    })?[0];
    drop(rx);
    let config = dir.join("client.ron");
    let ron = format!(
        "(\n    server: \"{control}\",\n    token: \"{TOKEN}\",\n    transport: {transport},\n    data_links: {data_links},\n    services: [\n        (name: \"echo\", local: \"{}\", remote_port: 0),\n        (name: \"sink\", local: \"{}\", remote_port: 0),\n        (name: \"source\", local: \"{}\", remote_port: 0),\n    ],\n)\n",
        svc.echo, svc.sink, svc.source
    );
    std::fs::write(&config, ron).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut client = porthole_cmd(porthole);
    client.arg("client").arg("-c").arg(&config);
    let (client, rx) = spawn(client, &logs)?;
    let public = collect(&rx, 3, "client `service NAME is public at`", |l| {
        let rest = l.split_once("service ")?.1;
        let (name, rest) = rest.split_once(" is public at ")?;
        Some((name.to_owned(), parse_addr(rest)?))
    })?;
    let find = |n: &str| public.iter().find(|(name, _)| name == n).map(|p| p.1);
    Ok(Mode {
        echo: find("echo").ok_or("no echo service")?,
        sink: find("sink").ok_or("no sink service")?,
        source: find("source").ok_or("no source service")?,
        logs,
        children: vec![server, client],
    })
}

fn start_forward(svc: &Services, porthole: &Path) -> Result<Mode, String> {
    let logs = Arc::<LogStats>::default();
    let mut cmd = porthole_cmd(porthole);
    cmd.arg("forward");
    for target in [svc.echo, svc.sink, svc.source] {
        cmd.arg("127.0.0.1:0").arg(target.to_string());
    }
    let (child, rx) = spawn(cmd, &logs)?;
    let pairs = collect(&rx, 3, "`forwarding ADDR -> TARGET`", |l| {
        let (from, to) = l.split_once("forwarding ")?.1.split_once(" -> ")?;
        Some((parse_addr(from)?, parse_addr(to)?))
    })?;
    let find = |t: SocketAddr| pairs.iter().find(|p| p.1 == t).map(|p| p.0);
    Ok(Mode {
        echo: find(svc.echo).ok_or("echo not forwarded")?,
        sink: find(svc.sink).ok_or("sink not forwarded")?,
        source: find(svc.source).ok_or("source not forwarded")?,
        logs,
        children: vec![child],
    })
}

/// A port that was free a moment ago (peers take fixed ports in their configs).
///
/// Chosen below the ephemeral range, where the short-connection test leaves
/// thousands of TIME_WAIT sockets, and probed without SO_REUSEADDR (which std
/// sets): rathole binds without it and fails with EADDRINUSE on such a port.
fn free_port() -> Result<SocketAddr, String> {
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

/// Public addresses for echo, sink and source.
fn three_ports() -> Result<[SocketAddr; 3], String> {
    Ok([free_port()?, free_port()?, free_port()?])
}

fn peer_mode(pub_addrs: [SocketAddr; 3], children: Vec<ChildGuard>, logs: Arc<LogStats>) -> Mode {
    Mode {
        echo: pub_addrs[0],
        sink: pub_addrs[1],
        source: pub_addrs[2],
        logs,
        children,
    }
}

/// rathole's TLS (native-tls) wants a PKCS#12 identity; made with openssl.
fn rathole_tls(porthole: &Path, dir: &Path) -> Result<(String, String), String> {
    let certs = certificates(porthole, dir)?;
    let pfx = certs.join("identity.pfx");
    if !pfx.is_file() {
        let out = Command::new(find_tool("openssl").ok_or("openssl not installed")?)
            .args(["pkcs12", "-export", "-passout", "pass:bench", "-out"])
            .arg(&pfx)
            .arg("-inkey")
            .arg(certs.join("server.key"))
            .arg("-in")
            .arg(certs.join("server.crt"))
            .arg("-certfile")
            .arg(certs.join("ca.crt"))
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!("openssl: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let server = format!(
        "[server.transport]\ntype = \"tls\"\n[server.transport.tls]\npkcs12 = {:?}\npkcs12_password = \"bench\"\n",
        pfx
    );
    let client = format!(
        "[client.transport]\ntype = \"tls\"\n[client.transport.tls]\ntrusted_root = {:?}\nhostname = \"localhost\"\n",
        certs.join("ca.crt")
    );
    Ok((server, client))
}

fn start_rathole(svc: &Services, porthole: &Path, dir: &Path, tls: bool) -> Result<Mode, String> {
    let bin = find_tool("rathole").ok_or("rathole not installed")?;
    let logs = Arc::<LogStats>::default();
    let (control, public) = (free_port()?, three_ports()?);
    let names = ["echo", "sink", "source"];
    let locals = [svc.echo, svc.sink, svc.source];
    let mut server = format!("[server]\nbind_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    let mut client =
        format!("[client]\nremote_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    if tls {
        let (s, c) = rathole_tls(porthole, dir)?;
        server += &s;
        client += &c;
    }
    for i in 0..3 {
        server += &format!(
            "[server.services.{}]\nbind_addr = \"{}\"\n",
            names[i], public[i]
        );
        client += &format!(
            "[client.services.{}]\nlocal_addr = \"{}\"\n",
            names[i], locals[i]
        );
    }
    let (sp, cp) = (
        dir.join("rathole-server.toml"),
        dir.join("rathole-client.toml"),
    );
    std::fs::write(&sp, server).map_err(|e| e.to_string())?;
    std::fs::write(&cp, client).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for (flag, path) in [("--server", &sp), ("--client", &cp)] {
        if flag == "--client" {
            // Saves the client a failed first dial (and a logged retry).
            wait_listening(control)?;
        }
        let mut cmd = Command::new(&bin);
        cmd.env("RUST_LOG", "warn").arg(flag).arg(path);
        children.push(spawn(cmd, &logs)?.0);
    }
    Ok(peer_mode(public, children, logs))
}

/// Polls until something accepts on `addr` (the probe connection is closed at once).
fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    let end = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() >= end {
            return Err(format!("nothing listens on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_haproxy(svc: &Services, dir: &Path) -> Result<Mode, String> {
    let bin = find_tool("haproxy").ok_or("haproxy not installed")?;
    let logs = Arc::<LogStats>::default();
    let public = three_ports()?;
    // splice-auto: haproxy's zero-copy path, the fair opponent for porthole forward.
    let mut cfg = String::from(
        "global\n    maxconn 5000\ndefaults\n    mode tcp\n    maxconn 5000\n    option splice-auto\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n",
    );
    for (i, local) in [svc.echo, svc.sink, svc.source].iter().enumerate() {
        cfg += &format!(
            "listen l{i}\n    bind {}\n    server s{i} {local}\n",
            public[i]
        );
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&path).arg("-db");
    Ok(peer_mode(public, vec![spawn(cmd, &logs)?.0], logs))
}

fn start_socat(svc: &Services) -> Result<Mode, String> {
    let bin = find_tool("socat").ok_or("socat not installed")?;
    let logs = Arc::<LogStats>::default();
    let public = three_ports()?;
    let mut children = Vec::new();
    for (i, local) in [svc.echo, svc.sink, svc.source].iter().enumerate() {
        let mut cmd = Command::new(&bin);
        cmd.arg(format!(
            "TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
            public[i].port()
        ))
        .arg(format!("TCP:{local}"));
        children.push(spawn(cmd, &logs)?.0);
    }
    Ok(peer_mode(public, children, logs))
}
