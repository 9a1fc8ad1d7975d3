//! Config mistakes as the real binary reports them: `porthole check` and every
//! role's `-c` exit with code 2 and print exactly one line, naming the file (and
//! the line and column when the mistake has a place) and what to write instead.

use crate::common::fixtures::expected_error;
use crate::common::process::{porthole as args, run};

const FOREIGN: &str = "tests/fixtures/config/foreign";
const INVALID: &str = "tests/fixtures/config/invalid";

/// Runs porthole with `argv`; asserts exit code 2 and stderr `error: {want}`.
fn fails_with(argv: &[&str], want: &str) {
    let out = run(args(argv));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{argv:?}: stdout {:?}, stderr {:?}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stderr, format!("error: {want}\n"), "{argv:?}");
    assert_eq!(out.stdout, "", "{argv:?}");
}

#[test]
fn check_says_a_rathole_or_frp_file_is_toml_and_names_the_example_for_its_role() {
    for (file, role) in [
        ("rathole-server.toml", "server"),
        ("rathole-client.toml", "client"),
        ("frps.toml", "server"),
        ("frpc.toml", "client"),
    ] {
        let path = format!("{FOREIGN}/{file}");
        let want = format!(
            "{path}: this looks like TOML; porthole configs are RON, see examples/{role}.ron"
        );
        fails_with(&["check", "-c", &path], &want);
    }
}

#[test]
fn every_role_s_command_names_its_own_example_for_a_file_that_is_not_ron() {
    for (command, file, format) in [
        ("server", "frpc.toml", "TOML"),
        ("client", "rathole-server.toml", "TOML"),
        ("forward", "frps.json", "JSON"),
        ("http-proxy", "frpc.yaml", "YAML"),
    ] {
        let path = format!("{FOREIGN}/{file}");
        let want = format!(
            "{path}: this looks like {format}; porthole configs are RON, see examples/{command}.ron"
        );
        fails_with(&[command, "-c", &path], &want);
    }
}

#[test]
fn vague_values_are_named_with_file_line_column_and_the_fix() {
    // Each fixture's first line is `// expect: LINE:COL: MESSAGE`, the whole message.
    for file in [
        "client_local_port_only.ron",
        "client_local_port_name.ron",
        "client_remote_port_out_of_range.ron",
        "client_pool_size_huge.ron",
        "client_server_no_host.ron",
        "server_allow_ports_out_of_range.ron",
        "server_bind_no_port.ron",
        "server_max_services_huge.ron",
        "server_workers_negative.ron",
        "forward_listen_bare_ipv6.ron",
        "forward_target_no_host.ron",
        "http_proxy_listen_port_range.ron",
        "http_proxy_listen_url.ron",
        "http_proxy_max_connections_huge.ron",
    ] {
        let path = format!("{INVALID}/{file}");
        let expect = expected_error(&path);
        fails_with(&["check", "-c", &path], &format!("{path}:{expect}"));
    }
}

#[test]
fn the_server_command_reports_an_out_of_range_port_as_check_does() {
    let path = format!("{INVALID}/server_allow_ports_out_of_range.ron");
    let want = format!("{path}:5:27: allow_ports 70000 is out of range: a port is 1–65535");
    fails_with(&["server", "-c", &path], &want);
    let path = format!("{INVALID}/client_remote_port_out_of_range.ron");
    let want = format!(
        "{path}:6:61: remote_port 70000 is out of range: a port is 1–65535 (0 or omitted lets the server pick)"
    );
    fails_with(&["client", "-c", &path], &want);
}
