//! Files that are not porthole's RON: a rathole or frp TOML file, a JSON or
//! YAML file, RON fields without their parentheses, an empty file. ron stops at
//! the first character of such a file with words about our Rust types
//! (``Expected struct `Probe` but found `bind` ``); this says what the file
//! looks like and which example to follow instead.
//!
//! Only text that ron could not have read is judged: a porthole config is one
//! RON struct, so its first token (after comments and `#![enable(..)]`
//! attributes) is `(` or a struct name and `(`. When it is, ron's own message
//! stands; the error is inside the struct.

use super::Role;
use crate::config::locate::Cursor;

/// Where an explained error points (`(0, 0)`: the whole file), and what it says.
type Explained = ((usize, usize), String);

/// What a file that is not a RON struct looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Empty,
    Toml,
    Json,
    Yaml,
    /// `key: value,` lines: RON fields without the enclosing `( ... )`.
    BareFields,
    /// A RON struct after lines that start with `#` (a comment elsewhere); the
    /// position is the first such line's `#`.
    HashComment(usize, usize),
    Other,
}

/// The one-line explanation of a parse error that ron hit before the config's
/// opening `(`, or `None` when the text is shaped like a RON struct.
/// `struct_name` is the raw config struct being parsed, when ron knows it.
pub(super) fn explain(text: &str, struct_name: Option<&str>) -> Option<Explained> {
    if starts_like_ron(text) {
        return None;
    }
    let example = example(command_role(struct_name).or_else(|| guess_role(text)));
    let message = match shape(text) {
        Shape::HashComment(line, col) => {
            let msg = "`#` does not start a comment in RON; write `//` instead";
            return Some(((line, col), msg.to_owned()));
        }
        Shape::Empty => format!("the file is empty; porthole configs are RON, see {example}"),
        Shape::Toml => format!("this looks like TOML; porthole configs are RON, see {example}"),
        Shape::Json => format!("this looks like JSON; porthole configs are RON, see {example}"),
        Shape::Yaml => format!("this looks like YAML; porthole configs are RON, see {example}"),
        Shape::BareFields => format!(
            "the fields must be inside parentheses, `( ... )`: a porthole config is one RON struct, see {example}"
        ),
        Shape::Other => format!(
            "this is not a porthole config: porthole configs are RON and start with `(`, see {example}"
        ),
    };
    Some(((0, 0), message))
}

/// Whether the first token, after RON comments and attributes, opens a struct.
fn starts_like_ron(text: &str) -> bool {
    let mut cur = Cursor::new(text);
    loop {
        cur.skip_trivia();
        if cur.peek(0) == Some('#') && cur.peek(1) == Some('!') {
            skip_attribute(&mut cur);
            continue;
        }
        break;
    }
    match cur.peek(0) {
        Some('(') => true,
        Some(c) if c.is_alphabetic() || c == '_' => {
            cur.ident();
            cur.skip_trivia();
            cur.peek(0) == Some('(')
        }
        _ => false,
    }
}

/// Skips `#![...]`, brackets nested.
fn skip_attribute(cur: &mut Cursor) {
    let mut depth = 0usize;
    while let Some(c) = cur.bump() {
        match c {
            '[' => depth += 1,
            ']' if depth <= 1 => return,
            ']' => depth -= 1,
            _ => {}
        }
    }
}

/// The lines that carry something, trimmed: not blank, not a `#` or `//`
/// comment (`#` comments TOML and YAML).
fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with("//"))
}

fn shape(text: &str) -> Shape {
    let Some(first) = content_lines(text).next() else {
        return Shape::Empty;
    };
    if first.starts_with('(') {
        // Content starts like RON, so a `#` line came first.
        let hash = text.lines().enumerate().find_map(|(i, line)| {
            let col = line.chars().take_while(|c| c.is_whitespace()).count();
            line.trim_start()
                .starts_with('#')
                .then_some((i + 1, col + 1))
        });
        return hash.map_or(Shape::Other, |(line, col)| Shape::HashComment(line, col));
    }
    if first.starts_with('{') {
        return Shape::Json;
    }
    if first.starts_with('[') {
        return if is_table_header(first) {
            Shape::Toml
        } else {
            Shape::Json
        };
    }
    if first == "---" || first.starts_with("%YAML") || first.starts_with("- ") {
        return Shape::Yaml;
    }
    match leading_key(first) {
        Some((_, '=')) => Shape::Toml,
        Some((_, _)) if content_lines(text).any(|line| line.ends_with(',')) => Shape::BareFields,
        Some((_, _)) => Shape::Yaml,
        None => Shape::Other,
    }
}

/// `[name]`, `[a.b]` or `[[name]]`, the way TOML opens a table.
fn is_table_header(line: &str) -> bool {
    let line = line.split(" #").next().unwrap_or(line).trim_end();
    let inner = line.trim_start_matches('[').trim_end_matches(']');
    line.ends_with(']')
        && !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '))
}

/// A line's leading `key` (bare or quoted) and the `=` or `:` after it.
fn leading_key(line: &str) -> Option<(String, char)> {
    let line = line.trim_start_matches("- ");
    let (key, rest) = match line.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => {
            let end = line
                .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .unwrap_or(line.len());
            line.split_at(end)
        }
    };
    let sep = rest.trim_start().chars().next()?;
    (!key.is_empty() && matches!(sep, '=' | ':')).then(|| (key.to_owned(), sep))
}

/// The role of the command that is loading the file, from the name of the
/// struct it parses (`porthole server -c x.toml` wants a server config even if
/// the file is a client's). `recognise` parses a role-less probe, so
/// `porthole check` falls back to [`guess_role`].
fn command_role(struct_name: Option<&str>) -> Option<Role> {
    // The raw config structs' names (config, forward and http_proxy modules).
    match struct_name? {
        "ServerConfig" => Some(Role::Server),
        "ClientConfig" => Some(Role::Client),
        "ForwardConfig" => Some(Role::Forward),
        "HttpProxyConfig" => Some(Role::HttpProxy),
        _ => None,
    }
}

/// The role a foreign file is for, by the keys it uses: rathole's `[server]`
/// and `[client]` tables, frp's `bindPort` and `serverAddr`, or porthole's own
/// field names written in another format. `None` when the hints disagree.
fn guess_role(text: &str) -> Option<Role> {
    let mut votes = [0usize; 4];
    for (header, key) in keys(text) {
        if let Some(role) = key_role(header, &key) {
            votes[role as usize] += 1;
        }
    }
    let best = votes.iter().copied().max().filter(|&n| n > 0)?;
    let mut winners = [Role::Server, Role::Client, Role::Forward, Role::HttpProxy]
        .into_iter()
        .filter(|&role| votes[role as usize] == best);
    match (winners.next(), winners.next()) {
        (Some(role), None) => Some(role),
        _ => None,
    }
}

/// Table headers (`true`) and keys of a TOML, YAML or JSON text, lower-cased
/// without `_` and `-` (so `bindPort`, `bind_port` and `bind-port` agree).
fn keys(text: &str) -> Vec<(bool, String)> {
    let normal = |key: &str| {
        let first = key
            .split('.')
            .next()
            .unwrap_or(key)
            .trim_matches(['"', '\'']);
        first
            .chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let mut out = Vec::new();
    for line in content_lines(text) {
        if is_table_header(line) {
            out.push((true, normal(line.trim_start_matches('[').trim_start())));
            continue;
        }
        if let Some((key, _)) = leading_key(line) {
            // A dotted TOML key (`server.bind_addr = ..`) names a table.
            out.push((key.contains('.'), normal(&key)));
        }
        // JSON keeps every key quoted, often many to a line: `"key":`.
        let mut rest = line;
        while let Some((_, after)) = rest.split_once('"') {
            let Some((key, tail)) = after.split_once('"') else {
                break;
            };
            if tail.trim_start().starts_with(':') {
                out.push((false, normal(key)));
            }
            rest = tail;
        }
    }
    out
}

fn key_role(header: bool, key: &str) -> Option<Role> {
    match (header, key) {
        (true, "server") => Some(Role::Server),
        (true, "client" | "proxies" | "visitors") => Some(Role::Client),
        (false, "server") => Some(Role::Client),
        (_, "bind" | "bindaddr" | "bindport" | "allowports" | "vhosthttpport") => {
            Some(Role::Server)
        }
        (
            _,
            "serveraddr" | "serverport" | "remoteaddr" | "local" | "localaddr" | "localip"
            | "localport" | "remoteport",
        ) => Some(Role::Client),
        (_, "forwards" | "target") => Some(Role::Forward),
        (_, "listen") => Some(Role::HttpProxy),
        _ => None,
    }
}

/// The shipped example to follow, or all of them when the role is unknown.
fn example(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Server) => "examples/server.ron",
        Some(Role::Client) => "examples/client.ron",
        Some(Role::Forward) => "examples/forward.ron",
        Some(Role::HttpProxy) => "examples/http-proxy.ron",
        None => "examples/server.ron, client.ron, forward.ron or http-proxy.ron",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(text: &str) -> Option<String> {
        explain(text, Some("Probe")).map(|((line, col), msg)| format!("{line}:{col}: {msg}"))
    }

    #[test]
    fn ron_structs_keep_ron_s_message() {
        for text in [
            "(bind: 1",
            "// c\n/* (x */ (bind: 1)",
            "#![enable(implicit_some)]\n(bind: \"x\" token)",
            "Config(bind: 1",
        ] {
            assert_eq!(says(text), None, "{text:?}");
        }
    }

    #[test]
    fn rathole_and_frp_files_name_toml_and_the_role() {
        let rathole_server = "# rathole\n[server]\nbind_addr = \"0.0.0.0:2333\"\n\n[server.services.ssh]\ntoken = \"x\"\nbind_addr = \"0.0.0.0:5202\"\n";
        let rathole_client = "[client]\nremote_addr = \"example.com:2333\"\n[client.services.ssh]\ntoken = \"x\"\nlocal_addr = \"127.0.0.1:22\"\n";
        let frps = "bindPort = 7000\nvhostHTTPPort = 8080\n";
        let frpc = "serverAddr = \"x.x.x.x\"\nserverPort = 7000\n\n[[proxies]]\nname = \"ssh\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = 22\nremotePort = 6000\n";
        let frp_ini = "[common]\nserver_addr = x.x.x.x\nserver_port = 7000\n";
        for (text, example) in [
            (rathole_server, "server"),
            (rathole_client, "client"),
            (frps, "server"),
            (frpc, "client"),
            (frp_ini, "client"),
        ] {
            assert_eq!(
                says(text).as_deref(),
                Some(format!("0:0: this looks like TOML; porthole configs are RON, see examples/{example}.ron").as_str()),
                "{text}"
            );
        }
    }

    #[test]
    fn json_yaml_and_other_shapes() {
        let cases = [
            (
                "{\"bind\": \"0.0.0.0:7000\", \"token\": \"x\"}",
                "JSON",
                "server",
            ),
            ("[\n  {\"forwards\": []}\n]", "JSON", "forward"),
            (
                "---\nserver: x:7000\nservices:\n  - local: 127.0.0.1:22\n",
                "YAML",
                "client",
            ),
            ("listen: 127.0.0.1:3128\n", "YAML", "http-proxy"),
        ];
        for (text, format, role) in cases {
            let want = format!(
                "0:0: this looks like {format}; porthole configs are RON, see examples/{role}.ron"
            );
            assert_eq!(says(text), Some(want), "{text}");
        }
        let bare = says("bind: \"0.0.0.0:7000\",\ntoken: \"x\",\n").expect("explained");
        assert!(bare.contains("must be inside parentheses"), "{bare}");
        assert!(bare.ends_with("see examples/server.ron"), "{bare}");
        let empty = says("\n  // nothing yet\n").expect("explained");
        assert_eq!(
            empty,
            "0:0: the file is empty; porthole configs are RON, see examples/server.ron, client.ron, forward.ron or http-proxy.ron"
        );
        let hash = says("\n  # my server\n(bind: \"x\")").expect("explained");
        assert_eq!(
            hash,
            "2:3: `#` does not start a comment in RON; write `//` instead"
        );
        let other = says("\"bind\"").expect("explained");
        assert!(other.contains("start with `(`"), "{other}");
    }

    #[test]
    fn the_command_s_role_beats_the_file_s() {
        let (_, msg) =
            explain("# frpc\nserverAddr = \"x\"\n", Some("ServerConfig")).expect("explained");
        assert!(msg.ends_with("see examples/server.ron"), "{msg}");
    }
}
