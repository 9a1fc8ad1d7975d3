//! nginx as the HTTP service behind every mode when nginx and wrk are both
//! installed: one worker, no master, in the foreground, every path (pid,
//! logs, temp dirs) inside the bench's temp dir, answering `200 ok` to
//! everything on one loopback port.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::child::{self, ChildGuard, LogStats};

/// nginx, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub logs: Arc<LogStats>,
    _child: ChildGuard,
}

impl Server {
    pub fn start(dir: &Path) -> Result<Self, String> {
        let bin = child::find_tool("nginx").ok_or("nginx not installed")?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let addr = child::free_port()?;
        let conf = root.join("nginx.conf");
        std::fs::write(&conf, config(&root, addr))
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
        child::wait_listening(addr).map_err(|e| {
            let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
            format!("nginx: {e}; error.log: {}", log.trim())
        })?;
        Ok(Self {
            addr,
            logs,
            _child: guard,
        })
    }
}

fn config(root: &Path, addr: SocketAddr) -> String {
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
        location / {{ return 200 \"ok\"; }}
    }}
}}
"
    )
}
