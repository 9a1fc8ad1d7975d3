//! The private side: keeps an authenticated control link to each of its
//! servers, registers the configured services with each, keeps a pool of data
//! links open to each and relays every visitor to its local service.
//!
//! Each server (`server: "a:7000"` or `["a:7000", "b:7000"]`) gets a session
//! loop of its own: its own control link, data links, heartbeats, reconnect
//! schedule and drain. The servers share nothing and need no protocol of
//! their own; one that is down, draining or refusing the client never
//! disturbs the others. A reload's service changes reach every session that
//! is up, and SIGTERM drains them all.
//!
//! Each loop reconnects with capped exponential backoff and jitter after any
//! transient failure and registers again (a reconnect within the server's
//! grace period gets the same ports back). What only the operator can fix
//! ends that server's loop: authentication failures, a version mismatch, a
//! TLS certificate or setup the other side refuses, and every service
//! refused (with a port in use, after `port_in_use_timeout`: the port may be
//! held by this client's previous run until the server notices it is gone).
//!
//! **Fatal policy.** A loop that ends so is logged at error naming its
//! server (with several servers), shows as `gave up` in the status and
//! emits [`Event::GaveUp`]; the other servers keep serving. [`run`] returns
//! the error (exit 1) only once every server's loop has ended so: with one
//! server that error as it was, with several [`ClientError::EveryServer`].
//!
//! Layout, imports pointing down (as in `crate::server`):
//! - `mod.rs`: [`run`], a session loop per server, the fatal policy;
//! - `reconnect.rs`: one server's loop and its reconnect schedule;
//! - `session.rs`: one connection: dial, register, control loop; owns its links;
//! - `pool.rs`, `muxed.rs`: pooled links, multiplexed links;
//! - `dialer.rs`: dialling a server (connect and the `crate::handshake`
//!   machines) and the local services;
//! - `upstream.rs`: what the client keeps per server;
//! - `context.rs`: what lives as long as the client (settings, key, events);
//! - `live.rs`: reloads; `metrics.rs`, `status.rs`: the admin endpoint.

mod context;
mod dialer;
mod error;
mod live;
mod metrics;
mod muxed;
mod pool;
mod reconnect;
mod session;
mod status;
mod udp;
mod upstream;

use smol::channel::Sender;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tracing::{error, info, warn};

use crate::config::ClientSettings;
use crate::http_proxy::Proxy;
use crate::reload::Requests;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport::{TcpTransport, TlsTransport, Transport};
use std::sync::Arc;

pub use context::Event;
pub use error::ClientError;

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
    if settings.tls.is_some() {
        // Each server's certificate is checked for its own name (unless
        // `server_name` names one for all).
        let servers = settings
            .server
            .iter()
            .filter_map(|s| Some((s.clone(), TlsTransport::client(&settings.tls_for(s)?))))
            .collect();
        run_with(settings, servers, shutdown, events, extras).await
    } else {
        let servers = settings.server.iter().map(|s| (s.clone(), TcpTransport));
        let servers = servers.collect();
        run_with(settings, servers, shutdown, events, extras).await
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

/// Runs the client until `shutdown` fires (returns `Ok`) or every server's
/// session loop ended with a fatal error (see the module docs); every
/// server is dialled with `transport`.
pub async fn run<T: Transport>(
    settings: ClientSettings,
    transport: T,
    shutdown: Signal,
    events: Option<Sender<Event>>,
) -> Result<(), ClientError> {
    let servers = settings
        .server
        .iter()
        .map(|s| (s.clone(), transport.clone()));
    let servers = servers.collect();
    run_with(settings, servers, shutdown, events, Extras::default()).await
}

/// What a client started from a config may have besides its settings.
#[derive(Default)]
struct Extras {
    /// The built-in HTTP proxy and its address, when a service uses it.
    proxy: Option<(Arc<Proxy>, String)>,
    reloads: Option<Requests<ClientSettings>>,
}

/// [`run`] with each server's own transport, reporting the built-in proxy's
/// counters too when there is one.
async fn run_with<T: Transport>(
    settings: ClientSettings,
    servers: Vec<(String, T)>,
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
    let ctx = context::Context::new(settings, servers, client_id, events, extras.proxy);
    let _ticker = {
        let ticker = TaskSet::new();
        for server in &ctx.upstreams {
            ticker.spawn(crate::logfold::Fold::ticker(server.log.clone()));
        }
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
    let ended = every_server(&ctx, &shutdown).await;
    info!("client stopped");
    ended
}

/// Runs a session loop per server until each has ended, and applies the
/// fatal policy (see the module docs).
async fn every_server<T: Transport>(
    ctx: &Arc<context::Context<T>>,
    shutdown: &Signal,
) -> Result<(), ClientError> {
    let several = ctx.upstreams.len() > 1;
    let loops = ctx.upstreams.iter().map(|server| async move {
        let ended = reconnect::serve(ctx, server, shutdown).await;
        // With one server its error is the client's, said once by whoever
        // runs the client; with several, each is said here.
        if let (Err(e), true) = (&ended, several) {
            error!("gave up on {server}: {e}");
        }
        (server.address.clone(), ended)
    });
    let mut failed = Vec::new();
    let mut stopped = false;
    for (server, ended) in side_by_side(loops.collect()).await {
        match ended {
            Ok(()) => stopped = true,
            Err(e) => failed.push((server, e)),
        }
    }
    // A loop that ran until the shutdown makes it a clean stop.
    if stopped {
        return Ok(());
    }
    match failed.len() {
        0 | 1 => failed.pop().map_or(Ok(()), |(_, e)| Err(e)),
        _ => Err(ClientError::EveryServer(failed)),
    }
}

/// Runs `futures` side by side until each is done; their outputs in order.
///
/// In the calling task, not spawned: dropping the caller drops every one of
/// them at once. A client cancelled outright (a crash, as tests make one)
/// must not leave sessions behind that live on long enough to see the
/// shutdown signal and say a goodbye. Each wake polls every future still
/// pending: at most [`crate::config::MAX_SERVERS`] control-plane loops.
pub(super) async fn side_by_side<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(value) = future.as_mut().poll(cx) {
                    *output = Some(value);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
