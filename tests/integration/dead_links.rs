//! Idle data links that die behind both sides' backs — what a NAT that forgot
//! its mappings does — cost no visitor: the server offers each visitor to
//! another link with its first bytes (re-dispatch), and the client's probes
//! find and replace the dead links on their own.
//!
//! The links run through [`NatProxy`], a relay in this process that can
//! *forget* every connection it carries: from then on, the first bytes either
//! side sends on a forgotten connection are answered with a reset to that side
//! and never delivered, and the other side hears nothing — as with a NAT whose
//! mapping is gone, where the next packet meets an RST.

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use porthole::tasks::TaskSet;
use smol::channel::{Receiver, Sender, unbounded};
use smol::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Pooled links the client keeps idle.
const POOL: usize = 4;

#[test]
fn visitors_whose_links_died_while_idle_are_served_on_other_links_with_their_bytes() {
    run_test(async {
        let mut nat =
            Nat::start(|settings| settings.link_probe_interval = Duration::from_secs(3600)).await;
        assert_echoes(nat.public, 1, 1000).await;
        // The control link and the pool.
        nat.wait_for_links(1 + POOL).await;
        let forgotten = nat.proxy.forget_all();
        assert!(
            forgotten >= POOL as u64,
            "only {forgotten} connections forgotten"
        );
        ten_visitors_served(&nat).await;
        let resets = nat.proxy.resets.load(Ordering::Relaxed);
        assert!(resets >= 1, "the visitors met dead links ({resets} resets)");
        nat.stop().await;
    });
}

#[test]
fn visitors_whose_mux_link_died_are_served_on_another_link_with_their_bytes() {
    run_test(async {
        let nat = Nat::start(|settings| {
            settings.data_links = porthole::config::DataLinks::Multiplexed { links: 1 };
        })
        .await;
        within(PROMPTLY, "the mux link", nat.proxy.muxes.recv())
            .await
            .expect("proxy runs");
        assert_echoes(nat.public, 1, 1000).await;
        assert!(nat.proxy.forget_all() >= 1, "the mux link is forgotten");
        ten_visitors_served(&nat).await;
        let resets = nat.proxy.resets.load(Ordering::Relaxed);
        assert!(
            resets >= 1,
            "the visitors met the dead link ({resets} resets)"
        );
        nat.stop().await;
    });
}

/// Ten visitors in a row, each sending its first bytes before any answer (as
/// an HTTP request does), each echoed in full.
async fn ten_visitors_served(nat: &Nat) {
    for seed in 0..10 {
        let data = payload(seed, 3000 + seed as usize);
        let echoed = within(
            PROMPTLY,
            "a visitor after the links died",
            exchange(nat.public, &data),
        )
        .await
        .expect("the visitor is served");
        assert_eq!(echoed.len(), data.len(), "visitor {seed}: every byte back");
        assert!(echoed == data, "visitor {seed}: first bytes intact");
    }
}

#[test]
fn probes_find_idle_links_that_died_and_the_client_replaces_them() {
    run_test(async {
        let mut nat =
            Nat::start(|settings| settings.link_probe_interval = Duration::from_millis(100)).await;
        assert_echoes(nat.public, 2, 1000).await;
        nat.wait_for_links(1 + POOL).await;
        nat.proxy.forget_all();
        // No visitor: only the client's probes can find the dead links.
        within(
            PROMPTLY,
            "the client replacing its dead links",
            nat.wait_for_links(POOL),
        )
        .await;
        assert!(nat.proxy.resets.load(Ordering::Relaxed) >= POOL as u64);
        assert_echoes(nat.public, 3, 100_000).await;
        nat.stop().await;
    });
}

/// A server, an echo service and a pooled client whose links (and control
/// link) run through a [`NatProxy`].
struct Nat {
    tunnel: Tunnel,
    proxy: NatProxy,
    public: SocketAddr,
}

impl Nat {
    async fn start(adjust: impl FnOnce(&mut porthole::config::ClientSettings) + 'static) -> Nat {
        let (tunnel, proxy) = TunnelBuilder::new()
            .pooled(POOL)
            .client(adjust)
            .start_via(NatProxy::start)
            .await;
        Nat {
            public: tunnel.public,
            tunnel,
            proxy,
        }
    }

    /// Waits until `count` more connections went through the proxy (new links).
    async fn wait_for_links(&mut self, count: usize) {
        for _ in 0..count {
            self.proxy.opened.recv().await.expect("proxy runs");
        }
    }

    async fn stop(self) {
        self.tunnel.stop().await;
    }
}

/// See the module docs. Every connection carries the proxy's epoch at its
/// start; [`NatProxy::forget_all`] moves the epoch on, which forgets them.
struct NatProxy {
    addr: SocketAddr,
    epoch: Arc<AtomicU64>,
    /// One message per connection opened.
    opened: Receiver<()>,
    /// One message per multiplexed link (its hello seen going by).
    muxes: Receiver<()>,
    /// Resets sent to a side that used a forgotten connection.
    resets: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
    _task: smol::Task<()>,
}

impl Via for NatProxy {
    fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}

impl NatProxy {
    async fn start(upstream: SocketAddr) -> NatProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let epoch = Arc::new(AtomicU64::new(0));
        let resets = Arc::new(AtomicU64::new(0));
        let carried = Arc::new(AtomicU64::new(0));
        let (tx, opened) = unbounded();
        let (mux_tx, muxes) = unbounded();
        let state = Shared {
            upstream,
            epoch: epoch.clone(),
            resets: resets.clone(),
            carried: carried.clone(),
            carried_total: AtomicU64::new(0),
            opened: tx,
            muxes: mux_tx,
        };
        let task = smol::spawn(accept_loop(listener, Arc::new(state)));
        NatProxy {
            addr,
            epoch,
            opened,
            muxes,
            resets,
            carried,
            _task: task,
        }
    }

    /// Forgets every connection carried so far; returns how many that was.
    fn forget_all(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.carried.swap(0, Ordering::SeqCst)
    }
}

struct Shared {
    upstream: SocketAddr,
    epoch: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
    carried_total: AtomicU64,
    opened: Sender<()>,
    muxes: Sender<()>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let relays = TaskSet::new();
    while let Ok((down, _)) = listener.accept().await {
        let Ok(up) = TcpStream::connect(shared.upstream).await else {
            continue;
        };
        let _ = (down.set_nodelay(true), up.set_nodelay(true));
        // The first connection is the control link: heartbeats keep a NAT's
        // mapping of it alive, so only the (idle) data links are forgotten.
        let seen = shared.carried_total.fetch_add(1, Ordering::SeqCst);
        let born = match seen {
            0 => u64::MAX,
            _ => shared.epoch.load(Ordering::SeqCst),
        };
        if seen > 0 {
            shared.carried.fetch_add(1, Ordering::SeqCst);
        }
        let _ = shared.opened.try_send(());
        relays.spawn(relay([Some(down), Some(up)], born, shared.clone()));
    }
}

/// Both directions of one connection in one task, which owns both sockets
/// (no clones), so that dropping one after `SO_LINGER` 0 really resets it.
/// A side that sends on a forgotten connection is reset and its bytes are
/// never delivered; the other side hears nothing until it sends too.
async fn relay(mut sides: [Option<TcpStream>; 2], born: u64, shared: Arc<Shared>) {
    let mut bufs = [vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]];
    let mut open = [true, true];
    while open.iter().any(|o| *o) {
        let (side, read) = {
            let [a, b] = &mut bufs;
            let live = |i: usize| sides[i].as_ref().filter(|_| open[i]).cloned();
            read_from(0, live(0), a).or(read_from(1, live(1), b)).await
        };
        let other = 1 - side;
        let n = match read {
            Ok(0) | Err(_) => {
                open[side] = false;
                if let Some(to) = &sides[other] {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                }
                continue;
            }
            Ok(n) => n,
        };
        if side == 0 && is_mux_hello(&bufs[0][..n]) {
            let _ = shared.muxes.try_send(());
        }
        if born != u64::MAX && shared.epoch.load(Ordering::SeqCst) != born {
            if let Some(from) = sides[side].take() {
                reset_on_close(&from);
                shared.resets.fetch_add(1, Ordering::Relaxed);
            }
            open[side] = false;
            continue;
        }
        let Some(mut to) = sides[other].clone() else {
            continue;
        };
        if to.write_all(&bufs[side][..n]).await.is_err() {
            open[side] = false;
        }
    }
}

/// One read from side `i`, or never when that side is closed. The clone is
/// dropped with the future, before the caller may reset the socket.
async fn read_from(
    i: usize,
    stream: Option<TcpStream>,
    buf: &mut [u8],
) -> (usize, std::io::Result<usize>) {
    match stream {
        Some(mut s) => (i, s.read(buf).await),
        None => std::future::pending().await,
    }
}

/// Whether `bytes` begin with a client's `Hello` for a multiplexed link.
fn is_mux_hello(bytes: &[u8]) -> bool {
    matches!(
        porthole::protocol::decode(bytes),
        Ok(Some((
            porthole::protocol::Frame::Hello {
                link: porthole::protocol::LinkHello::Mux { .. },
                ..
            },
            _
        )))
    )
}
