//! The rendered text is a config: every shipped example and valid fixture,
//! rendered, loads again (through `load_any`, as `porthole check` loads) to
//! settings that render the same; and no Rust `Debug` shows through.

use std::path::{Path, PathBuf};

use super::*;
use crate::cli::load_any;
use crate::config::parse_duration;

/// A real token in place of the mask, so the rendered text validates.
const TOKEN: &str = "a-real-token";

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("porthole-render-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders `path`'s settings, loads the text back from a file in `scratch`,
/// and checks the second rendering equals the first. Returns the first.
fn round_trip(path: &Path, scratch: &Scratch) -> String {
    let first = match load_any(path) {
        Ok(config) => render(&config),
        Err(e) => panic!("{} should load: {e}", path.display()),
    };
    let copy = scratch.0.join(path.file_name().expect("a file name"));
    let unmasked = first.replace(&string(MASKED), &string(TOKEN));
    std::fs::write(&copy, &unmasked).expect("write rendered config");
    let second = match load_any(&copy) {
        Ok(config) => render(&config),
        Err(e) => panic!("rendered {} should load: {e}\n{unmasked}", path.display()),
    };
    assert_eq!(
        first,
        second,
        "{} renders differently after a round trip",
        path.display()
    );
    first
}

/// What `Debug` of the settings would show and a config cannot hold.
fn assert_no_debug(path: &Path, text: &str) {
    for debug in [
        "..=",
        "Duration",
        "secs:",
        "nanos",
        "PathBuf",
        "Secret",
        "Credentials",
        "Rule {",
        "Cidr",
        "DnsName",
        "IpAddress",
        "{",
        "}",
    ] {
        assert!(
            !text.contains(debug),
            "{}: {debug:?} in\n{text}",
            path.display()
        );
    }
    for (i, _) in text.match_indices("Some(") {
        let next = text[i + "Some(".len()..].chars().next();
        assert!(
            next.is_some_and(|c| !c.is_uppercase()),
            "{}: a type name inside Some( in\n{text}",
            path.display()
        );
    }
}

fn ron_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ron"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_and_valid_fixture_renders_to_a_config_that_loads_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = ron_files(&root.join("examples"));
    let names: Vec<_> = examples
        .iter()
        .filter_map(|p| p.file_stem()?.to_str())
        .collect();
    assert_eq!(names, ["client", "forward", "http-proxy", "server"]);
    let fixtures = ron_files(&root.join("tests/fixtures/config/valid"));
    assert!(!fixtures.is_empty(), "no valid fixtures");
    let scratch = Scratch::new("examples");
    for path in examples.iter().chain(&fixtures) {
        let text = round_trip(path, &scratch);
        assert_no_debug(path, &text);
        assert!(!text.contains(TOKEN));
    }
}

#[test]
fn the_server_example_renders_every_field_with_its_default_resolved() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/server.ron");
    let text = round_trip(&path, &Scratch::new("server"));
    let workers = crate::runtime::default_workers();
    let want = format!(
        r#"(
    bind: "0.0.0.0:7000",
    public_bind: Some("0.0.0.0"),
    token: Some("********"),
    clients: [],
    insecure_no_auth: false,
    transport: Tcp,
    allow_ports: [(10000, 20000)],
    max_services_per_client: 16,
    heartbeat_interval: "10s",
    heartbeat_timeout: "30s",
    handshake_timeout: "10s",
    hello_timeout: "2s",
    reconnect_grace: "30s",
    visitor_timeout: "10s",
    drain_timeout: "30s",
    max_visitors_per_client: 65536,
    max_waiting_visitors: 16384,
    max_streams_per_link: 16384,
    workers: Some({workers}),
    admin: Some("127.0.0.1:9090"),
    accept_proxy_protocol: None,
    udp_idle_timeout: "1m",
    max_udp_flows: 4096,
)
"#
    );
    assert_eq!(text, want);
}

#[test]
fn the_client_and_proxy_examples_show_lists_secrets_and_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = Scratch::new("lists");
    let client = round_trip(&root.join("examples/client.ron"), &scratch);
    for line in [
        "    id: None,\n    token: Some(\"********\"),\n",
        "    data_links: Pooled(size: 8),\n",
        "    services: [\n        (name: \"web\", local: \"127.0.0.1:8080\", remote_port: 10080),\n",
        "    port_in_use_timeout: \"1m\",\n",
        "    max_link_age: \"1h\",\n",
        "    http_proxy: (allow: [], deny: []),\n",
    ] {
        assert!(client.contains(line), "{line:?} in\n{client}");
    }
    let proxy = round_trip(&root.join("examples/http-proxy.ron"), &scratch);
    for line in [
        "    auth: (user: \"********\", password: \"********\"),\n",
        "    allow: [\"*:80\", \"*:443\", \"10.0.0.0/8:8000-9000\"],\n",
        "    deny: [\"*.internal.example.com\", \"192.168.0.0/16\"],\n",
        "    idle_timeout: \"1m\",\n",
    ] {
        assert!(proxy.contains(line), "{line:?} in\n{proxy}");
    }
    assert!(
        !proxy.contains("alice") && !proxy.contains("change-me"),
        "{proxy}"
    );
}

#[test]
fn per_client_credentials_show_their_ids_and_limits_never_their_tokens() {
    let scratch = Scratch::new("clients");
    let key = scratch.0.join("laptop.key");
    std::fs::write(&key, "laptop-secret\n").expect("write token file");
    let text = r#"(bind: "127.0.0.1:0", token_file: "laptop.key", allow_ports: [(2000, 3000)],
        clients: [(id: "laptop", token_file: "laptop.key", max_services: 4),
                  (id: "desk.top", token: "desk-secret", allow_ports: [(10000, 10099)])])"#;
    let server = scratch.0.join("server.ron");
    std::fs::write(&server, text).expect("write config");
    let rendered = round_trip(&server, &scratch);
    for line in [
        "    token: Some(\"********\"),\n",
        "    clients: [\n        (id: \"laptop\", token: Some(\"********\"), allow_ports: Some([(2000, 3000)]), max_services: Some(4)),\n",
        "        (id: \"desk.top\", token: Some(\"********\"), allow_ports: Some([(10000, 10099)]), max_services: Some(16)),\n",
        "    insecure_no_auth: false,\n",
    ] {
        assert!(rendered.contains(line), "{line:?} in\n{rendered}");
    }
    assert!(
        !rendered.contains("secret") && !rendered.contains("laptop.key"),
        "{rendered}"
    );
    let client = scratch.0.join("client.ron");
    let text = r#"(server: "127.0.0.1:7000", id: "laptop", token_file: "laptop.key",
        services: [(name: "a", local: "127.0.0.1:1")])"#;
    std::fs::write(&client, text).expect("write config");
    let rendered = round_trip(&client, &scratch);
    assert!(
        rendered.contains("    id: Some(\"laptop\"),\n    token: Some(\"********\"),\n"),
        "{rendered}"
    );
}

#[test]
fn tls_renders_absolute_paths_and_loads_back() {
    let scratch = Scratch::new("tls");
    let certs = scratch.0.join("certs");
    crate::gencert::write_bundle(&certs, &["127.0.0.1".to_owned()], true, 30).expect("certs");
    let server = scratch.0.join("server.ron");
    let text = r#"(bind: "127.0.0.1:0", token: "t",
        transport: Tls(cert: "certs/server.crt", key: "certs/server.key", client_ca: Some("certs/ca.crt")))"#;
    std::fs::write(&server, text).expect("write server config");
    let client = scratch.0.join("client.ron");
    let text = r#"(server: "127.0.0.1:7000", token: "t", services: [(name: "a", local: "127.0.0.1:1")],
        transport: Tls(ca: Some("certs/ca.crt")))"#;
    std::fs::write(&client, text).expect("write client config");
    // Rendered into a directory of its own, relative paths would point elsewhere.
    let elsewhere = Scratch::new("tls-copies");
    let server = round_trip(&server, &elsewhere);
    let dir = std::path::absolute(&certs).expect("absolute");
    let want = format!(
        "    transport: Tls(cert: {}, key: {}, client_ca: Some({}), allow_tls12: false),\n",
        string(&dir.join("server.crt").to_string_lossy()),
        string(&dir.join("server.key").to_string_lossy()),
        string(&dir.join("ca.crt").to_string_lossy()),
    );
    assert!(server.contains(&want), "{want:?} in\n{server}");
    let client = round_trip(&client, &elsewhere);
    let want = format!(
        "    transport: Tls(ca: Some({}), server_name: Some(\"127.0.0.1\"), cert: None, key: None, allow_tls12: false),\n",
        string(&dir.join("ca.crt").to_string_lossy()),
    );
    assert!(client.contains(&want), "{want:?} in\n{client}");
}

#[test]
fn several_servers_render_as_a_list_each_expecting_its_own_tls_name() {
    let scratch = Scratch::new("servers");
    let certs = scratch.0.join("certs");
    crate::gencert::write_bundle(&certs, &["localhost".to_owned()], false, 30).expect("certs");
    let client = scratch.0.join("client.ron");
    let text = r#"(server: ["127.0.0.1:7000", "localhost:7001"], token: "t",
        services: [(name: "a", local: "127.0.0.1:1")], transport: Tls(ca: Some("certs/ca.crt")))"#;
    std::fs::write(&client, text).expect("write client config");
    let rendered = round_trip(&client, &Scratch::new("servers-copies"));
    assert!(
        rendered.contains("    server: [\"127.0.0.1:7000\", \"localhost:7001\"],\n"),
        "{rendered}"
    );
    // Unwritten, the name stays each server's own host when read back.
    assert!(rendered.contains("server_name: None"), "{rendered}");
    let Ok(AnyConfig::Client(settings)) = load_any(&client) else {
        panic!("a client config");
    };
    let name = |server: &str| {
        settings
            .tls_for(server)
            .map(|t| t.server_name.to_str().into_owned())
    };
    assert_eq!(name("127.0.0.1:7000").as_deref(), Some("127.0.0.1"));
    assert_eq!(name("localhost:7001").as_deref(), Some("localhost"));
}

#[test]
fn strings_are_ron_strings() {
    for text in [
        "plain",
        "a \"quoted\" \\ path",
        "line\nbreak\ttab",
        "\u{1b}[0m",
        "é ✓ 'x'",
    ] {
        let back: String = ron::from_str(&string(text)).expect("a RON string");
        assert_eq!(back, text);
    }
}

#[test]
fn durations_use_the_largest_exact_unit_and_parse_back() {
    for (ms, want) in [
        (0, "0s"),
        (500, "500ms"),
        (1500, "1500ms"),
        (10_000, "10s"),
        (90_000, "90s"),
        (120_000, "2m"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(duration(d), format!("\"{want}\""));
        assert_eq!(parse_duration(want), Ok(d));
    }
}

#[test]
fn role_names_are_the_commands() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/forward.ron");
    let config = load_any(&path).expect("loads");
    assert_eq!(role_name(&config), "forward");
}
