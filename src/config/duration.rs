//! Durations as people write them in configs and flags: `"500ms"`, `"10s"`,
//! `"2m"`, `"1h"`. Zero parses; whether zero makes sense is up to the field's
//! validation.

use std::{fmt, time::Duration};

use serde::Deserializer;

/// Why a duration did not parse. The message names the text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Not digits followed by `ms`, `s`, `m` or `h`.
    Invalid { text: String },
    /// More than a `u64` of seconds (or milliseconds).
    TooLarge { text: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { text } => write!(
                f,
                "invalid duration {text:?}: expected a number followed by ms, s, m or h"
            ),
            Self::TooLarge { text } => write!(f, "duration {text:?} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `"500ms"`, `"10s"`, `"2m"` or `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid { text: text.into() };
    let too_large = || DurationError::TooLarge { text: text.into() };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let secs_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid()),
    };
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(too_large)
}

/// serde `deserialize_with` helper: a duration written as a string with a unit.
pub fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"10s\" or \"500ms\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    // `any`, not `str`: ron answers `deserialize_str` on a number with a bare
    // "Expected string"; this way the message says what a duration looks like.
    de.deserialize_any(Visitor)
}

/// serde `default` helper: `N` seconds.
pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "1.5s", " 10s", "-1s", "10 s", "10S"] {
            let err = parse_duration(bad).expect_err(bad);
            assert_eq!(err, DurationError::Invalid { text: bad.into() });
        }
        for huge in ["99999999999999999999s", "18446744073709551615h"] {
            let err = parse_duration(huge).expect_err(huge);
            assert_eq!(err, DurationError::TooLarge { text: huge.into() });
        }
    }

    #[test]
    fn duration_errors_read_as_before() {
        // These texts reach users through config errors and `--connect-timeout`.
        let err = parse_duration("10x").expect_err("unit");
        assert_eq!(
            err.to_string(),
            "invalid duration \"10x\": expected a number followed by ms, s, m or h"
        );
        let err = parse_duration("18446744073709551615h").expect_err("overflow");
        assert_eq!(
            err.to_string(),
            "duration \"18446744073709551615h\" is too large"
        );
    }
}
