//! An integer that does not fit its field's type (`remote_port: 70000`,
//! `workers: -1`). ron says only "Integer is out of bounds", at the number's
//! digits; this names the number as written, the field it is for and the
//! range that field takes, placed at the number's first character (its sign).
//!
//! ron's error carries neither the field nor the number, so both come from the
//! text: the number is the literal at ron's position, the field the value
//! path that [`value_positions`] finds there (`services[1].remote_port`).

use ron::error::Position;

use crate::config::locate::value_positions;
use crate::config::{
    MAX_MUX_LINKS, MAX_POOL_SIZE, MAX_SERVICES, MAX_STREAMS_LIMIT, MAX_UDP_FLOWS_LIMIT,
    MAX_VISITORS_LIMIT,
};
use crate::runtime::MAX_WORKERS;

/// Where the number starts, and the message.
pub(super) fn explain(text: &str, at: Position) -> ((usize, usize), String) {
    let Some(line_text) = text.lines().nth(at.line.saturating_sub(1)) else {
        return ((at.line, at.col), "integer is out of range".into());
    };
    let chars: Vec<char> = line_text.chars().collect();
    let start = literal_start(&chars, at.col.saturating_sub(1));
    let literal: String = chars
        .iter()
        .skip(start)
        .enumerate()
        .take_while(|&(i, &c)| {
            c.is_ascii_alphanumeric() || c == '_' || (i == 0 && matches!(c, '+' | '-'))
        })
        .map(|(_, &c)| c)
        .collect();
    let position = (at.line, start + 1);
    let field = value_positions(text)
        .into_iter()
        .filter(|&(_, line, col)| (line, col) == position)
        .map(|(path, ..)| field_name(&path))
        .next_back();
    let range = range(field.as_deref(), magnitude(&literal));
    let message = match field {
        Some(field) => format!("{field} {literal} is out of range: {range}"),
        None => format!("{literal} is out of range: {range}"),
    };
    (position, message)
}

/// The index of the literal's first character: ron points past a sign and a
/// `0x`, `0o` or `0b` prefix (at the digits) when it parses for a type, at
/// the prefix when it parses for any.
fn literal_start(chars: &[char], digits: usize) -> usize {
    let mut start = digits.min(chars.len());
    let before = |i: usize, n: usize| chars.get(i.checked_sub(n)?..i);
    if let Some(['0', 'x' | 'o' | 'b']) = before(start, 2) {
        start -= 2;
    }
    if let Some(['-' | '+']) = before(start, 1) {
        start -= 1;
    }
    start
}

/// The field a value path is for: its last key without list indices
/// (`services[1].remote_port` → `remote_port`, `allow_ports[0][1]` →
/// `allow_ports`), with its parent when that is a struct, not a list entry
/// (`data_links.size`).
fn field_name(path: &str) -> String {
    let mut keys = path.rsplit('.');
    let last = keys.next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    match keys.next() {
        Some(parent) if !parent.contains('[') && !parent.is_empty() => {
            format!("{parent}.{last}")
        }
        _ => last.to_owned(),
    }
}

/// How far out a refused literal is, which tells its field's type: porthole's
/// integer fields are `u16` (ports), `usize` and `u64`, so a number that fits
/// a `u64` and was still refused was meant for a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Magnitude {
    Negative,
    AboveU16,
    AboveU64,
}

fn magnitude(literal: &str) -> Magnitude {
    if literal.starts_with('-') {
        return Magnitude::Negative;
    }
    let digits = literal.trim_start_matches('+').replace('_', "");
    let (radix, digits) = match digits.get(..2) {
        Some("0x") => (16, &digits[2..]),
        Some("0o") => (8, &digits[2..]),
        Some("0b") => (2, &digits[2..]),
        _ => (10, digits.as_str()),
    };
    match u64::from_str_radix(digits, radix) {
        Ok(_) => Magnitude::AboveU16,
        Err(_) => Magnitude::AboveU64,
    }
}

/// The range a field takes, as its validation states it.
fn range(field: Option<&str>, magnitude: Magnitude) -> String {
    let port = "a port is 1–65535";
    let count = |max: usize| format!("use 1 to {max}");
    match field {
        Some("remote_port") => format!("{port} (0 or omitted lets the server pick)"),
        Some(f) if f.ends_with("port") || f.ends_with("ports") => port.to_owned(),
        Some("workers") => format!("use 1 to {MAX_WORKERS} (or leave it out for one per core)"),
        Some("max_services_per_client") => count(MAX_SERVICES),
        Some("max_visitors_per_client" | "max_waiting_visitors" | "max_links") => {
            count(MAX_VISITORS_LIMIT)
        }
        Some("max_streams_per_link") => count(MAX_STREAMS_LIMIT),
        Some("max_udp_flows") => count(MAX_UDP_FLOWS_LIMIT),
        Some("data_links.size") => count(MAX_POOL_SIZE),
        Some("data_links.links") => count(MAX_MUX_LINKS),
        _ => match magnitude {
            Magnitude::Negative => "it cannot be negative".to_owned(),
            Magnitude::AboveU16 => "the largest it takes is 65535".to_owned(),
            Magnitude::AboveU64 => format!("the largest it takes is {}", u64::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataLinks, ServiceConfig};
    use serde::Deserialize;

    /// Integer fields of every kind, as ron sees them in the real configs.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Fields {
        #[serde(default)]
        services: Vec<ServiceConfig>,
        #[serde(default)]
        workers: Option<usize>,
        #[serde(default)]
        allow_ports: Vec<(u16, u16)>,
        #[serde(default)]
        data_links: Option<DataLinks>,
        #[serde(default)]
        max_connections: usize,
    }

    /// ron's error on `text`, explained.
    fn says(text: &str) -> String {
        let err = super::super::ron_options()
            .from_str::<Fields>(text)
            .expect_err("out of range");
        assert_eq!(err.code, ron::Error::IntegerOutOfBounds, "{text}");
        let ((line, col), msg) = explain(text, err.span.start);
        format!("{line}:{col}: {msg}")
    }

    #[test]
    fn the_field_and_the_number_come_from_the_text() {
        let cases = [
            (
                "(services: [(name: \"a\", local: \"x:1\"),\n  (name: \"b\", local: \"x:2\", remote_port: 70000)])",
                "2:42: remote_port 70000 is out of range: a port is 1–65535 (0 or omitted lets the server pick)",
            ),
            (
                "(\n  workers: -1,\n)",
                "2:12: workers -1 is out of range: use 1 to 256 (or leave it out for one per core)",
            ),
            (
                "(allow_ports: [(1, 0x1_0000)])",
                "1:20: allow_ports 0x1_0000 is out of range: a port is 1–65535",
            ),
            (
                "(data_links: Pooled(size: 99999999999999999999))",
                "1:27: data_links.size 99999999999999999999 is out of range: use 1 to 256",
            ),
            (
                "(max_connections: 99999999999999999999)",
                "1:19: max_connections 99999999999999999999 is out of range: the largest it takes is 18446744073709551615",
            ),
            (
                "(max_connections: -5)",
                "1:19: max_connections -5 is out of range: it cannot be negative",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(says(text), want, "{text}");
        }
    }

    #[test]
    fn magnitudes() {
        assert_eq!(magnitude("-1"), Magnitude::Negative);
        assert_eq!(magnitude("70_000"), Magnitude::AboveU16);
        assert_eq!(magnitude("0xFFFF_FFFF_FFFF_FFFF"), Magnitude::AboveU16);
        assert_eq!(magnitude("0x1_0000_0000_0000_0000"), Magnitude::AboveU64);
        assert_eq!(magnitude("+18446744073709551616"), Magnitude::AboveU64);
    }
}
