//! `PORTHOLE_LOG_FORMAT`, the real binary: `json` makes every stderr line a
//! JSON object (what a log shipper parses), and an unknown format is a usage
//! error before anything runs.

use crate::common::process::{porthole as args, run};

#[test]
fn json_format_writes_one_object_per_line_with_level_and_message() {
    // The demo logs at warn unless asked; info gives it something to say.
    let mut cmd = args(&["demo", "--once"]);
    cmd.env("PORTHOLE_LOG_FORMAT", "json")
        .env("PORTHOLE_LOG", "info");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        !out.raw_stderr.contains('\u{1b}'),
        "no colour: {}",
        out.raw_stderr
    );
    let lines: Vec<&str> = out.raw_stderr.lines().collect();
    assert!(!lines.is_empty(), "the demo logs at info");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["level"].is_string(), "a level: {line}");
        assert!(event["fields"]["message"].is_string(), "a message: {line}");
        assert!(event["timestamp"].is_string(), "a timestamp: {line}");
    }
}

#[test]
fn an_unknown_log_format_is_a_usage_error_naming_the_variable_and_the_formats() {
    let mut cmd = args(&["demo", "--once"]);
    cmd.env("PORTHOLE_LOG_FORMAT", "logfmt");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "stdout: {}", out.stdout);
    assert_eq!(
        out.stderr.trim_end(),
        "error: PORTHOLE_LOG_FORMAT=\"logfmt\" is not a log format; use text or json"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);
}
