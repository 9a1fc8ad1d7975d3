//! Warnings that a stranger can trigger, folded so that a flood cannot turn
//! into a flood of log lines.
//!
//! Each cause (a `&'static str` such as "handshake timed out") logs its first
//! event of an interval in full; the rest of that interval are counted, with
//! the sources that caused most of them, and reported as one line when the
//! interval is over ([`Fold::flush`], called by a ticker and on the next event
//! of that cause). So a cause writes at most two lines per interval whatever
//! the rate, and a quiet cause writes exactly what it did before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::warn;

use crate::tasks::lock;

/// How often folded counts are reported.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(10);
/// Distinct sources counted per cause and interval; past this, new sources
/// are counted in the total only. Bounds the map a spoofing flood could grow.
const MAX_SOURCES: usize = 64;
/// Distinct causes; they are compile-time strings, so this only guards a bug.
const MAX_CAUSES: usize = 64;

/// See the module docs.
pub struct Fold {
    /// What the folded events are, for the summary line ("connections",
    /// "failures with tunnel.example.com:7000").
    what: Cow<'static, str>,
    interval: Duration,
    causes: Mutex<HashMap<&'static str, Window>>,
}

/// One cause's current interval.
struct Window {
    started: Instant,
    /// Events after the first one of the interval.
    folded: u64,
    sources: HashMap<IpAddr, u64>,
}

impl Fold {
    /// A fold of `what` (a plural noun for the summary line).
    pub fn new(what: impl Into<Cow<'static, str>>) -> Self {
        Self::with_interval(what, FOLD_INTERVAL)
    }

    pub fn with_interval(what: impl Into<Cow<'static, str>>, interval: Duration) -> Self {
        Fold {
            what: what.into(),
            interval,
            causes: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event of `cause` from `source`. Returns whether the caller
    /// should log this one in full (the first of its interval).
    pub fn note(&self, cause: &'static str, source: IpAddr) -> bool {
        self.note_from(cause, Some(source))
    }

    /// [`Fold::note`] for events with no source worth naming (our own dials).
    pub fn note_any(&self, cause: &'static str) -> bool {
        self.note_from(cause, None)
    }

    fn note_from(&self, cause: &'static str, source: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut causes = lock(&self.causes);
        let over = causes
            .get(cause)
            .is_some_and(|w| now.duration_since(w.started) >= self.interval);
        if over {
            if let Some(old) = causes.remove(cause) {
                self.report(cause, &old, now);
            }
        }
        if let Some(window) = causes.get_mut(cause) {
            window.folded += 1;
            let room = window.sources.len() < MAX_SOURCES;
            match source.map(|ip| (ip, window.sources.get_mut(&ip))) {
                Some((_, Some(n))) => *n += 1,
                Some((ip, None)) if room => {
                    window.sources.insert(ip, 1);
                }
                _ => {}
            }
            return false;
        }
        if causes.len() < MAX_CAUSES {
            let window = Window {
                started: now,
                folded: 0,
                sources: HashMap::new(),
            };
            causes.insert(cause, window);
        }
        true
    }

    /// Reports and closes every interval that is over.
    pub fn flush(&self) {
        let now = Instant::now();
        let mut causes = lock(&self.causes);
        causes.retain(|cause, window| {
            let over = now.duration_since(window.started) >= self.interval;
            if over {
                self.report(cause, window, now);
            }
            !over
        });
    }

    fn report(&self, cause: &str, window: &Window, now: Instant) {
        if window.folded == 0 {
            return;
        }
        warn!("{}", self.summary(cause, window, now));
    }

    fn summary(&self, cause: &str, window: &Window, now: Instant) -> String {
        let secs = now.duration_since(window.started).as_secs().max(1);
        let top = window.sources.iter().max_by_key(|(ip, n)| (**n, **ip));
        let top = match top {
            Some((ip, n)) => format!(" (top source {ip}: {n})"),
            None => String::new(),
        };
        format!(
            "{} more {} in the last {secs} s: {cause}{top}",
            window.folded, self.what
        )
    }

    /// Runs [`Fold::flush`] every interval until dropped (owned by the task
    /// set of whoever owns the fold).
    pub async fn ticker(fold: std::sync::Arc<Fold>) {
        loop {
            crate::runtime::sleep(fold.interval).await;
            fold.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn the_first_event_of_an_interval_is_logged_the_rest_are_counted() {
        let fold = Fold::with_interval("connections", Duration::from_secs(3600));
        assert!(fold.note("timed out", ip(1)));
        assert!(!fold.note("timed out", ip(1)));
        assert!(!fold.note("timed out", ip(2)));
        assert!(!fold.note("timed out", ip(2)));
        assert!(!fold.note("timed out", ip(2)));
        assert!(fold.note("bad token", ip(1)), "causes fold separately");
        let causes = lock(&fold.causes);
        let window = &causes["timed out"];
        assert_eq!(window.folded, 4);
        let line = fold.summary("timed out", window, window.started);
        assert_eq!(
            line,
            "4 more connections in the last 1 s: timed out (top source 127.0.0.2: 3)"
        );
    }

    #[test]
    fn a_new_interval_logs_again_and_sources_are_bounded() {
        let fold = Fold::with_interval("connections", Duration::ZERO);
        assert!(fold.note("timed out", ip(1)));
        assert!(fold.note("timed out", ip(1)), "interval over: log in full");
        let fold = Fold::with_interval("connections", Duration::from_secs(3600));
        for i in 0..=u8::MAX {
            fold.note("timed out", ip(i));
        }
        let causes = lock(&fold.causes);
        assert_eq!(causes["timed out"].sources.len(), MAX_SOURCES);
        assert_eq!(causes["timed out"].folded, 255);
    }
}
