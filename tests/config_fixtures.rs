//! Every fixture under `tests/fixtures/config/` through the public config API: each
//! `valid/*.ron` loads, each `invalid/*.ron` fails with the text (position included)
//! that its first line names after `// expect: `.

use std::path::{Path, PathBuf};

use porthole::cli::{AnyConfig, load_any};

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
