//! The client's pooled data links: each is dialled ahead of time, authenticated for the
//! current session and left idle at the server until a `Start` names a service;
//! then the client connects to that service's local address and relays. When the
//! visitor ends cleanly the link says `Idle` and waits for the next `Start`
//! (PROTOCOL.md section 9); an error, a link past its age or use count, or a
//! link the pool has no room for is closed, and a closed link is replaced while
//! fewer than the pool size are idle.
//!
//! The pool grows with demand: the server asks for a link (`OpenData`) for each
//! visitor it cannot serve from its idle links, and the links so opened stay as
//! long as they are busy. Dials run at most [`MAX_CONCURRENT_DIALS`] at once;
//! a failed dial is retried with backoff, so a server that is down or refusing
//! costs a few dials a second, not a busy loop.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use smol::lock::Semaphore;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use super::context::Context;
use super::dialer::{self, connect_local, jitter};
use super::upstream::Upstream;
use crate::handshake::HandshakeError;
use crate::protocol::chunk::{Chunk, Role};
use crate::protocol::{Frame, LEN_PREFIX, MAX_FRAME_LEN, SessionId};
use crate::relay;
use crate::shutdown;
use crate::tasks::TaskSet;
use crate::transport::Transport;

/// Links opened at once on one `OpenData` request; caps what a (buggy or
/// hostile) server can make the client dial per frame.
pub const MAX_OPEN_PER_REQUEST: usize = 64;
/// Dials (connect + TLS + authentication) in flight at once per session: enough
/// to open thousands of links a second on a LAN, few enough that a burst of
/// requests does not open thousands of half-done handshakes at once.
pub const MAX_CONCURRENT_DIALS: usize = 64;
/// First pause after a failed dial; doubles up to [`MAX_DIAL_BACKOFF`].
const FIRST_DIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(5);
/// Pause before replacing a link the server closed while it was idle.
const REPLACE_PAUSE: Duration = Duration::from_millis(100);
/// An idle link closed sooner than this after it was dialled counts as a failed
/// dial (a server refusing the link after authentication), so it is backed off.
const SHORT_LIVED: Duration = Duration::from_secs(1);

/// The pooled data links of one session; dropping it closes them all.
pub(super) struct Pool<T: Transport> {
    inner: Arc<Inner<T>>,
    drain: shutdown::Trigger,
}

struct Inner<T: Transport> {
    ctx: Arc<Context<T>>,
    /// The server this pool's links go to.
    server: Arc<Upstream<T>>,
    session_id: SessionId,
    tasks: TaskSet,
    /// Links authenticated and waiting for a visitor.
    idle: AtomicUsize,
    /// How many idle links to keep.
    target: usize,
    dials: Semaphore,
    /// Dials in flight that the server did not ask for (the initial fill,
    /// replacements of retired links). A link request is served from these
    /// first: a visitor that arrives while its link is being replaced must not
    /// cost a second link.
    unrequested: AtomicUsize,
    /// Fired once the session ends with a drain: no link is dialled any
    /// more, and idle links close.
    draining: shutdown::Signal,
}

impl<T: Transport> Pool<T> {
    /// Starts a pool that keeps `size` idle links (0: only the links the
    /// server asks for, as with multiplexed links).
    pub fn new(
        ctx: Arc<Context<T>>,
        server: Arc<Upstream<T>>,
        session_id: SessionId,
        size: usize,
    ) -> Self {
        let (drain, draining) = shutdown::channel();
        let inner = Arc::new(Inner {
            ctx,
            server,
            session_id,
            tasks: TaskSet::new(),
            idle: AtomicUsize::new(0),
            target: size,
            dials: Semaphore::new(MAX_CONCURRENT_DIALS),
            unrequested: AtomicUsize::new(0),
            draining,
        });
        open(&inner, size, false);
        Pool { inner, drain }
    }

    /// The server asked for `count` more links: opens those not already on
    /// their way (capped).
    pub fn open(&self, count: usize) {
        let on_the_way = take_up_to(&self.inner.unrequested, count);
        open(&self.inner, count - on_the_way, true);
    }

    /// Dials no more links and closes the idle ones; each busy link ends
    /// with its visitor.
    pub fn drain(&self) {
        self.drain.fire();
    }

    /// Waits up to `limit` for every link to end (see [`Pool::drain`]),
    /// then closes the rest.
    pub async fn join(&self, limit: Duration) {
        self.inner.tasks.join(limit).await;
    }
}

impl<T: Transport> Drop for Pool<T> {
    fn drop(&mut self) {
        self.inner.tasks.cancel_all();
    }
}

/// Subtracts up to `n` from `counter`; returns how much it took.
fn take_up_to(counter: &AtomicUsize, n: usize) -> usize {
    let before = counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v - v.min(n)))
        .unwrap_or(0);
    before.min(n)
}

fn open<T: Transport>(inner: &Arc<Inner<T>>, count: usize, requested: bool) {
    if inner.draining.is_fired() {
        return;
    }
    let room = inner
        .ctx
        .settings
        .max_links
        .saturating_sub(inner.tasks.len());
    // A refill from a link's task stays on its worker (no cross-thread wake);
    // links asked for from the control plane are spread round-robin.
    let here = crate::runtime::current_worker();
    for _ in 0..count.min(MAX_OPEN_PER_REQUEST).min(room) {
        // Tasks hold a weak reference, so the set they live in can be dropped.
        let weak = Arc::downgrade(inner);
        let link = async move {
            if let Err(e) = serve_link(weak, requested).await {
                debug!("data link ended: {e}");
            }
        };
        match here {
            Some(worker) => inner.tasks.spawn_at(worker, link),
            None => inner.tasks.spawn_worker(link),
        }
    }
}

/// One link slot: dials, serves visitor after visitor, and dials again when the
/// link is closed while the pool is short of idle links.
async fn serve_link<T: Transport>(weak: Weak<Inner<T>>, mut requested: bool) -> io::Result<()> {
    let Some((ctx, server, session_id)) = weak
        .upgrade()
        .map(|i| (i.ctx.clone(), i.server.clone(), i.session_id))
    else {
        return Ok(());
    };
    let mut backoff = FIRST_DIAL_BACKOFF;
    loop {
        let dialled = Box::pin(dial_bounded(&weak, &ctx, &server, session_id, requested)).await;
        requested = false;
        let born = Instant::now();
        let reason = match dialled {
            Ok(link) => carry(&weak, &ctx, link, born).await,
            Err(e) => {
                if server.log.note_any("data link dials failed") {
                    warn!("cannot open a data link to {server}: {e}");
                }
                Retire::Failed
            }
        };
        if reason == Retire::Failed || born.elapsed() < SHORT_LIVED && reason == Retire::Died {
            crate::runtime::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_DIAL_BACKOFF);
        } else {
            backoff = FIRST_DIAL_BACKOFF;
            if reason == Retire::Died {
                // The server closes idle links when it drains or the session
                // ends: by the time this pause is over the control link has
                // said so, and the pool dials nothing into a closing server.
                crate::runtime::sleep(REPLACE_PAUSE).await;
            }
        }
        if !short_of_idle(&weak) {
            return Ok(());
        }
    }
}

/// Why a link was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    /// The dial failed.
    Failed,
    /// It ended while idle (the server closed it, the path broke).
    Died,
    /// Its visitor failed, or it reached its age or use limit, or the pool
    /// had no room for it.
    Done,
}

async fn dial_bounded<T: Transport>(
    weak: &Weak<Inner<T>>,
    ctx: &Context<T>,
    server: &Upstream<T>,
    session_id: SessionId,
    requested: bool,
) -> Result<T::Stream, HandshakeError> {
    let Some(inner) = weak.upgrade() else {
        return Err(HandshakeError::Closed);
    };
    if !requested {
        inner.unrequested.fetch_add(1, Ordering::Relaxed);
    }
    // The strong reference lives only as long as the dial; dropping the
    // session's `Links` cancels this task either way.
    let permit = inner.dials.acquire().await;
    let link = dialer::data_link(ctx, server, session_id, false).await;
    drop(permit);
    if !requested {
        take_up_to(&inner.unrequested, 1);
    }
    link
}

/// Serves visitors on one link until it is retired.
async fn carry<T: Transport>(
    weak: &Weak<Inner<T>>,
    ctx: &Context<T>,
    mut link: T::Stream,
    born: Instant,
) -> Retire {
    let mut uses = 0u64;
    loop {
        // Idle until a visitor arrives; the session's end cancels this task,
        // a drain ends the wait. (A `Start` the server sent meanwhile is
        // never accepted, so the server offers its visitor elsewhere.)
        let Some(draining) = weak.upgrade().map(|i| i.draining.clone()) else {
            return Retire::Done;
        };
        let idle = IdleGuard::new(weak);
        let probes = ctx.settings.link_probe_interval;
        let start = Box::pin(wait_for_start(&mut link, probes))
            .or(async {
                draining.wait().await;
                Err(io::Error::other("closed by the drain"))
            })
            .await;
        drop(idle);
        let (start, udp) = match start {
            Ok(start) => start,
            Err(e) => {
                debug!("idle data link ended: {e}");
                return Retire::Died;
            }
        };
        let agrees = super::udp::agrees(ctx, &start.0, udp);
        if udp || !agrees {
            // A UDP flow has the link to itself until the server closes it;
            // a `Start` of the other protocol than the service's ends at once
            // (accepted, so the server does not offer it elsewhere).
            if write_chunk(&mut link, Chunk::Accept).await.is_ok() && agrees {
                spawn_flow(weak, link, start);
            }
            return Retire::Done;
        }
        let Some(accepted) = accept::<T>(&mut link).await else {
            return Retire::Died;
        };
        uses += 1;
        // Asked when our direction ends after the server's, so `Idle` can
        // leave with our `End` (the relay then commits us to the link).
        let settings = &ctx.settings;
        let keep = || {
            uses < settings.max_link_uses
                && born.elapsed() < settings.max_link_age
                && short_of_idle(weak)
        };
        match visit::<T>(ctx, &mut link, start, accepted, &keep).await {
            None => return Retire::Done,
            Some(true) => continue,
            Some(false) if keep() => {}
            Some(false) => {
                let _ = link.close().await;
                return Retire::Done;
            }
        }
        if write_chunk(&mut link, Chunk::Idle).await.is_err() {
            return Retire::Done;
        }
    }
}

/// Serves a UDP flow on `link` in a task of its own in the pool's set (so
/// it counts against `max_links`): an idle flow then holds only what the
/// flow needs, not a link slot's whole state machine.
fn spawn_flow<T: Transport>(
    weak: &Weak<Inner<T>>,
    mut link: T::Stream,
    (service, visitor, _): (String, SocketAddr, Option<SocketAddr>),
) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let ctx = inner.ctx.clone();
    let flow = async move {
        if let Err(e) = super::udp::serve(&ctx, &mut link, &service, visitor).await {
            debug!("UDP flow {visitor} of {service} ended: {e}");
        }
    };
    match crate::runtime::current_worker() {
        Some(worker) => inner.tasks.spawn_at(worker, flow),
        None => inner.tasks.spawn_worker(flow),
    }
}

/// Tells the server the link took its visitor, before anything reaches the
/// service: until the server reads this it may still replay the visitor on
/// another link. On a raw link it waits corked for the service's first
/// answer (see `relay::Accepted`). `None`: the link failed.
async fn accept<T: Transport>(link: &mut T::Stream) -> Option<relay::Accepted> {
    let accept = Chunk::Accept.encode();
    match T::as_raw(link) {
        Some(raw) if relay::send_corked(raw, &accept) => {
            Some(relay::Accepted::Corked(Instant::now()))
        }
        _ => match write_chunk(link, Chunk::Accept).await {
            Ok(()) => Some(relay::Accepted::Sent),
            Err(_) => None,
        },
    }
}

/// One visitor on the link: its local service, then the relay. `Some` with
/// whether the relay already sent `Idle` when the visitor ended cleanly;
/// `None` when the link must be retired.
async fn visit<T: Transport>(
    ctx: &Context<T>,
    link: &mut T::Stream,
    (service, visitor, public): (String, SocketAddr, Option<SocketAddr>),
    accepted: relay::Accepted,
    keep: relay::KeepLink<'_>,
) -> Option<bool> {
    let counters = ctx.counters.service(&service);
    let counters = counters.as_deref();
    let open = counters.map(|c| c.traffic.open());
    let Some(target) = Box::pin(connect_local(ctx, &service, visitor, public)).await else {
        if let Some(open) = &open {
            open.failed();
        }
        // A link that ends before its `End` resets the visitor at the
        // server at once: the service could not be reached.
        let _ = link.close().await;
        return None;
    };
    let relayed = relay::relay_chunked::<T>(
        &target,
        link,
        Role::Client,
        Some(keep),
        accepted,
        counters.map_or(relay::Meter::NONE, |c| c.traffic.meter()),
    );
    match relayed.await {
        Ok(done) => {
            debug!("visitor {visitor} of {service} done: {:?}", done.moved);
            Some(done.idle_sent)
        }
        Err(e) => {
            if let Some(open) = &open {
                open.failed();
            }
            // The relay set the service's socket to reset on close; the
            // link is closed before its `End`, which resets the visitor.
            debug!("visitor {visitor} of {service} ended: {e}");
            None
        }
    }
}

/// Whether fewer links than the pool size are idle.
fn short_of_idle<T: Transport>(weak: &Weak<Inner<T>>) -> bool {
    weak.upgrade().is_some_and(|inner| {
        !inner.draining.is_fired() && inner.idle.load(Ordering::Relaxed) < inner.target
    })
}

/// Waits for the server's `Start` on an idle link, sending a `Probe` every
/// `probes` meanwhile. Reads exactly the frame, never past it (the visitor's
/// chunks follow at once), and keeps what it has read across probes.
async fn wait_for_start<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut S,
    probes: Duration,
) -> io::Result<((String, SocketAddr, Option<SocketAddr>), bool)> {
    let mut buf = [0u8; LEN_PREFIX + MAX_FRAME_LEN];
    let mut have = 0;
    loop {
        let need = frame_need(&buf[..have])?;
        if need == 0 {
            break;
        }
        let read = async { Some(link.read(&mut buf[have..have + need]).await) };
        let tick = async {
            crate::runtime::sleep(probes).await;
            None
        };
        match read.or(tick).await {
            Some(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Ok(n)) => have += n,
            Some(Err(e)) => return Err(e),
            None => write_chunk(link, Chunk::Probe).await?,
        }
    }
    let frame = crate::protocol::decode(&buf[..have])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .map(|(frame, _)| frame);
    match frame {
        Some(Frame::Start {
            service,
            visitor,
            public,
            udp,
        }) => Ok(((service, visitor, public), udp)),
        Some(Frame::Error { code, message }) => Err(io::Error::other(format!(
            "server refused data link ({code:?}): {message}"
        ))),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected start, got {other:?}"),
        )),
    }
}

/// Bytes still to read for the whole frame at the front of `have` (0: it is
/// whole); an error for a length prefix over the frame cap.
fn frame_need(have: &[u8]) -> io::Result<usize> {
    let Some(prefix) = have.first_chunk::<LEN_PREFIX>() else {
        return Ok(LEN_PREFIX - have.len());
    };
    let len = crate::protocol::check_len(*prefix)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(LEN_PREFIX + len - have.len())
}

/// Writes one header-only chunk (`Accept`, `Probe`, `Idle`) and flushes it.
async fn write_chunk<S: AsyncWrite + Unpin>(link: &mut S, chunk: Chunk) -> io::Result<()> {
    link.write_all(&chunk.encode()).await?;
    link.flush().await
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
