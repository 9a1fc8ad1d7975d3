//! The real `porthole` binary: exit codes and messages of every subcommand, and a
//! tunnel made of a server process and a client process carrying 8 MiB each way.
//!
//! Every child process is owned by a [`Proc`] guard that kills and reaps it on drop;
//! its stderr is read by a thread into a channel, so a test waits for a log line
//! with a deadline instead of sleeping, and a chatty child never blocks on a full
//! pipe.

use crate::common::fixtures::expected_error;
use crate::common::process::{Proc, porthole as args, run};
use crate::common::*;
use std::net::SocketAddr;
use std::path::Path;

#[test]
fn help_exits_zero_and_lists_the_subcommands() {
    let out = run(args(&["--help"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    for sub in ["server", "client", "check", "demo"] {
        assert!(
            out.stdout.contains(sub),
            "help mentions {sub}: {}",
            out.stdout
        );
    }
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_code_two() {
    let out = run(args(&["server", "--no-such-flag"]));
    assert_eq!(out.status.code(), Some(2), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("--no-such-flag"),
        "names the flag: {}",
        out.stderr
    );
}

#[test]
fn check_accepts_the_example_server_config_and_masks_its_token() {
    let path = "examples/server.ron";
    let token = token_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
    let out = run(args(&["check", "-c", path]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("valid server config"), "{}", out.stdout);
    assert!(
        out.stdout.contains("********"),
        "token shown masked: {}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&token) && !out.stderr.contains(&token),
        "the token {token:?} leaked into the output"
    );
}

/// The value of the (uncommented) `token: "..."` line of a RON file.
fn token_in(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read example config");
    let token = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("token:"))
        .find_map(|line| line.split('"').nth(1))
        .expect("the example sets a token");
    // A one- or two-character token would show up in any output by accident.
    assert!(
        token.len() >= 4,
        "example token {token:?} too short to test masking"
    );
    token.to_owned()
}

#[test]
fn check_rejects_an_unknown_field_naming_the_file_line_and_column() {
    let path = "tests/fixtures/config/invalid/server_unknown_field.ron";
    let out = run(args(&["check", "-c", path]));
    assert_eq!(out.status.code(), Some(2), "stdout: {}", out.stdout);
    // The fixture's first line says where the error is: `// expect: L:C: ...`.
    let expect = expected_error(path);
    let mut parts = expect.splitn(3, ':');
    let (line, col) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert!(
        line.parse::<usize>().is_ok() && col.parse::<usize>().is_ok(),
        "fixture expectation starts with line:col: {expect}"
    );
    let position = format!("{path}:{line}:{col}:");
    assert!(
        out.stderr.contains(&position),
        "stderr names {position}: {}",
        out.stderr
    );
    assert!(out.stderr.contains("unknown field"), "{}", out.stderr);
}

#[test]
fn server_without_a_token_refuses_to_start_and_mentions_insecure_no_auth() {
    let out = run(args(&["server", "--bind", "127.0.0.1:0"]));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("--insecure-no-auth"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("listening for clients"),
        "{}",
        out.stderr
    );
}

#[test]
fn demo_once_answers_every_request_and_exits_zero() {
    let out = run(args(&["demo", "--once"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("40/40 requests answered"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------- long-running processes

/// `porthole server` on `127.0.0.1:0`; returns it and the address it reports.
fn server_process(token: &str) -> (Proc, SocketAddr) {
    let mut server = Proc::spawn(args(&["server", "--bind", "127.0.0.1:0", "--token", token]));
    let addr = server.address_after("listening for clients on ", PROMPTLY * 2);
    (server, addr)
}

/// `porthole client --expose LOCAL_PORT`; returns it and the public address it logs.
fn client_process(server: SocketAddr, token: &str, local_port: u16) -> (Proc, SocketAddr) {
    let mut cmd = args(&["client", "--server", &server.to_string(), "--expose"]);
    cmd.arg(local_port.to_string());
    cmd.env("PORTHOLE_TOKEN", token);
    let mut client = Proc::spawn(cmd);
    let needle = format!("service port-{local_port} is public at ");
    let public = client.address_after(&needle, PROMPTLY * 2);
    (client, public)
}

#[test]
fn server_and_client_processes_carry_eight_mib_each_way_intact() {
    run_test(async {
        let service = echo_service().await;
        let port = service.addr.port();
        // Waiting on a child's stderr blocks; do it off the async thread.
        let (server, client, public) = smol::unblock(move || {
            let (server, addr) = server_process("process-token");
            let (client, public) = client_process(addr, "process-token", port);
            (server, client, public)
        })
        .await;
        assert_echoes(public, 0xb1, 8 * 1024 * 1024).await;
        drop((client, server));
    });
}

#[test]
fn client_process_with_a_wrong_token_exits_one_while_a_good_client_is_served() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        let server = t.server.addr;
        let local = echo_service().await.addr.port();
        let (status, log) = smol::unblock(move || {
            let mut cmd = args(&["client", "--server", &server.to_string()]);
            cmd.args(["--token", "wrong-token", "--expose", &local.to_string()]);
            Proc::spawn(cmd).wait_exit(PROMPTLY * 2)
        })
        .await;
        assert_eq!(status.code(), Some(1), "stderr:\n{log}");
        assert!(log.contains("authentication failed"), "stderr:\n{log}");
        assert!(!log.contains("is public at"), "stderr:\n{log}");
        assert_echoes(t.public, 0xb2, 100_000).await;
        t.stop().await;
    });
}

#[test]
fn gen_cert_writes_a_usable_bundle_and_never_overwrites() {
    let dir = std::env::temp_dir().join(format!("porthole-gen-cert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_string_lossy().into_owned();
    let gen_args = [
        "gen-cert",
        "--name",
        "localhost",
        "--out",
        &out_dir,
        "--client",
    ];
    let out = run(args(&gen_args));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    for file in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    assert!(
        out.stdout.contains("transport: Tls(cert:"),
        "{}",
        out.stdout
    );
    // The printed server line, pasted into a config, passes `check`.
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("transport: Tls(cert:"))
        .expect("server transport line");
    let config = dir.join("server.ron");
    let text = format!(
        "(bind: \"127.0.0.1:0\", token: \"t\", {})",
        line.trim().trim_end_matches(',')
    );
    std::fs::write(&config, text).expect("write config");
    let check = run(args(&["check", "-c", &config.to_string_lossy()]));
    assert_eq!(check.status.code(), Some(0), "check: {}", check.stderr);
    // A second run into the same directory refuses and leaves the files alone.
    let before = std::fs::read(dir.join("ca.key")).expect("ca.key");
    let again = run(args(&gen_args));
    assert_eq!(again.status.code(), Some(2), "stdout: {}", again.stdout);
    assert!(again.stderr.starts_with("error: "), "{}", again.stderr);
    assert!(again.stderr.contains("not overwriting"), "{}", again.stderr);
    assert_eq!(std::fs::read(dir.join("ca.key")).expect("ca.key"), before);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
