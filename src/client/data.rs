//! The client's data links: each is dialled ahead of time, authenticated for the
//! current session and left idle at the server until a `Start` names a service;
//! then the client connects to that service's local address and relays. Every
//! link that gets a visitor is replaced at once, so the pool stays full.

use crate::runtime::TcpStream;
use futures_lite::AsyncWriteExt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tracing::{debug, warn};

use super::session::Context;
use crate::config::DataLinks;
use crate::protocol::{Frame, LinkHello, SessionId, VERSION};
use crate::relay;
use crate::tasks::TaskSet;
use crate::transport::Transport;
use crate::wire::{read_frame, with_timeout, write_frame};

/// Links opened at once on one `OpenData` request; caps what a (buggy or
/// hostile) server can make the client dial.
pub const MAX_OPEN_PER_REQUEST: usize = 64;
/// Pause before replacing an idle link that died.
pub(super) const REFILL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// Data links (idle or relaying) per session; more requests are ignored.
pub const MAX_LINKS: usize = 4096;

/// The data links of one session; dropping it closes them all.
pub(crate) struct Links<T: Transport> {
    inner: Arc<Inner<T>>,
}

pub(super) struct Inner<T: Transport> {
    pub(super) ctx: Arc<Context<T>>,
    pub(super) session_id: SessionId,
    tasks: TaskSet,
    /// Links authenticated and waiting for a visitor.
    idle: AtomicUsize,
    /// How many idle links to keep.
    target: usize,
}

impl<T: Transport> Links<T> {
    /// Starts the session's data links: a pool of idle links, or multiplexed
    /// links kept up (a pooled link the server asks for is opened either way,
    /// so visitors are served while no multiplexed link is up).
    pub fn new(ctx: Arc<Context<T>>, session_id: SessionId, mode: &DataLinks) -> Self {
        let target = match mode {
            DataLinks::Pooled { size } => *size,
            DataLinks::Multiplexed { .. } => 0,
        };
        let inner = Arc::new(Inner {
            ctx,
            session_id,
            tasks: TaskSet::new(),
            idle: AtomicUsize::new(0),
            target,
        });
        match mode {
            DataLinks::Pooled { size } => open(&inner, *size),
            DataLinks::Multiplexed { links } => {
                for _ in 0..*links {
                    let weak = Arc::downgrade(&inner);
                    inner.tasks.spawn_worker(super::muxed::keep(weak));
                }
            }
        }
        Links { inner }
    }

    /// Opens `count` more links (capped).
    pub fn open(&self, count: usize) {
        open(&self.inner, count);
    }
}

impl<T: Transport> Drop for Links<T> {
    fn drop(&mut self) {
        self.inner.tasks.cancel_all();
    }
}

fn open<T: Transport>(inner: &Arc<Inner<T>>, count: usize) {
    let room = MAX_LINKS.saturating_sub(inner.tasks.len());
    // A refill from a link's task stays on its worker (no cross-thread wake);
    // links asked for from the control plane are spread round-robin.
    let here = crate::runtime::current_worker();
    for _ in 0..count.min(MAX_OPEN_PER_REQUEST).min(room) {
        // Tasks hold a weak reference, so the set they live in can be dropped.
        let weak = Arc::downgrade(inner);
        let link = async move {
            if let Err(e) = serve_link(weak).await {
                debug!("data link ended: {e}");
            }
        };
        match here {
            Some(worker) => inner.tasks.spawn_at(worker, link),
            None => inner.tasks.spawn_worker(link),
        }
    }
}

async fn serve_link<T: Transport>(weak: Weak<Inner<T>>) -> io::Result<()> {
    let (ctx, session_id) = match weak.upgrade() {
        Some(inner) => (inner.ctx.clone(), inner.session_id),
        None => return Ok(()),
    };
    let hello = LinkHello::Data { session_id };
    // The set-up phases are boxed so their state is freed once they finish: the
    // task that lives on (possibly for hours) is then little more than the relay.
    let mut link = Box::pin(dial(&ctx, session_id, hello)).await?;
    // Idle until a visitor arrives; the session's end cancels this task.
    let idle = IdleGuard::new(&weak);
    let (service, visitor) = match Box::pin(wait_for_start(&mut link)).await {
        Ok(start) => start,
        Err(e) => {
            // An idle link died (server dropped it, NAT forgot it): replace it
            // after a pause, so a server that keeps refusing costs one dial a
            // second, not a busy loop.
            drop(idle);
            crate::runtime::sleep(REFILL_PAUSE).await;
            refill(&weak);
            return Err(e);
        }
    };
    // Refill first, so the pool is back to size while this visitor is served.
    drop(idle);
    refill(&weak);
    let Some(target) = Box::pin(connect_local(&ctx, &service, visitor)).await else {
        // Closing the link closes the visitor at the server at once.
        let _ = link.close().await;
        return Ok(());
    };
    let moved = relay::relay_link::<T>(target, link).await?;
    debug!("visitor {visitor} of {service} done: {moved:?}");
    Ok(())
}

/// Dials the server and authenticates a data link of `session_id`, all under
/// the handshake timeout. `hello` says which kind of data link.
pub(super) async fn dial<T: Transport>(
    ctx: &Context<T>,
    session_id: SessionId,
    hello: LinkHello,
) -> io::Result<T::Stream> {
    with_timeout(ctx.settings.handshake_timeout, "opening data link", async {
        let mut link = ctx.transport.connect(&ctx.settings.server).await?;
        let hello = Frame::Hello {
            version: VERSION,
            link: hello,
        };
        write_frame(&mut link, &hello).await?;
        let nonce = match read_frame(&mut link).await? {
            Frame::Challenge { nonce } => nonce,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected challenge, got {other:?}"),
                ));
            }
        };
        let mac = ctx.key.data_proof(&session_id, &nonce);
        write_frame(&mut link, &Frame::AuthResponse { mac }).await?;
        Ok(link)
    })
    .await
}

/// Connects to the local address of `service` for a visitor; `None` (logged)
/// when the service is unknown or unreachable.
pub(super) async fn connect_local<T: Transport>(
    ctx: &Context<T>,
    service: &str,
    visitor: std::net::SocketAddr,
) -> Option<TcpStream> {
    let Some(local) = ctx
        .settings
        .services
        .iter()
        .find(|s| s.name == service)
        .map(|s| s.local.as_str())
    else {
        warn!("server started a visitor for unknown service {service:?}");
        return None;
    };
    let limit = ctx.settings.handshake_timeout;
    let connect = TcpStream::connect(local);
    match with_timeout(limit, "connecting to the local service", connect).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            debug!("visitor {visitor} -> {service} ({local})");
            Some(stream)
        }
        Err(e) => {
            warn!("service {service}: cannot reach {local}: {e}; visitor {visitor} closed");
            None
        }
    }
}

async fn wait_for_start<S: futures_lite::AsyncRead + Unpin>(
    link: &mut S,
) -> io::Result<(String, std::net::SocketAddr)> {
    match read_frame(link).await? {
        Frame::Start { service, visitor } => Ok((service, visitor)),
        Frame::Error { code, message } => Err(io::Error::other(format!(
            "server refused data link ({code:?}): {message}"
        ))),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected start, got {other:?}"),
        )),
    }
}

/// Opens one link if fewer than the target are idle. Links the server asked
/// for beyond the target are not replaced.
fn refill<T: Transport>(weak: &Weak<Inner<T>>) {
    if let Some(inner) = weak.upgrade() {
        if inner.idle.load(Ordering::Relaxed) < inner.target {
            open(&inner, 1);
        }
    }
}

/// Counts a link as idle for as long as it lives.
struct IdleGuard<T: Transport>(Weak<Inner<T>>);

impl<T: Transport> IdleGuard<T> {
    fn new(weak: &Weak<Inner<T>>) -> Self {
        if let Some(inner) = weak.upgrade() {
            inner.idle.fetch_add(1, Ordering::Relaxed);
        }
        IdleGuard(weak.clone())
    }
}

impl<T: Transport> Drop for IdleGuard<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
