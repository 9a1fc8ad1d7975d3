//! `porthole http-proxy`: an HTTP/1.1 forward proxy — CONNECT tunnels and
//! absolute-form `http://` requests — on the tunnel's relay engine.
//!
//! Layers, as elsewhere in porthole: pure codecs ([`head`], `target`, [`framing`],
//! [`chunked`], `rewrite`), pure policy ([`rules`], [`auth`]), then I/O
//! (`body`, `pool`, `exchange`, `conn`, this file).
//!
//! - CONNECT `host:port` → destination rules → non-blocking connect under
//!   `connect_timeout` → `200` → the bytes the client sent after the head →
//!   a splice relay (both ends are raw sockets).
//! - `GET http://host/path` (any method but TRACE) → the same checks → an idle
//!   origin connection from the pool, or a new one → the request in origin
//!   form, as HTTP/1.1, with hop-by-hop fields removed, one canonical framing
//!   field and `Via`; bodies stream through a 16 KiB buffer. An `Upgrade`
//!   the origin accepts with `101` becomes a relay like CONNECT.
//! - Framing is never guessed (see [`framing`]): anything a next hop could
//!   read another way is refused (`400` for requests, `502` for responses).
//! - Errors answer with a short text body: `400`, `403` (rules), `405` (with
//!   `Allow`), `407`, `408`, `414`, `431`, `501`, `502` (resolution, refusal,
//!   bad response), `504` (connect timeout), `505`.
//!
//! Name resolution goes through a [`Resolve`] implementation; the default runs
//! `getaddrinfo` on smol's blocking pool (never on an executor thread) and
//! refuses `.invalid` names locally (RFC 6761). Every connection is one task
//! in a [`TaskSet`] on a data-plane worker.
//!
//! The counters ([`stats`]) are per worker; with `admin` set, the admin
//! endpoint serves them (`probe.rs`), bound with the listeners and stopped
//! with them.
//!
//! [`serve_connection`] is the entry point for a tunnel that hands the proxy one
//! visitor connection at a time (build its [`Proxy`] from
//! [`ProxySettings::for_tunnel`], which denies the client machine's loopback
//! and link-local ranges, or with [`Proxy::for_tunnel`] from a client file's
//! rules).
//!
//! The feature owns its settings ([`settings`]): the `porthole http-proxy` file,
//! [`ProxySettings`], and the syntax of the rules a client file gives its
//! built-in proxy. `crate::config` only loads and locates.

pub mod auth;
mod body;
pub mod chunked;
mod conn;
mod exchange;
pub mod framing;
pub mod head;
pub mod pool;
mod probe;
mod refuse;
pub mod rewrite;
pub mod rules;
pub mod settings;
pub mod stats;
mod syntax;
mod target;

use crate::runtime::{self, SharedTcpStream as TcpStream, TcpListener};
use futures_lite::future::Boxed;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::admin;
use crate::config::TunnelProxyConfig;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::wire::with_timeout;
use head::Destination;
pub use probe::ProxyProbe;
pub use settings::{
    DEFAULT_MAX_CONNECTIONS, HttpProxyConfig, HttpProxySettings, MAX_CONNECTIONS, ProxyAuth,
    ProxySettings, RulesError, check_tunnel_rules,
};
use stats::Stats;

/// Pause after a failed `accept` (e.g. out of descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Most resolved addresses tried per destination: bounds the connect attempts
/// (and rule checks) a hostile DNS answer can cause.
pub const MAX_ADDRS: usize = 16;

/// Name resolution, injectable so tests never touch a real resolver.
pub trait Resolve: Send + Sync {
    /// Addresses of the host name `host` with `port` (IP literals are handled
    /// by the proxy and never reach a resolver).
    fn resolve(&self, host: &str, port: u16) -> Boxed<io::Result<Vec<SocketAddr>>>;
}

/// The system resolver, off the executor threads; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Boxed<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![SocketAddr::new(ip, port)]);
            }
            if host == "invalid" || host.ends_with(".invalid") {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is a reserved invalid name"),
                ));
            }
            smol::net::resolve((host, port)).await
        })
    }
}

/// A configured proxy shared by all its connections.
pub struct Proxy {
    settings: ProxySettings,
    resolver: Arc<dyn Resolve>,
    stats: Arc<Stats>,
    origins: pool::Origins,
}

impl Proxy {
    /// A proxy with the system resolver.
    pub fn new(settings: ProxySettings) -> Arc<Proxy> {
        Proxy::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// A tunnel client's built-in proxy, with the rules of its `http_proxy`
    /// section ([`ProxySettings::tunnel`]).
    pub fn for_tunnel(rules: &TunnelProxyConfig) -> Result<Arc<Proxy>, RulesError> {
        ProxySettings::tunnel(rules).map(Proxy::new)
    }

    pub fn with_resolver(settings: ProxySettings, resolver: Arc<dyn Resolve>) -> Arc<Proxy> {
        let origins = pool::Origins::new(runtime::workers(), settings.origin_idle_timeout);
        Arc::new(Proxy {
            settings,
            resolver,
            stats: Stats::new(),
            origins,
        })
    }

    /// Live counters (requests, tunnels, bytes, active connections, errors).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Idle origin connections kept for reuse now.
    pub fn idle_origins(&self) -> usize {
        self.origins.idle()
    }

    /// Rules, resolution, rules on the addresses, then a connect to the first
    /// address that answers — all under `connect_timeout` (`504` on expiry).
    async fn connect(&self, dest: &Destination) -> Result<TcpStream, refuse::Refuse> {
        let policy = &self.settings.policy;
        let named = policy
            .check_name(&dest.host, dest.port)
            .map_err(|why| refuse::Refuse::new(403, why))?;
        let limit = self.settings.connect_timeout;
        let attempt = async {
            // IP literals never reach the resolver.
            if let Ok(ip) = dest.host.parse::<IpAddr>() {
                return Ok(vec![SocketAddr::new(ip, dest.port)]);
            }
            let mut addrs = self
                .resolver
                .resolve(&dest.host, dest.port)
                .await
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot resolve {}: {e}", dest.host))
                })?;
            addrs.truncate(MAX_ADDRS);
            Ok(addrs)
        };
        let addrs = match with_timeout(limit, "resolving", attempt).await {
            Ok(addrs) if addrs.is_empty() => {
                return Err(refuse::Refuse::new(
                    502,
                    format!("{} has no address", dest.host),
                ));
            }
            Ok(addrs) => addrs,
            Err(e) => return Err(refusal(&e)),
        };
        policy
            .check_addrs(&addrs, named)
            .map_err(|why| refuse::Refuse::new(403, why))?;
        with_timeout(limit, "connecting to the origin", connect_any(&addrs))
            .await
            .map_err(|e| refusal(&e))
    }
}

/// `504` for a timeout, `502` for anything else.
fn refusal(e: &io::Error) -> refuse::Refuse {
    let status = if e.kind() == io::ErrorKind::TimedOut {
        504
    } else {
        502
    };
    refuse::Refuse::new(status, e.to_string())
}

async fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for &addr in addrs {
        match runtime::TcpStream::connect_addr(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream.into());
            }
            Err(e) => last = io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(last)
}

/// Serves one client connection (a visitor, for the tunnel) until it ends.
/// Cancel-safe: dropping the future closes both sockets.
pub async fn serve_connection(stream: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>) {
    conn::serve(stream, peer, proxy).await
}

/// The proxy's listeners (one per worker) and its admin endpoint, if any.
pub struct Bound {
    pub listeners: Vec<std::net::TcpListener>,
    pub admin: Option<admin::Endpoint>,
}

/// Listeners alone: a proxy without an admin endpoint (the tunnel client's
/// built-in one, tests).
impl From<Vec<std::net::TcpListener>> for Bound {
    fn from(listeners: Vec<std::net::TcpListener>) -> Bound {
        Bound {
            listeners,
            admin: None,
        }
    }
}

/// Binds the listen address of `settings`: one listener per worker
/// (`SO_REUSEPORT`), so each worker accepts and serves its own clients; then
/// the admin endpoint, whose port in use is a start-up error too.
pub async fn bind(settings: &HttpProxySettings) -> io::Result<Bound> {
    let listen = settings.listen;
    let listeners = runtime::sys::listen_group(listen, runtime::workers())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let admin = match settings.admin {
        Some(addr) => Some(admin::Endpoint::bind(addr).await?),
        None => None,
    };
    Ok(Bound { listeners, admin })
}

/// Serves `bound` (one listener per worker, as [`bind`] returns them) until
/// `shutdown` fires, logging the counters every `stats_interval`; then stops
/// accepting and closes every connection and the admin endpoint.
pub async fn run(
    bound: impl Into<Bound>,
    proxy: Arc<Proxy>,
    stats_interval: Duration,
    shutdown: Signal,
) -> io::Result<()> {
    let Bound { listeners, admin } = bound.into();
    let listen = listeners
        .first()
        .ok_or_else(|| io::Error::other("no listener to serve"))?
        .local_addr()?;
    info!("http proxy listening on {listen}");
    let loops = TaskSet::new();
    for (worker, listener) in listeners.into_iter().enumerate() {
        loops.spawn_at(worker, accept_loop(listener, proxy.clone()));
    }
    if let Some(endpoint) = admin {
        let proxy = proxy.clone();
        loops.spawn(endpoint.serve(Arc::new(ProxyProbe { proxy, listen })));
    }
    loops.spawn(log_stats(proxy.clone(), stats_interval));
    loops.spawn(sweep_origins(proxy.clone()));
    shutdown.wait().await;
    info!("http proxy stopped: {}", proxy.stats.snapshot());
    Ok(())
}

/// Accepts on this worker's listener and serves each client here.
async fn accept_loop(listener: std::net::TcpListener, proxy: Arc<Proxy>) {
    let conns = TaskSet::new();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!("cannot register the proxy listener: {e}"),
    };
    let here = runtime::this_or_next_worker();
    loop {
        match crate::transport::accept(&listener).await {
            Ok((stream, peer)) => {
                if proxy.stats.active() >= proxy.settings.max_connections as u64 {
                    // Dropping it is the cheapest refusal; a 503 write could block.
                    proxy.stats.error(503);
                    warn!("{peer}: refused, {} connections open", proxy.stats.active());
                    continue;
                }
                conns.spawn_at(here, serve_connection(stream.into(), peer, proxy.clone()));
            }
            Err(e) => {
                warn!("accept failed: {e}");
                runtime::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Closes idle origin connections past their timeout.
async fn sweep_origins(proxy: Arc<Proxy>) {
    loop {
        smol::Timer::after(proxy.origins.sweep_interval()).await;
        proxy.origins.sweep();
    }
}

/// Logs the counters every `every`, when they changed.
async fn log_stats(proxy: Arc<Proxy>, every: Duration) {
    let mut last = None;
    loop {
        smol::Timer::after(every).await;
        let now = proxy.stats.snapshot();
        if last.as_ref() != Some(&now) {
            info!("http proxy stats: {now}");
            last = Some(now);
        }
    }
}
