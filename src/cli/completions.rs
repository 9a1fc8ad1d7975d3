//! `porthole completions bash|zsh|fish`: shell completion scripts generated
//! from the argh structs themselves ([`argh::ArgsInfo`]), so a new flag is
//! completed without anyone remembering to add it here. Options that take a
//! file (`-c`, `--cert`, `--key`, `--ca`, `--client-ca`, `--out`) complete
//! file names.

use std::fmt::{self, Write};

use argh::{ArgsInfo, FlagInfo, FlagInfoKind};

use super::Cli;

/// A shell porthole writes completions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The shell named is not one of ours.
#[derive(Debug)]
pub struct UnknownShell(pub String);

impl fmt::Display for UnknownShell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no completions for {:?}: use bash, zsh or fish", self.0)
    }
}

impl std::error::Error for UnknownShell {}

impl std::str::FromStr for Shell {
    type Err = UnknownShell;

    fn from_str(name: &str) -> Result<Shell, UnknownShell> {
        match name {
            "bash" => Ok(Shell::Bash),
            "zsh" => Ok(Shell::Zsh),
            "fish" => Ok(Shell::Fish),
            other => Err(UnknownShell(other.to_owned())),
        }
    }
}

/// One command as completion needs it: its name, what it does, its flags,
/// and the words its positional argument takes, when there is a fixed set.
struct Command {
    name: &'static str,
    description: &'static str,
    flags: Vec<Flag>,
    values: &'static [&'static str],
}

/// The shells, as `porthole completions` takes them.
const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// One flag: `--long` (and `-s`), whether it takes a value, and whether that
/// value is a file.
struct Flag {
    long: &'static str,
    short: Option<char>,
    description: &'static str,
    takes_value: bool,
    file: bool,
}

/// Options whose value is a path.
const FILE_OPTIONS: [&str; 6] = [
    "--config",
    "--cert",
    "--key",
    "--ca",
    "--client-ca",
    "--out",
];

fn flags(infos: &[FlagInfo<'static>]) -> Vec<Flag> {
    infos
        .iter()
        .filter(|f| !f.hidden)
        .map(|f| Flag {
            long: f.long,
            short: f.short,
            description: f.description,
            takes_value: matches!(f.kind, FlagInfoKind::Option { .. }),
            file: FILE_OPTIONS.contains(&f.long),
        })
        .collect()
}

fn commands() -> (Vec<Flag>, Vec<Command>) {
    let top = Cli::get_args_info();
    let commands = top
        .commands
        .iter()
        .map(|sub| Command {
            name: sub.name,
            description: sub.command.description,
            flags: flags(sub.command.flags),
            values: if sub.name == "completions" {
                SHELLS
            } else {
                &[]
            },
        })
        .collect();
    (flags(top.flags), commands)
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let (top, commands) = commands();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match shell {
        Shell::Bash => bash(&mut out, &top, &commands),
        Shell::Zsh => zsh(&mut out, &top, &commands),
        Shell::Fish => fish(&mut out, &top, &commands),
    };
    out
}

fn words(flags: &[Flag]) -> String {
    let mut words: Vec<String> = flags.iter().map(|f| f.long.to_owned()).collect();
    words.extend(
        flags
            .iter()
            .filter_map(|f| f.short.map(|c| format!("-{c}"))),
    );
    words.join(" ")
}

fn bash(out: &mut String, top: &[Flag], commands: &[Command]) -> fmt::Result {
    let names: Vec<&str> = commands.iter().map(|c| c.name).collect();
    writeln!(
        out,
        "# bash completion for porthole (porthole completions bash)"
    )?;
    writeln!(out, "_porthole() {{")?;
    writeln!(out, "    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\"")?;
    writeln!(out, "    local prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"")?;
    writeln!(out, "    if [ \"$COMP_CWORD\" -eq 1 ]; then")?;
    let first = format!("{} {}", names.join(" "), words(top));
    writeln!(
        out,
        "        COMPREPLY=($(compgen -W \"{first}\" -- \"$cur\"))"
    )?;
    writeln!(out, "        return")?;
    writeln!(out, "    fi")?;
    writeln!(out, "    case \"$prev\" in")?;
    writeln!(out, "        -c|{})", FILE_OPTIONS.join("|"))?;
    writeln!(out, "            COMPREPLY=($(compgen -f -- \"$cur\"))")?;
    writeln!(out, "            return;;")?;
    writeln!(out, "    esac")?;
    writeln!(out, "    case \"${{COMP_WORDS[1]}}\" in")?;
    for command in commands {
        let mut words = words(&command.flags);
        for value in command.values {
            words = format!("{value} {words}");
        }
        writeln!(out, "        {})", command.name)?;
        writeln!(
            out,
            "            COMPREPLY=($(compgen -W \"{words}\" -- \"$cur\"));;"
        )?;
    }
    writeln!(out, "    esac")?;
    writeln!(out, "}}")?;
    writeln!(out, "complete -F _porthole porthole")
}

/// Text inside a zsh `'…'` spec: the quote closed and reopened around an
/// escaped one, and the brackets `_arguments` would read as structure escaped.
fn zsh_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn zsh(out: &mut String, top: &[Flag], commands: &[Command]) -> fmt::Result {
    writeln!(out, "#compdef porthole")?;
    writeln!(
        out,
        "# zsh completion for porthole (porthole completions zsh)"
    )?;
    writeln!(out, "_porthole() {{")?;
    writeln!(out, "    local -a commands")?;
    writeln!(out, "    commands=(")?;
    for command in commands {
        let text = zsh_text(command.description);
        writeln!(out, "        '{}:{text}'", command.name)?;
    }
    writeln!(out, "    )")?;
    writeln!(out, "    if (( CURRENT == 2 )); then")?;
    writeln!(out, "        _describe 'command' commands")?;
    for flag in top {
        writeln!(out, "        compadd -- {}", flag.long)?;
    }
    writeln!(out, "        return")?;
    writeln!(out, "    fi")?;
    writeln!(out, "    case $words[2] in")?;
    for command in commands {
        writeln!(out, "        {})", command.name)?;
        write!(out, "            _arguments")?;
        for flag in &command.flags {
            let text = zsh_text(flag.description);
            let value = match (flag.takes_value, flag.file) {
                (true, true) => ":file:_files",
                (true, false) => ":value: ",
                (false, _) => "",
            };
            write!(out, " \\\n                '{}[{text}]{value}'", flag.long)?;
            if let Some(c) = flag.short {
                write!(out, " \\\n                '-{c}[{text}]{value}'")?;
            }
        }
        if !command.values.is_empty() {
            write!(
                out,
                " \\\n                '1:value:({})'",
                command.values.join(" ")
            )?;
        }
        writeln!(out, " ;;")?;
    }
    writeln!(out, "    esac")?;
    writeln!(out, "}}")?;
    writeln!(out, "_porthole \"$@\"")
}

/// Text inside a fish `'…'` argument.
fn fish_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

fn fish(out: &mut String, top: &[Flag], commands: &[Command]) -> fmt::Result {
    writeln!(
        out,
        "# fish completion for porthole (porthole completions fish)"
    )?;
    writeln!(out, "complete -c porthole -f")?;
    for command in commands {
        writeln!(
            out,
            "complete -c porthole -n '__fish_use_subcommand' -a {} -d '{}'",
            command.name,
            fish_text(command.description)
        )?;
    }
    for flag in top {
        let long = flag.long.trim_start_matches("--");
        let text = fish_text(flag.description);
        writeln!(
            out,
            "complete -c porthole -n '__fish_use_subcommand' -l {long} -d '{text}'"
        )?;
    }
    for command in commands {
        for value in command.values {
            writeln!(
                out,
                "complete -c porthole -n '__fish_seen_subcommand_from {}' -a {value}",
                command.name
            )?;
        }
        for flag in &command.flags {
            let long = flag.long.trim_start_matches("--");
            let text = fish_text(flag.description);
            let value = match (flag.takes_value, flag.file) {
                (true, true) => " -r -F",
                (true, false) => " -r",
                (false, _) => "",
            };
            let short = flag.short.map(|c| format!(" -s {c}")).unwrap_or_default();
            writeln!(
                out,
                "complete -c porthole -n '__fish_seen_subcommand_from {}' -l {long}{short}{value} -d '{text}'",
                command.name
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_its_flags_are_in_every_script() {
        let (_, commands) = commands();
        assert!(commands.len() >= 8, "every subcommand");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            for command in &commands {
                assert!(text.contains(command.name), "{shell:?}: {}", command.name);
                for flag in &command.flags {
                    let long = flag.long.trim_start_matches("--");
                    assert!(text.contains(long), "{shell:?}: {}", flag.long);
                }
            }
        }
        let (_, commands) = super::commands();
        let server = commands
            .iter()
            .find(|c| c.name == "server")
            .expect("server");
        let cert = server
            .flags
            .iter()
            .find(|f| f.long == "--cert")
            .expect("--cert");
        assert!(cert.takes_value && cert.file);
        assert!("powershell".parse::<Shell>().is_err());
    }
}
