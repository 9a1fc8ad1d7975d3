//! The client's multiplexed data links: each is dialled and authenticated like a
//! pooled link, then carries a mux session on which the server opens one stream
//! per visitor (its `Open` payload is the `Start` frame). A link that ends is
//! replaced after a pause for as long as the control session lives.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

use super::context::Context;
use super::dialer::{self, connect_local};
use super::upstream::Upstream;
use crate::mux::{self, Side};
use crate::protocol::chunk::Chunk;
use crate::protocol::{self, Frame, SessionId};
use crate::relay;
use crate::tasks::TaskSet;
use crate::transport::Transport;
use futures_lite::AsyncWriteExt;

/// Pause before replacing a multiplexed link that ended.
const REFILL_PAUSE: Duration = Duration::from_secs(1);

/// Keeps one multiplexed link of `session` up until `draining` fires (then
/// the link in use ends once the server's `GoAway` and its last stream
/// did); the task set that owns this task ends it with the session.
pub(super) async fn keep<T: Transport>(
    ctx: Arc<Context<T>>,
    server: Arc<Upstream<T>>,
    session: SessionId,
    draining: crate::shutdown::Signal,
) {
    while !draining.is_fired() {
        match Box::pin(dialer::data_link(&ctx, &server, session, true)).await {
            Ok(link) => {
                let end = serve(&ctx, link).await;
                if draining.is_fired() {
                    return debug!("multiplexed data link to {server} drained: {end}");
                }
                warn!("multiplexed data link to {server} ended: {end}; reconnecting");
            }
            Err(e) => warn!("cannot open a multiplexed data link to {server}: {e}"),
        }
        crate::runtime::sleep(REFILL_PAUSE).await;
    }
}

/// Runs the mux session on `link`, serving every stream the server opens.
async fn serve<T: Transport>(ctx: &Arc<Context<T>>, link: T::Stream) -> io::Error {
    // The server decides how many streams a link carries (its
    // `max_streams_per_link`); accept up to the most it may be set to.
    let config = mux::Config::for_streams(crate::config::MAX_STREAMS_LIMIT);
    let (session, driver) = mux::Session::new(link, Side::Client, config);
    // Streams live in this set: they end with the link. They run on this
    // task's worker, next to the driver, so no wake-up between a stream's
    // relay and the driver crosses threads.
    let streams = TaskSet::new();
    let here = crate::runtime::current_worker();
    let accept = async {
        while let Some((stream, payload)) = session.accept().await {
            let ctx = ctx.clone();
            let task = async move {
                if let Err(e) = visitor(&ctx, stream, &payload).await {
                    debug!("multiplexed visitor ended: {e}");
                }
            };
            match here {
                Some(worker) => streams.spawn_at(worker, task),
                None => streams.spawn_worker(task),
            }
        }
        Ok(())
    };
    let result = futures_lite::future::or(driver, accept).await;
    match result {
        Ok(()) => io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
        Err(e) => e,
    }
}

/// One visitor: the `Start` in the stream's `Open`, the local service, a relay.
async fn visitor<T: Transport>(
    ctx: &Context<T>,
    stream: mux::Stream,
    payload: &[u8],
) -> io::Result<()> {
    let (service, visitor, public, udp) = match decode_start(payload)? {
        Frame::Start {
            service,
            visitor,
            public,
            udp,
        } => (service, visitor, public, udp),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected start, got {other:?}"),
            ));
        }
    };
    // Before anything reaches the service: until the server reads this, it
    // may still offer the visitor to another link (PROTOCOL.md section 10).
    let mut stream = stream;
    stream.write_all(&Chunk::Accept.encode()).await?;
    stream.flush().await?;
    if !super::udp::agrees(ctx, &service, udp) {
        // Dropped unfinished: the stream is reset, and the visitor with it.
        return Ok(());
    }
    if udp {
        return super::udp::serve(ctx, &mut stream, &service, visitor).await;
    }
    let counters = ctx.counters.service(&service);
    let counters = counters.as_deref();
    let open = counters.map(|c| c.traffic.open());
    let Some(target) = Box::pin(connect_local(ctx, &service, visitor, public)).await else {
        if let Some(open) = &open {
            open.failed();
        }
        // Dropped unfinished, the stream is reset, and so is the visitor at
        // the server: the service could not be reached. (A `Fin` would tell
        // the visitor the service answered nothing and closed.)
        drop(stream);
        return Ok(());
    };
    // Unless it ends cleanly, the service's socket is reset, and the stream
    // too (dropped unfinished).
    let meter = counters.map_or(relay::Meter::NONE, |c| c.traffic.meter());
    let moved = relay::relay_socket(&target, stream, meter).await;
    if let (Err(_), Some(open)) = (&moved, &open) {
        open.failed();
    }
    let moved = moved?;
    debug!("visitor {visitor} of {service} done: {moved:?}");
    Ok(())
}

/// A whole protocol frame (length prefix included) from an `Open` payload.
fn decode_start(payload: &[u8]) -> io::Result<Frame> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    match protocol::decode(payload).map_err(|e| invalid(e.to_string()))? {
        Some((frame, used)) if used == payload.len() => Ok(frame),
        _ => Err(invalid(format!(
            "open payload of {} bytes is not exactly one frame",
            payload.len()
        ))),
    }
}
