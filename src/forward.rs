//! `porthole forward`: a one-hop TCP forwarder on the tunnel's relay engine (the
//! socat `TCP-LISTEN,fork` replacement, in one process).
//!
//! Every accepted connection gets its own task: a non-blocking connect to the
//! target under `connect_timeout`, then a splice relay with half-close
//! propagation. A slow or stalled peer only ever holds its own task. A reset or
//! an error on one side resets the other; a client whose target cannot be
//! reached is reset too.
//!
//! Each rule counts its connections, the bytes its relays move (as they move)
//! and its failed connects (`forward/probe.rs`); with `admin` set, the admin
//! endpoint serves them, bound with the listeners and stopped with them.
//!
//! The feature owns its settings ([`ForwardConfig`] → [`ForwardSettings`], in
//! `forward/settings.rs`); `crate::config` only loads and locates.

use crate::runtime::{self, TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

mod probe;
mod settings;

use crate::admin;
use crate::relay;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport;
use crate::wire::with_timeout;
pub use probe::{ForwardProbe, Rule};
pub use settings::{ForwardConfig, ForwardRule, ForwardSettings, MAX_FORWARDS};

/// Pause after a failed `accept` (e.g. out of descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One bound forward: a listener per worker on the same address
/// (`SO_REUSEPORT`), so each worker accepts its own connections and relays them
/// where they arrived.
pub struct Forward {
    pub listeners: Vec<std::net::TcpListener>,
    pub target: String,
}

/// Every forward of a config, bound, and its admin endpoint when it has one.
pub struct Bound {
    pub forwards: Vec<Forward>,
    pub admin: Option<admin::Endpoint>,
}

/// Binds every listen address in `settings`, and the admin endpoint: a port
/// in use there is a start-up error like one on a listen address.
pub async fn bind(settings: &ForwardSettings) -> io::Result<Bound> {
    let mut forwards = Vec::with_capacity(settings.forwards.len());
    for (listen, target) in &settings.forwards {
        let listeners = runtime::sys::listen_group(*listen, runtime::workers())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
        forwards.push(Forward {
            listeners,
            target: target.clone(),
        });
    }
    let admin = match settings.admin {
        Some(addr) => Some(admin::Endpoint::bind(addr).await?),
        None => None,
    };
    Ok(Bound { forwards, admin })
}

/// Forwards until `shutdown` fires; then stops accepting, closes every relay
/// and the admin endpoint.
pub async fn run(bound: Bound, connect_timeout: Duration, shutdown: Signal) -> io::Result<()> {
    let loops = TaskSet::new();
    let mut rules = Vec::with_capacity(bound.forwards.len());
    for forward in bound.forwards {
        let listen = match forward.listeners.first() {
            Some(first) => first.local_addr()?,
            None => return Err(io::Error::other("forward has no listener")),
        };
        let rule = Arc::new(Rule::new(listen, forward.target.into()));
        info!("forwarding {listen} -> {}", rule.target);
        for (worker, listener) in forward.listeners.into_iter().enumerate() {
            loops.spawn_at(worker, accept_loop(listener, rule.clone(), connect_timeout));
        }
        rules.push(rule);
    }
    if let Some(endpoint) = bound.admin {
        loops.spawn(endpoint.serve(Arc::new(ForwardProbe { rules })));
    }
    shutdown.wait().await;
    info!("forwarder stopped");
    Ok(())
}

/// Accepts on this worker's listener and relays each connection here.
async fn accept_loop(listener: std::net::TcpListener, rule: Arc<Rule>, connect_timeout: Duration) {
    let relays = TaskSet::new();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!("cannot register the listener for {}: {e}", rule.target),
    };
    let here = runtime::this_or_next_worker();
    loop {
        match transport::accept(&listener).await {
            Ok((client, peer)) => {
                relays.spawn_at(here, serve(client, peer, rule.clone(), connect_timeout));
            }
            Err(e) => {
                warn!("accept failed: {e}");
                runtime::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// One client: connect to the target, then relay, counted on `rule`.
async fn serve(client: TcpStream, peer: SocketAddr, rule: Arc<Rule>, connect_timeout: Duration) {
    let target = &rule.target;
    let open = rule.traffic.open();
    // Connecting is boxed so its state is freed before the long-lived relay
    // starts. Either way out but a clean end resets the client: an
    // unreachable target is a refusal, a failed relay a cut.
    let result = match Box::pin(connect(target, connect_timeout)).await {
        Ok(upstream) => relay::relay_tcp(client, upstream, rule.traffic.meter()).await,
        Err(e) => {
            rule.connect_failed();
            client.abort();
            Err(e)
        }
    };
    match result {
        Ok(moved) => debug!("{peer} -> {target} done: {moved:?}"),
        Err(e) => {
            // `failed` counts every connection that ended in an error, an
            // unreachable target included (it also has its own counter).
            open.failed();
            debug!("{peer} -> {target} ended: {e}")
        }
    }
}

async fn connect(target: &str, limit: Duration) -> io::Result<TcpStream> {
    let upstream = with_timeout(
        limit,
        "connecting to the target",
        TcpStream::connect(target),
    )
    .await
    .inspect_err(|e| warn!("cannot reach {target}: {e}"))?;
    upstream.set_nodelay(true)?;
    Ok(upstream)
}

/// The address each forward really bound (useful after binding port 0).
pub fn local_addrs(bound: &Bound) -> io::Result<Vec<SocketAddr>> {
    bound
        .forwards
        .iter()
        .map(|f| match f.listeners.first() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::other("forward has no listener")),
        })
        .collect()
}
