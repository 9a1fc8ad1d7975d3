//! Peer tools as modes: rathole (plain and TLS), haproxy and socat, each
//! configured in front of the same services as porthole, on fixed loopback
//! ports picked just before start.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::child::{ChildGuard, LogStats, find_tool, free_port, spawn, wait_listening};
use crate::modes::{LATE_SERVICE, LateClient, Mode, TOKEN, certificates, write};
use crate::services::Target;

/// A public address for every target, same names.
fn public_ports(targets: &[Target]) -> Result<Vec<Target>, String> {
    targets
        .iter()
        .map(|(name, _)| Ok((*name, free_port()?)))
        .collect()
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

/// rathole's log level: warnings only (its info lines are per connection).
const RATHOLE_LOG: &str = "warn";

pub fn rathole(targets: &[Target], porthole: &Path, dir: &Path, tls: bool) -> Result<Mode, String> {
    let bin = find_tool("rathole").ok_or("rathole not installed")?;
    let logs = Arc::<LogStats>::default();
    let (control, public) = (free_port()?, public_ports(targets)?);
    let mut server = format!("[server]\nbind_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    let mut client =
        format!("[client]\nremote_addr = \"{control}\"\ndefault_token = \"{TOKEN}\"\n");
    if tls {
        let (s, c) = rathole_tls(porthole, dir)?;
        server += &s;
        client += &c;
    }
    let client_head = client.clone();
    for ((name, local), (_, public)) in targets.iter().zip(&public) {
        server += &format!("[server.services.{name}]\nbind_addr = \"{public}\"\n");
        client += &format!("[client.services.{name}]\nlocal_addr = \"{local}\"\n");
    }
    // The late client's service: rathole binds its port only once a client
    // serves it, so it costs the mode nothing until `--flood` starts one.
    let late_public = free_port()?;
    let echo = targets
        .iter()
        .find(|t| t.0 == "echo")
        .ok_or("no echo target")?;
    server += &format!("[server.services.{LATE_SERVICE}]\nbind_addr = \"{late_public}\"\n");
    let late = format!(
        "{client_head}[client.services.{LATE_SERVICE}]\nlocal_addr = \"{}\"\n",
        echo.1
    );
    let (sp, cp, lp) = (
        dir.join("rathole-server.toml"),
        dir.join("rathole-client.toml"),
        dir.join("rathole-client-late.toml"),
    );
    write(&sp, &server)?;
    write(&cp, &client)?;
    write(&lp, &late)?;
    let mut children = Vec::new();
    for (role, flag, path) in [("server", "--server", &sp), ("client", "--client", &cp)] {
        if flag == "--client" {
            // Saves the client a failed first dial (and a logged retry).
            wait_listening(control)?;
        }
        let mut cmd = Command::new(&bin);
        cmd.env("RUST_LOG", RATHOLE_LOG).arg(flag).arg(path);
        children.push((role, spawn(cmd, &logs)?.0));
    }
    let mut mode = Mode::new(&public, logs, children)?;
    mode.control = Some(control);
    mode.late = Some(LateClient {
        program: bin,
        args: vec!["--client".into(), lp.into()],
        env: vec![("RUST_LOG", RATHOLE_LOG)],
        public: Some(late_public),
    });
    Ok(mode)
}

pub fn haproxy(targets: &[Target], dir: &Path) -> Result<Mode, String> {
    let bin = find_tool("haproxy").ok_or("haproxy not installed")?;
    let logs = Arc::<LogStats>::default();
    let public = public_ports(targets)?;
    // splice-auto: haproxy's zero-copy path, the fair opponent for porthole forward.
    let mut cfg = String::from(
        "global\n    maxconn 5000\ndefaults\n    mode tcp\n    maxconn 5000\n    option splice-auto\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n",
    );
    for (i, ((_, local), (_, public))) in targets.iter().zip(&public).enumerate() {
        cfg += &format!("listen l{i}\n    bind {public}\n    server s{i} {local}\n");
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&path).arg("-db");
    Mode::new(
        &public,
        logs.clone(),
        vec![("haproxy", spawn(cmd, &logs)?.0)],
    )
}

pub fn socat(targets: &[Target]) -> Result<Mode, String> {
    let bin = find_tool("socat").ok_or("socat not installed")?;
    let logs = Arc::<LogStats>::default();
    let public = public_ports(targets)?;
    let mut children: Vec<(&'static str, ChildGuard)> = Vec::new();
    for ((_, local), (_, public)) in targets.iter().zip(&public) {
        let mut cmd = Command::new(&bin);
        cmd.arg(listen_arg(*public)).arg(format!("TCP:{local}"));
        children.push(("socat", spawn(cmd, &logs)?.0));
    }
    Mode::new(&public, logs, children)
}

fn listen_arg(public: SocketAddr) -> String {
    format!(
        "TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
        public.port()
    )
}
