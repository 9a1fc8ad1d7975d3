//! One server's session loop: session after session with the reconnect
//! schedule between them, until the client shuts down or this server
//! refuses what only the operator can fix.
//!
//! Every server has a loop of its own (see `mod.rs`), with its own schedule,
//! its own port-in-use timer and its own retiring links, so one server's
//! outage, drain or refusal changes nothing for the others.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

use super::context::{Context, Event};
use super::dialer::jitter;
use super::error::ClientError;
use super::session::{self, SessionEnd};
use super::upstream::Upstream;
use crate::logging::Rounded;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport::Transport;

/// First reconnect delay; doubled after every failed attempt up to the
/// configured cap (`reconnect_max_backoff`).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// While an outage is younger than this, attempts stay at most
/// [`YOUNG_OUTAGE_MAX_BACKOFF`] apart: most outages are a server restart or a
/// network blip, and the client should serve again within a second of the
/// server's return. Longer outages back off to the configured cap.
const YOUNG_OUTAGE: Duration = Duration::from_secs(60);
const YOUNG_OUTAGE_MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A session that lasted this long ends an outage: the next loss starts a new
/// one, from the first delay.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Runs `server`'s sessions until `shutdown` fires (`Ok`) or a fatal error,
/// then lets the links of a drained session finish (up to the drain
/// timeout).
pub(super) async fn serve<T: Transport>(
    ctx: &Arc<Context<T>>,
    server: &Arc<Upstream<T>>,
    shutdown: &Signal,
) -> Result<(), ClientError> {
    // Links of sessions that ended with the server draining, finishing
    // their visitors while the next session runs.
    let retiring = TaskSet::new();
    let ended = sessions(ctx, server, shutdown, &retiring).await;
    if let Err(e) = &ended {
        let reason = e.to_string();
        let event = Event::GaveUp {
            server: server.address.clone(),
            reason,
        };
        ctx.emit(server, event);
    }
    if !retiring.is_empty() {
        retiring.join(ctx.live().drain_timeout).await;
    }
    ended
}

/// Runs session after session with `server`, with the reconnect schedule
/// between them, until `shutdown` fires or a fatal error.
async fn sessions<T: Transport>(
    ctx: &Arc<Context<T>>,
    server: &Arc<Upstream<T>>,
    shutdown: &Signal,
    retiring: &TaskSet,
) -> Result<(), ClientError> {
    let mut schedule = Reconnect::new(ctx.settings.reconnect_max_backoff);
    // Since when every service has been refused with a port in use.
    let mut ports_held_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let end = session::run_once(ctx, server, shutdown, retiring).await;
        if !matches!(end, SessionEnd::PortInUse) {
            ports_held_since = None;
        }
        let mut next = || schedule.next(started.elapsed(), Instant::now());
        let (delay, reason) = match end {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Fatal(e) if !ctx.rotating(&e) => return Err(e),
            SessionEnd::Fatal(e) => {
                let delay = jitter(next().0);
                warn!(
                    "{server} refused the client's credentials ({e}); they changed in a reload, so the server may not have the new ones yet: retrying in {}",
                    Rounded(delay)
                );
                (delay, e.to_string())
            }
            SessionEnd::PortInUse => {
                let since = *ports_held_since.get_or_insert(started);
                let (waited, limit) = (since.elapsed(), ctx.settings.port_in_use_timeout);
                if waited >= limit {
                    return Err(ClientError::PortInUse { waited });
                }
                let delay = jitter(next().0).min(limit - waited);
                if server.log.note_any("ports in use") {
                    error!(
                        "{server} refused every service and a port is in use; retrying in {} (giving up after {})",
                        Rounded(delay),
                        Rounded(limit)
                    );
                }
                (delay, "a port is in use".to_owned())
            }
            SessionEnd::Draining => {
                let delay = jitter(next().0);
                info!(
                    "{server} is draining (restarting?): reconnecting in {}; visitors in flight finish meanwhile",
                    Rounded(delay)
                );
                (delay, "the server is draining".to_owned())
            }
            SessionEnd::Lost(e) => {
                let (delay, new_outage) = next();
                let delay = jitter(delay);
                lost(server, &e, delay, new_outage);
                (delay, e.to_string())
            }
        };
        let event = Event::Disconnected {
            server: server.address.clone(),
            reason,
        };
        ctx.emit(server, event);
        if !pause(delay, shutdown).await {
            return Ok(());
        }
    }
}

/// Logs a lost session or a failed attempt: the first of an outage in full,
/// the failed attempts after it folded.
fn lost<T: Transport>(server: &Upstream<T>, e: &std::io::Error, delay: Duration, new: bool) {
    if new {
        warn!(
            "connection to {server} lost: {e}; reconnecting in {}",
            Rounded(delay)
        );
    } else if server.log.note_any("reconnect attempts failed") {
        warn!(
            "reconnect to {server} failed: {e}; retrying in {}",
            Rounded(delay)
        );
    }
}

/// Waits `delay`; `false` when `shutdown` fired first.
async fn pause(delay: Duration, shutdown: &Signal) -> bool {
    futures_lite::future::or(
        async {
            smol::Timer::after(delay).await;
            true
        },
        async {
            shutdown.wait().await;
            false
        },
    )
    .await
}

/// The reconnect schedule: exponential backoff with a low cap while the
/// outage is young (see [`YOUNG_OUTAGE`]), up to `max` after that.
struct Reconnect {
    max: Duration,
    backoff: Duration,
    /// When the current outage began; `None` while connected for good.
    outage_since: Option<Instant>,
}

impl Reconnect {
    fn new(max: Duration) -> Self {
        Reconnect {
            max,
            backoff: FIRST_BACKOFF,
            outage_since: None,
        }
    }

    /// The delay before the next attempt (before jitter), after a session (or
    /// attempt) that lasted `lasted`; and whether this loss began an outage.
    fn next(&mut self, lasted: Duration, now: Instant) -> (Duration, bool) {
        let new_outage = self.outage_since.is_none() || lasted >= STABLE_SESSION;
        if new_outage {
            self.outage_since = Some(now);
            self.backoff = FIRST_BACKOFF;
        }
        let age = self.outage_since.map_or(Duration::ZERO, |t| now - t);
        let cap = if age < YOUNG_OUTAGE {
            YOUNG_OUTAGE_MAX_BACKOFF.min(self.max)
        } else {
            self.max
        };
        let delay = self.backoff.min(cap);
        self.backoff = (delay * 2).min(self.max);
        (delay, new_outage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_outage_retries_at_least_every_half_second_then_backs_off() {
        let mut schedule = Reconnect::new(Duration::from_secs(30));
        let start = Instant::now();
        let short = Duration::from_millis(1);
        let (first, new) = schedule.next(Duration::from_secs(3600), start);
        assert!(new);
        assert_eq!(first, FIRST_BACKOFF);
        let mut delays = Vec::new();
        for i in 1..=10 {
            let (d, new) = schedule.next(short, start + Duration::from_secs(i));
            assert!(!new);
            delays.push(d);
        }
        assert!(
            delays.iter().all(|d| *d <= YOUNG_OUTAGE_MAX_BACKOFF),
            "{delays:?}"
        );
        assert_eq!(delays.last(), Some(&YOUNG_OUTAGE_MAX_BACKOFF));
        let old = start + YOUNG_OUTAGE;
        let later: Vec<Duration> = (0..8).map(|_| schedule.next(short, old).0).collect();
        assert_eq!(later[0], Duration::from_secs(1));
        assert_eq!(later[1], Duration::from_secs(2));
        assert_eq!(later.last(), Some(&Duration::from_secs(30)), "{later:?}");
        let (again, new) = schedule.next(STABLE_SESSION, old);
        assert!(new, "a stable session ends the outage");
        assert_eq!(again, FIRST_BACKOFF);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }
}
