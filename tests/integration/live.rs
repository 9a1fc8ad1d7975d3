//! Changing a running tunnel, with the real binaries: a reload (file change
//! or SIGHUP) that adds or removes a service without disturbing a transfer
//! in flight, an invalid reload that changes nothing, and the drain on
//! SIGTERM (transfers finish, a second signal stops at once, a stalled
//! visitor is cut at `drain_timeout`), with the exit code 0 every time.

use crate::common::admin::{must, scrape};
use crate::common::process::{Proc, porthole as args};
use crate::common::tls::Pki;
use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deadline for one expected log line or exchange.
const LINE: Duration = Duration::from_secs(10);
const TOKEN: &str = "live-test-token";
/// The transfer that runs across a reload or a drain.
const BULK: usize = 64 << 20;
/// Read before the change, so the transfer is in flight when it happens.
const FIRST_PART: usize = 1 << 20;

/// The byte at `offset` of the bulk transfer: a pattern a lost, repeated or
/// reordered chunk breaks.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// A local service that sends [`BULK`] bytes of [`pattern`] to each of
/// `conns` connections, then closes.
fn bulk_service(conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind bulk service");
    let addr = listener.local_addr().expect("bulk address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(conns) {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut chunk = vec![0u8; 64 << 10];
                let mut sent = 0;
                while sent < BULK {
                    let n = chunk.len().min(BULK - sent);
                    for (i, b) in chunk[..n].iter_mut().enumerate() {
                        *b = pattern(sent + i);
                    }
                    if stream.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    addr
}

/// A local service that echoes lines, any number of connections.
fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut out = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut &stream, &mut out);
            });
        }
    });
    addr
}

/// A visitor of the bulk service, reading it in parts.
struct Download {
    stream: TcpStream,
    got: usize,
}

impl Download {
    fn start(public: SocketAddr) -> Download {
        let stream = TcpStream::connect(public).expect("connect to the bulk port");
        stream.set_read_timeout(Some(LINE)).expect("read timeout");
        let mut download = Download { stream, got: 0 };
        download.read(FIRST_PART);
        download
    }

    /// Reads `n` more bytes and checks them against the pattern.
    fn read(&mut self, n: usize) {
        let mut buf = vec![0u8; 64 << 10];
        let end = self.got + n;
        while self.got < end {
            let want = buf.len().min(end - self.got);
            let read = self.stream.read(&mut buf[..want]).expect("bulk bytes");
            assert!(read > 0, "the transfer ended after {} bytes", self.got);
            for (i, b) in buf[..read].iter().enumerate() {
                assert_eq!(*b, pattern(self.got + i), "byte {}", self.got + i);
            }
            self.got += read;
        }
    }

    /// Reads the rest, then expects the service's close.
    fn finish(mut self) {
        self.read(BULK - self.got);
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).expect("clean end");
        assert!(rest.is_empty(), "{} bytes past the end", rest.len());
    }
}

/// One line through an echo port.
fn echo_once(stream: &mut TcpStream, line: &str) {
    stream.set_read_timeout(Some(LINE)).expect("read timeout");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut back = String::new();
    BufReader::new(&*stream).read_line(&mut back).expect("echo");
    assert_eq!(back, format!("{line}\n"));
}

/// Writes `path` as an editor saves: a temporary file renamed over it.
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("ron.tmp");
    std::fs::write(&temp, text).expect("write temp config");
    std::fs::rename(&temp, path).expect("rename over the config");
}

fn services(list: &[(&str, SocketAddr)]) -> String {
    let entries: Vec<String> = list
        .iter()
        .map(|(name, local)| format!(r#"(name: "{name}", local: "{local}")"#))
        .collect();
    entries.join(", ")
}

fn client_text(server: SocketAddr, list: &[(&str, SocketAddr)], extra: &str) -> String {
    format!(
        r#"(server: "{server}", token: "{TOKEN}", services: [{}], {extra})"#,
        services(list)
    )
}

/// A server (with `extra` config fields) and its control address.
fn server(pki: &Pki, extra: &str) -> (Proc, SocketAddr) {
    let config = pki.write(
        "server.ron",
        &format!(r#"(bind: "127.0.0.1:0", token: "{TOKEN}", {extra})"#),
    );
    let mut server = Proc::spawn(args(&["server", "-c", &config.to_string_lossy()]));
    let addr = server.address_after("listening for clients on ", LINE);
    (server, addr)
}

/// A client of `server` exposing `list`; its config path.
fn client(pki: &Pki, server: SocketAddr, list: &[(&str, SocketAddr)]) -> (Proc, PathBuf) {
    let config = pki.write("client.ron", &client_text(server, list, ""));
    let client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    (client, config)
}

/// The public address the client logs for `name`.
fn public(client: &mut Proc, name: &str) -> SocketAddr {
    client.address_after(&format!("service {name} is public at "), LINE)
}

#[test]
fn a_reload_adds_a_service_while_a_64_mib_transfer_runs_through_another() {
    let pki = Pki::new("live-add");
    let (_server, addr) = server(&pki, "");
    let bulk = bulk_service(1);
    let (mut client, config) = client(&pki, addr, &[("bulk", bulk)]);
    let bulk_port = public(&mut client, "bulk");
    let download = Download::start(bulk_port);
    // The file watch notices the edit: no signal.
    let echo = echo_service();
    replace(
        &config,
        &client_text(addr, &[("bulk", bulk), ("web", echo)], ""),
    );
    client.wait_for("config reloaded: service web added", LINE);
    let web = public(&mut client, "web");
    echo_once(&mut TcpStream::connect(web).expect("new service"), "hello");
    download.finish();
}

#[test]
fn a_reload_that_removes_a_service_lets_its_visitor_finish_and_refuses_new_ones() {
    let pki = Pki::new("live-remove");
    let (_server, addr) = server(&pki, "");
    let (echo, bulk) = (echo_service(), bulk_service(1));
    let (mut client, config) = client(&pki, addr, &[("bulk", bulk), ("web", echo)]);
    // Registered in config order, so logged in that order.
    let bulk_port = public(&mut client, "bulk");
    let web = public(&mut client, "web");
    let download = Download::start(bulk_port);
    let mut visitor = TcpStream::connect(web).expect("visitor");
    echo_once(&mut visitor, "before");
    std::fs::write(&config, client_text(addr, &[("bulk", bulk)], "")).expect("write config");
    client.signal(SIGHUP);
    client.wait_for("config reloaded: service web removed", LINE);
    client.wait_for(&format!("service web closed at {addr}"), LINE);
    let refused = TcpStream::connect(web).expect_err("the port is closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    echo_once(&mut visitor, "after");
    download.finish();
}

#[test]
fn an_invalid_reload_changes_nothing_and_names_the_position() {
    let pki = Pki::new("live-invalid");
    let (_server, addr) = server(&pki, "");
    let echo = echo_service();
    let admin = r#"admin: Some("127.0.0.1:0")"#;
    let good = client_text(addr, &[("web", echo)], admin);
    let config = pki.write("client.ron", &good);
    let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    let endpoint = client.address_after("admin endpoint on http://", LINE);
    let web = public(&mut client, "web");
    std::fs::write(&config, "(server: \"x\",\n  tokn: 1)").expect("write bad config");
    client.signal(SIGHUP);
    let error = client.wait_for("config not reloaded, nothing changed: ", LINE);
    let file = config.to_string_lossy();
    assert!(
        error.starts_with(&format!("{file}:2:")),
        "a position: {error}"
    );
    echo_once(&mut TcpStream::connect(web).expect("still served"), "still");
    let reloads = |result| [("result", result)];
    let text = scrape(endpoint);
    assert_eq!(
        must(&text, "porthole_config_reloads_total", &reloads("failed")),
        1.0
    );
    assert_eq!(
        must(&text, "porthole_config_last_reload_successful", &[]),
        0.0
    );
    // Put right, it loads again (with nothing to change).
    std::fs::write(&config, &good).expect("write good config");
    client.signal(SIGHUP);
    client.wait_for("config reloaded: no change to apply", LINE);
    let text = scrape(endpoint);
    assert_eq!(
        must(&text, "porthole_config_reloads_total", &reloads("applied")),
        1.0
    );
    assert_eq!(
        must(&text, "porthole_config_last_reload_successful", &[]),
        1.0
    );
}

/// A tunnel for one bulk visitor, with more fields for the server's and the
/// client's configs.
fn bulk_tunnel_with(pki: &Pki, server_extra: &str, client_extra: &str) -> (Proc, Proc, SocketAddr) {
    let (server, addr) = server(pki, server_extra);
    let bulk = bulk_service(1);
    let text = client_text(addr, &[("bulk", bulk)], client_extra);
    let config = pki.write("client.ron", &text);
    let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    let port = public(&mut client, "bulk");
    (server, client, port)
}

fn bulk_tunnel(pki: &Pki, server_extra: &str) -> (Proc, Proc, SocketAddr) {
    bulk_tunnel_with(pki, server_extra, "")
}

/// SIGTERM at the server in the middle of a 64 MiB download over links of
/// the kind `client_extra` asks for: the download completes, exit 0.
fn a_draining_server_lets_a_transfer_finish(name: &str, client_extra: &str) {
    let pki = Pki::new(name);
    let (mut server, mut client, port) = bulk_tunnel_with(&pki, "", client_extra);
    let download = Download::start(port);
    server.signal(SIGTERM);
    server.wait_for("draining: 1 visitors in flight", LINE);
    client.wait_for("is draining", LINE);
    // No new visitor once the drain began.
    assert!(TcpStream::connect(port).is_err(), "public port closed");
    download.finish();
    let (status, log) = server.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn sigterm_lets_a_64_mib_transfer_finish_and_exits_0() {
    a_draining_server_lets_a_transfer_finish("live-drain", "");
}

#[test]
fn sigterm_lets_a_transfer_on_a_multiplexed_link_finish_too() {
    let mux = "data_links: Multiplexed(links: 1)";
    a_draining_server_lets_a_transfer_finish("live-drain-mux", mux);
}

#[test]
fn a_client_drains_too_on_sigterm() {
    let pki = Pki::new("live-client-drain");
    let (_server, mut client, port) = bulk_tunnel(&pki, "");
    let download = Download::start(port);
    client.signal(SIGTERM);
    client.wait_for("draining: 1 visitors in flight", LINE);
    download.finish();
    let (status, log) = client.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let pki = Pki::new("live-twice");
    let (mut server, _client, port) = bulk_tunnel(&pki, "");
    let _stalled = Download::start(port);
    server.signal(SIGTERM);
    server.wait_for("draining: 1 visitors in flight", LINE);
    let asked = Instant::now();
    server.signal(SIGTERM);
    let (status, log) = server.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "{log}");
    // The drain would have taken 30 s.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_stalled_visitor_is_cut_at_a_1_s_drain_timeout() {
    let pki = Pki::new("live-cut");
    let (mut server, _client, port) = bulk_tunnel(&pki, r#"drain_timeout: "1s""#);
    let mut stalled = Download::start(port);
    let asked = Instant::now();
    server.signal(SIGTERM);
    let (status, log) = server.wait_exit(LINE);
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    // The visitor, never reading again, finds its connection ended early.
    let mut rest = Vec::new();
    let _ = stalled.stream.read_to_end(&mut rest);
    assert!(stalled.got + rest.len() < BULK, "cut before the end");
}

#[test]
fn systemd_hears_ready_reloading_ready_and_stopping_in_order() {
    let pki = Pki::new("live-notify");
    let socket_path = pki.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(LINE)).expect("read timeout");
    let config = pki.write(
        "server.ron",
        &format!(r#"(bind: "127.0.0.1:0", token: "{TOKEN}")"#),
    );
    let mut cmd = args(&["server", "-c", &config.to_string_lossy()]);
    cmd.env("NOTIFY_SOCKET", &socket_path);
    let mut server = Proc::spawn(cmd);
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    server.signal(SIGHUP);
    let reloading = next();
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading:?}");
    assert_eq!(next(), "READY=1");
    server.signal(SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    let (status, log) = server.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "{log}");
}

/// A server whose clients are `entries` (`(id, token)`); its config path.
fn named_server(pki: &Pki, entries: &[(&str, &str)]) -> (Proc, SocketAddr, PathBuf) {
    let config = pki.write("server.ron", &named_server_text(entries));
    let mut server = Proc::spawn(args(&["server", "-c", &config.to_string_lossy()]));
    let addr = server.address_after("listening for clients on ", LINE);
    (server, addr, config)
}

fn named_server_text(entries: &[(&str, &str)]) -> String {
    let clients: Vec<String> = entries
        .iter()
        .map(|(id, token)| format!(r#"(id: "{id}", token: "{token}")"#))
        .collect();
    format!(
        r#"(bind: "127.0.0.1:0", clients: [{}])"#,
        clients.join(", ")
    )
}

/// Client `id` with `token`, exposing an echo service as `name`.
fn named_client_text(
    server: SocketAddr,
    id: &str,
    token: &str,
    name: &str,
    echo: SocketAddr,
) -> String {
    format!(
        r#"(server: "{server}", id: "{id}", token: "{token}", services: [(name: "{name}", local: "{echo}")])"#
    )
}

#[test]
fn removing_a_client_in_a_sighup_reload_ends_it_and_frees_its_port_while_the_other_serves() {
    let pki = Pki::new("live-revoke");
    let (mut server, addr, server_config) =
        named_server(&pki, &[("alice", "alice-token"), ("bob", "bob-token")]);
    let echo = echo_service();
    let alice_config = pki.write(
        "alice.ron",
        &named_client_text(addr, "alice", "alice-token", "a", echo),
    );
    let bob_config = pki.write(
        "bob.ron",
        &named_client_text(addr, "bob", "bob-token", "b", echo),
    );
    let mut alice = Proc::spawn(args(&["client", "-c", &alice_config.to_string_lossy()]));
    let mut bob = Proc::spawn(args(&["client", "-c", &bob_config.to_string_lossy()]));
    let (a, b) = (public(&mut alice, "a"), public(&mut bob, "b"));
    std::fs::write(
        &server_config,
        named_server_text(&[("alice", "alice-token")]),
    )
    .expect("write");
    let asked = Instant::now();
    server.signal(SIGHUP);
    server.wait_for("config reloaded: client bob removed", LINE);
    let (status, log) = bob.wait_exit(LINE);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("revoked"), "{log}");
    // Closed before bob heard of the revocation.
    assert!(TcpStream::connect(b).is_err(), "bob's port is released");
    echo_once(
        &mut TcpStream::connect(a).expect("alice still served"),
        "alice",
    );
}

#[test]
fn a_token_rotated_client_first_then_server_reconnects_with_the_new_token() {
    let pki = Pki::new("live-rotate");
    let (mut server, addr, server_config) = named_server(&pki, &[("laptop", "old-token")]);
    let echo = echo_service();
    let client_config = pki.write(
        "laptop.ron",
        &named_client_text(addr, "laptop", "old-token", "web", echo),
    );
    let mut client = Proc::spawn(args(&["client", "-c", &client_config.to_string_lossy()]));
    public(&mut client, "web");
    replace(
        &client_config,
        &named_client_text(addr, "laptop", "new-token", "web", echo),
    );
    client.wait_for("config reloaded: id or token changed", LINE);
    replace(
        &server_config,
        &named_server_text(&[("laptop", "new-token")]),
    );
    server.wait_for("config reloaded: client laptop: token changed", LINE);
    client.wait_for("refused the client's credentials", LINE);
    let web = public(&mut client, "web");
    echo_once(
        &mut TcpStream::connect(web).expect("served again"),
        "rotated",
    );
    assert!(client.is_running(), "the client kept going");
}
