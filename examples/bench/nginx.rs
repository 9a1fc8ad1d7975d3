//! nginx as the HTTP service behind every mode when nginx and wrk are both
//! installed: one worker, no master, in the foreground, every path (pid,
//! logs, temp dirs) inside the bench's temp dir, answering `200 ok` to
//! everything on one loopback port but [`SMALL_PATH`], a static file of
//! [`SMALL_LEN`] bytes. A second loopback port serves `stub_status`, whose
//! `accepts` counter `--proxy` reads ([`Server::accepts`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::child::{self, ChildGuard, LogStats};

/// The static file nginx serves from disk.
pub const SMALL_PATH: &str = "/1k.bin";
pub const SMALL_LEN: usize = 1024;
/// Bound on each `stub_status` query.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// nginx, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// Where `GET /status` answers with nginx's `stub_status` counters.
    pub status: SocketAddr,
    pub logs: Arc<LogStats>,
    child: ChildGuard,
}

impl Server {
    pub fn start(dir: &Path) -> Result<Self, String> {
        let bin = child::find_tool("nginx").ok_or("nginx not installed")?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let www = root.join("www");
        std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
        let small = www.join(SMALL_PATH.trim_start_matches('/'));
        let body: Vec<u8> = (0..SMALL_LEN).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&small, body).map_err(|e| format!("{}: {e}", small.display()))?;
        let (addr, status) = (child::free_port()?, child::free_port()?);
        if addr == status {
            return Err(format!("free_port gave {addr} twice; try again"));
        }
        let conf = root.join("nginx.conf");
        std::fs::write(&conf, config(&root, addr, status))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut cmd = Command::new(bin);
        // -e: the error log from the first line on, before the config names one
        // (the default /var/log/nginx may not be writable).
        cmd.arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(root.join("error.log"));
        let logs = Arc::<LogStats>::default();
        let guard = child::spawn(cmd, &logs)?.0;
        for a in [addr, status] {
            child::wait_listening(a).map_err(|e| {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                format!("nginx: {e}; error.log: {}", log.trim())
            })?;
        }
        Ok(Self {
            addr,
            status,
            logs,
            child: guard,
        })
    }

    /// nginx's only process (no master).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Connections nginx has accepted since it started, from `stub_status`
    /// (the query's own connection included).
    pub fn accepts(&self) -> Result<u64, String> {
        let fail = |e: std::io::Error| format!("stub_status at {}: {e}", self.status);
        let mut s = TcpStream::connect_timeout(&self.status, STATUS_TIMEOUT).map_err(fail)?;
        s.set_read_timeout(Some(STATUS_TIMEOUT)).map_err(fail)?;
        s.set_write_timeout(Some(STATUS_TIMEOUT)).map_err(fail)?;
        s.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .map_err(fail)?;
        let mut text = String::new();
        s.take(64 * 1024).read_to_string(&mut text).map_err(fail)?;
        parse_accepts(&text).ok_or_else(|| format!("no accepts counter in {text:?}"))
    }
}

/// The `accepts` counter of a `stub_status` answer:
/// `server accepts handled requests` then ` 16 16 31`.
fn parse_accepts(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with("server accepts"))?;
    lines.next()?.split_whitespace().next()?.parse().ok()
}

fn config(root: &Path, addr: SocketAddr, status: SocketAddr) -> String {
    let r = root.display();
    // `user` only means something (and only avoids a warning) when run as root.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    // keepalive_requests: high enough that the keep-alive run never reconnects.
    format!(
        "{user}daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {r}/body;
    proxy_temp_path {r}/proxy;
    fastcgi_temp_path {r}/fastcgi;
    uwsgi_temp_path {r}/uwsgi;
    scgi_temp_path {r}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {addr};
        root {r}/www;
        location = {SMALL_PATH} {{ }}
        location / {{ return 200 \"ok\"; }}
    }}
    server {{
        listen {status};
        location = /status {{ stub_status; }}
    }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accepts() {
        let body = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nActive connections: 1 \nserver accepts handled requests\n 16 15 31 \nReading: 0 Writing: 1 Waiting: 0 \n";
        assert_eq!(parse_accepts(body), Some(16));
        assert_eq!(parse_accepts("Active connections: 1\n"), None);
    }
}
