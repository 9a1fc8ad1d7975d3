//! Every fixture under `tests/fixtures/config/` through the public config API: each
//! `valid/*.ron` loads, each `invalid/*.ron` fails with the text (position included)
//! that its first line names after `// expect: `, and each file in `foreign/` (TOML,
//! YAML and JSON from other tunnels, RON gone wrong before its first `(`) fails
//! with the line [`FOREIGN`] gives it, through `check`'s loader and every role's.

use std::path::{Path, PathBuf};

use porthole::cli::{AnyConfig, load_any};
use porthole::config::{self, ClientConfig, ConfigError, ServerConfig};
use porthole::forward::ForwardConfig;
use porthole::http_proxy::HttpProxyConfig;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ron"))
        .collect();
    files.sort();
    // A loop over zero fixtures passes silently; make that a failure.
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn valid_configs_load() {
    let (mut servers, mut clients, mut forwards, mut proxies) = (0, 0, 0, 0);
    for path in fixtures("valid") {
        match load_any(&path) {
            Ok(AnyConfig::Server(_)) => servers += 1,
            Ok(AnyConfig::Client(_)) => clients += 1,
            Ok(AnyConfig::Forward(_)) => forwards += 1,
            Ok(AnyConfig::HttpProxy(_)) => proxies += 1,
            Err(e) => panic!("{} should load: {e}", path.display()),
        }
    }
    assert!(
        servers > 0 && clients > 0 && forwards > 0 && proxies > 0,
        "need fixtures of every role"
    );
}

#[test]
fn invalid_configs_fail_with_position_and_reason() {
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `// expect: ...`", path.display()));
        let err = match load_any(&path) {
            Ok(_) => panic!("{} should fail", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}: {err:?} lacks {expect:?}",
            path.display()
        );
        assert!(
            err.starts_with(&path.display().to_string()),
            "{err:?} names no file"
        );
    }
}

/// What each file in `foreign/` is told by `porthole check` (which guesses the
/// role from the file) after `<file>: `. The role-specific loaders name their
/// own role's example instead.
const FOREIGN: &[(&str, &str)] = &[
    (
        "empty.ron",
        "the file is empty; porthole configs are RON, see examples/server.ron, client.ron, forward.ron or http-proxy.ron",
    ),
    (
        "forward.yaml",
        "this looks like YAML; porthole configs are RON, see examples/forward.ron",
    ),
    (
        "frpc.toml",
        "this looks like TOML; porthole configs are RON, see examples/client.ron",
    ),
    (
        "frpc.yaml",
        "this looks like YAML; porthole configs are RON, see examples/client.ron",
    ),
    (
        "frps.json",
        "this looks like JSON; porthole configs are RON, see examples/server.ron",
    ),
    (
        "frps.toml",
        "this looks like TOML; porthole configs are RON, see examples/server.ron",
    ),
    (
        "hash-comment.ron",
        "1:1: `#` does not start a comment in RON; write `//` instead",
    ),
    (
        "rathole-client.toml",
        "this looks like TOML; porthole configs are RON, see examples/client.ron",
    ),
    (
        "rathole-server.toml",
        "this looks like TOML; porthole configs are RON, see examples/server.ron",
    ),
    (
        "server-without-parens.ron",
        "the fields must be inside parentheses, `( ... )`: a porthole config is one RON struct, see examples/server.ron",
    ),
];

fn foreign_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/foreign")
}

/// `file: message`, or `file:line:col: message` when the message has a position.
fn error_text(path: &Path, message: &str) -> String {
    let sep = if message.starts_with(|c: char| c.is_ascii_digit()) {
        ":"
    } else {
        ": "
    };
    format!("{}{sep}{message}", path.display())
}

#[test]
fn foreign_files_name_their_format_and_the_example_to_follow() {
    let mut files: Vec<String> = std::fs::read_dir(foreign_dir())
        .expect("foreign fixtures")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let listed: Vec<&str> = FOREIGN.iter().map(|&(name, _)| name).collect();
    assert_eq!(
        files, listed,
        "every foreign fixture has an expectation, and only those"
    );
    for &(name, message) in FOREIGN {
        let path = foreign_dir().join(name);
        let err = match load_any(&path) {
            Ok(_) => panic!("{name} should fail"),
            Err(e) => e.to_string(),
        };
        assert_eq!(err, error_text(&path, message));
    }
}

#[test]
fn every_role_s_loader_names_its_own_example() {
    type Loader = fn(&Path) -> Result<(), ConfigError>;
    let loaders: [(&str, Loader); 4] = [
        ("server", |p| config::load::<ServerConfig>(p).map(drop)),
        ("client", |p| config::load::<ClientConfig>(p).map(drop)),
        ("forward", |p| config::load::<ForwardConfig>(p).map(drop)),
        ("http-proxy", |p| {
            config::load::<HttpProxyConfig>(p).map(drop)
        }),
    ];
    for (role, load) in loaders {
        // A client's file given to every role: the command decides the example.
        let path = foreign_dir().join("rathole-client.toml");
        let err = load(&path).expect_err("TOML is not RON").to_string();
        let want =
            format!("this looks like TOML; porthole configs are RON, see examples/{role}.ron");
        assert_eq!(err, error_text(&path, &want), "{role}");
        let path = foreign_dir().join("hash-comment.ron");
        let err = load(&path).expect_err("# is not a RON comment").to_string();
        assert!(
            err.ends_with("1:1: `#` does not start a comment in RON; write `//` instead"),
            "{role}: {err}"
        );
    }
}
