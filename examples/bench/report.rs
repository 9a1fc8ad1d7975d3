//! Per-run results, medians over runs, and the markdown table.

use crate::flood;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One run of one mode. `None`: not measured or not meaningful (e.g. idle KB for direct).
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub values: BTreeMap<Metric, f64>,
    /// `--syscalls`: per-visitor counts for each process of the mode.
    pub syscalls: Vec<crate::syscalls::Counts>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Up1,
    Down1,
    Up8,
    Down8,
    LatP50,
    LatP99,
    LatAddedP50,
    ShortPerSec,
    ShortP99,
    ShortErrors,
    WrkClose,
    WrkKeepAlive,
    WrkErrors,
    PinnedLatP50,
    PinnedAddedP50,
    RssStart,
    /// Seconds to open this many idle visitors, one after another.
    HeldSecs(u32),
    /// RSS growth of the mode's processes per held visitor (KB).
    HeldKb(u32),
    /// Visitors of this many that failed or were not open in time.
    HeldErrors(u32),
    CpuPerGb,
    LogWarnings,
    /// `--flood` (`flood.rs`), each figure quiet and under the flood.
    QuietRegister,
    FloodRegister,
    QuietShort,
    FloodShort,
    QuietBulkSecs,
    FloodBulkSecs,
    QuietFailed,
    FloodFailed,
    QuietLogLines,
    FloodLogLines,
    /// `--proxy` (`proxy.rs`): keep-alive requests through the proxy.
    ProxyKeepAlive,
    /// CPU of the proxy's processes per 1,000 keep-alive requests (ms).
    ProxyCpuPerK,
    /// CPU of nginx per 1,000 keep-alive requests (ms).
    OriginCpuPerK,
    /// Connections nginx accepted per keep-alive request.
    OriginAcceptsPerReq,
    /// `Connection: close` requests through the proxy.
    ProxyClose,
    /// CPU of the proxy's processes per 1,000 `Connection: close` requests (ms).
    ProxyCloseCpuPerK,
    ProxyWrkErrors,
    /// The proxy's RSS just before the tunnels open (MB).
    TunnelRssStart,
    TunnelSecs,
    /// RSS growth of the proxy per idle CONNECT tunnel (KB).
    TunnelKb,
    TunnelErrors,
    /// `--udp` (`udp.rs`): datagrams a second that reached the sink, per
    /// datagram size (B) and offered rate (datagrams/s).
    UdpDelivered {
        size: u16,
        rate: u32,
    },
    /// The share of those datagrams lost (%).
    UdpLoss {
        size: u16,
        rate: u32,
    },
    /// The highest offered rate lost at most 1 % of, per size.
    UdpSustained(u16),
    UdpRttP50,
    UdpRttP99,
    UdpRttAdded,
    UdpRttLost,
    UdpRttPinnedP50,
    UdpRttPinnedAdded,
    UdpFlowSecs,
    /// RSS growth per idle flow (KB): all the mode's processes, then by role.
    UdpFlowKb,
    UdpFlowServerKb,
    UdpFlowClientKb,
    UdpFlowErrors,
}

/// How a row is printed.
pub struct Row {
    metric: Metric,
    label: Cow<'static, str>,
    decimals: usize,
    /// Show "(ratio to direct)".
    ratio: bool,
    /// Show "(ratio to this metric of the same mode)".
    of: Option<Metric>,
    /// A value at this cap was cut there: shown as "> cap".
    cap: Option<f64>,
}

const ROWS: &[Row] = &[
    row(Metric::Up1, "bulk upload, 1 stream (Gbit/s)", 2, true),
    row(Metric::Down1, "bulk download, 1 stream (Gbit/s)", 2, true),
    row(Metric::Up8, "bulk upload, 8 streams (Gbit/s)", 2, true),
    row(Metric::Down8, "bulk download, 8 streams (Gbit/s)", 2, true),
    row(Metric::LatP50, "64 B echo latency p50 (µs)", 1, true),
    row(Metric::LatP99, "64 B echo latency p99 (µs)", 1, true),
    row(
        Metric::LatAddedP50,
        "added p50 latency over direct (µs)",
        1,
        false,
    ),
    row(
        Metric::ShortPerSec,
        "short connections (conn/s, 50 workers)",
        0,
        true,
    ),
    row(Metric::ShortP99, "short connection p99 (ms)", 2, true),
    row(Metric::ShortErrors, "short connection errors", 0, false),
    row(
        Metric::WrkClose,
        "wrk → nginx req/s (Connection: close)",
        0,
        true,
    ),
    row(
        Metric::WrkKeepAlive,
        "wrk → nginx req/s (keep-alive)",
        0,
        true,
    ),
    row(Metric::WrkErrors, "wrk errors (both runs)", 0, false),
    row(
        Metric::PinnedLatP50,
        "64 B echo latency p50, all on one CPU (µs)",
        1,
        true,
    ),
    row(
        Metric::PinnedAddedP50,
        "added pinned p50 over direct (µs)",
        1,
        false,
    ),
    row(
        Metric::RssStart,
        "RSS at start, all processes (MB)",
        1,
        false,
    ),
    row(
        Metric::HeldSecs(1000),
        "1,000 idle visitors held: time to open (s)",
        2,
        false,
    ),
    row(
        Metric::HeldKb(1000),
        "1,000 idle visitors held: RSS per visitor (KB)",
        1,
        false,
    ),
    row(
        Metric::HeldErrors(1000),
        "1,000 idle visitors held: errors",
        0,
        false,
    ),
    row(
        Metric::HeldSecs(5000),
        "5,000 idle visitors held: time to open (s)",
        2,
        false,
    ),
    row(
        Metric::HeldKb(5000),
        "5,000 idle visitors held: RSS per visitor (KB)",
        1,
        false,
    ),
    row(
        Metric::HeldErrors(5000),
        "5,000 idle visitors held: errors",
        0,
        false,
    ),
    row(
        Metric::HeldSecs(20000),
        "20,000 idle visitors held: time to open (s)",
        2,
        false,
    ),
    row(
        Metric::HeldKb(20000),
        "20,000 idle visitors held: RSS per visitor (KB)",
        1,
        false,
    ),
    row(
        Metric::HeldErrors(20000),
        "20,000 idle visitors held: errors",
        0,
        false,
    ),
    row(Metric::CpuPerGb, "relay CPU per GB moved (s)", 2, false),
    flood_row(
        Metric::QuietRegister,
        "quiet: new client registers in (s)",
        2,
        None,
        Some(flood::REGISTER_MAX.as_secs_f64()),
    ),
    flood_row(
        Metric::FloodRegister,
        "flood: new client registers in (s)",
        2,
        None,
        Some(flood::REGISTER_MAX.as_secs_f64()),
    ),
    flood_row(
        Metric::QuietShort,
        "quiet: short conn/s (50 workers)",
        0,
        None,
        None,
    ),
    flood_row(
        Metric::FloodShort,
        "flood: short conn/s (× quiet)",
        0,
        Some(Metric::QuietShort),
        None,
    ),
    flood_row(
        Metric::QuietBulkSecs,
        "quiet: bulk s for 64×4 MiB",
        2,
        None,
        Some(flood::BULK_MAX.as_secs_f64()),
    ),
    flood_row(
        Metric::FloodBulkSecs,
        "flood: bulk s for 64×4 MiB (× quiet)",
        2,
        Some(Metric::QuietBulkSecs),
        Some(flood::BULK_MAX.as_secs_f64()),
    ),
    flood_row(Metric::QuietFailed, "quiet: failed visitors", 0, None, None),
    flood_row(Metric::FloodFailed, "flood: failed visitors", 0, None, None),
    flood_row(
        Metric::QuietLogLines,
        "quiet: server log lines",
        0,
        None,
        None,
    ),
    flood_row(
        Metric::FloodLogLines,
        "flood: server log lines",
        0,
        None,
        None,
    ),
    row(
        Metric::ProxyKeepAlive,
        "keep-alive req/s (wrk -c32, 1 KiB)",
        0,
        true,
    ),
    row(
        Metric::ProxyCpuPerK,
        "proxy CPU per 1,000 keep-alive requests (ms)",
        1,
        false,
    ),
    row(
        Metric::OriginCpuPerK,
        "origin (nginx) CPU per 1,000 keep-alive requests (ms)",
        1,
        true,
    ),
    row(
        Metric::OriginAcceptsPerReq,
        "origin connections accepted per keep-alive request",
        3,
        false,
    ),
    row(
        Metric::ProxyClose,
        "Connection: close req/s (wrk -c32, 1 KiB)",
        0,
        true,
    ),
    row(
        Metric::ProxyCloseCpuPerK,
        "proxy CPU per 1,000 Connection: close requests (ms)",
        1,
        false,
    ),
    row(Metric::ProxyWrkErrors, "wrk errors (both runs)", 0, false),
    row(
        Metric::TunnelRssStart,
        "proxy RSS before the tunnels (MB)",
        1,
        false,
    ),
    row(
        Metric::TunnelSecs,
        "1,000 idle CONNECT tunnels: time to open (s)",
        2,
        false,
    ),
    row(
        Metric::TunnelKb,
        "1,000 idle CONNECT tunnels: RSS per tunnel (KB)",
        1,
        false,
    ),
    row(
        Metric::TunnelErrors,
        "1,000 idle CONNECT tunnels: errors",
        0,
        false,
    ),
    row(Metric::LogWarnings, "warning/error log lines", 0, false),
];

pub const fn row(metric: Metric, label: &'static str, decimals: usize, ratio: bool) -> Row {
    Row {
        metric,
        label: Cow::Borrowed(label),
        decimals,
        ratio,
        of: None,
        cap: None,
    }
}

/// A `--flood` row: `of` is the quiet figure it is compared with.
const fn flood_row(
    metric: Metric,
    label: &'static str,
    decimals: usize,
    of: Option<Metric>,
    cap: Option<f64>,
) -> Row {
    Row {
        metric,
        label: Cow::Borrowed(label),
        decimals,
        ratio: false,
        of,
        cap,
    }
}

/// A row whose label is made at run time (`--udp`'s per-rate rows).
pub fn owned_row(metric: Metric, label: String, decimals: usize, ratio: bool) -> Row {
    Row {
        label: Cow::Owned(label),
        ..row(metric, "", decimals, ratio)
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn metric_median(runs: &[RunResult], m: Metric) -> Option<f64> {
    median(
        runs.iter()
            .filter_map(|r| r.values.get(&m).copied())
            .collect(),
    )
}

/// One value of `row` for a mode with these `runs`; `direct`: the same
/// metric's median for direct.
fn cell(row: &Row, v: f64, direct: Option<f64>, runs: &[RunResult]) -> String {
    let capped = row.cap.filter(|&c| v >= c);
    let mut s = match capped {
        Some(c) => format!("> {c:.0}"),
        None => format!("{v:.*}", row.decimals),
    };
    if let (true, Some(b)) = (row.ratio, direct) {
        if b > 0.0 {
            s += &format!(" ({:.2}×)", v / b);
        }
    }
    if let Some(q) = row.of.and_then(|m| metric_median(runs, m)) {
        if q > 0.0 {
            let at_least = if capped.is_some() { "> " } else { "" };
            s += &format!(" ({at_least}{:.2}×)", v / q);
        }
    }
    s
}

/// The markdown table: rows = metrics, columns = modes (in run order). A row
/// no mode measured (a phase that was not selected) is left out.
pub fn table(modes: &[(String, Vec<RunResult>)]) -> String {
    table_of(modes, ROWS)
}

/// [`table`] with other rows (`--udp`'s).
pub fn table_of(modes: &[(String, Vec<RunResult>)], rows: &[Row]) -> String {
    let direct: Option<&Vec<RunResult>> = modes.iter().find(|m| m.0 == "direct").map(|m| &m.1);
    let mut out = String::from("| metric |");
    for (name, _) in modes {
        out += &format!(" {name} |");
    }
    out += "\n|---|";
    out += &"---|".repeat(modes.len());
    out += "\n";
    for row in rows {
        if modes
            .iter()
            .all(|m| metric_median(&m.1, row.metric).is_none())
        {
            continue;
        }
        out += &format!("| {} |", row.label);
        let base = direct.and_then(|d| metric_median(d, row.metric));
        for (name, runs) in modes {
            let cell = match metric_median(runs, row.metric) {
                None => "n/a".to_owned(),
                Some(v) => cell(row, v, base.filter(|_| name != "direct"), runs),
            };
            out += &format!(" {cell} |");
        }
        out += "\n";
    }
    out
}
