//! Unit tests of the config module: positions, defaults, masking. The fixture
//! files are walked by `tests/config_fixtures.rs` through the public API.

use super::locate::value_positions;
use super::*;

#[test]
fn shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "ron") {
            found += 1;
            if let Err(e) = load_any(&path) {
                panic!("{} should load: {e}", path.display());
            }
        }
    }
    assert!(
        found >= 4,
        "expected the server, client, forward and http-proxy examples"
    );
}

#[test]
fn secrets_are_masked() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "******** ********");
    assert_eq!(secret.expose(), "hunter2");
    let config = parse_server(
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
fn durations_parse() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    for bad in ["", "10", "s", "10x", "1.5s", " 10s", "-1s", "10 s", "10S"] {
        let err = parse_duration(bad).expect_err(bad);
        assert!(
            err.contains("expected a number followed by ms, s, m or h"),
            "{err}"
        );
    }
    assert!(parse_duration("99999999999999999999s").is_err_and(|e| e.contains("too large")));
    assert!(parse_duration("18446744073709551615h").is_err_and(|e| e.contains("too large")));
}

#[test]
fn duration_must_be_a_string() {
    let text = "(bind: \"127.0.0.1:0\", token: \"t\", visitor_timeout: 10)";
    let err = parse_server(text, Path::new("s.ron")).expect_err("integer duration");
    assert!(
        err.to_string()
            .contains("a duration string such as \"10s\""),
        "{err}"
    );
}

#[test]
fn validation_error_has_line_and_column() {
    let text = "(\n  bind: \"127.0.0.1:0\",\n  // token: \"old\",\n  token: \"\", // empty\n)";
    let err = parse_server(text, Path::new("s.ron")).and_then(ServerConfig::validate);
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
fn workers_come_from_the_flag_then_the_file_then_one_per_core() {
    use crate::cli::{ServerArgs, server_settings};
    let dir = std::env::temp_dir().join(format!("porthole-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("server.ron");
    let text = r#"(bind: "127.0.0.1:0", token: "t", workers: 3)"#;
    std::fs::write(&path, text).expect("write config");
    let mut args = ServerArgs {
        config: Some(path.clone()),
        ..ServerArgs::default()
    };
    assert_eq!(server_settings(&args, None).expect("valid").workers, 3);
    args.workers = Some(1);
    assert_eq!(server_settings(&args, None).expect("valid").workers, 1);
    args.workers = Some(0);
    let err = server_settings(&args, None).expect_err("zero workers");
    assert!(
        err.to_string().contains("workers 0 is out of range"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.token = Some(Secret::new("t"));
    let settings = config.validate().expect("valid");
    assert_eq!(settings.workers, crate::runtime::default_workers());
}

#[test]
fn parsed_defaults_match_new() {
    let mut parsed = parse_server(r#"(bind: "x")"#, Path::new("s.ron")).expect("parses");
    parsed.source = None;
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", ServerConfig::new("x"))
    );
    let text = r#"(server: "x", token: "t")"#;
    let mut parsed = parse_client(text, Path::new("c.ron")).expect("parses");
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
    let server = parse_server(r#"(bind: "127.0.0.1:0", token: "t")"#, Path::new("s.ron"))
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
    let err = parse_server(text, Path::new("s.ron"))
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
    let err = parse_client(client, Path::new("c.ron"))
        .expect("parses")
        .validate()
        .expect_err("too many links");
    assert!(
        err.message.contains("max_links 2000000 is out of range"),
        "{err}"
    );
    let client = r#"(server: "127.0.0.1:7000", token: "t", services: [(name: "a", local: "127.0.0.1:1")],
        max_link_uses: 1, max_link_age: "5m")"#;
    let settings = parse_client(client, Path::new("c.ron"))
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
