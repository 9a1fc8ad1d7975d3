//! The real binaries: `porthole client --server A --server B` keeps a
//! session with each; `porthole status`, `/status`, `/healthz` and
//! `/metrics` show each server's session, and follow one server's loss
//! while the other serves; a reload's new service reaches both servers.

use crate::common::admin::{get, must, scrape, until};
use crate::common::process::{Proc, porthole as args, run};
use crate::common::tls::Pki;
use nix::sys::signal::Signal::SIGHUP;
use porthole::admin::Status;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Deadline for one expected log line or state.
const LINE: Duration = Duration::from_secs(10);
const TOKEN: &str = "several-servers-test-token";

/// A server on `127.0.0.1:0`; killed when dropped.
fn server(pki: &Pki, name: &str) -> (Proc, SocketAddr) {
    let config = pki.write(
        &format!("{name}.ron"),
        &format!(r#"(bind: "127.0.0.1:0", token: "{TOKEN}")"#),
    );
    let mut server = Proc::spawn(args(&["server", "-c", &config.to_string_lossy()]));
    let addr = server.address_after("listening for clients on ", LINE);
    (server, addr)
}

/// A local service nobody visits here: its address only has to resolve.
fn local() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind local service");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// Waits for `name` to be public at each of `servers` (any order): the
/// servers' addresses as the log lines name them.
fn registered(client: &mut Proc, name: &str, count: usize) -> Vec<String> {
    let mut servers: Vec<String> = (0..count)
        .map(|_| {
            let rest = client.wait_for(&format!("service {name} is public at "), LINE);
            let server = rest.rsplit_once("(server ").map(|(_, s)| s);
            server
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("no server named in {rest:?}"))
                .to_owned()
        })
        .collect();
    servers.sort();
    servers
}

fn status(admin: SocketAddr) -> Status {
    let (code, body) = get(admin, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// Each server's state in `status`, in config order.
fn states(status: &Status) -> Vec<(String, String)> {
    let each = status.servers.iter();
    each.map(|s| (s.address.clone(), s.state.clone())).collect()
}

#[test]
fn status_shows_each_server_of_a_client_given_several_and_follows_each() {
    let pki = Pki::new("several-status");
    let (a, a_addr) = server(&pki, "a");
    let (b, b_addr) = server(&pki, "b");
    let (_service, local) = local();
    let (a_text, b_text) = (a_addr.to_string(), b_addr.to_string());
    let expose = format!("echo=0:{local}");
    let mut client = Proc::spawn(args(&[
        "client",
        "--server",
        &a_text,
        "--server",
        &b_text,
        "--token",
        TOKEN,
        "--expose",
        &expose,
        "--admin",
        "127.0.0.1:0",
    ]));
    let admin = client.address_after("admin endpoint on http://", LINE);
    let mut both = vec![a_text.clone(), b_text.clone()];
    both.sort();
    assert_eq!(registered(&mut client, "echo", 2), both);

    let connected = |s: &str| (s.to_owned(), "connected".to_owned());
    let want = vec![connected(&a_text), connected(&b_text)];
    // The log line of a registration comes just before the status takes
    // it in: wait for the service's state as well as the links'.
    let all_up = until(LINE, || {
        let st = status(admin);
        let got = states(&st);
        let service = st.services.first().map(|s| s.state.clone());
        if got == want && service.as_deref() == Some("serving") {
            Ok(st)
        } else {
            Err(format!("{got:?}, service {service:?}"))
        }
    });
    assert_eq!(all_up.upstream, Some(format!("{a_text}, {b_text}")));
    assert_eq!(all_up.services[0].state, "serving");
    let out = run(args(&["status", "--admin", &admin.to_string()]));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    for server in [&a_text, &b_text] {
        let row = out.stdout.lines().find(|l| l.starts_with(server.as_str()));
        let row = row.unwrap_or_else(|| panic!("no row for {server}:\n{}", out.stdout));
        assert!(row.contains("connected") && row.contains("echo"), "{row}");
    }

    // One server gone: its session shows it, the other's does not, and the
    // client stays healthy (the other still serves every service).
    drop(b);
    let (a_label, b_label) = ([("server", a_text.as_str())], [("server", b_text.as_str())]);
    let down = until(LINE, || {
        let st = status(admin);
        let b_state = st
            .servers
            .get(1)
            .map(|s| s.state.clone())
            .unwrap_or_default();
        b_state
            .starts_with("reconnecting: ")
            .then_some(st)
            .ok_or(b_state)
    });
    assert_eq!(down.servers[0].state, "connected");
    assert_eq!(down.services[0].state, "serving at 1 of 2 servers");
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_owned()));
    let text = scrape(admin);
    assert_eq!(must(&text, "porthole_client_connected", &a_label), 1.0);
    assert_eq!(must(&text, "porthole_client_connected", &b_label), 0.0);
    assert_eq!(
        must(&text, "porthole_client_services_registered", &a_label),
        1.0
    );
    drop(a);
}

#[test]
fn a_reload_registers_a_new_service_with_every_server() {
    let pki = Pki::new("several-reload");
    let (_a, a_addr) = server(&pki, "a");
    let (_b, b_addr) = server(&pki, "b");
    let (_first, first) = local();
    let (_second, second) = local();
    let text = |services: &str| {
        format!(r#"(server: ["{a_addr}", "{b_addr}"], token: "{TOKEN}", services: [{services}])"#)
    };
    let web = format!(r#"(name: "web", local: "{first}")"#);
    let config = pki.write("client.ron", &text(&web));
    let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    let mut both = vec![a_addr.to_string(), b_addr.to_string()];
    both.sort();
    assert_eq!(registered(&mut client, "web", 2), both);
    let more = format!(r#"{web}, (name: "second", local: "{second}")"#);
    std::fs::write(&config, text(&more)).expect("write the config");
    client.signal(SIGHUP);
    assert_eq!(registered(&mut client, "second", 2), both);
}
