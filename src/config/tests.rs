//! Unit tests of the config module: positions, defaults, masking. The fixture
//! files are walked by `tests/config_fixtures.rs` through the public API; the
//! shipped examples by `cli::check`'s tests (they need every feature), and
//! durations by `duration.rs`'s.

use super::locate::value_positions;
use super::*;

#[test]
fn secrets_are_masked() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "******** ********");
    assert_eq!(secret.expose(), "hunter2");
    let config = parse::<ServerConfig>(
        r#"(bind: "127.0.0.1:0", token: "hunter2")"#,
        Path::new("s.ron"),
    );
    let config = config.expect("parses");
    // The raw struct keeps the source text; its Debug must not print it.
    assert!(!format!("{config:?}").contains("hunter2"));
    let settings = config.validate().expect("valid");
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[test]
fn duration_must_be_a_string() {
    let text = "(bind: \"127.0.0.1:0\", token: \"t\", visitor_timeout: 10)";
    let err = parse::<ServerConfig>(text, Path::new("s.ron")).expect_err("integer duration");
    assert!(
        err.to_string()
            .contains("a duration string such as \"10s\""),
        "{err}"
    );
}

#[test]
fn validation_error_has_line_and_column() {
    let text = "(\n  bind: \"127.0.0.1:0\",\n  // token: \"old\",\n  token: \"\", // empty\n)";
    let err = parse::<ServerConfig>(text, Path::new("s.ron")).and_then(ServerConfig::validate);
    let err = err.expect_err("empty token");
    assert_eq!((err.line, err.column), (4, 10));
    assert!(
        err.to_string().starts_with("s.ron:4:10: token is empty"),
        "{err}"
    );
}

#[test]
fn command_line_errors_have_no_position() {
    let err = ServerConfig::new("127.0.0.1:0")
        .validate()
        .expect_err("no token");
    assert_eq!(err.to_string().split(':').next(), Some(COMMAND_LINE));
    assert!(
        err.to_string()
            .starts_with("<command line>: token is empty"),
        "{err}"
    );
    let err = ClientConfig::new("127.0.0.1:7000", Secret::new("t")).validate();
    assert!(
        err.expect_err("no services")
            .to_string()
            .starts_with("<command line>: services is empty")
    );
}

#[test]
fn defaults_and_overrides() {
    let mut config = ServerConfig::new("[::1]:0");
    config.insecure_no_auth = true;
    let settings = config
        .validate()
        .expect("insecure is allowed without a token");
    assert!(settings.token.is_none());
    assert_eq!(settings.heartbeat_timeout, Duration::from_secs(30));
    assert!(settings.port_allowed(1024) && settings.port_allowed(65535));
    assert!(!settings.port_allowed(0) && !settings.port_allowed(80));
    // A token set alongside insecure_no_auth keeps authentication on.
    let mut config = ServerConfig::new("127.0.0.1:0");
    (config.insecure_no_auth, config.token) = (true, Some(Secret::new("t")));
    assert!(config.validate().expect("valid").token.is_some());
    let client = ClientConfig::new("127.0.0.1:7000", Secret::new("t"));
    assert_eq!(client.data_links, DataLinks::Pooled { size: 4 });
}

#[test]
fn parsed_defaults_match_new() {
    let mut parsed = parse::<ServerConfig>(r#"(bind: "x")"#, Path::new("s.ron")).expect("parses");
    parsed.source = None;
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", ServerConfig::new("x"))
    );
    let text = r#"(server: "x", token: "t")"#;
    let mut parsed = parse::<ClientConfig>(text, Path::new("c.ron")).expect("parses");
    parsed.source = None;
    let built = ClientConfig::new("x", Secret::new("t"));
    assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
}

#[test]
fn value_positions_skip_comments_and_strings() {
    let text = "/* (a: [ */ (\n  // services: [\n  x: \"a, b: ]\", y: r#\"(\"#,\n  s: [(n: 1), Some((m: 'c'))],\n)";
    let found = value_positions(text);
    let at = |p: &str| {
        found
            .iter()
            .find(|(path, ..)| path == p)
            .map(|&(_, l, c)| (l, c))
    };
    assert_eq!(at(""), Some((1, 13)));
    assert_eq!(at("x"), Some((3, 6)));
    assert_eq!(at("y"), Some((3, 20)));
    assert_eq!(at("s[0].n"), Some((4, 11)));
    assert_eq!(at("s[1]"), Some((4, 15)));
    assert_eq!(at("a"), None);
    assert_eq!(at("services"), None);
}

#[test]
fn concurrency_settings_default_to_tens_of_thousands_and_are_range_checked() {
    let server = parse::<ServerConfig>(r#"(bind: "127.0.0.1:0", token: "t")"#, Path::new("s.ron"))
        .expect("parses")
        .validate()
        .expect("valid");
    assert_eq!(
        (
            server.max_visitors_per_client,
            server.max_waiting_visitors,
            server.max_streams_per_link
        ),
        (65_536, 16_384, 16_384)
    );
    let text = "(\n  bind: \"127.0.0.1:0\",\n  token: \"t\",\n  max_streams_per_link: 0,\n)";
    let err = parse::<ServerConfig>(text, Path::new("s.ron"))
        .expect("parses")
        .validate()
        .expect_err("0 streams");
    assert_eq!((err.line, err.column), (4, 25), "{err}");
    assert!(
        err.message
            .contains("max_streams_per_link 0 is out of range"),
        "{err}"
    );

    let client = r#"(server: "127.0.0.1:7000", token: "t", services: [(name: "a", local: "127.0.0.1:1")],
        max_links: 2000000)"#;
    let err = parse::<ClientConfig>(client, Path::new("c.ron"))
        .expect("parses")
        .validate()
        .expect_err("too many links");
    assert!(
        err.message.contains("max_links 2000000 is out of range"),
        "{err}"
    );
    let client = r#"(server: "127.0.0.1:7000", token: "t", services: [(name: "a", local: "127.0.0.1:1")],
        max_link_uses: 1, max_link_age: "5m")"#;
    let settings = parse::<ClientConfig>(client, Path::new("c.ron"))
        .expect("parses")
        .validate()
        .expect("valid");
    assert_eq!(
        (
            settings.max_links,
            settings.max_link_uses,
            settings.max_link_age
        ),
        (65_536, 1, Duration::from_secs(300))
    );
}

#[test]
fn the_proxy_rules_check_is_placed_at_http_proxy() {
    let text = "(\n  server: \"127.0.0.1:7000\",\n  token: \"t\",\n  services: [(name: \"p\", local: \"http-proxy\")],\n  http_proxy: (deny: [\"bad\"]),\n)";
    let parsed = || parse::<ClientConfig>(text, Path::new("c.ron")).expect("parses");
    let settings = parsed().validate().expect("rules are the proxy's to judge");
    assert_eq!(settings.http_proxy.deny, ["bad"]);
    let err = parsed()
        .validate_with(|rules| match rules.deny.first() {
            Some(rule) => Err(format!("deny rule {rule:?} is bad")),
            None => Ok(()),
        })
        .expect_err("the check refuses");
    assert_eq!(
        err.to_string(),
        "c.ron:5:15: http_proxy: deny rule \"bad\" is bad"
    );
}

#[test]
fn address_messages_say_what_is_missing_and_show_it_written_right() {
    let at = Locator::new(&None);
    let cases = [
        ("local", "8080", "expected host:port, e.g. 127.0.0.1:8080"),
        ("local", "", "expected host:port, e.g. 127.0.0.1:8080"),
        (
            "local",
            "localhost",
            "the port is missing; expected host:port, e.g. localhost:8080",
        ),
        (
            "bind",
            ":7000",
            "the host is missing; expected host:port, e.g. 0.0.0.0:7000",
        ),
        (
            "server",
            "tunnel.example.com",
            "the port is missing; expected host:port, e.g. tunnel.example.com:7000",
        ),
        (
            "server",
            "tunnel.example.com:",
            "the port is missing; expected host:port, e.g. tunnel.example.com:7000",
        ),
        (
            "bind",
            "::1:7000",
            "put an IPv6 address in brackets, e.g. [::1]:7000",
        ),
        (
            "listen",
            "fe80::1",
            "put an IPv6 address in brackets, e.g. [fe80::1]:8080",
        ),
        (
            "local",
            "[::1]",
            "the port is missing; expected host:port, e.g. [::1]:8080",
        ),
        (
            "local",
            "127.0.0.1:70000",
            "port 70000 is out of range: a port is 1–65535",
        ),
        (
            "local",
            "127.0.0.1:http",
            "port \"http\" is not a number: a port is 1–65535",
        ),
        (
            "target",
            "tcp://10.0.0.5:80",
            "drop the tcp:// (and any path); expected host:port, e.g. 10.0.0.5:80",
        ),
        (
            "local",
            " 127.0.0.1:80",
            "remove the spaces around it; expected host:port, e.g. 127.0.0.1:80",
        ),
        (
            "target",
            "127.0.0.1:0",
            "port 0 is not allowed here; give the real port",
        ),
    ];
    for (what, text, reason) in cases {
        let err = check_address(&at, &[what], what, text, false).expect_err(text);
        assert_eq!(err.message, format!("{what} {text:?}: {reason}"));
    }
    for (text, zero_ok) in [("127.0.0.1:8080", false), ("[::1]:0", true)] {
        let addr = check_address(&at, &["x"], "x", text, zero_ok).expect(text);
        assert_eq!(addr, text.parse::<SocketAddr>().expect("literal"));
    }
}

#[test]
fn out_of_range_integers_name_the_field_and_the_range_with_a_position() {
    let text = "(\n  server: \"127.0.0.1:7000\",\n  token: \"t\",\n  services: [(name: \"a\", local: \"127.0.0.1:1\", remote_port: 70000)],\n)";
    let err = parse::<ClientConfig>(text, Path::new("c.ron")).expect_err("70000 is no port");
    assert_eq!(
        err.to_string(),
        "c.ron:4:61: remote_port 70000 is out of range: a port is 1–65535 (0 or omitted lets the server pick)"
    );
}

#[test]
fn proxy_protocol_settings_parse_and_errors_point_at_the_entry() {
    let text = "(\n  bind: \"127.0.0.1:0\",\n  token: \"t\",\n  accept_proxy_protocol: (from: [\"10.0.0.0/8\",\n    \"10.0.0.0/40\"]),\n)";
    let err = parse::<ServerConfig>(text, Path::new("s.ron")).and_then(ServerConfig::validate);
    let err = err.expect_err("a /40 is no IPv4 block");
    assert!(
        err.to_string()
            .starts_with("s.ron:5:5: accept_proxy_protocol.from[1]: prefix \"40\" is not 0 to 32"),
        "{err}"
    );
    let text = "(\n  bind: \"127.0.0.1:0\",\n  token: \"t\",\n  accept_proxy_protocol: (from: [\"::1\"], timeout: \"1s\"),\n)";
    let settings = parse::<ServerConfig>(text, Path::new("s.ron"))
        .and_then(ServerConfig::validate)
        .expect("valid");
    let trust = settings.accept_proxy_protocol.expect("set");
    assert_eq!(trust.timeout, Duration::from_secs(1));
    assert!(trust.trusts("::1".parse().expect("ip")));
    let text = "(\n  server: \"127.0.0.1:7000\",\n  token: \"t\",\n  services: [(name: \"a\", local: \"127.0.0.1:1\", proxy_protocol: V2),\n    (name: \"p\", local: \"http-proxy\", proxy_protocol: V1)],\n)";
    let err = parse::<ClientConfig>(text, Path::new("c.ron")).and_then(ClientConfig::validate);
    let err = err.expect_err("the built-in proxy reads no header");
    assert!(
        err.to_string()
            .starts_with("c.ron:5:54: service \"p\": the built-in HTTP proxy"),
        "{err}"
    );
}

/// A client file with `server` as written here, and one service.
fn client_with_server(server: &str) -> Result<ClientSettings, ConfigError> {
    let text = format!(
        "(\n  server: {server},\n  token: \"t\",\n  services: [(name: \"web\", local: \"127.0.0.1:8080\")],\n)"
    );
    parse::<ClientConfig>(&text, Path::new("c.ron")).and_then(ClientConfig::validate)
}

#[test]
fn server_is_one_address_or_a_list_of_them() {
    let one = client_with_server("\"127.0.0.1:7000\"").expect("a string");
    assert_eq!(one.server, ["127.0.0.1:7000"]);
    let two = client_with_server("[\"127.0.0.1:7000\", \"[::1]:7001\"]").expect("a list");
    assert_eq!(two.server, ["127.0.0.1:7000", "[::1]:7001"]);
    let err = client_with_server("7000").expect_err("a number");
    assert_eq!((err.line, err.column), (2, 11), "{err}");
    assert!(err.to_string().contains("or a list of them"), "{err}");
    let err = client_with_server("[\"127.0.0.1:7000\", 7001]").expect_err("a number in the list");
    assert!(err.line == 2 && err.column > 11, "{err}");
    assert!(
        err.to_string().contains("a server address such as"),
        "{err}"
    );
}

#[test]
fn server_list_errors_point_at_the_offending_entry() {
    let err = client_with_server("[]").expect_err("empty");
    assert_eq!((err.line, err.column), (2, 11), "{err}");
    assert!(err.to_string().contains("server is an empty list"), "{err}");
    let err = client_with_server("[\"127.0.0.1:7000\", \"127.0.0.1:7000\"]").expect_err("twice");
    assert_eq!((err.line, err.column), (2, 30), "{err}");
    assert!(err.to_string().contains("is given twice"), "{err}");
    // Another name for the same address is the same server.
    let err = client_with_server("[\"127.0.0.1:7000\", \"localhost:7000\"]").expect_err("alias");
    assert!(
        err.to_string().contains("both reach 127.0.0.1:7000"),
        "{err}"
    );
    let err = client_with_server("[\"127.0.0.1:7000\", \"127.0.0.1\"]").expect_err("no port");
    assert_eq!((err.line, err.column), (2, 30), "{err}");
    let many: Vec<String> = (0..=MAX_SERVERS)
        .map(|i| format!("\"127.0.0.1:{}\"", 7000 + i))
        .collect();
    let err = client_with_server(&format!("[{}]", many.join(", "))).expect_err("too many");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.to_string().contains("at most 16"), "{err}");
    // Set after parsing (as the flags are), the same checks.
    let text = "(server: \"127.0.0.1:7000\", token: \"t\", services: [(name: \"web\", local: \"127.0.0.1:8080\")])";
    let mut config = parse::<ClientConfig>(text, Path::new("c.ron")).expect("parses");
    config.server = (0..=MAX_SERVERS)
        .map(|i| format!("127.0.0.1:{}", 7000 + i))
        .collect();
    let err = config.clone().validate().expect_err("too many flags");
    assert!(
        err.to_string()
            .contains("server: 17 servers given, at most 16"),
        "{err}"
    );
    config.server.clear();
    let err = config.validate().expect_err("none");
    assert!(err.to_string().contains("empty list"), "{err}");
}
