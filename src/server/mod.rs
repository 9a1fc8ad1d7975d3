//! The public side: accepts control and data links from clients, authenticates
//! them, opens a public listener per registered service and relays each visitor
//! through a data link of the owning client.
//!
//! Ownership: [`run`] owns one task per accepted connection (a control link's task
//! *is* its session); a [`session::Session`] owns its visitors' relays and its
//! pool of idle data links; the [`registry::Registry`] owns the public listeners,
//! which outlive a vanished client for `reconnect_grace` so that it gets its
//! ports back. Dropping the server future cancels all of it.
//!
//! A shutdown signal starts a drain (`drain`): the control listener and
//! every public listener close (a successor may bind them at once), each
//! session tells its client `Goodbye` (draining) and closes its idle links,
//! visitors in flight finish until `drain_timeout` after the signal, and
//! what is left then is closed. A reload (`live.rs`) swaps the settings
//! while all this runs.

mod admission;
pub(crate) mod credentials;
mod dispatch;
mod handshake;
mod live;
mod metrics;
mod muxed;
mod pool;
mod proxied;
mod refusal;
mod registry;
mod session;
mod udp;
mod udp_flow;
mod visitor;

use smol::net::TcpListener;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

use crate::config::ServerSettings;
use crate::logfold::Fold;
use crate::reload::Requests;
use crate::runtime;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport::{self, TcpTransport, TlsTransport, Transport};

/// After a shutdown signal, how long sessions get to say goodbye before their
/// tasks are cancelled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Control sessions the server holds at once; past this new clients are refused.
/// Each session can hold listeners and idle links, so this bounds the total.
pub const MAX_SESSIONS: usize = 4096;
/// How long the kernel holds a new connection to the control port for its
/// first bytes before handing it over anyway (`TCP_DEFER_ACCEPT`).
const DEFER_ACCEPT_SECS: i32 = 1;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Everything the server's tasks share.
pub(crate) struct Shared<T: Transport> {
    /// Swapped whole by a reload; read with [`Shared::settings`].
    pub(crate) settings: arc_swap::ArcSwap<ServerSettings>,
    /// The control port as bound (`settings.bind` may say port 0).
    pub bound: SocketAddr,
    pub transport: T,
    pub registry: Arc<registry::Registry<T>>,
    pub shutdown: Signal,
    /// Fires once the drain began (after `shutdown`): sessions say goodbye.
    pub draining: Signal,
    /// Budgets of connections still in their handshake.
    pub admission: Arc<admission::Admission>,
    /// Refused and shed connections, folded (anyone can cause them).
    pub connection_log: Arc<Fold>,
    /// Visitors dropped for want of a data link, folded (anyone can cause them).
    pub visitor_log: Arc<Fold>,
    /// What the admin endpoint reports (see [`metrics`]).
    pub counters: Arc<metrics::Counters>,
    /// When the drain ends: set once, when `shutdown` fires.
    drain_deadline: std::sync::OnceLock<std::time::Instant>,
}

impl<T: Transport> Shared<T> {
    /// The settings in force now (a reload may swap them at any time; a
    /// caller that needs several values consistent reads them from one guard).
    /// Lock-free: a load touches no shared cache line, so the visitor path
    /// may call it.
    pub fn settings(&self) -> arc_swap::Guard<Arc<ServerSettings>> {
        self.settings.load()
    }

    /// When visitors still in flight are closed: `drain_timeout` after the
    /// shutdown signal (or from now, if asked before it).
    pub fn drain_deadline(&self) -> std::time::Instant {
        *self
            .drain_deadline
            .get_or_init(|| std::time::Instant::now() + self.settings().drain_timeout)
    }
}

/// Accepts control and data links until cancelled.
async fn accept_loop<T: Transport>(
    listener: std::net::TcpListener,
    shared: Arc<Shared<T>>,
    connections: Arc<TaskSet>,
) {
    // Clients speak first (a hello), so the kernel may hold each connection
    // until its hello is in: then one peek tells a data link from a control
    // link, and a silent connection costs the process nothing meanwhile.
    if let Err(e) = runtime::sys::defer_accept(&listener, DEFER_ACCEPT_SECS) {
        debug!("TCP_DEFER_ACCEPT not set on the control listener: {e}");
    }
    if let Err(e) = runtime::sys::raise_backlog(&listener) {
        debug!("control listener backlog not raised: {e}");
    }
    let listener = match runtime::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!("cannot register the control listener: {e}"),
    };
    loop {
        match transport::accept_std(&listener).await {
            Ok((stream, peer)) => admit(&shared, &connections, stream, peer),
            Err(e) => {
                warn!("accept failed: {e}");
                runtime::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Budgets a new connection (see [`admission`]) and starts its handshake.
fn admit<T: Transport>(
    shared: &Arc<Shared<T>>,
    connections: &TaskSet,
    stream: std::net::TcpStream,
    peer: SocketAddr,
) {
    // One non-blocking peek: a plain-TCP data link that already shows its
    // hello is handshaken on a worker and joins that worker's shard of the
    // pool (registered once, with the poller that will relay it); one that
    // names a live session is counted in the share strangers cannot use.
    // Anything else (control links, TLS) goes to smol's executor, the
    // control plane, as a stranger.
    let data_hello = handshake::peek_data_hello(&stream);
    let known = data_hello.is_some_and(|id| shared.registry.session(&id).is_some());
    let class = if known {
        admission::Class::Known
    } else {
        admission::Class::Stranger
    };
    let (ticket, shed) = shared.admission.admit(class, peer.ip());
    if let Some((cause, ip)) = shed {
        shared.counters.refused(metrics::Reason::Shed);
        let cause = cause.describe();
        if shared.connection_log.note(cause, ip) {
            warn!("connection from {ip}: {cause}; repeats are counted and reported every 10 s");
        }
    }
    let task = handshake::serve_connection(shared.clone(), stream, peer, ticket);
    match data_hello {
        Some(_) => connections.spawn_at(runtime::next_worker(), task),
        None => connections.spawn(task),
    }
}

/// The drain (see the module docs): no new client, link or visitor; every
/// session says goodbye and its visitors in flight finish until the drain
/// deadline; then whatever is left is closed.
async fn drain<T: Transport>(
    shared: &Arc<Shared<T>>,
    accepting: runtime::Task<()>,
    drain_now: crate::shutdown::Trigger,
    connections: &TaskSet,
) {
    let deadline = shared.drain_deadline();
    // Cancelled on the control loop, which closes the listener: a new
    // server may bind the port while this one drains.
    accepting.cancel().await;
    let services = shared.registry.services();
    let visitors: u64 = services.iter().map(|s| s.traffic.totals().active).sum();
    drop(services);
    shared.registry.close_ports().await;
    let timeout = crate::logging::Rounded(shared.settings().drain_timeout);
    info!("draining: {visitors} visitors in flight get up to {timeout} to finish");
    drain_now.fire();
    // The admin endpoint keeps answering (health says draining) until the
    // sessions are gone.
    connections
        .join(deadline.saturating_duration_since(std::time::Instant::now()) + SHUTDOWN_GRACE)
        .await;
}

/// Binds the control listener named in `settings`.
pub async fn bind(settings: &ServerSettings) -> io::Result<TcpListener> {
    TcpListener::bind(settings.bind)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", settings.bind)))
}

/// [`run`] over the transport the settings name: TLS when `settings.tls` is
/// set, plain TCP otherwise.
pub async fn run_configured(
    listener: TcpListener,
    settings: ServerSettings,
    shutdown: Signal,
) -> io::Result<()> {
    run_reloadable(listener, settings, shutdown, None).await
}

/// [`run_configured`], applying the settings of every reload request (see
/// `live.rs`: what changes at once, what needs a restart).
pub async fn run_reloadable(
    listener: TcpListener,
    settings: ServerSettings,
    shutdown: Signal,
    reloads: Option<Requests<ServerSettings>>,
) -> io::Result<()> {
    if let Some(tls) = &settings.tls {
        // Once, at start: an expired certificate is refused by every TLS client.
        let consequence = "TLS clients will refuse this server until it is renewed";
        crate::transport::tls::log_warnings(&tls.certificate_warnings(), consequence);
    }
    match settings.tls.as_ref().map(TlsTransport::server) {
        Some(tls) => serve(listener, settings, tls, shutdown, reloads).await,
        None => serve(listener, settings, TcpTransport, shutdown, reloads).await,
    }
}

/// Serves clients on `listener` until `shutdown` fires, then drains: tells
/// every client goodbye, lets visitors in flight finish for up to
/// `drain_timeout`, and returns.
pub async fn run<T: Transport>(
    listener: TcpListener,
    settings: ServerSettings,
    transport: T,
    shutdown: Signal,
) -> io::Result<()> {
    serve(listener, settings, transport, shutdown, None).await
}

/// [`run`], applying `reloads` when given (see [`live`]).
async fn serve<T: Transport>(
    listener: TcpListener,
    settings: ServerSettings,
    transport: T,
    shutdown: Signal,
    reloads: Option<Requests<ServerSettings>>,
) -> io::Result<()> {
    let listener = runtime::std_listener(listener)?;
    let admin = match settings.admin {
        Some(addr) => Some(crate::admin::Endpoint::bind(addr).await?),
        None => None,
    };
    if !settings.authenticates() {
        warn!("authentication is OFF (--insecure-no-auth): anyone can register services");
    }
    let counters = Arc::new(metrics::Counters::default());
    let (drain_now, draining) = crate::shutdown::channel();
    let shared = Arc::new(Shared {
        registry: Arc::new(registry::Registry::new(
            settings.public_bind,
            counters.clone(),
        )),
        counters,
        bound: listener.local_addr()?,
        settings: arc_swap::ArcSwap::from_pointee(settings),
        transport,
        shutdown: shutdown.clone(),
        draining,
        admission: Arc::new(admission::Admission::new()),
        connection_log: Arc::new(Fold::new("connections")),
        visitor_log: Arc::new(Fold::new("visitors")),
        drain_deadline: std::sync::OnceLock::new(),
    });
    info!(
        "listening for clients on {} ({})",
        shared.bound,
        shared.transport.name()
    );
    let public = shared.settings().public_bind;
    if public != shared.settings().bind.ip() {
        info!("public ports bind on {public}");
    }
    let connections = Arc::new(TaskSet::new());
    // Apart from `connections`, whose join waits for its tasks to end.
    let tickers = TaskSet::new();
    tickers.spawn(Fold::ticker(shared.connection_log.clone()));
    tickers.spawn(Fold::ticker(shared.visitor_log.clone()));
    if let Some(admin) = admin {
        tickers.spawn(admin.serve(shared.clone()));
    }
    if let Some(reloads) = reloads {
        tickers.spawn(live::serve(shared.clone(), reloads));
    }
    if let Some(n) = crate::notify::notifier() {
        n.ready();
    }
    // The control port is accepted on the runtime's control loop: it never
    // waits behind data-plane work, and handing a data link to a worker costs
    // one eventfd write.
    let accepting =
        runtime::spawn_control(accept_loop(listener, shared.clone(), connections.clone()));
    shutdown.wait().await;
    drain(&shared, accepting, drain_now, &connections).await;
    drop(tickers);
    shared.registry.clear();
    info!("server stopped");
    Ok(())
}
