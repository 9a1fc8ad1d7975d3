//! Finds where each value sits in a RON source, so validation errors can name the
//! line and column of the value they are about. A small scanner that understands
//! just enough RON (brackets, keys, strings, raw strings, chars, nested comments).

use super::*;

/// Turns a value path (`"token"`, `"services[2].remote_port"`) into a [`ConfigError`]
/// positioned at that value in the source, when there is a source.
pub struct Locator {
    origin: PathBuf,
    values: Vec<(String, usize, usize)>,
    /// The config file's directory; `None` for command-line values.
    dir: Option<PathBuf>,
}

impl Locator {
    pub fn new(source: &Option<Source>) -> Self {
        match source {
            Some(s) => Self {
                origin: s.path.clone(),
                values: value_positions(&s.text),
                dir: s.path.parent().map(Path::to_owned),
            },
            None => Self {
                origin: PathBuf::from(COMMAND_LINE),
                values: Vec::new(),
                dir: None,
            },
        }
    }

    /// A path from the config, relative to the config file's directory (or to
    /// the working directory for values from the command line).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// An error at the first of `paths` found in the source (`""` is the whole config),
    /// or without a position if none is (the value came from a flag or a default).
    pub fn error(&self, paths: &[&str], message: impl Into<String>) -> ConfigError {
        let (line, column) = paths
            .iter()
            .find_map(|p| self.values.iter().find(|(path, ..)| path == p))
            .map_or((0, 0), |&(_, line, col)| (line, col));
        ConfigError {
            origin: self.origin.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// One open bracket while scanning: its value path, the key awaiting a value, the
/// positional index (for lists and tuples), and the path of the value being read.
struct Frame {
    path: String,
    key: Option<String>,
    index: usize,
    current: Option<String>,
}

/// A character cursor that counts 1-based lines and columns in characters, as ron does.
pub(super) struct Cursor {
    chars: Vec<char>,
    i: usize,
    pub(super) line: usize,
    pub(super) col: usize,
}

impl Cursor {
    pub(super) fn new(text: &str) -> Self {
        Cursor {
            chars: text.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
        }
    }

    pub(super) fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            (self.line, self.col) = (self.line + 1, 1);
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// Skips whitespace and comments (block comments nest in RON).
    pub(super) fn skip_trivia(&mut self) {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => self.skip_block_comment(),
                _ => return,
            }
        }
    }

    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.bump() {
            match (c, self.peek(0)) {
                ('/', Some('*')) => (depth, _) = (depth + 1, self.bump()),
                ('*', Some('/')) => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Skips a quoted string or char literal starting at the quote, honouring `\`.
    fn skip_quoted(&mut self, quote: char) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                c if c == quote => return,
                _ => {}
            }
        }
    }

    /// Skips `r"..."` or `r#"..."#` starting at the `r`.
    fn skip_raw_string(&mut self) {
        self.bump();
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            (hashes, _) = (hashes + 1, self.bump());
        }
        self.bump();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                (0..hashes).for_each(|_| {
                    self.bump();
                });
                return;
            }
        }
    }

    pub(super) fn ident(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
            out.push(c);
            self.bump();
        }
        out
    }
}

/// Maps every value in RON text to the path that names it and its line and column:
/// `""` for the whole config, `token`, `allow_ports[1]`, `services[2].remote_port`.
/// A lightweight scan, not a parser: it runs only on text ron has already accepted.
pub(super) fn value_positions(text: &str) -> Vec<(String, usize, usize)> {
    let mut cur = Cursor::new(text);
    let root = Frame {
        path: String::new(),
        key: None,
        index: 0,
        current: None,
    };
    let (mut stack, mut out) = (vec![root], Vec::new());
    loop {
        cur.skip_trivia();
        let Some(c) = cur.peek(0) else { return out };
        let (line, col) = (cur.line, cur.col);
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            return out;
        };
        match c {
            ',' => {
                (top.key, top.current, top.index) = (None, None, top.index + 1);
                cur.bump();
                continue;
            }
            ')' | ']' | '}' => {
                if depth > 1 {
                    stack.pop();
                }
                cur.bump();
                continue;
            }
            _ => {}
        }
        let is_raw = c == 'r' && matches!(cur.peek(1), Some('"' | '#'));
        let mut consumed = false;
        if top.current.is_none() && (c.is_alphabetic() || c == '_') && !is_raw {
            let ident = cur.ident();
            cur.skip_trivia();
            if cur.peek(0) == Some(':') {
                top.key = Some(ident);
                cur.bump();
                continue;
            }
            consumed = true;
        }
        if top.current.is_none() {
            let path = match (&top.key, depth) {
                (_, 1) => String::new(),
                (Some(key), _) if top.path.is_empty() => key.clone(),
                (Some(key), _) => format!("{}.{key}", top.path),
                (None, _) => format!("{}[{}]", top.path, top.index),
            };
            out.push((path.clone(), line, col));
            top.current = Some(path);
        }
        if consumed {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                let path = top.current.clone().unwrap_or_default();
                stack.push(Frame {
                    path,
                    key: None,
                    index: 0,
                    current: None,
                });
                cur.bump();
            }
            '"' | '\'' => cur.skip_quoted(c),
            _ if is_raw => cur.skip_raw_string(),
            _ => {
                cur.bump();
            }
        }
    }
}
