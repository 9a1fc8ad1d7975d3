//! A new user's first hour, against the real binary: signals that must not
//! kill, the retry-or-exit decision per cause, plain logs off a terminal, no
//! false warning when a client leaves, named `--expose`, help, versions, exit
//! codes, TLS implied by its files, and where the token came from.

use crate::common::process::{Proc, porthole as args, run};
use crate::common::tls::{Pki, localhost, new_ca};
use crate::common::*;
use nix::sys::signal::Signal;
use porthole::gencert::Validity;
use std::net::SocketAddr;
use std::time::Duration;

/// Deadline for one expected log line of a long-lived child.
const LINE: Duration = Duration::from_secs(10);

fn server(extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = args(&["server", "--bind", "127.0.0.1:0", "--token", "first-hour"]);
    cmd.args(extra);
    let mut server = Proc::spawn(cmd);
    let addr = server.address_after("listening for clients on ", LINE);
    (server, addr)
}

fn client(server: SocketAddr, extra: &[&str]) -> Proc {
    let mut cmd = args(&["client", "--server", &server.to_string()]);
    cmd.args(["--token", "first-hour"]).args(extra);
    Proc::spawn(cmd)
}

/// SIGHUP and SIGUSR1 are logged, the process lives on, and SIGTERM still
/// ends it with 0.
fn survives_hup_and_usr1(mut proc: Proc, hup_line: &str, usr1_line: &str) {
    proc.signal(Signal::SIGHUP);
    proc.wait_for(hup_line, LINE);
    proc.signal(Signal::SIGUSR1);
    proc.wait_for(usr1_line, LINE);
    assert!(proc.is_running(), "a signal killed it");
    proc.signal(Signal::SIGTERM);
    let (status, log) = proc.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "stderr:\n{log}");
}

#[test]
fn sighup_and_sigusr1_kill_no_role() {
    let ignored = "received SIGUSR1: ignored";
    let (server, addr) = server(&[]);
    let mut client = client(addr, &["--expose", "9"]);
    client.wait_for("is public at", LINE);
    // Server and client reload (from the same flags: nothing changes).
    let reloaded = "config reloaded: no change to apply";
    survives_hup_and_usr1(client, reloaded, ignored);
    survives_hup_and_usr1(server, reloaded, ignored);
    let hup_ignored = "received SIGHUP: ignored";
    let mut forward = Proc::spawn(args(&["forward", "127.0.0.1:0", "127.0.0.1:9"]));
    forward.wait_for("forwarding ", LINE);
    survives_hup_and_usr1(forward, hup_ignored, ignored);
    let mut proxy = Proc::spawn(args(&["http-proxy", "--listen", "127.0.0.1:0"]));
    proxy.wait_for("http proxy listening on", LINE);
    survives_hup_and_usr1(proxy, hup_ignored, "http proxy stats:");
}

#[test]
fn a_client_leaving_cleanly_causes_no_warning_at_the_server() {
    let (mut server, addr) = server(&[]);
    for _ in 0..3 {
        let mut client = client(addr, &["--expose", "9"]);
        client.wait_for("is public at", LINE);
        server.wait_for("registered at port", LINE);
        client.signal(Signal::SIGTERM);
        let (status, log) = client.wait_exit(LINE);
        assert_eq!(status.code(), Some(0), "client stderr:\n{log}");
        server.wait_for("said goodbye", LINE);
    }
    server.signal(Signal::SIGTERM);
    let (status, log) = server.wait_exit(LINE);
    assert_eq!(status.code(), Some(0), "server stderr:\n{log}");
    assert!(
        !log.contains(" WARN ") && !log.contains("ERROR"),
        "server stderr:\n{log}"
    );
}

#[test]
fn a_port_still_in_use_is_retried_for_a_bounded_time_then_exits_one() {
    let (_server, addr) = server(&[]);
    let mut holder = client(addr, &["--expose", "0:9"]);
    let public = holder.address_after("is public at ", LINE);
    let pki = Pki::new("first-hour-port-in-use");
    let config = pki.write(
        "client.ron",
        &format!(
            r#"(server: "{addr}", token: "first-hour", port_in_use_timeout: "1s",
                services: [(name: "again", local: "127.0.0.1:9", remote_port: {})])"#,
            public.port()
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let mut second = Proc::spawn(args(&["client", "-c", &config]));
    second.wait_for("retrying in ", LINE);
    let (status, log) = second.wait_exit(LINE);
    assert_eq!(status.code(), Some(1), "stderr:\n{log}");
    assert!(log.contains("ERROR"), "logged at error:\n{log}");
    assert!(
        log.contains("a port was still in use after") && log.contains("choose another remote_port"),
        "stderr:\n{log}"
    );
    assert!(holder.is_running());
}

#[test]
fn a_refusal_only_the_operator_can_fix_exits_one_with_the_fix() {
    let (_server, addr) = server(&["--allow-ports", "20000-20010"]);
    let mut client = client(addr, &["--expose", "web=30000:9"]);
    let (status, log) = client.wait_exit(LINE);
    assert_eq!(status.code(), Some(1), "stderr:\n{log}");
    assert!(
        log.contains("ERROR") && log.contains("choose a remote_port inside"),
        "stderr:\n{log}"
    );
}

#[test]
fn an_unreachable_server_is_retried_with_rounded_delays() {
    let (_refusing, addr) = services::refusing_address();
    let mut client = client(addr, &["--expose", "9"]);
    // The first loss, then the first failed retry (later ones are folded).
    for needle in ["reconnecting in ", "retrying in "] {
        let rest = client.wait_for(needle, LINE);
        let delay = rest.trim();
        let digits = delay.trim_end_matches("ms").trim_end_matches('s');
        assert!(
            digits.parse::<f64>().is_ok() && digits.split('.').nth(1).is_none_or(|d| d.len() <= 1),
            "a rounded delay, got {delay:?}"
        );
    }
    assert!(client.is_running(), "a transient fault is retried for ever");
}

#[test]
fn logs_off_a_terminal_carry_no_colour() {
    let mut cmd = args(&["demo", "--once"]);
    cmd.env_remove("NO_COLOR").env("PORTHOLE_LOG", "info");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(out.raw_stderr.contains(" INFO "), "{}", out.raw_stderr);
    assert!(!out.raw_stderr.contains('\u{1b}'), "{:?}", out.raw_stderr);
}

#[test]
fn expose_takes_names_so_one_port_can_be_exposed_twice() {
    let (_server, addr) = server(&[]);
    let mut client = client(
        addr,
        &["--expose", "web=9", "--expose", "admin=0:127.0.0.1:9"],
    );
    let mut names = [
        client.wait_for("service ", LINE),
        client.wait_for("service ", LINE),
    ];
    names.sort();
    assert!(names[0].starts_with("admin is public at"), "{names:?}");
    assert!(names[1].starts_with("web is public at"), "{names:?}");
}

#[test]
fn help_version_and_usage_errors() {
    for sub in [
        "server",
        "client",
        "forward",
        "http-proxy",
        "check",
        "gen-cert",
        "demo",
    ] {
        let out = run(args(&[sub, "-h"]));
        assert_eq!(out.status.code(), Some(0), "{sub} -h: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage: porthole"),
            "{sub}: {}",
            out.stdout
        );
    }
    for sub in ["server", "client"] {
        let out = run(args(&[sub, "--help"]));
        assert!(out.stdout.contains("Examples:"), "{sub}: {}", out.stdout);
        assert!(
            out.stdout.contains("implies --tls"),
            "{sub}: {}",
            out.stdout
        );
    }
    let out = run(args(&["gen-cert", "--help"]));
    assert!(
        out.stdout.contains("gen-cert --name <name> ["),
        "{}",
        out.stdout
    );
    let out = run(args(&["--version"]));
    assert_eq!(out.status.code(), Some(0));
    let version = format!("porthole {} (", env!("CARGO_PKG_VERSION"));
    assert!(out.stdout.starts_with(&version), "{}", out.stdout);

    let usage = |cmd: std::process::Command, needle: &str| {
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "stderr: {}", out.stderr);
        assert!(out.stderr.contains(needle), "stderr: {}", out.stderr);
        assert!(!out.stderr.contains("ERROR"), "stderr: {}", out.stderr);
    };
    usage(
        args(&["gen-cert", "--name", "x", "--days", "0"]),
        "--days 0",
    );
    usage(args(&["server", "--bogus"]), "porthole server --help");
    usage(args(&[]), "porthole --help");
    let mut cmd = args(&["server", "--bind", "127.0.0.1:0", "--token", "t"]);
    cmd.env("PORTHOLE_LOG", "verbose");
    usage(cmd, "error, warn, info, debug, trace");
    let cmd = args(&["client", "--server", "127.0.0.1:9", "--token", "t"]);
    usage(cmd, "add --expose 8080");
    usage(
        args(&[
            "client",
            "--server",
            "127.0.0.1:9",
            "--token",
            "t",
            "--expose",
            "=9",
        ]),
        "NAME=",
    );
}

#[test]
fn tls_is_implied_by_its_files_on_both_sides() {
    let pki = Pki::new("first-hour-implied-tls");
    let ca = new_ca();
    let leaf = ca
        .server(&localhost(), Validity::days(1))
        .expect("server certificate");
    let (cert, key) = pki.pair("server", &leaf);
    let ca_file = pki.write("ca.crt", &ca.pem.cert);
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (_server, addr) = server(&["--cert", &path(&cert), "--key", &path(&key)]);
    let ca_file = path(&ca_file);
    let mut client = client(
        addr,
        &[
            "--ca",
            &ca_file,
            "--server-name",
            "localhost",
            "--expose",
            "9",
        ],
    );
    client.wait_for("is public at", LINE);
}

#[test]
fn the_token_source_is_logged_and_the_token_never() {
    let pki = Pki::new("first-hour-token-source");
    let config = pki.write(
        "server.ron",
        r#"(bind: "127.0.0.1:0", token: "from-the-file")"#,
    );
    let config = config.to_string_lossy().into_owned();
    let mut cmd = args(&["server", "-c", &config]);
    cmd.env("PORTHOLE_TOKEN", "from-the-environment");
    let mut server = Proc::spawn(cmd);
    let line = server.wait_for("token from PORTHOLE_TOKEN", LINE);
    assert!(line.contains("overrides any token in"), "{line}");
    server.wait_for("listening for clients on ", LINE);
    server.signal(Signal::SIGTERM);
    let (_, log) = server.wait_exit(LINE);
    assert!(
        !log.contains("from-the-environment") && !log.contains("from-the-file"),
        "{log}"
    );
}

#[test]
fn a_tls_refusal_only_the_operator_can_fix_exits_one_with_one_error_line() {
    let pki = Pki::new("first-hour-tls-refusal");
    let ca = new_ca();
    let leaf = ca
        .server(&localhost(), Validity::days(1))
        .expect("server certificate");
    let (cert, key) = pki.pair("server", &leaf);
    let stranger = pki.write("stranger.crt", &new_ca().pem.cert);
    let stranger = stranger.to_string_lossy().into_owned();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (_tls_server, tls_addr) = server(&["--cert", &path(&cert), "--key", &path(&key)]);
    let (_plain_server, plain_addr) = server(&[]);
    let trusted = path(&pki.write("ca.crt", &ca.pem.cert));
    let cases = [
        (
            tls_addr,
            vec!["--ca", &stranger],
            "not signed by the CA you trust",
        ),
        (tls_addr, vec!["--ca", &trusted], "not 127.0.0.1"),
        (plain_addr, vec!["--ca", &trusted], "does not speak TLS"),
        (tls_addr, vec![], "the server speaks TLS"),
    ];
    for (addr, flags, needle) in cases {
        let mut flags = flags.clone();
        flags.extend(["--expose", "9"]);
        let (status, log) = client(addr, &flags).wait_exit(LINE);
        assert_eq!(status.code(), Some(1), "{needle}: stderr:\n{log}");
        assert!(log.contains(needle), "{needle}: stderr:\n{log}");
        assert!(!log.contains("retrying"), "{needle}: not retried:\n{log}");
        assert_eq!(
            log.matches("ERROR").count(),
            1,
            "{needle}: one error line:\n{log}"
        );
    }
}

#[test]
fn check_prints_ron_and_an_expired_certificate_as_an_error_with_its_date() {
    let pki = Pki::new("first-hour-check-expired");
    let ca = new_ca();
    let leaf = ca
        .server(&localhost(), Validity::expired())
        .expect("certificate");
    let (cert, key) = pki.pair("server", &leaf);
    let config = pki.write(
        "server.ron",
        &format!(
            r#"(bind: "127.0.0.1:0", token: "t", allow_ports: [(18000, 18100)],
                transport: Tls(cert: "{}", key: "{}"))"#,
            cert.display(),
            key.display()
        ),
    );
    let out = run(args(&["check", "-c", &config.to_string_lossy()]));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("allow_ports: [(18000, 18100)]"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("..="), "{}", out.stdout);
    let yesterday = Validity::expired().not_after.date().to_string();
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("expired") && out.stderr.contains(&yesterday),
        "{yesterday} in {}",
        out.stderr
    );
}
