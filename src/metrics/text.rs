//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` once per family, then one line per sample, label values escaped.
//! What it checks is what `promtool check metrics` checks (counters end in
//! `_total`, names are snake case), by debug assertion: names are ours, never
//! the network's.

use std::fmt::{self, Write};

use super::{HistogramTotals, WAIT_BUCKETS};

/// The `Content-Type` of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A family whose samples are read from rows of `T`: name, type, help, and
/// the value of a row.
pub type Family<T> = (&'static str, Kind, &'static str, fn(&T) -> u64);

/// A scrape being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "metric name {name:?}");
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the current family.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl fmt::Display,
    ) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help).sample(name, &[], value);
    }

    /// The samples of one histogram (its family already started).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramTotals) {
        for (bound, n) in WAIT_BUCKETS.iter().zip(&h.cumulative) {
            self.out.push_str(name);
            self.out.push_str("_bucket");
            write_labels(&mut self.out, labels, Some(&bound.to_string()));
            let _ = writeln!(self.out, " {n}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.sum_seconds);
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }

    /// A family of one sample per value of `label`, the `i`th read by `get(i)`.
    pub fn indexed(
        &mut self,
        (name, kind, help): (&str, Kind, &str),
        label: &str,
        values: &[&str],
        get: impl Fn(usize) -> u64,
    ) {
        self.family(name, kind, help);
        for (i, value) in values.iter().enumerate() {
            self.sample(name, &[(label, value)], get(i));
        }
    }

    /// Writes each family with one sample per row, labelled `label="name"`.
    pub fn by_label<T>(&mut self, label: &str, families: &[Family<T>], rows: &[(&str, &T)]) {
        for (name, kind, help, value) in families {
            self.family(name, *kind, help);
            for (row, t) in rows {
                self.sample(name, &[(label, row)], value(t));
            }
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let le = le.map(|v| ("le", v));
    for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Help text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
