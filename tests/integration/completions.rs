//! `porthole completions bash|zsh|fish`, run by the shells themselves: bash
//! and fish complete a command, a flag and a file option's value; zsh parses
//! its script. `.ci/run` installs zsh and fish; under `CI=true` a missing
//! shell fails the test, elsewhere it is skipped with a message.

use crate::common::process::{porthole as args, run};
use crate::common::tls::Pki;
use std::path::Path;
use std::process::Command;

/// The script for `shell`, written into `dir`.
fn script(dir: &Pki, shell: &str) -> String {
    let out = run(args(&["completions", shell]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    let path = dir.write(&format!("porthole.{shell}"), &out.stdout);
    path.to_string_lossy().into_owned()
}

/// Whether `shell` is installed; panics under CI when it is not.
fn have(shell: &str) -> bool {
    let found = Command::new(shell).arg("-c").arg("exit 0").status().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{shell} is not installed, and CI must run this test (.ci/run installs it)"
        );
        eprintln!("skipping the {shell} completion test: {shell} is not installed");
    }
    found
}

fn shell_output(shell: &str, code: &str) -> String {
    let out = Command::new(shell)
        .arg("-c")
        .arg(code)
        .output()
        .expect("run the shell");
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_commands_flags_and_files() {
    let dir = Pki::new("completions-bash");
    let file = script(&dir, "bash");
    dir.write("server.ron", "()");
    let complete = |words: &str| {
        let code = format!(
            "source {file}; cd {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _porthole; echo \"${{COMPREPLY[@]}}\"",
            dir.dir.display()
        );
        shell_output("bash", &code)
    };
    assert_eq!(complete("porthole se").trim(), "server");
    assert_eq!(complete("porthole st").trim(), "status");
    assert_eq!(complete("porthole server --ce").trim(), "--cert");
    for role in ["server", "client", "forward", "http-proxy", "status"] {
        assert_eq!(
            complete(&format!("porthole {role} --adm")).trim(),
            "--admin"
        );
    }
    assert_eq!(complete("porthole client -c serv").trim(), "server.ron");
    assert_eq!(complete("porthole completions fi").trim(), "fish");
}

#[test]
fn fish_completes_commands_and_flags() {
    if !have("fish") {
        return;
    }
    let dir = Pki::new("completions-fish");
    let file = script(&dir, "fish");
    let complete =
        |line: &str| shell_output("fish", &format!("source {file}; complete -C '{line}'"));
    assert!(complete("porthole se").starts_with("server\t"));
    assert!(complete("porthole client --exp").starts_with("--expose\t"));
    assert!(complete("porthole completions ").contains("zsh"));
}

#[test]
fn zsh_parses_its_script() {
    if !have("zsh") {
        return;
    }
    let dir = Pki::new("completions-zsh");
    let file = script(&dir, "zsh");
    shell_output("zsh", &format!("zsh -n {file}"));
    let text = std::fs::read_to_string(Path::new(&file)).expect("script");
    assert!(text.starts_with("#compdef porthole"), "{text}");
    assert!(
        text.contains("'--cert[") && text.contains(":file:_files'"),
        "{text}"
    );
}
