//! The admin endpoint of a real server and client: counters that equal what
//! visitors moved, refusals by reason, a client's health following its
//! server, `/status`, the exposition as `promtool` reads it, and bad requests
//! that never disturb the tunnel.

use crate::common::admin::{get, must, request, scrape, until};
use crate::common::process::{Proc, porthole as args, run};
use crate::common::tls::{Pki, localhost, new_ca};
use porthole::gencert::Validity;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Deadline for one expected log line, one visitor, or a value to settle.
const LINE: Duration = Duration::from_secs(10);
const TOKEN: &str = "metrics-test-token";
/// Visitors, and the bytes each sends up and gets back.
const VISITORS: usize = 12;
const UP: usize = 100_000;
const DOWN: usize = 60_000;

/// A server and a client with admin endpoints, exposing `local` as `echo`.
struct Tunnel {
    /// Killed on drop.
    _server: Proc,
    _client: Proc,
    server_admin: SocketAddr,
    client_admin: SocketAddr,
    /// The server's control address: the client's `server` label.
    server_addr: SocketAddr,
    public: SocketAddr,
    _pki: Pki,
}

fn server(pki: &Pki, extra: &str) -> (Proc, SocketAddr, SocketAddr) {
    let config = pki.write(
        "server.ron",
        &format!(r#"(bind: "127.0.0.1:0", token: "{TOKEN}", admin: Some("127.0.0.1:0"), {extra})"#),
    );
    let mut server = Proc::spawn(args(&["server", "-c", &config.to_string_lossy()]));
    let admin = server.address_after("admin endpoint on http://", LINE);
    let addr = server.address_after("listening for clients on ", LINE);
    (server, addr, admin)
}

fn client_config(pki: &Pki, server: SocketAddr, local: SocketAddr, extra: &str) -> String {
    let path = pki.write(
        "client.ron",
        &format!(
            r#"(server: "{server}", token: "{TOKEN}", admin: Some("127.0.0.1:0"),
                services: [(name: "echo", local: "{local}", remote_port: 0)], {extra})"#
        ),
    );
    path.to_string_lossy().into_owned()
}

fn tunnel(name: &str, local: SocketAddr, client_extra: &str) -> Tunnel {
    tunnel_in(Pki::new(name), local, ("", client_extra))
}

/// [`tunnel`] in `pki`'s directory, with more fields for each config.
fn tunnel_in(pki: Pki, local: SocketAddr, (server_extra, client_extra): (&str, &str)) -> Tunnel {
    let (server, addr, server_admin) = server(&pki, server_extra);
    let config = client_config(&pki, addr, local, client_extra);
    let mut client = Proc::spawn(args(&["client", "-c", &config]));
    let client_admin = client.address_after("admin endpoint on http://", LINE);
    let public = client.address_after("is public at ", LINE);
    Tunnel {
        _server: server,
        _client: client,
        server_admin,
        client_admin,
        server_addr: addr,
        public,
        _pki: pki,
    }
}

/// A local service that reads `UP` bytes, answers `DOWN` bytes and closes,
/// one thread per connection, for `conns` connections.
fn up_down_service(conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let addr = listener.local_addr().expect("service address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(conns) {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(LINE));
                let mut got = vec![0u8; UP];
                if stream.read_exact(&mut got).is_ok() {
                    let _ = stream.write_all(&vec![7u8; DOWN]);
                }
            });
        }
    });
    addr
}

/// One visitor: `UP` bytes up, then every byte back until the service closes.
fn visit(public: SocketAddr) -> usize {
    let mut stream = TcpStream::connect(public).expect("connect to the public port");
    stream.set_read_timeout(Some(LINE)).expect("read timeout");
    stream.write_all(&vec![1u8; UP]).expect("send up");
    stream.shutdown(Shutdown::Write).expect("FIN");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read down");
    back.len()
}

/// Every visitor's bytes, counted exactly at both ends, through links of
/// the kind the extra config fields ask for.
fn counters_equal_what_visitors_moved(pki: Pki, extra: (&str, &str)) {
    let local = up_down_service(VISITORS);
    let t = tunnel_in(pki, local, extra);
    let threads: Vec<_> = (0..VISITORS)
        .map(|_| std::thread::spawn(move || visit(t.public)))
        .collect();
    for thread in threads {
        assert_eq!(thread.join().expect("visitor"), DOWN, "bytes back");
    }
    let echo = [("service", "echo")];
    let (n, up, down) = (
        VISITORS as f64,
        (VISITORS * UP) as f64,
        (VISITORS * DOWN) as f64,
    );
    let server = until(LINE, || {
        let text = scrape(t.server_admin);
        let got = [
            must(&text, "porthole_server_visitors_total", &echo),
            must(&text, "porthole_server_visitors_active", &echo),
            must(&text, "porthole_server_received_bytes_total", &echo),
            must(&text, "porthole_server_sent_bytes_total", &echo),
        ];
        (got == [n, 0.0, up, down])
            .then_some(text)
            .ok_or(format!("server: {got:?}"))
    });
    assert_eq!(
        must(&server, "porthole_server_visitors_failed_total", &echo),
        0.0
    );
    assert_eq!(
        must(&server, "porthole_server_link_wait_seconds_count", &[]),
        n
    );
    assert_eq!(must(&server, "porthole_server_clients", &[]), 1.0);
    // The shared token's sessions are the empty client id.
    let shared = [("client", "")];
    assert_eq!(
        must(&server, "porthole_server_client_sessions", &shared),
        1.0
    );
    assert_eq!(
        must(&server, "porthole_server_services", &[("state", "serving")]),
        1.0
    );
    assert!(
        must(
            &server,
            "porthole_server_handshakes_total",
            &[("result", "ok")]
        ) >= 2.0
    );
    let server_label = t.server_addr.to_string();
    let server_label = [("server", server_label.as_str())];
    until(LINE, || {
        let text = scrape(t.client_admin);
        let got = [
            must(&text, "porthole_client_visitors_total", &echo),
            must(&text, "porthole_client_visitors_active", &echo),
            must(&text, "porthole_client_sent_bytes_total", &echo),
            must(&text, "porthole_client_received_bytes_total", &echo),
            must(&text, "porthole_client_connected", &server_label),
            must(&text, "porthole_client_services_registered", &server_label),
        ];
        (got == [n, 0.0, up, down, 1.0, 1.0])
            .then_some(())
            .ok_or(format!("client: {got:?}"))
    });
}

#[test]
fn counters_equal_what_visitors_moved_over_pooled_links() {
    counters_equal_what_visitors_moved(Pki::new("metrics-pooled"), ("", ""));
}

#[test]
fn counters_equal_what_visitors_moved_over_multiplexed_links() {
    let mux = "data_links: Multiplexed(links: 2)";
    counters_equal_what_visitors_moved(Pki::new("metrics-mux"), ("", mux));
}

/// Over TLS the relays copy instead of splicing: counted the same.
#[test]
fn counters_equal_what_visitors_moved_over_tls_links() {
    let pki = Pki::new("metrics-tls");
    let ca = new_ca();
    let ca_file = pki.write("ca.crt", &ca.pem.cert);
    let pem = ca
        .server(&localhost(), Validity::days(1))
        .expect("server certificate");
    let (cert, key) = pki.pair("server", &pem);
    let server = format!("transport: Tls(cert: {cert:?}, key: {key:?})");
    let client = format!("transport: Tls(ca: Some({ca_file:?}), server_name: Some(\"localhost\"))");
    counters_equal_what_visitors_moved(pki, (&server, &client));
}

#[test]
fn refusals_are_counted_by_reason() {
    let pki = Pki::new("metrics-refusals");
    let (_server, addr, admin) = server(&pki, "allow_ports: [(20000, 20009)]");
    let wrong = pki.write(
        "wrong.ron",
        &format!(
            r#"(server: "{addr}", token: "not-the-token-at-all",
                services: [(name: "a", local: "127.0.0.1:9", remote_port: 20000)])"#
        ),
    );
    let outside = pki.write(
        "outside.ron",
        &format!(
            r#"(server: "{addr}", token: "{TOKEN}",
                services: [(name: "b", local: "127.0.0.1:9", remote_port: 30000)])"#
        ),
    );
    for config in [wrong, outside] {
        let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
        let (status, log) = client.wait_exit(LINE);
        assert_eq!(status.code(), Some(1), "{log}");
    }
    let text = scrape(admin);
    assert_eq!(
        must(
            &text,
            "porthole_server_handshakes_total",
            &[("result", "bad_token")]
        ),
        1.0
    );
    // The refused client's control link, and any data links it dialled.
    assert!(
        must(
            &text,
            "porthole_server_handshakes_total",
            &[("result", "ok")]
        ) >= 1.0
    );
    let refused = |reason| {
        must(
            &text,
            "porthole_server_refusals_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refused("port_not_allowed"), 1.0, "{text}");
    assert_eq!(refused("port_in_use"), 0.0);
    assert_eq!(
        must(&text, "porthole_server_services", &[("state", "serving")]),
        0.0
    );
}

/// A TCP proxy whose upstream the test switches (or unplugs): the client
/// keeps one server address while servers come and go behind it.
struct Switch {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
}

fn switch(upstream: SocketAddr) -> Switch {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind switch");
    let addr = listener.local_addr().expect("switch address");
    let upstream = Arc::new(Mutex::new(Some(upstream)));
    let target = upstream.clone();
    std::thread::spawn(move || {
        for down in listener.incoming() {
            let Ok(down) = down else { return };
            let to = *target.lock().expect("switch lock");
            // Unplugged: the connection is closed at once.
            let Some(up) = to.and_then(|to| TcpStream::connect(to).ok()) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    down.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                ),
                (up, down),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        }
    });
    Switch { addr, upstream }
}

impl Switch {
    fn set(&self, upstream: Option<SocketAddr>) {
        *self.upstream.lock().expect("switch lock") = upstream;
    }
}

fn health(admin: SocketAddr) -> Result<String, String> {
    match get(admin, "/healthz") {
        (200, body) => Ok(body),
        (code, body) => Err(format!("{code} {body}")),
    }
}

#[test]
fn a_clients_health_follows_its_server() {
    let pki = Pki::new("metrics-health");
    let (first, addr, _) = server(&pki, "");
    let switch = switch(addr);
    let config = client_config(&pki, switch.addr, "127.0.0.1:9".parse().expect("addr"), "");
    let mut client = Proc::spawn(args(&["client", "-c", &config]));
    let admin = client.address_after("admin endpoint on http://", LINE);
    client.wait_for("is public at ", LINE);
    assert_eq!(until(LINE, || health(admin)), "ok\n");
    switch.set(None);
    drop(first);
    let down = until(LINE, || match health(admin) {
        Ok(body) => Err(format!("still healthy: {body}")),
        Err(why) => Ok(why),
    });
    assert!(down.starts_with("503 not connected to "), "{down}");
    // The client knows its server by the address it dials: the switch.
    let label = switch.addr.to_string();
    let label = [("server", label.as_str())];
    let text = scrape(admin);
    assert_eq!(must(&text, "porthole_client_connected", &label), 0.0);
    let (_second, addr, _) = server(&pki, "");
    switch.set(Some(addr));
    client.wait_for("is public at ", LINE);
    assert_eq!(until(LINE, || health(admin)), "ok\n");
    let text = scrape(admin);
    assert_eq!(must(&text, "porthole_client_connected", &label), 1.0);
    assert_eq!(must(&text, "porthole_client_reconnects_total", &label), 1.0);
}

#[test]
fn status_lists_clients_and_services_at_both_ends() {
    let t = tunnel("metrics-status", "127.0.0.1:9".parse().expect("addr"), "");
    let (code, body) = get(t.server_admin, "/status");
    assert_eq!(code, 200, "{body}");
    let server: porthole::admin::Status = serde_json::from_str(&body).expect("server status JSON");
    assert_eq!((server.role.as_str(), server.healthy), ("server", true));
    assert_eq!(server.clients.len(), 1, "{body}");
    assert_eq!(server.clients[0].services, ["echo"]);
    assert_eq!(server.services.len(), 1);
    assert_eq!(server.services[0].public, Some(t.public.to_string()));
    assert_eq!(server.services[0].state, "serving");
    let (code, body) = get(t.client_admin, "/status");
    assert_eq!(code, 200, "{body}");
    let client: porthole::admin::Status = serde_json::from_str(&body).expect("client status JSON");
    assert_eq!(client.role, "client");
    assert_eq!(client.services[0].local.as_deref(), Some("127.0.0.1:9"));
    assert_eq!(client.services[0].public, Some(t.public.to_string()));
    // `porthole status` against both: the table names the service and its
    // public address; `--json` parses.
    for (admin, role) in [(t.server_admin, "server"), (t.client_admin, "client")] {
        let admin = admin.to_string();
        let out = run(args(&["status", "--admin", &admin]));
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        let table = &out.stdout;
        assert!(table.starts_with(&format!("porthole {role} ")), "{table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("echo "))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(
            row.contains("serving") && row.contains(&t.public.to_string()),
            "{table}"
        );
        let out = run(args(&["status", "--admin", &admin, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        let parsed: porthole::admin::Status = serde_json::from_str(&out.stdout).expect("--json");
        assert_eq!(parsed.role, role);
    }
}

/// `promtool check metrics` on a scrape of a live server and client: no
/// error, no lint warning. Skipped without promtool, except under CI.
#[test]
fn promtool_finds_nothing_to_lint() {
    let Ok(version) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is not installed, and CI must run this test (.ci/run installs prometheus)"
        );
        return eprintln!("skipping the promtool test: promtool is not installed");
    };
    assert!(version.status.success());
    let local = up_down_service(1);
    let t = tunnel("metrics-promtool", local, "");
    assert_eq!(visit(t.public), DOWN);
    for admin in [t.server_admin, t.client_admin] {
        let text = scrape(admin);
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
        let out = check.wait_with_output().expect("promtool output");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{text}"
        );
    }
}

#[test]
fn bad_requests_get_400_and_never_disturb_the_tunnel() {
    let local = up_down_service(2);
    let t = tunnel("metrics-bad-requests", local, "");
    let admin = t.server_admin;
    // A slowloris: half a head, then nothing.
    let mut slow = TcpStream::connect(admin).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head");
    assert!(request(admin, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(request(admin, b"GET /metrics HTTP/1.1\nHost: x\n\n").starts_with("HTTP/1.1 400 "));
    assert!(request(admin, b"GET /nothing HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(request(admin, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    // 1 MiB of header: refused once past 16 KiB, the rest unread.
    let mut huge = TcpStream::connect(admin).expect("connect");
    huge.set_read_timeout(Some(LINE)).expect("timeout");
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(1 << 20, b'a');
    let mut writer = huge.try_clone().expect("clone");
    // The endpoint closes once it answered: the rest of the write may fail.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&head);
    });
    let mut answer = String::new();
    let _ = huge.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    sender.join().expect("sender");
    // Meanwhile the tunnel and the endpoint serve as ever.
    assert_eq!(visit(t.public), DOWN);
    assert!(scrape(admin).contains("porthole_server_visitors_total{service=\"echo\"} 1\n"));
    // The slow request is answered 408 and closed at the head deadline.
    slow.set_read_timeout(Some(LINE + LINE)).expect("timeout");
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert_eq!(visit(t.public), DOWN);
}

/// Every metric `examples/grafana-dashboard.json` queries is one a live server
/// or client exports, and every label it groups by is on that metric.
#[test]
fn the_dashboard_queries_only_what_porthole_exports() {
    let local = up_down_service(1);
    let t = tunnel("metrics-dashboard", local, "");
    assert_eq!(visit(t.public), DOWN);
    let text = scrape(t.server_admin) + &scrape(t.client_admin);
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "found only {queries:?}");
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no metric in {query:?}");
        for name in &names {
            let exported = samples
                .iter()
                .any(|s| s.starts_with(&format!("{name}{{")) || s.starts_with(&format!("{name} ")));
            assert!(
                exported,
                "{query:?} queries {name}, which porthole does not export"
            );
        }
        for label in grouped_by(query).into_iter().filter(|l| *l != "instance") {
            let labelled = samples.iter().any(|s| {
                names.iter().any(|n| s.starts_with(&format!("{n}{{")))
                    && s.contains(&format!("{label}=\""))
            });
            assert!(
                labelled,
                "{query:?} groups by {label}, which {names:?} do not carry"
            );
        }
    }
}

/// The PromQL of every panel target and template variable.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// The `porthole_*` and `process_*` names in a query.
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("porthole_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The labels of every `by (…)` in a query.
fn grouped_by(query: &str) -> Vec<&str> {
    query
        .split("by (")
        .skip(1)
        .filter_map(|rest| rest.split_once(')'))
        .flat_map(|(labels, _)| labels.split(',').map(str::trim))
        .collect()
}

/// A client whose service is the built-in HTTP proxy reports the proxy's
/// counters with its own: here one refused CONNECT (loopback is off limits
/// by default).
#[test]
fn a_clients_builtin_proxy_is_counted_with_it() {
    let pki = Pki::new("metrics-builtin-proxy");
    let (_server, addr, _) = server(&pki, "");
    let config = pki.write(
        "client.ron",
        &format!(
            r#"(server: "{addr}", token: "{TOKEN}", admin: Some("127.0.0.1:0"),
                services: [(name: "web", local: "http-proxy", remote_port: 0)])"#
        ),
    );
    let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    let admin = client.address_after("admin endpoint on http://", LINE);
    let public = client.address_after("is public at ", LINE);
    let answer = request(
        public,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer:?}");
    until(LINE, || {
        let text = scrape(admin);
        let got = [
            must(&text, "porthole_http_proxy_connections_total", &[]),
            must(
                &text,
                "porthole_http_proxy_errors_total",
                &[("status", "403")],
            ),
            must(
                &text,
                "porthole_client_visitors_total",
                &[("service", "web")],
            ),
        ];
        (got == [1.0, 1.0, 1.0])
            .then_some(())
            .ok_or(format!("{got:?}"))
    });
}
