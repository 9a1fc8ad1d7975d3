//! The one loader every role uses: read a file, parse its RON into the role's raw
//! struct (which keeps the text, so validation can point into it), and tell a
//! file's role by its distinctive field. Errors carry the file, line and column.
//!
//! Two kinds of parse error are rephrased from the text itself, since ron's
//! words for them mislead: a file that is not RON at all (a TOML, JSON or YAML
//! file from another tunnel, see [`foreign`]) and an integer too large for its
//! field (see [`bounds`]).

use std::{
    fmt,
    path::{Path, PathBuf},
};

use ron::{error::SpannedError, extensions::Extensions};
use serde::{Deserialize, de::DeserializeOwned, de::IgnoredAny};

use super::{ConfigError, Locator};

mod bounds;
mod foreign;

/// Where a raw config was read from, kept so validation can point into it.
#[derive(Clone)]
pub struct Source {
    pub(super) path: PathBuf,
    pub(super) text: String,
}

impl Source {
    fn new(text: &str, origin: &Path) -> Self {
        Source {
            path: origin.to_path_buf(),
            text: text.to_owned(),
        }
    }
}

impl fmt::Debug for Source {
    // The text may hold a secret; show only where it came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.fmt(f)
    }
}

/// A role's raw config: its file shape (every struct denies unknown fields),
/// which keeps the [`Source`] it was parsed from for [`Locator`].
pub trait ConfigFile: DeserializeOwned {
    /// Stores the source; called once, right after parsing.
    fn set_source(&mut self, source: Source);
}

/// Parses RON text into a role's raw config; `origin` names it in errors. Does
/// not validate.
pub fn parse<C: ConfigFile>(text: &str, origin: &Path) -> Result<C, ConfigError> {
    let mut config: C = parse_value(text, origin)?;
    config.set_source(Source::new(text, origin));
    Ok(config)
}

/// Reads and parses a role's config file. Flags go on the result, then the
/// role's `validate`.
pub fn load<C: ConfigFile>(path: &Path) -> Result<C, ConfigError> {
    parse(&read(path)?, path)
}

fn ron_options() -> ron::Options {
    // IMPLICIT_SOME lets people write `token: "x"` rather than `token: Some("x")`;
    // UNWRAP_VARIANT_NEWTYPES lets them write `Tls(cert: ..)` rather than
    // `Tls((cert: ..))`.
    ron::Options::default()
        .with_default_extension(Extensions::IMPLICIT_SOME | Extensions::UNWRAP_VARIANT_NEWTYPES)
}

fn parse_value<'a, T: Deserialize<'a>>(source: &'a str, origin: &Path) -> Result<T, ConfigError> {
    ron_options()
        .from_str(source)
        .map_err(|e| parse_error(origin, source, e, struct_name::<T>()))
}

/// The name of the struct `T` is, as ron knows it: ron names the struct it
/// expected when the text is empty. Lets an error about a file that is not RON
/// name the loading command's example (see [`foreign`]).
fn struct_name<'a, T: Deserialize<'a>>() -> Option<&'static str> {
    match ron_options().from_str::<T>("") {
        Err(SpannedError {
            code: ron::Error::ExpectedNamedStructLike(name),
            ..
        }) => Some(name),
        _ => None,
    }
}

/// ron's error, placed where ron put it, unless the text says more: a file
/// that is not RON gets one line naming its format and the example to follow
/// (no position: the whole file is wrong), an integer out of its type's range
/// gets the field and the range.
fn parse_error(
    origin: &Path,
    text: &str,
    err: SpannedError,
    struct_name: Option<&str>,
) -> ConfigError {
    let at = |(line, column), message| ConfigError {
        origin: origin.to_path_buf(),
        line,
        column,
        message,
    };
    if let Some((position, message)) = foreign::explain(text, struct_name) {
        return at(position, message);
    }
    if err.code == ron::Error::IntegerOutOfBounds {
        let (position, message) = bounds::explain(text, err.span.start);
        return at(position, message);
    }
    at(
        (err.span.start.line, err.span.start.col),
        ron_message(&err.code),
    )
}

/// ron's wording for the errors people hit most, rephrased to say what to change.
fn ron_message(code: &ron::Error) -> String {
    use ron::Error as E;
    match code {
        E::NoSuchStructField {
            expected, found, ..
        } => {
            format!(
                "unknown field `{found}`; expected one of: {}",
                expected.join(", ")
            )
        }
        E::NoSuchEnumVariant {
            expected, found, ..
        } => {
            format!(
                "unknown variant `{found}`; expected one of: {}",
                expected.join(", ")
            )
        }
        E::MissingStructField { field, .. } => format!("missing field `{field}`; add it"),
        E::DuplicateStructField { field, .. } => {
            format!("field `{field}` is given twice; keep one")
        }
        E::InvalidValueForType { expected, found } => format!("expected {expected}, found {found}"),
        other => other.to_string(),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the config file: {e}"),
    })
}

/// Which program a config file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    Forward,
    HttpProxy,
}

/// Just enough of any file to tell which it is; unknown fields are ignored here.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    bind: Option<IgnoredAny>,
    #[serde(default)]
    server: Option<IgnoredAny>,
    #[serde(default)]
    forwards: Option<IgnoredAny>,
    #[serde(default)]
    listen: Option<IgnoredAny>,
}

/// Reads a file and recognises its role by its distinctive field (`bind` =>
/// server, `server` => client, `forwards` => forward, `listen` => http-proxy).
/// Returns the role and the text, for [`parse`] with that role's raw config.
pub fn recognise(path: &Path) -> Result<(Role, String), ConfigError> {
    let text = read(path)?;
    let probe: Probe = parse_value(&text, path)?;
    let roles = [
        probe.bind.is_some(),
        probe.server.is_some(),
        probe.forwards.is_some(),
        probe.listen.is_some(),
    ];
    let role_error = match roles {
        [true, false, false, false] => return Ok((Role::Server, text)),
        [false, true, false, false] => return Ok((Role::Client, text)),
        [false, false, true, false] => return Ok((Role::Forward, text)),
        [false, false, false, true] => return Ok((Role::HttpProxy, text)),
        [false, false, false, false] => {
            "cannot tell the role: a server config needs `bind`, a client config `server`, \
             a forward config `forwards`, an http-proxy config `listen`"
        }
        _ => {
            "mixes `bind` (server), `server` (client), `forwards` and `listen` (http-proxy); \
             a file configures one role"
        }
    };
    let source = Some(Source::new(&text, path));
    Err(Locator::new(&source).error(&[""], role_error))
}
