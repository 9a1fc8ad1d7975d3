//! The three services every mode leads to, run inside the bench process on
//! `127.0.0.1:0`: an echo, a sink that discards (and counts) what it reads, and
//! a source that writes until the peer goes away. iperf3 and nginx, when
//! installed, are two more services run as child processes (`iperf.rs`,
//! `nginx.rs`).

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Read/write buffer of the bulk services.
const BULK_BUF_LEN: usize = 256 * 1024;
/// A source connection stops writing after this long even if nobody closes it.
const SOURCE_MAX_DURATION: Duration = Duration::from_secs(120);
/// Bound on writes per source connection (256 KiB each: 4 TiB).
const SOURCE_MAX_WRITES: u64 = 16 * 1024 * 1024;

/// A service every mode leads to: its name (in peers' configs) and address.
pub type Target = (&'static str, SocketAddr);

pub struct Services {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    pub source: SocketAddr,
    /// Bytes the sink has read, over all its connections.
    pub sunk: Arc<AtomicU64>,
    listeners: Vec<smol::Task<()>>,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Services {
    /// Binds the three services and runs them on `threads` executor threads.
    pub fn start(threads: usize) -> io::Result<Self> {
        // Leaked on purpose: it lives as long as the bench process, and connection
        // tasks (detached below) need a 'static executor to spawn onto.
        let ex: &'static smol::Executor<'static> = Box::leak(Box::new(smol::Executor::new()));
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let threads = (0..threads.max(1))
            .map(|_| {
                let stopped = stopped.clone();
                std::thread::spawn(move || {
                    let _ = smol::block_on(ex.run(stopped.recv()));
                })
            })
            .collect();
        let bind = || smol::block_on(TcpListener::bind("127.0.0.1:0"));
        let (echo, sink, source) = (bind()?, bind()?, bind()?);
        let sunk = Arc::new(AtomicU64::new(0));
        let mut me = Self {
            echo: echo.local_addr()?,
            sink: sink.local_addr()?,
            source: source.local_addr()?,
            sunk: sunk.clone(),
            listeners: Vec::new(),
            stop: Some(stop),
            threads,
        };
        me.listeners
            .push(ex.spawn(serve(ex, echo, |s| Box::pin(echo_conn(s)))));
        me.listeners.push(ex.spawn(serve(ex, sink, move |s| {
            Box::pin(sink_conn(s, sunk.clone()))
        })));
        me.listeners
            .push(ex.spawn(serve(ex, source, |s| Box::pin(source_conn(s)))));
        Ok(me)
    }
}

impl Services {
    /// The in-process services, in the order modes configure them.
    pub fn targets(&self) -> Vec<Target> {
        vec![
            ("echo", self.echo),
            ("sink", self.sink),
            ("source", self.source),
        ]
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.listeners.clear();
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

type ConnFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn serve(
    ex: &'static smol::Executor<'static>,
    listener: TcpListener,
    handler: impl Fn(TcpStream) -> ConnFuture,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        // Detached: a connection task ends at EOF or error, and the executor is
        // dropped with the process; keeping thousands of handles buys nothing.
        ex.spawn(handler(stream)).detach();
    }
}

async fn echo_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn sink_conn(mut s: TcpStream, sunk: Arc<AtomicU64>) {
    let mut buf = vec![0u8; BULK_BUF_LEN];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
        sunk.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn source_conn(mut s: TcpStream) {
    let buf = vec![0x5au8; BULK_BUF_LEN];
    let started = Instant::now();
    for _ in 0..SOURCE_MAX_WRITES {
        if started.elapsed() > SOURCE_MAX_DURATION || s.write_all(&buf).await.is_err() {
            break;
        }
    }
}
