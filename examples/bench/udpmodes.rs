//! `--udp`'s modes: paths from the load to the UDP services (`udp.rs`).
//!
//! `direct` (the services themselves), `tunnel` and `tunnel-mux` (porthole
//! server and client, the services exposed with `protocol: Udp` over pooled
//! or multiplexed data links, as the TCP modes in `modes.rs`), and `rathole`
//! (`type = "udp"` services on fixed loopback ports, as in `peers.rs`). A
//! mode is returned only once a datagram has gone through it to the echo and
//! back, and one to the sink.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::child::{ChildGuard, LogStats, START_TIMEOUT, collect, find_tool, free_port, spawn};
use crate::modes::{TOKEN, parse_addr, porthole_cmd, write};
use crate::udp::{FLOWS, IDLE_FLOWS};
use crate::udpload::{self, UdpServices};

/// The porthole server's flow settings: a flow idle this long is closed, and
/// at most this many are open at once. A mode lives for one run (well under
/// a minute), which keeps the idle flows, the ladder's and a few probes
/// open at once: none times out, none is refused.
const UDP_IDLE_TIMEOUT_SECS: u64 = 300;
const MAX_UDP_FLOWS: usize = 4096;
const _: () = assert!(IDLE_FLOWS + FLOWS + 16 <= MAX_UDP_FLOWS);

/// A path from the load to the UDP services, and the processes it runs.
pub struct UdpMode {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    pub logs: Arc<LogStats>,
    pub children: Vec<(&'static str, ChildGuard)>,
}

/// Starts mode `name` and waits until a datagram goes through it to the echo
/// and one to the sink.
pub fn start(
    name: &str,
    svc: &UdpServices,
    porthole: &Path,
    dir: &Path,
) -> Result<UdpMode, String> {
    let mode = match name {
        "direct" => Ok(UdpMode {
            echo: svc.echo,
            sink: svc.sink,
            logs: Arc::default(),
            children: Vec::new(),
        }),
        "tunnel" => tunnel(svc, porthole, dir, false),
        "tunnel-mux" => tunnel(svc, porthole, dir, true),
        "rathole" => rathole(svc, dir),
        other => Err(format!("unknown --udp mode {other:?}")),
    }?;
    let fail = |e: String| {
        let logs = mode.logs.samples.lock().unwrap_or_else(|e| e.into_inner());
        format!("{name}: {e}; its warnings: {logs:?}")
    };
    udpload::wait_echo(mode.echo, START_TIMEOUT).map_err(fail)?;
    udpload::wait_sink(svc, mode.sink, START_TIMEOUT).map_err(fail)?;
    Ok(mode)
}

/// porthole server and client, the services exposed as `protocol: Udp`.
fn tunnel(svc: &UdpServices, porthole: &Path, dir: &Path, mux: bool) -> Result<UdpMode, String> {
    let logs = Arc::<LogStats>::default();
    let server_ron = dir.join("udp-server.ron");
    write(
        &server_ron,
        &format!(
            "(\n    bind: \"127.0.0.1:0\",\n    udp_idle_timeout: \"{UDP_IDLE_TIMEOUT_SECS}s\",\n    max_udp_flows: {MAX_UDP_FLOWS},\n)\n"
        ),
    )?;
    let mut server = porthole_cmd(porthole);
    server.args(["server", "--bind", "127.0.0.1:0", "--token", TOKEN, "-c"]);
    server.arg(&server_ron);
    let (server, rx) = spawn(server, &logs)?;
    let control = collect(&rx, 1, "server `listening for clients on`", |l| {
        parse_addr(l.split_once("listening for clients on ")?.1)
    })?[0];
    drop(rx);
    let links = if mux {
        "Multiplexed(links: 1)"
    } else {
        "Pooled(size: 64)"
    };
    let services = [("udp-echo", svc.echo), ("udp-sink", svc.sink)];
    let listed: String = services
        .iter()
        .map(|(name, local)| {
            format!(
                "        (name: \"{name}\", local: \"{local}\", remote_port: 0, protocol: Udp),\n"
            )
        })
        .collect();
    let client_ron = dir.join("udp-client.ron");
    write(
        &client_ron,
        &format!(
            "(\n    server: \"{control}\",\n    token: \"{TOKEN}\",\n    transport: Tcp,\n    data_links: {links},\n    services: [\n{listed}    ],\n)\n"
        ),
    )?;
    let mut client = porthole_cmd(porthole);
    client.arg("client").arg("-c").arg(&client_ron);
    let (client, rx) = spawn(client, &logs)?;
    let public = collect(
        &rx,
        services.len(),
        "client `service NAME is public at`",
        |l| {
            let (name, rest) = l.split_once("service ")?.1.split_once(" is public at ")?;
            let name = services.iter().find(|s| s.0 == name)?.0;
            Some((name, loopback(parse_addr(rest)?)))
        },
    )?;
    let find = |n: &str| {
        public
            .iter()
            .find(|p| p.0 == n)
            .map(|p| p.1)
            .ok_or_else(|| format!("no public address for {n}"))
    };
    Ok(UdpMode {
        echo: find("udp-echo")?,
        sink: find("udp-sink")?,
        logs,
        children: vec![("server", server), ("client", client)],
    })
}

/// A public address on an unspecified IP is reached on loopback.
fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// rathole with `type = "udp"` services on fixed loopback ports (as the TCP
/// rathole mode in `peers.rs`).
fn rathole(svc: &UdpServices, dir: &Path) -> Result<UdpMode, String> {
    let bin = find_tool("rathole").ok_or("rathole not installed")?;
    let logs = Arc::<LogStats>::default();
    let control = free_port()?;
    let (echo, sink) = (free_udp_port()?, free_udp_port()?);
    if echo == sink {
        return Err(format!("picked {echo} twice"));
    }
    let mut server = format!("[server]\nbind_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    let mut client =
        format!("[client]\nremote_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    for (name, local, public) in [("udp-echo", svc.echo, echo), ("udp-sink", svc.sink, sink)] {
        server += &format!("[server.services.{name}]\ntype = \"udp\"\nbind_addr = \"{public}\"\n");
        client += &format!("[client.services.{name}]\ntype = \"udp\"\nlocal_addr = \"{local}\"\n");
    }
    let (sp, cp) = (
        dir.join("rathole-udp-server.toml"),
        dir.join("rathole-udp-client.toml"),
    );
    write(&sp, &server)?;
    write(&cp, &client)?;
    let mut children = Vec::new();
    for (role, flag, path) in [("server", "--server", &sp), ("client", "--client", &cp)] {
        if flag == "--client" {
            crate::child::wait_listening(control)?;
        }
        let mut cmd = Command::new(&bin);
        // Warnings only: its info lines are per connection (as in peers.rs).
        cmd.env("RUST_LOG", "warn").arg(flag).arg(path);
        children.push((role, spawn(cmd, &logs)?.0));
    }
    Ok(UdpMode {
        echo,
        sink,
        logs,
        children,
    })
}

/// A UDP port on loopback that was free a moment ago (below the ephemeral
/// range, as [`free_port`] picks TCP ones).
fn free_udp_port() -> Result<SocketAddr, String> {
    for _ in 0..500 {
        let addr = SocketAddr::from(([127, 0, 0, 1], fastrand::u16(20_000..32_000)));
        if UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err("no free UDP port in 20000..32000".to_owned())
}
