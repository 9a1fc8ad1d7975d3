//! `porthole forward`: a one-hop TCP forwarder on the tunnel's relay engine (the
//! socat `TCP-LISTEN,fork` replacement, in one process).
//!
//! Every accepted connection gets its own task: a non-blocking connect to the
//! target under `connect_timeout`, then a splice relay with half-close
//! propagation. A slow or stalled peer only ever holds its own task. A reset or
//! an error on one side resets the other; a client whose target cannot be
//! reached is reset too.
//!
//! The feature owns its settings ([`ForwardConfig`] → [`ForwardSettings`], in
//! `forward/settings.rs`); `crate::config` only loads and locates.

use crate::runtime::{self, TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

mod settings;

use crate::relay;
use crate::shutdown::Signal;
use crate::tasks::TaskSet;
use crate::transport;
use crate::wire::with_timeout;
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

/// Binds every listen address in `settings`.
pub async fn bind(settings: &ForwardSettings) -> io::Result<Vec<Forward>> {
    let mut bound = Vec::with_capacity(settings.forwards.len());
    for (listen, target) in &settings.forwards {
        let listeners = runtime::sys::listen_group(*listen, runtime::workers())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
        bound.push(Forward {
            listeners,
            target: target.clone(),
        });
    }
    Ok(bound)
}

/// Forwards until `shutdown` fires; then stops accepting and closes every relay.
pub async fn run(
    forwards: Vec<Forward>,
    connect_timeout: Duration,
    shutdown: Signal,
) -> io::Result<()> {
    let loops = TaskSet::new();
    for forward in forwards {
        let target: Arc<str> = forward.target.into();
        if let Some(first) = forward.listeners.first() {
            info!("forwarding {} -> {target}", first.local_addr()?);
        }
        for (worker, listener) in forward.listeners.into_iter().enumerate() {
            loops.spawn_at(
                worker,
                accept_loop(listener, target.clone(), connect_timeout),
            );
        }
    }
    shutdown.wait().await;
    info!("forwarder stopped");
    Ok(())
}

/// Accepts on this worker's listener and relays each connection here.
async fn accept_loop(listener: std::net::TcpListener, target: Arc<str>, connect_timeout: Duration) {
    let relays = TaskSet::new();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!("cannot register the listener for {target}: {e}"),
    };
    let here = runtime::this_or_next_worker();
    loop {
        match transport::accept(&listener).await {
            Ok((client, peer)) => {
                let target = target.clone();
                relays.spawn_at(here, async move {
                    // Connecting is boxed so its state is freed before the
                    // long-lived relay starts.
                    // Either way out but a clean end resets the client: an
                    // unreachable target is a refusal, a failed relay a cut.
                    let result = match Box::pin(connect(&target, connect_timeout)).await {
                        Ok(upstream) => {
                            relay::relay_tcp(client, upstream, relay::Meter::NONE).await
                        }
                        Err(e) => {
                            client.abort();
                            Err(e)
                        }
                    };
                    match result {
                        Ok(moved) => debug!("{peer} -> {target} done: {moved:?}"),
                        Err(e) => debug!("{peer} -> {target} ended: {e}"),
                    }
                });
            }
            Err(e) => {
                warn!("accept failed: {e}");
                runtime::sleep(ACCEPT_ERROR_PAUSE).await;
            }
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
pub fn local_addrs(forwards: &[Forward]) -> io::Result<Vec<SocketAddr>> {
    forwards
        .iter()
        .map(|f| match f.listeners.first() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::other("forward has no listener")),
        })
        .collect()
}
