//! Per-client credentials and token files in the config: what validates, and
//! every error placed at its value.

use std::path::{Path, PathBuf};

use super::super::{ClientConfig, ConfigError, ServerConfig, ServerSettings, parse};
use super::*;

/// A scratch directory for token files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("porthole-creds-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// Writes `text` to `name` with `mode`; returns its path.
    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// The config `text` as if read from `server.ron` in this directory.
    fn server(&self, text: &str) -> Result<ServerSettings, ConfigError> {
        parse::<ServerConfig>(text, &self.0.join("server.ron")).and_then(ServerConfig::validate)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn server(text: &str) -> Result<ServerSettings, ConfigError> {
    parse::<ServerConfig>(text, Path::new("s.ron")).and_then(ServerConfig::validate)
}

/// The 1-based line and column just after the last `prefix` in `text`:
/// where the value it introduces starts.
fn after(text: &str, prefix: &str) -> (usize, usize) {
    let at = text.rfind(prefix).expect("prefix in text") + prefix.len();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    (line, column)
}

/// The error of `text`, its position and message.
fn error(text: &str) -> (usize, usize, String) {
    let err = server(text).expect_err("invalid");
    (err.line, err.column, err.message)
}

#[test]
fn clients_take_their_own_limits_or_the_servers() {
    let settings = server(
        r#"(bind: "127.0.0.1:0", allow_ports: [(2000, 3000)], max_services_per_client: 7,
            clients: [(id: "laptop", token: "l", allow_ports: [(10000, 10099)], max_services: 4),
                      (id: "desk", token: "d")])"#,
    )
    .expect("a server with clients only is valid");
    assert_eq!(settings.token, None, "no shared token");
    assert!(settings.authenticates());
    let laptop = settings.client("laptop").expect("listed");
    assert_eq!(
        (laptop.allow_ports.clone(), laptop.max_services),
        (vec![10000..=10099], 4)
    );
    assert!(laptop.port_allowed(10000) && !laptop.port_allowed(2000));
    let desk = settings.client("desk").expect("listed");
    assert_eq!(
        (desk.allow_ports.clone(), desk.max_services),
        (vec![2000..=3000], 7)
    );
    assert_eq!(desk.token.expose(), "d");
    assert!(settings.client("nobody").is_none());
    assert!(!format!("{settings:?}").contains("\"l\""), "tokens masked");
}

#[test]
fn every_clients_error_points_at_its_value() {
    let cases = [
        (
            "(bind: \"127.0.0.1:0\",\n clients: [(id: \"a\", token: \"x\"),\n   (id: \"a\", token: \"y\")])",
            "(id: ",
            "client id \"a\" is listed twice",
        ),
        (
            "(bind: \"127.0.0.1:0\", clients: [\n  (id: \"lap top\", token: \"x\")])",
            "id: ",
            "clients[0].id \"lap top\" is invalid",
        ),
        (
            "(bind: \"127.0.0.1:0\", clients: [\n  (id: \"a\", allow_ports: [(1, 2)])])",
            "\n  ",
            "client \"a\" has no token",
        ),
        (
            "(bind: \"127.0.0.1:0\", clients: [\n  (id: \"a\", token: \"x\", token_file: \"a.key\")])",
            "token_file: ",
            "clients[0].token and clients[0].token_file are both given",
        ),
        (
            "(bind: \"127.0.0.1:0\", clients: [(id: \"a\", token: \"x\"),\n  (id: \"b\", token: \"y\", allow_ports: [(9, 8)])])",
            "allow_ports: [",
            "clients[1].allow_ports range (9, 8) is reversed",
        ),
        (
            "(bind: \"127.0.0.1:0\", clients: [\n  (id: \"a\", token: \"x\", max_services: 0)])",
            "max_services: ",
            "clients[0].max_services 0 is out of range",
        ),
        (
            "(bind: \"127.0.0.1:0\",\n  token: \"t\", token_file: \"t.key\")",
            "token_file: ",
            "token and token_file are both given",
        ),
    ];
    for (text, value_after, message) in cases {
        let (line, column, got) = error(text);
        assert!(got.starts_with(message), "{text}: {got}");
        assert_eq!((line, column), after(text, value_after), "{text}: {got}");
    }
}

#[test]
fn a_server_without_any_credentials_says_what_to_set() {
    let (_, _, message) = error(r#"(bind: "127.0.0.1:0", clients: [])"#);
    assert!(
        message.contains("list clients with their own tokens"),
        "{message}"
    );
    assert!(message.contains("token_file"), "{message}");
}

#[test]
fn token_files_are_read_relative_to_the_config_trimmed_of_one_newline() {
    let scratch = Scratch::new("read");
    scratch.file("shared.key", "shared-secret\n", 0o600);
    scratch.file("laptop.key", "laptop secret \r\n", 0o600);
    scratch.file("two.key", "two\n\n", 0o600);
    let settings = scratch
        .server(
            r#"(bind: "127.0.0.1:0", token_file: "shared.key",
                clients: [(id: "laptop", token_file: "laptop.key"), (id: "two", token_file: "two.key")])"#,
        )
        .expect("valid");
    let token = |id: &str| {
        settings
            .client(id)
            .expect("listed")
            .token
            .expose()
            .to_owned()
    };
    assert_eq!(
        settings.token.as_ref().map(Secret::expose),
        Some("shared-secret")
    );
    assert_eq!(
        token("laptop"),
        "laptop secret ",
        "only the line ending goes"
    );
    assert_eq!(token("two"), "two\n", "one newline only");
}

#[test]
fn an_empty_missing_or_huge_token_file_is_an_error_naming_it() {
    let scratch = Scratch::new("bad");
    scratch.file("empty.key", "\n", 0o600);
    let huge = "x".repeat(usize::try_from(MAX_TOKEN_FILE_BYTES).expect("small") + 1);
    scratch.file("huge.key", &huge, 0o600);
    for (file, says) in [
        ("empty.key", "the file is empty"),
        ("missing.key", "cannot read it"),
        ("huge.key", "is not a token"),
    ] {
        let text =
            format!("(bind: \"127.0.0.1:0\",\n  clients: [(id: \"a\", token_file: \"{file}\")])");
        let err = scratch.server(&text).expect_err("refused");
        assert_eq!(
            (err.line, err.column),
            after(&text, "token_file: "),
            "{err}"
        );
        let path = scratch.0.join(file);
        let want = format!("clients[0].token_file {}: {says}", path.display());
        assert!(err.message.starts_with(&want), "{err}");
    }
}

#[test]
fn a_token_file_others_may_read_gets_a_warning_with_the_fix() {
    let path = Path::new("/etc/porthole/laptop.key");
    let warning = permission_warning(path, 0o100644).expect("group and others read it");
    assert!(warning.contains("/etc/porthole/laptop.key"), "{warning}");
    assert!(warning.contains("mode 644"), "{warning}");
    assert!(
        warning.contains("chmod 600 /etc/porthole/laptop.key"),
        "{warning}"
    );
    assert!(
        permission_warning(path, 0o100640).is_some(),
        "group may read"
    );
    assert!(permission_warning(path, 0o100600).is_none());
    assert!(permission_warning(path, 0o100400).is_none());
}

#[test]
fn a_client_names_itself_and_may_read_its_token_from_a_file() {
    let scratch = Scratch::new("client");
    scratch.file("laptop.key", "laptop-secret\n", 0o600);
    let client = |text: &str| {
        let origin = scratch.0.join("client.ron");
        parse::<ClientConfig>(text, &origin).and_then(ClientConfig::validate)
    };
    let settings = client(
        r#"(server: "127.0.0.1:7000", id: "laptop", token_file: "laptop.key",
            services: [(name: "a", local: "127.0.0.1:1")])"#,
    )
    .expect("valid");
    assert_eq!(settings.id.as_deref(), Some("laptop"));
    assert_eq!(settings.token.expose(), "laptop-secret");
    let text = "(server: \"127.0.0.1:7000\",\n  id: \"lap/top\", token: \"t\", services: [(name: \"a\", local: \"127.0.0.1:1\")])";
    let err = client(text).expect_err("a bad id");
    assert_eq!((err.line, err.column), after(text, "id: "), "{err}");
    assert!(
        err.message.starts_with("id \"lap/top\" is invalid"),
        "{err}"
    );
    let text = "(server: \"127.0.0.1:7000\", services: [(name: \"a\", local: \"127.0.0.1:1\")],\n  token: \"t\", token_file: \"laptop.key\")";
    let err = client(text).expect_err("both");
    assert_eq!((err.line, err.column), after(text, "token_file: "), "{err}");
    let err = client(r#"(server: "127.0.0.1:7000", id: "laptop", services: [(name: "a", local: "127.0.0.1:1")])"#)
        .expect_err("no token");
    assert!(err.message.contains("this client's own token"), "{err}");
}
