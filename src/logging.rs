//! Log output of every role: stderr, level from `PORTHOLE_LOG`, colour only
//! when stderr is a terminal and `NO_COLOR` is unset (a file or journald must
//! not collect escape codes), and durations rounded for people.
//! `PORTHOLE_LOG_FORMAT=json` makes it one JSON object a line, for log
//! shippers (Loki, Elasticsearch, `jq`), never coloured.

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use tracing::Level;

/// The environment variable that sets the log level.
pub const LOG_ENV: &str = "PORTHOLE_LOG";

/// The environment variable that sets the log format.
pub const LOG_FORMAT_ENV: &str = "PORTHOLE_LOG_FORMAT";

/// How each log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// For people: `2025-01-01T00:00:00.000000Z  INFO message key=value`.
    #[default]
    Text,
    /// For machines: `{"timestamp":…,"level":"INFO","fields":{"message":…}}`.
    Json,
}

/// `PORTHOLE_LOG` holds something that is not a level.
#[derive(Debug)]
pub struct UnknownLevel(pub String);

impl fmt::Display for UnknownLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LOG_ENV}={:?} is not a log level; use one of error, warn, info, debug, trace",
            self.0
        )
    }
}

impl std::error::Error for UnknownLevel {}

/// `PORTHOLE_LOG_FORMAT` holds something that is not a format.
#[derive(Debug)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LOG_FORMAT_ENV}={:?} is not a log format; use text or json",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

/// A log variable of the environment holds something porthole does not
/// know: a usage error, refused before anything runs.
#[derive(Debug)]
pub enum LogEnvError {
    Level(UnknownLevel),
    Format(UnknownFormat),
}

impl fmt::Display for LogEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogEnvError::Level(e) => e.fmt(f),
            LogEnvError::Format(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LogEnvError {}

/// A format by name, in any case.
pub fn parse_format(text: &str) -> Result<Format, UnknownFormat> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err(UnknownFormat(text.to_owned())),
    }
}

/// A level by name, in any case.
pub fn parse_level(text: &str) -> Result<Level, UnknownLevel> {
    match text.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(Level::ERROR),
        "warn" | "warning" => Ok(Level::WARN),
        "info" => Ok(Level::INFO),
        "debug" => Ok(Level::DEBUG),
        "trace" => Ok(Level::TRACE),
        _ => Err(UnknownLevel(text.to_owned())),
    }
}

/// Colour only for a person at a terminal, and never when `NO_COLOR` is set
/// to anything non-empty (<https://no-color.org>).
pub fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the process's log subscriber: `PORTHOLE_LOG`, else `default`;
/// `PORTHOLE_LOG_FORMAT`, else text. Both are read before either is used, so
/// a mistake in one is reported even when the other is fine.
pub fn init(default: Level) -> Result<(), LogEnvError> {
    let level = match std::env::var(LOG_ENV) {
        Ok(text) if !text.is_empty() => parse_level(&text).map_err(LogEnvError::Level)?,
        _ => default,
    };
    let format = match std::env::var(LOG_FORMAT_ENV) {
        Ok(text) if !text.is_empty() => parse_format(&text).map_err(LogEnvError::Format)?,
        _ => Format::default(),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    match format {
        Format::Text => {
            let colour = colour_wanted(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            builder.with_ansi(colour).init();
        }
        // Escape codes inside JSON strings would reach whatever parses them.
        Format::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

/// A duration as people write it in a log line: `180ms`, `1.4s`, `30s`, `2m5s`
/// (a jittered backoff is not worth nanoseconds).
#[derive(Clone, Copy, Debug)]
pub struct Rounded(pub Duration);

impl fmt::Display for Rounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0..1_000 => write!(f, "{ms}ms"),
            1_000..10_000 => write!(f, "{:.1}s", self.0.as_secs_f64()),
            10_000..60_000 => write!(f, "{}s", self.0.as_secs()),
            _ => {
                let secs = self.0.as_secs();
                match secs % 60 {
                    0 => write!(f, "{}m", secs / 60),
                    s => write!(f, "{}m{s}s", secs / 60),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_and_unknown_ones_refused_with_the_list() {
        assert_eq!(parse_level("DEBUG").expect("a level"), Level::DEBUG);
        assert_eq!(parse_level("warn").expect("a level"), Level::WARN);
        let err = parse_level("verbose").expect_err("not a level");
        let text = err.to_string();
        assert!(text.contains("\"verbose\""), "{text}");
        assert!(text.contains("error, warn, info, debug, trace"), "{text}");
    }

    #[test]
    fn formats_by_name_and_unknown_ones_refused_naming_the_variable() {
        assert_eq!(parse_format("json").expect("a format"), Format::Json);
        assert_eq!(parse_format(" JSON ").expect("a format"), Format::Json);
        assert_eq!(parse_format("Text").expect("a format"), Format::Text);
        let text = parse_format("logfmt")
            .expect_err("not a format")
            .to_string();
        assert_eq!(
            text,
            "PORTHOLE_LOG_FORMAT=\"logfmt\" is not a log format; use text or json"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }

    #[test]
    fn durations_round_for_people() {
        let cases = [
            (Duration::from_nanos(90_235_653), "90ms"),
            (Duration::from_millis(1_437), "1.4s"),
            (Duration::from_millis(29_999), "29s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(125), "2m5s"),
        ];
        for (d, text) in cases {
            assert_eq!(Rounded(d).to_string(), text);
        }
    }
}
