//! `porthole status`, the real binary against an admin endpoint played by the
//! test: a loopback listener that answers one request with a canned answer
//! (the roles' own endpoints are tested with the roles), and records the
//! request it got.

use crate::common::process::{Output, porthole as args, run};
use crate::common::refusing_address;
use crate::common::tls::Pki;
use porthole::admin::status::{ClientStatus, ServiceStatus, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the fake endpoint waits for the request: the command's own deadline
/// is [`COMMAND_DEADLINE`](crate::common::process::COMMAND_DEADLINE).
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// A server's status with one client and two services (canned: its
/// addresses are documentation ones, RFC 5737, never dialled).
fn two_services() -> Status {
    let service = |name: &str, public: &str| ServiceStatus {
        name: name.to_owned(),
        state: "serving".to_owned(),
        public: Some(public.to_owned()),
        client: Some("192.0.2.7:40000".to_owned()),
        ..ServiceStatus::default()
    };
    Status {
        role: "server".to_owned(),
        version: porthole::VERSION.to_owned(),
        pid: 4242,
        uptime_seconds: 125,
        healthy: true,
        listen: Some("192.0.2.1:7000".to_owned()),
        clients: vec![ClientStatus {
            session: "637eb585".to_owned(),
            address: "192.0.2.7:40000".to_owned(),
            transport: "tcp".to_owned(),
            services: vec!["web".to_owned(), "ssh".to_owned()],
            ..ClientStatus::default()
        }],
        services: vec![
            service("web", "0.0.0.0:10080"),
            service("ssh", "0.0.0.0:10022"),
        ],
        ..Status::default()
    }
}

/// An endpoint that answers one connection with `status_line` and `body`;
/// its thread returns the request head it read.
fn fake_endpoint(status_line: &str, body: &str) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("address");
    let response = format!(
        "{status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept porthole status");
        stream
            .set_read_timeout(Some(REQUEST_DEADLINE))
            .expect("read timeout");
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).expect("read the request") == 1
        {
            head.push(byte[0]);
        }
        stream
            .write_all(response.as_bytes())
            .expect("write the answer");
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, thread)
}

fn status_of(addr: SocketAddr, extra: &[&str]) -> Output {
    let addr = addr.to_string();
    let mut argv = vec!["status", "--admin", addr.as_str()];
    argv.extend_from_slice(extra);
    run(args(&argv))
}

#[test]
fn status_prints_the_table_with_every_service_after_a_plain_get() {
    let body = serde_json::to_string_pretty(&two_services()).expect("serialise");
    let (addr, endpoint) = fake_endpoint("HTTP/1.1 200 OK", &body);
    let out = status_of(addr, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    let table = &out.stdout;
    assert!(table.starts_with("porthole server "), "{table}");
    assert!(
        table.contains("SERVICE") && table.contains("STATE"),
        "{table}"
    );
    for name in ["web", "ssh"] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "a row for {name}: {table}"
        );
    }
    let request = endpoint.join().expect("endpoint thread");
    assert_eq!(
        request,
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
    );
}

#[test]
fn status_json_parses_back_to_the_status_served() {
    let status = two_services();
    let body = serde_json::to_string(&status).expect("serialise");
    let (addr, endpoint) = fake_endpoint("HTTP/1.1 200 OK", &body);
    let out = status_of(addr, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    let parsed: Status = serde_json::from_str(&out.stdout).expect("stdout is a status");
    assert_eq!(parsed, status);
    endpoint.join().expect("endpoint thread");
}

#[test]
fn status_reads_the_admin_address_from_a_config_file() {
    let body = serde_json::to_string(&two_services()).expect("serialise");
    let (addr, endpoint) = fake_endpoint("HTTP/1.1 200 OK", &body);
    let dir = Pki::new("status-config");
    let config = format!(
        "(forwards: [(listen: \"127.0.0.1:0\", target: \"127.0.0.1:1\")], admin: Some(\"{addr}\"))"
    );
    let path = dir.write("forward.ron", &config);
    let out = run(args(&["status", "-c", &path.to_string_lossy()]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("web"), "{}", out.stdout);
    endpoint.join().expect("endpoint thread");
}

#[test]
fn status_with_nothing_listening_exits_one_and_says_how_to_turn_it_on() {
    // Bound, never listening: refused, and nobody can take the port meanwhile.
    let (_socket, addr) = refusing_address();
    let out = status_of(addr, &[]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", out.stdout);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: nothing answers at {addr}: is porthole running with admin: Some(\"{addr}\") / --admin? (connection refused)"
        )
    );
}

#[test]
fn status_answered_with_an_error_or_not_a_status_exits_one() {
    let (addr, endpoint) = fake_endpoint("HTTP/1.1 503 Service Unavailable", "draining\n");
    let out = status_of(addr, &[]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("503 Service Unavailable"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    endpoint.join().expect("endpoint thread");

    let (addr, endpoint) = fake_endpoint("HTTP/1.1 200 OK", "<html>hello</html>");
    let out = status_of(addr, &[]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("not a porthole status"),
        "{}",
        out.stderr
    );
    endpoint.join().expect("endpoint thread");
}

#[test]
fn status_with_a_malformed_address_is_a_usage_error_naming_the_flag() {
    let out = run(args(&["status", "--admin", "127.0.0.1"]));
    assert_eq!(out.status.code(), Some(2), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("--admin \"127.0.0.1\""),
        "{}",
        out.stderr
    );
}
