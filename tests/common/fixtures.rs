//! Config fixtures under `tests/fixtures/config/`: an invalid one names its
//! expected error on its first line, `// expect: LINE:COL: MESSAGE`.

use std::path::Path;

/// The expected error `path` (relative to the crate) names on its first line.
pub fn expected_error(path: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .next()
        .and_then(|line| line.strip_prefix("// expect: "))
        .unwrap_or_else(|| panic!("{path}: first line must be `// expect: ...`"))
        .to_owned()
}
