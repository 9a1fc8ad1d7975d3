//! One UDP flow at the client: after its `Accept`, a link (or mux stream)
//! carries datagram records (PROTOCOL.md section 16) between the server and
//! one UDP socket connected to the service's local address, so the service
//! sees each visitor as its own source and its replies go back to that
//! visitor alone.
//!
//! Neither direction waits on the other or blocks: a datagram the local
//! socket cannot take now, or that finds the link's queue full, is dropped
//! and counted (`porthole_client_udp_dropped_total`). The flow ends when the
//! server closes its link (the flow went idle, or the port closed); the
//! local socket closes with it.

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};
use tracing::{debug, warn};

use super::context::Context;
use super::metrics::{Dropped, ServiceCounters};
use crate::relay::datagrams::{CLOSE_LIMIT, Inbox, Outbox, Read, with_scratch};
use crate::runtime::{self, Socket};
use crate::transport::Transport;

/// Datagrams read from the local socket per turn before other tasks of the
/// worker get theirs.
const DATAGRAMS_PER_TURN: usize = 64;

/// Whether `service` is a UDP service now.
pub(super) fn is_udp<T: Transport>(ctx: &Context<T>, service: &str) -> bool {
    ctx.live()
        .service(service)
        .is_some_and(|s| s.protocol == crate::config::Protocol::Udp)
}

/// Whether a `Start` (of a UDP flow when `udp`) fits `service` as this
/// client has it now. Only a reload that changed the service's protocol,
/// between the server starting the visitor and reading the new `Register`,
/// makes them differ: that one visitor is closed (logged), never relayed
/// in the wrong framing. An unknown service agrees; connecting to it fails
/// as before.
pub(super) fn agrees<T: Transport>(ctx: &Context<T>, service: &str, udp: bool) -> bool {
    let live = ctx.live();
    let Some(settings) = live.service(service) else {
        return true;
    };
    let here = settings.protocol == crate::config::Protocol::Udp;
    if here != udp {
        let (was, now) = if udp { ("UDP", "TCP") } else { ("TCP", "UDP") };
        warn!("server started a {was} visitor of service {service}, which is {now} now; closed");
    }
    here == udp
}

/// Serves one flow on an accepted `link` until the server ends it. A local
/// address that does not resolve ends it at once (counted as a failed
/// local connect), which closes the link and so the flow at the server.
pub(super) async fn serve<T: Transport, L: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Context<T>,
    link: &mut L,
    service: &str,
    visitor: SocketAddr,
) -> io::Result<()> {
    let counters = ctx.counters.service(service);
    let counters = counters.as_deref();
    let open = counters.map(|c| c.traffic.open());
    let socket = match local_socket(ctx, service).await {
        Ok(socket) => socket,
        Err(e) => {
            if let Some(c) = counters {
                c.local_failed();
            }
            if let Some(open) = &open {
                open.failed();
            }
            warn!("UDP service {service}: {e}; flow of {visitor} closed");
            return Err(e);
        }
    };
    debug!("UDP flow {visitor} -> {service}");
    let mut relay = Relay {
        socket: &socket,
        counters,
        inbox: Inbox::new(),
        outbox: Outbox::new(),
    };
    let ended = poll_fn(|cx| relay.poll(cx, link)).await;
    match &ended {
        // The server ended the flow: our side of the link ends cleanly too.
        Ok(()) => drop(runtime::timeout(CLOSE_LIMIT, link.close()).await),
        Err(_) => {
            if let Some(open) = &open {
                open.failed();
            }
        }
    }
    ended
}

/// A UDP socket connected to the service's local address.
async fn local_socket<T: Transport>(
    ctx: &Context<T>,
    service: &str,
) -> io::Result<Socket<std::net::UdpSocket>> {
    let local = ctx.live().service(service).map(|s| s.local.clone());
    let local = local.ok_or_else(|| io::Error::other("the service was removed"))?;
    let addrs = runtime::dial::resolve(&local).await?;
    let addr = addrs
        .first()
        .ok_or_else(|| io::Error::other(format!("{local} resolves to no address")))?;
    Socket::new(runtime::sys::udp_connected(*addr)?)
}

struct Relay<'a> {
    socket: &'a Socket<std::net::UdpSocket>,
    counters: Option<&'a ServiceCounters>,
    /// Records from the server.
    inbox: Inbox,
    /// Records for the server.
    outbox: Outbox,
}

impl Relay<'_> {
    /// One turn of both directions; a direction with more to do wakes the
    /// task again instead of looping.
    fn poll<L: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut TaskContext<'_>,
        link: &mut L,
    ) -> Poll<io::Result<()>> {
        let mut more = false;
        let (socket, counters) = (self.socket, self.counters);
        let mut sent = 0u64;
        let read = self
            .inbox
            .poll_read(cx, link, |d| match socket.get_ref().send(d) {
                Ok(_) => sent += d.len() as u64,
                // Full, or the service is not listening (an earlier datagram's
                // ICMP error): lost, as UDP may lose it.
                Err(_) => drop_one(counters, Dropped::ToService),
            });
        if let Some(c) = counters {
            c.traffic.meter().b_to_a().add(sent);
        }
        match read {
            Poll::Ready(Ok(Read::Bytes(_))) => more = true,
            Poll::Ready(Ok(Read::Eof)) => return Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        match self.receive(cx) {
            Poll::Ready(Ok(())) => more = true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if self.outbox.wants_send() {
            match self.outbox.poll_send(cx, link) {
                Poll::Ready(Ok(n)) => more |= n > 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if more {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Reads the local socket into the outbox (dropping what does not
    /// fit); `Pending` once it is empty.
    fn receive(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let (outbox, counters) = (&mut self.outbox, self.counters);
        let mut received = 0u64;
        let turn = self.socket.poll_read_with(cx, |s| {
            with_scratch(|buf| {
                for _ in 0..DATAGRAMS_PER_TURN {
                    let n = match s.recv(buf) {
                        Ok(n) => n,
                        // An ICMP error for an earlier send: the service
                        // is not listening (yet). Nothing to deliver.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(e),
                    };
                    if outbox.push(&buf[..n]) {
                        received += n as u64;
                    } else {
                        drop_one(counters, Dropped::ToServer);
                    }
                }
                Ok(())
            })
        });
        if let Some(c) = counters {
            c.traffic.meter().a_to_b().add(received);
        }
        turn
    }
}

fn drop_one(counters: Option<&ServiceCounters>, direction: Dropped) {
    if let Some(c) = counters {
        c.dropped(direction);
    }
}
