//! Real programs as test peers (nginx, haproxy), which `.ci/run` installs:
//! a test that needs one and cannot find it fails under `CI=true` and is
//! skipped with a message elsewhere.
//!
//! Their listening sockets come from the test, bound on `127.0.0.1:0` and
//! kept, and are inherited across `exec` (nginx through its `NGINX`
//! variable, haproxy through `bind fd@N`): no port number is ever released
//! and reused.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::Proc;

/// `name` on the PATH or in the sbin directories; `None` (with the test's
/// skip message, or a failure under CI) when it is not installed.
pub fn program(name: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed, and CI must run {test} (.ci/run installs it)"
        );
        eprintln!("skipping {test}: {name} is not installed");
    }
    found
}

/// A listener on `127.0.0.1:0` that the next child process inherits.
pub fn inheritable_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    nix::fcntl::fcntl(&listener, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::empty()))
        .expect("clear FD_CLOEXEC");
    (listener, addr)
}

/// Once the child that needed them runs: later children need not hold them.
pub fn stop_inheriting(listeners: &[&TcpListener]) {
    for listener in listeners {
        nix::fcntl::fcntl(
            *listener,
            nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("set FD_CLOEXEC");
    }
}

/// A scratch directory for one peer's config and logs, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str, test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("porthole-{what}-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running nginx on a listener of its own; stopped on drop.
pub struct Nginx {
    pub addr: SocketAddr,
    pub proc: Proc,
    // Dropped after the process: fields drop in order.
    pub dir: Scratch,
    _listener: TcpListener,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

/// Starts nginx with the config `config(dir, addr)` writes, `addr` being
/// the listener it inherits; `setup` prepares files in `dir` first. `None`:
/// skipped (see [`program`]).
pub fn nginx(
    test: &str,
    setup: impl FnOnce(&Path),
    config: impl FnOnce(&Path, SocketAddr) -> String,
) -> Option<Nginx> {
    let bin = program("nginx", test)?;
    let (listener, addr) = inheritable_listener();
    let dir = Scratch::new("nginx", test);
    setup(dir.path());
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config(dir.path(), addr)).expect("nginx.conf");
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .env("NGINX", format!("{};", listener.as_raw_fd()));
    let proc = Proc::spawn(cmd);
    stop_inheriting(&[&listener]);
    Some(Nginx {
        addr,
        proc,
        dir,
        _listener: listener,
    })
}

/// The directives every nginx config here starts with: in the foreground,
/// one worker, everything under `dir`.
pub fn nginx_preamble(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 1024; }}\n"
    )
}

/// The temp paths of nginx's `http` block, all under `dir`.
pub fn nginx_http_paths(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
    )
}
