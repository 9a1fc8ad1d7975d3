//! Several servers behind a real load balancer, as the README's scaling-out
//! guide sets them up: two `porthole server`s behind haproxy (`mode tcp`,
//! `send-proxy-v2`, health checks on `/healthz`, redispatch), one client
//! registered with both, and a local service that checks each visitor's
//! address in the PROXY header the client writes. One server is killed with
//! SIGKILL under steady load and restarted.
//!
//! haproxy's listening socket comes from the test (see `common::peers`).
//! The servers listen on 127.0.0.2 and 127.0.0.3, so each binds its public
//! port on an address of its own. The restarted server binds its own
//! previous addresses again, as a restarted server does (the liveness tests
//! do the same).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::admin::scrape;
use crate::common::peers::{self, Scratch};
use crate::common::process::{Proc, porthole as args};

const TOKEN: &str = "balancer-test-token";
/// Deadline for one expected log line.
const LINE: Duration = Duration::from_secs(10);
/// How long visitors arrive, one every [`PACE`].
const STEADY: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(20);
/// Echo rounds per visitor, [`ROUND_GAP`] apart: each visitor is in flight
/// for about 200 ms, so some are on the server when it is killed.
const ROUNDS: usize = 5;
const ROUND_GAP: Duration = Duration::from_millis(40);
/// The v2 signature and the TCP4 header length (16 + 12).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_TCP4_LEN: usize = 28;

/// A local service that reads the PROXY v2 header the client writes, answers
/// `FROM <source>`, then echoes lines.
fn checking_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let addr = listener.local_addr().expect("service address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut h = [0u8; V2_TCP4_LEN];
                if stream.read_exact(&mut h).is_err() {
                    return;
                }
                let source = match (&h[..12] == V2_SIGNATURE, h[12], h[13]) {
                    (true, 0x21, 0x11) => SocketAddr::from((
                        [h[16], h[17], h[18], h[19]],
                        u16::from_be_bytes([h[24], h[25]]),
                    ))
                    .to_string(),
                    _ => format!("bad header {h:02x?}"),
                };
                if writeln!(stream, "FROM {source}").is_err() {
                    return;
                }
                let mut out = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut stream, &mut out);
            });
        }
    });
    addr
}

/// One porthole server on `ip`, trusting loopback balancers; `fixed` binds
/// the control and admin ports and the one public port of a previous run.
struct Server {
    proc: Proc,
    control: SocketAddr,
    admin: SocketAddr,
}

fn server(dir: &Scratch, name: &str, ip: &str, fixed: Option<(&Server, u16)>) -> Server {
    let (bind, admin, ports) = match fixed {
        Some((old, port)) => (old.control, old.admin, format!("[({port}, {port})]")),
        None => (
            format!("{ip}:0").parse().expect("ip"),
            format!("{ip}:0").parse().expect("ip"),
            "[(1024, 65535)]".to_owned(),
        ),
    };
    let text = format!(
        r#"(bind: "{bind}", token: "{TOKEN}", admin: Some("{admin}"), allow_ports: {ports},
           accept_proxy_protocol: (from: ["127.0.0.0/8"]), drain_timeout: "1s",
           reconnect_grace: "0s")"#
    );
    let config = dir.path().join(format!("{name}.ron"));
    std::fs::write(&config, text).expect("server config");
    let mut proc = Proc::spawn(args(&["server", "-c", &config.to_string_lossy()]));
    let admin = proc.address_after("admin endpoint on http://", LINE);
    let control = proc.address_after("listening for clients on ", LINE);
    Server {
        proc,
        control,
        admin,
    }
}

fn haproxy_config(fd: i32, backends: &[(&str, SocketAddr, SocketAddr)]) -> String {
    let servers: String = backends
        .iter()
        .map(|(name, public, admin)| {
            format!("    server {name} {public} check port {}\n", admin.port())
        })
        .collect();
    format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode tcp\n    timeout connect 500ms\n    timeout client 30s\n    timeout server 30s\n\
         \x20   retries 3\n    option redispatch 1\n\
         frontend visitors\n    bind fd@{fd}\n    default_backend porthole\n\
         backend porthole\n    balance leastconn\n    option httpchk GET /healthz\n\
         \x20   default-server send-proxy-v2 inter 250ms fall 1 rise 1\n{servers}"
    )
}

/// What one visitor saw: when it started and ended, and how it went.
struct Visit {
    start: Instant,
    end: Instant,
    result: Result<(), String>,
}

/// Connects through the balancer, checks that the service saw its own
/// address, then echoes [`ROUNDS`] lines [`ROUND_GAP`] apart.
fn visitor(front: SocketAddr, n: usize) -> Result<(), String> {
    let stream = TcpStream::connect(front).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(LINE))
        .map_err(|e| e.to_string())?;
    let me = stream.local_addr().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("greeting: {e}"))?;
    if line != format!("FROM {me}\n") {
        return Err(format!("the service saw {line:?}, not {me}"));
    }
    for round in 0..ROUNDS {
        let sent = format!("visitor {n} round {round}\n");
        writer
            .write_all(sent.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("echo: {e}"))?;
        if line != sent {
            return Err(format!("echo {line:?}"));
        }
        std::thread::sleep(ROUND_GAP); // ok-sleep: pacing a visitor, not waiting for a state
    }
    Ok(())
}

/// Starts visitors at a steady pace for [`STEADY`]; their results arrive on
/// the returned channel.
fn steady_load(front: SocketAddr) -> mpsc::Receiver<Visit> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut n = 0;
        while began.elapsed() < STEADY {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let result = visitor(front, n);
                let _ = tx.send(Visit {
                    start,
                    end: Instant::now(),
                    result,
                });
            });
            n += 1;
            std::thread::sleep(PACE); // ok-sleep: the load's steady rate
        }
    });
    rx
}

/// The public address the client logs for `web` at each server, by IP.
fn publics(client: &mut Proc, n: usize) -> Vec<SocketAddr> {
    let mut found: Vec<SocketAddr> = (0..n)
        .map(|_| client.address_after("service web is public at ", LINE))
        .collect();
    found.sort();
    found
}

/// haproxy in front of `backends` (name, public port, admin endpoint), on a
/// listener it inherits; the address visitors use.
fn start_haproxy(
    bin: &std::path::Path,
    dir: &Scratch,
    backends: &[(&str, SocketAddr, SocketAddr)],
) -> (Proc, TcpListener, SocketAddr) {
    let (listener, front) = peers::inheritable_listener();
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(listener.as_raw_fd(), backends)).expect("config");
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&config);
    let proc = Proc::spawn(cmd);
    peers::stop_inheriting(&[&listener]);
    (proc, listener, front)
}

#[test]
fn a_killed_server_behind_haproxy_loses_only_its_visitors_in_flight_and_comes_back() {
    let test = "balancer";
    let Some(haproxy) = peers::program("haproxy", test) else {
        return;
    };
    let dir = Scratch::new("balancer", test);
    let mut a = server(&dir, "a", "127.0.0.2", None);
    let b = server(&dir, "b", "127.0.0.3", None);
    let local = checking_service();
    let expose = format!("web=0:{local},proxy-protocol=v2");
    let mut client = Proc::spawn(args(&[
        "client",
        "--server",
        &a.control.to_string(),
        "--server",
        &b.control.to_string(),
        "--token",
        TOKEN,
        "--expose",
        &expose,
    ]));
    let [public_a, public_b] = publics(&mut client, 2)[..] else {
        unreachable!("two addresses")
    };
    assert_eq!(
        (public_a.ip(), public_b.ip()),
        (a.control.ip(), b.control.ip())
    );
    let backends = [("a", public_a, a.admin), ("b", public_b, b.admin)];
    let (_haproxy, _front_listener, front) = start_haproxy(&haproxy, &dir, &backends);
    // haproxy starts with both up; one visitor proves the whole path.
    visitor(front, usize::MAX).expect("a first visitor through haproxy");

    let load = steady_load(front);
    std::thread::sleep(STEADY / 4); // ok-sleep: let the steady load run before the kill
    let killed = Instant::now();
    a.proc.kill9();
    let (_, _) = a.proc.wait_exit(LINE);
    let dead = Instant::now();
    std::thread::sleep(STEADY / 4); // ok-sleep: the outage, under load
    let old = a;
    let a = server(&dir, "a2", "127.0.0.2", Some((&old, public_a.port())));
    let up = Instant::now();
    let again = client.address_after("service web is public at ", LINE);
    let back = up.elapsed();
    assert_eq!(again, public_a, "the same port at the restarted server");
    eprintln!(
        "restarted server a: the client registered again {back:?} after it listened ({again})"
    );
    assert!(
        back < Duration::from_secs(2),
        "registered again only after {back:?}"
    );

    let visits: Vec<Visit> = load.iter().collect();
    let failed: Vec<&Visit> = visits.iter().filter(|v| v.result.is_err()).collect();
    let in_flight = visits
        .iter()
        .filter(|v| v.start < dead && v.end > killed)
        .count();
    eprintln!(
        "{} visitors, {} failed, {in_flight} in flight when server a was killed",
        visits.len(),
        failed.len()
    );
    for v in &failed {
        assert!(
            v.start < dead && v.end > killed,
            "a visitor not in flight at the kill failed: {:?}",
            v.result
        );
    }
    assert!(failed.len() <= in_flight);
    assert!(visits.len() >= 400, "only {} visitors", visits.len());
    // The restarted server takes visitors again once haproxy sees it healthy.
    let served_by_a = || -> f64 {
        let text = scrape(a.admin);
        text.lines()
            .filter(|l| l.starts_with("porthole_server_visitors_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + LINE;
    while served_by_a() == 0.0 {
        assert!(
            Instant::now() < deadline,
            "haproxy never sent a visitor to the restarted server"
        );
        visitor(front, usize::MAX - 1).expect("a visitor after the restart");
    }
    drop(b);
}
