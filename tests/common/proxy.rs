//! A TCP proxy between client and server that hands the test every connection
//! it carries: a test counts the links a client opened, or resets them.

use porthole::tasks::TaskSet;
use smol::channel::{Receiver, Sender, unbounded};
use smol::net::{TcpListener, TcpStream};
use std::net::SocketAddr;

/// A TCP proxy between client and server that remembers every connection, so a
/// test can reset the data links while they sit idle in the server's pool.
pub struct LinkProxy {
    pub addr: SocketAddr,
    pub conns: Receiver<TcpStream>,
    _task: smol::Task<()>,
}

pub async fn link_proxy(upstream: SocketAddr) -> LinkProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (tx, rx) = unbounded();
    let task = smol::spawn(proxy_loop(listener, upstream, tx));
    LinkProxy {
        addr,
        conns: rx,
        _task: task,
    }
}

async fn proxy_loop(listener: TcpListener, upstream: SocketAddr, conns: Sender<TcpStream>) {
    let relays = TaskSet::new();
    while let Ok((down, _)) = listener.accept().await {
        let Ok(up) = TcpStream::connect(upstream).await else {
            continue;
        };
        // Like the links it carries: chunk headers and small frames must not
        // wait for Nagle.
        let _ = (down.set_nodelay(true), up.set_nodelay(true));
        // The test gets the upstream side: resetting it kills the link at the
        // server while the client's side is closed by the relay.
        let _ = conns.send(up.clone()).await;
        relays.spawn(async move {
            // The copy relay: `up` is shared with the test.
            let _ = porthole::relay::relay(down, up).await;
        });
    }
}

impl super::harness::Via for LinkProxy {
    fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}

impl LinkProxy {
    /// Connections carried so far that the test has not taken yet.
    pub fn take_new(&self) -> Vec<TcpStream> {
        std::iter::from_fn(|| self.conns.try_recv().ok()).collect()
    }
}
