//! The private side: keeps an authenticated control link to the server, registers
//! the configured services, keeps a pool of data links open and relays each
//! visitor to its local service.
//!
//! [`run`] reconnects with capped exponential backoff and jitter after any
//! transient failure and registers again (a reconnect within the server's grace
//! period gets the same ports back). What only the operator can fix ends it:
//! authentication failures, a version mismatch, a TLS certificate or setup
//! the other side refuses, and every service refused. Every service refused
//! with a port in use is retried for `port_in_use_timeout` first (the port
//! may be held by this client's previous run until the server notices it
//! is gone).
//!
//! Layout, imports pointing down (as in `crate::server`):
//! - `mod.rs`: [`run`], the reconnect schedule;
//! - `session.rs`: one connection: dial, register, control loop; owns its links;
//! - `pool.rs`, `muxed.rs`: pooled links, multiplexed links;
//! - `dialer.rs`: dialling the server (connect and the `crate::handshake`
//!   machines) and the local services;
//! - `context.rs`: what lives as long as the client (settings, key, events).

mod context;
mod dialer;
mod live;
mod metrics;
mod muxed;
mod pool;
mod session;

use smol::channel::Sender;
use std::io;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

use crate::config::ClientSettings;
use crate::http_proxy::Proxy;
use crate::logging::Rounded;
use crate::reload::Requests;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport::{TcpTransport, TlsTransport, Transport};
use dialer::jitter;
use session::SessionEnd;
use std::sync::Arc;

pub use context::Event;
pub use session::ClientError;

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

/// [`run`] over the transport the settings name: TLS when `settings.tls` is
/// set, plain TCP otherwise.
pub async fn run_configured(
    settings: ClientSettings,
    shutdown: Signal,
    events: Option<Sender<Event>>,
) -> Result<(), ClientError> {
    run_reloadable(settings, shutdown, events, None).await
}

/// [`run_configured`], applying the services of every reload request (see
/// `live.rs`).
pub async fn run_reloadable(
    mut settings: ClientSettings,
    shutdown: Signal,
    events: Option<Sender<Event>>,
    reloads: Option<Requests<ClientSettings>>,
) -> Result<(), ClientError> {
    // Lives as long as the client: the built-in proxy behind any
    // `local: "http-proxy"` service.
    let builtin = builtin_proxy(&mut settings, &shutdown)
        .await
        .map_err(|source| ClientError::Start {
            what: "the built-in HTTP proxy",
            source,
        })?;
    let (_proxy_task, proxy) = builtin
        .map(|(task, proxy, local)| (task, (proxy, local)))
        .unzip();
    if let Some(tls) = &settings.tls {
        // Once, at start: our own certificate, with mutual TLS.
        let consequence = "a server that demands client certificates will refuse it";
        crate::transport::tls::log_warnings(&tls.certificate_warnings(), consequence);
    }
    let extras = Extras { proxy, reloads };
    match settings.tls.as_ref().map(TlsTransport::client) {
        Some(tls) => run_with(settings, tls, shutdown, events, extras).await,
        None => run_with(settings, TcpTransport, shutdown, events, extras).await,
    }
}

/// Starts the built-in HTTP proxy on a loopback port when a service names it,
/// and points those services there. Every data-link kind (spliced, TLS,
/// multiplexed) then reaches it like any local service.
async fn builtin_proxy(
    settings: &mut ClientSettings,
    shutdown: &Signal,
) -> io::Result<Option<(TaskSet, Arc<Proxy>, String)>> {
    let wanted = |s: &crate::config::ServiceSettings| s.local == crate::config::HTTP_PROXY_LOCAL;
    if !settings.services.iter().any(wanted) {
        return Ok(None);
    }
    let loopback = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let listeners = crate::runtime::sys::listen_group(loopback, crate::runtime::workers())?;
    let addr = listeners
        .first()
        .ok_or_else(|| io::Error::other("no listener for the built-in proxy"))?
        .local_addr()?;
    for service in settings.services.iter_mut().filter(|s| wanted(s)) {
        service.local = addr.to_string();
    }
    let proxy = Proxy::for_tunnel(&settings.http_proxy).map_err(io::Error::other)?;
    let task = TaskSet::new();
    task.spawn({
        let shutdown = shutdown.clone();
        let proxy = proxy.clone();
        async move {
            if let Err(e) =
                crate::http_proxy::run(listeners, proxy, PROXY_STATS_INTERVAL, shutdown).await
            {
                warn!("built-in HTTP proxy stopped: {e}");
            }
        }
    });
    Ok(Some((task, proxy, addr.to_string())))
}

/// How often the built-in proxy logs its counters (when they changed).
const PROXY_STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Runs the client until `shutdown` fires (returns `Ok`) or a fatal error.
pub async fn run<T: Transport>(
    settings: ClientSettings,
    transport: T,
    shutdown: Signal,
    events: Option<Sender<Event>>,
) -> Result<(), ClientError> {
    run_with(settings, transport, shutdown, events, Extras::default()).await
}

/// What a client started from a config may have besides its settings.
#[derive(Default)]
struct Extras {
    /// The built-in HTTP proxy and its address, when a service uses it.
    proxy: Option<(Arc<Proxy>, String)>,
    reloads: Option<Requests<ClientSettings>>,
}

/// [`run`], reporting the built-in proxy's counters too when there is one.
async fn run_with<T: Transport>(
    settings: ClientSettings,
    transport: T,
    shutdown: Signal,
    events: Option<Sender<Event>>,
    extras: Extras,
) -> Result<(), ClientError> {
    let client_id = crate::auth::random().map_err(|source| ClientError::Start {
        what: "the client (no random client id)",
        source,
    })?;
    let admin =
        match settings.admin {
            Some(addr) => Some(crate::admin::Endpoint::bind(addr).await.map_err(|source| {
                ClientError::Start {
                    what: "the admin endpoint",
                    source,
                }
            })?),
            None => None,
        };
    let ctx = context::Context::new(settings, transport, client_id, events, extras.proxy);
    let _ticker = {
        let ticker = TaskSet::new();
        ticker.spawn(crate::logfold::Fold::ticker(ctx.log.clone()));
        if let Some(admin) = admin {
            ticker.spawn(admin.serve(ctx.clone()));
        }
        if let Some(reloads) = extras.reloads {
            let ctx = ctx.clone();
            ticker.spawn(async move {
                while let Ok(request) = reloads.recv().await {
                    ctx.reload(request.settings).await;
                }
            });
        }
        ticker
    };
    if let Some(n) = crate::notify::notifier() {
        n.ready();
    }
    // Links of sessions that ended with the server draining, finishing
    // their visitors while the next session runs.
    let retiring = TaskSet::new();
    let ended = sessions(&ctx, &shutdown, &retiring).await;
    let drain = ctx.live().drain_timeout;
    if !retiring.is_empty() {
        retiring.join(drain).await;
    }
    info!("client stopped");
    ended
}

/// Runs session after session, with the reconnect schedule between them,
/// until `shutdown` fires or a fatal error.
async fn sessions<T: Transport>(
    ctx: &Arc<context::Context<T>>,
    shutdown: &Signal,
    retiring: &TaskSet,
) -> Result<(), ClientError> {
    let mut schedule = Reconnect::new(ctx.settings.reconnect_max_backoff);
    // Since when every service has been refused with a port in use.
    let mut ports_held_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let end = session::run_once(ctx, shutdown, retiring).await;
        if !matches!(end, SessionEnd::PortInUse) {
            ports_held_since = None;
        }
        let server = &ctx.settings.server;
        let delay = match end {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Fatal(e) if !ctx.rotating(&e) => return Err(e),
            SessionEnd::Fatal(e) => {
                let (delay, _) = schedule.next(started.elapsed(), Instant::now());
                let delay = jitter(delay);
                warn!(
                    "{server} refused the client's credentials ({e}); they changed in a reload, so the server may not have the new ones yet: retrying in {}",
                    Rounded(delay)
                );
                ctx.emit(Event::Disconnected {
                    reason: e.to_string(),
                });
                delay
            }
            SessionEnd::PortInUse => {
                let since = *ports_held_since.get_or_insert(started);
                let waited = since.elapsed();
                let limit = ctx.settings.port_in_use_timeout;
                if waited >= limit {
                    return Err(ClientError::PortInUse { waited });
                }
                let (delay, _) = schedule.next(started.elapsed(), Instant::now());
                let delay = jitter(delay).min(limit - waited);
                if ctx.log.note_any("ports in use") {
                    error!(
                        "every service was refused and a port is in use; retrying in {} (giving up after {})",
                        Rounded(delay),
                        Rounded(limit)
                    );
                }
                ctx.emit(Event::Disconnected {
                    reason: "a port is in use".to_owned(),
                });
                delay
            }
            SessionEnd::Draining => {
                let (delay, _) = schedule.next(started.elapsed(), Instant::now());
                let delay = jitter(delay);
                info!(
                    "{server} is draining (restarting?): reconnecting in {}; visitors in flight finish meanwhile",
                    Rounded(delay)
                );
                ctx.emit(Event::Disconnected {
                    reason: "the server is draining".to_owned(),
                });
                delay
            }
            SessionEnd::Lost(e) => {
                let (delay, new_outage) = schedule.next(started.elapsed(), Instant::now());
                let delay = jitter(delay);
                if new_outage {
                    warn!(
                        "connection to {server} lost: {e}; reconnecting in {}",
                        Rounded(delay)
                    );
                } else if ctx.log.note_any("reconnect attempts failed") {
                    warn!(
                        "reconnect to {server} failed: {e}; retrying in {}",
                        Rounded(delay)
                    );
                }
                ctx.emit(Event::Disconnected {
                    reason: e.to_string(),
                });
                delay
            }
        };
        if !pause(delay, shutdown).await {
            return Ok(());
        }
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
