//! Each mode is a path from the load generator to the services: nothing
//! (`direct`), porthole as child processes, or a peer tool as child processes
//! (`peers.rs`). Children are owned by guards that kill and reap them on drop.
//!
//! A porthole mode name may end in `@base`: the same mode run with the
//! `--baseline` binary, so one table shows before and after.
//!
//! A tunnel mode (porthole's and rathole's) also says where its clients dial
//! (`control`) and how to start one more client of the same server
//! (`late`), for `--flood` (`flood.rs`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::child::{self, ChildGuard, LogStats, START_TIMEOUT, collect, spawn};
use crate::load;
use crate::peers;
use crate::services::Target;

pub const TOKEN: &str = "bench-token-0123456789";
/// The service a late client registers: the echo service on another public port.
pub const LATE_SERVICE: &str = "late";
/// Suffix of a mode run with the `--baseline` binary.
pub const BASE_SUFFIX: &str = "@base";

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

/// Modes run by a porthole binary (and so also available as `NAME@base`).
pub const PORTHOLE: &[&str] = &[
    "tunnel",
    "forward",
    "tunnel-tls",
    "tunnel-mux",
    "tunnel-tls-mux",
];

pub struct Mode {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    pub source: SocketAddr,
    /// The iperf3 server's public address, when iperf3 is installed.
    pub iperf: Option<SocketAddr>,
    /// nginx's public address, when nginx is installed.
    pub http: Option<SocketAddr>,
    pub logs: Arc<LogStats>,
    /// The port clients dial (tunnel modes only).
    pub control: Option<SocketAddr>,
    /// One more client for the same server (tunnel modes only).
    pub late: Option<LateClient>,
    /// Scrapes the admin endpoints (`--admin`); declared before the children
    /// so it stops (drops) before they do.
    pub scraper: Option<super::scrape::Scraper>,
    /// Children with their role: `server`, `client`, `forward`, `haproxy`, ...
    children: Vec<(&'static str, ChildGuard)>,
}

/// One more client of a tunnel mode's server, configured like the mode's own
/// client but serving only [`LATE_SERVICE`] (the echo service).
pub struct LateClient {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(&'static str, &'static str)>,
    /// Its public address when its config fixes it (rathole); `None`: the
    /// server picks the port and the client prints it (porthole).
    pub public: Option<SocketAddr>,
}

impl LateClient {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().copied());
        cmd
    }
}

impl Mode {
    /// `public` pairs each service name with the address visitors use for it.
    pub fn new(
        public: &[Target],
        logs: Arc<LogStats>,
        children: Vec<(&'static str, ChildGuard)>,
    ) -> Result<Self, String> {
        let find = |n: &str| public.iter().find(|t| t.0 == n).map(|t| t.1);
        let need = |n: &str| find(n).ok_or_else(|| format!("no public address for {n}"));
        Ok(Self {
            echo: need("echo")?,
            sink: need("sink")?,
            source: need("source")?,
            iperf: find("iperf"),
            http: find("http"),
            logs,
            control: None,
            late: None,
            scraper: None,
            children,
        })
    }

    /// Lines the child with `role` has written so far.
    pub fn lines_of(&self, role: &str) -> Option<u64> {
        self.children
            .iter()
            .find(|c| c.0 == role)
            .map(|c| c.1.lines())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.1.pid()).collect()
    }

    /// Each child's role and PID, in start order.
    pub fn roles(&self) -> Vec<(&'static str, u32)> {
        self.children.iter().map(|c| (c.0, c.1.pid())).collect()
    }
}

/// `tunnel@base` → (`tunnel`, true).
pub fn split_base(name: &str) -> (&str, bool) {
    match name.strip_suffix(BASE_SUFFIX) {
        Some(mode) => (mode, true),
        None => (name, false),
    }
}

/// Why a mode cannot run here (`None`: it can). `porthole` is the binary the
/// mode would use (the baseline for `@base` names).
pub fn unavailable(name: &str, porthole: &Path) -> Option<String> {
    match split_base(name).0 {
        "direct" => None,
        m if PORTHOLE.contains(&m) => (!porthole.is_file())
            .then(|| format!("{} missing; run cargo build --release", porthole.display())),
        "rathole-tls" => ["rathole", "openssl"]
            .into_iter()
            .find(|tool| child::find_tool(tool).is_none())
            .map(|tool| format!("{tool} not installed")),
        peer => child::find_tool(peer)
            .is_none()
            .then(|| format!("{peer} not installed")),
    }
}

/// Starts mode `name` (an `@base` suffix is ignored: `porthole` says which
/// binary) in front of `targets` and proves every path but iperf3's.
pub fn start(name: &str, targets: &[Target], porthole: &Path, dir: &Path) -> Result<Mode, String> {
    let (base_name, base) = split_base(name);
    let admin = super::scrape::enabled() && !base;
    let tunnel = |tls, mux| start_tunnel(targets, porthole, dir, (tls, mux), admin);
    let mode = match base_name {
        "direct" => Mode::new(targets, Arc::default(), Vec::new()),
        "tunnel" => tunnel(false, false),
        "tunnel-tls" => tunnel(true, false),
        "tunnel-mux" => tunnel(false, true),
        "tunnel-tls-mux" => tunnel(true, true),
        "forward" => start_forward(targets, porthole, admin),
        "rathole" => peers::rathole(targets, porthole, dir, false),
        "rathole-tls" => peers::rathole(targets, porthole, dir, true),
        "haproxy" => peers::haproxy(targets, dir),
        "socat" => peers::socat(targets),
        other => Err(format!("unknown mode {other:?}; known: {}", ALL.join(","))),
    }?;
    let fail = |e: String| {
        let logs = mode.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
        format!("{name}: {e}; its warnings: {logs:?}")
    };
    load::wait_ready(mode.echo, START_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    // Sink, source and nginx never echo; a connect shows the listener is up
    // (polled: socat's listeners are separate processes that may bind after
    // the echo one). iperf3 logs an error for a connection that sends no test
    // cookie, so for it only the public listener is awaited, in /proc/net/tcp.
    for addr in [Some(mode.sink), Some(mode.source), mode.http]
        .into_iter()
        .flatten()
    {
        child::wait_listening(addr).map_err(fail)?;
    }
    if let Some(addr) = mode.iperf {
        child::wait_bound(addr).map_err(fail)?;
    }
    Ok(mode)
}

/// The environment of every porthole child.
const PORTHOLE_ENV: [(&str, &str); 2] = [("PORTHOLE_LOG", "info"), ("NO_COLOR", "1")];

pub fn porthole_cmd(porthole: &Path) -> Command {
    let mut cmd = Command::new(porthole);
    cmd.envs(PORTHOLE_ENV);
    cmd
}

pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.split_whitespace().next()?.parse().ok()
}

/// A CA and a `localhost` server certificate in `dir/tls` (made once per run
/// with `porthole gen-cert`).
pub fn certificates(porthole: &Path, dir: &Path) -> Result<PathBuf, String> {
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
    targets: &[Target],
    porthole: &Path,
    dir: &Path,
    (tls, mux): (bool, bool),
    admin: bool,
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
    if admin {
        server.args(["--admin", "127.0.0.1:0"]);
    }
    let (server, rx) = spawn(server, &logs)?;
    // The endpoint logs its address as it binds, before anything else.
    let mut endpoints = admin_addrs(&rx, admin)?;
    let control = collect(&rx, 1, "server `listening for clients on`", |l| {
        parse_addr(l.split_once("listening for clients on ")?.1)
    })?[0];
    drop(rx);
    let config = dir.join("client.ron");
    let ron = |services: &[Target]| client_ron(control, &transport, data_links, services);
    write(&config, &ron(targets))?;
    let late = late_porthole(porthole, dir, targets, ron)?;
    let mut client = porthole_cmd(porthole);
    client.arg("client").arg("-c").arg(&config);
    if admin {
        client.args(["--admin", "127.0.0.1:0"]);
    }
    let (client, rx) = spawn(client, &logs)?;
    endpoints.extend(admin_addrs(&rx, admin)?);
    let public = collect(
        &rx,
        targets.len(),
        "client `service NAME is public at`",
        |l| {
            let rest = l.split_once("service ")?.1;
            let (name, rest) = rest.split_once(" is public at ")?;
            let name = targets.iter().find(|t| t.0 == name)?.0;
            Some((name, parse_addr(rest)?))
        },
    )?;
    let mut mode = Mode::new(&public, logs, vec![("server", server), ("client", client)])?;
    mode.control = Some(control);
    mode.late = Some(late);
    mode.scraper = admin.then(|| super::scrape::start(endpoints));
    Ok(mode)
}

/// The admin endpoint a porthole child logged, when it runs with one.
fn admin_addrs(rx: &Receiver<String>, admin: bool) -> Result<Vec<SocketAddr>, String> {
    if !admin {
        return Ok(Vec::new());
    }
    collect(rx, 1, "`admin endpoint on`", super::scrape::admin_line)
}

/// A porthole client config: `services` through the server at `control`.
fn client_ron(control: SocketAddr, transport: &str, links: &str, services: &[Target]) -> String {
    let services: String = services
        .iter()
        .map(|(name, local)| {
            format!("        (name: \"{name}\", local: \"{local}\", remote_port: 0),\n")
        })
        .collect();
    format!(
        "(\n    server: \"{control}\",\n    token: \"{TOKEN}\",\n    transport: {transport},\n    data_links: {links},\n    services: [\n{services}    ],\n)\n"
    )
}

/// A late client for a porthole tunnel: `ron` makes its config (the mode's
/// own, with only the echo service, as [`LATE_SERVICE`]).
fn late_porthole(
    porthole: &Path,
    dir: &Path,
    targets: &[Target],
    ron: impl Fn(&[Target]) -> String,
) -> Result<LateClient, String> {
    let echo = targets
        .iter()
        .find(|t| t.0 == "echo")
        .ok_or("no echo target")?;
    let config = dir.join("client-late.ron");
    write(&config, &ron(&[(LATE_SERVICE, echo.1)]))?;
    Ok(LateClient {
        program: porthole.to_path_buf(),
        args: vec!["client".into(), "-c".into(), config.into()],
        env: PORTHOLE_ENV.to_vec(),
        public: None,
    })
}

pub fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn start_forward(targets: &[Target], porthole: &Path, admin: bool) -> Result<Mode, String> {
    let logs = Arc::<LogStats>::default();
    let mut cmd = porthole_cmd(porthole);
    cmd.arg("forward");
    if admin {
        cmd.args(["--admin", "127.0.0.1:0"]);
    }
    for (_, target) in targets {
        cmd.arg("127.0.0.1:0").arg(target.to_string());
    }
    let (child, rx) = spawn(cmd, &logs)?;
    let endpoints = admin_addrs(&rx, admin)?;
    let pairs = collect(&rx, targets.len(), "`forwarding ADDR -> TARGET`", |l| {
        let (from, to) = l.split_once("forwarding ")?.1.split_once(" -> ")?;
        Some((parse_addr(from)?, parse_addr(to)?))
    })?;
    let public: Vec<Target> = targets
        .iter()
        .filter_map(|(name, local)| Some((*name, pairs.iter().find(|p| p.1 == *local)?.0)))
        .collect();
    if public.len() != targets.len() {
        return Err(format!("forwarded {:?}, wanted {targets:?}", pairs));
    }
    let mut mode = Mode::new(&public, logs, vec![("forward", child)])?;
    mode.scraper = admin.then(|| super::scrape::start(endpoints));
    Ok(mode)
}
