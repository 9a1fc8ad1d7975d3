//! Test-side HTTP: a running proxy, a tiny origin server, and a client that
//! reads responses (Content-Length, chunked, until close) off a buffered stream.

use futures_lite::io::BufReader;
use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use porthole::http_proxy::{self, Proxy, ProxySettings, Resolve};
use porthole::shutdown::{self, Trigger};

/// Longest head line the test reader accepts: bounds a misbehaving peer.
const MAX_LINE: usize = 64 * 1024;

/// A running proxy; dropping it stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    _stop: Trigger,
    _task: smol::Task<io::Result<()>>,
}

/// Settings with short timeouts suited to tests.
pub fn settings() -> ProxySettings {
    let mut s = ProxySettings::standalone();
    s.connect_timeout = PROMPTLY;
    s.head_timeout = PROMPTLY;
    s.idle_timeout = PROMPTLY;
    s
}

pub async fn start(settings: ProxySettings) -> Running {
    start_with(Proxy::new(settings)).await
}

pub async fn start_with(proxy: Arc<Proxy>) -> Running {
    let listener = local_listener().await;
    let addr = listener.local_addr().expect("proxy address");
    let (stop, signal) = shutdown::channel();
    let interval = Duration::from_secs(3600);
    let listeners = vec![porthole::runtime::std_listener(listener).expect("listener")];
    let task = smol::spawn(http_proxy::run(listeners, proxy.clone(), interval, signal));
    Running {
        addr,
        proxy,
        _stop: stop,
        _task: task,
    }
}

/// Resolves a fixed table of names; anything else is "not found".
pub struct FakeDns(pub HashMap<String, SocketAddr>);

impl Resolve for FakeDns {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> futures_lite::future::Boxed<io::Result<Vec<SocketAddr>>> {
        let found = self.0.get(host).map(|a| SocketAddr::new(a.ip(), port));
        Box::pin(async move {
            found
                .map(|a| vec![a])
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such test name"))
        })
    }
}

/// A parsed message: first line, lower-case header map, body (decoded).
#[derive(Debug)]
pub struct Message {
    pub first: String,
    pub headers: HashMap<String, String>,
    pub raw_head: String,
    pub body: Vec<u8>,
}

impl Message {
    pub fn status(&self) -> u16 {
        self.first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

pub type Reader = BufReader<TcpStream>;

async fn line(r: &mut Reader) -> io::Result<String> {
    let mut buf = Vec::new();
    (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if !buf.ends_with(b"\r\n") {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no CRLF"));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| io::Error::other("not utf-8"))
}

/// Reads a head; the body is left to [`read_body`].
pub async fn read_head(r: &mut Reader) -> io::Result<Message> {
    let first = line(r).await?;
    let mut raw_head = format!("{first}\r\n");
    let mut headers = HashMap::new();
    loop {
        let l = line(r).await?;
        if l.is_empty() {
            break;
        }
        raw_head.push_str(&format!("{l}\r\n"));
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| io::Error::other("bad field"))?;
        headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    Ok(Message {
        first,
        headers,
        raw_head,
        body: Vec::new(),
    })
}

/// Reads the body `m`'s head announces (`until_close` when it has no framing).
pub async fn read_body(r: &mut Reader, m: &mut Message, until_close: bool) -> io::Result<()> {
    if m.headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        loop {
            let size = line(r).await?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                while !line(r).await?.is_empty() {}
                return Ok(());
            }
            let start = m.body.len();
            m.body.resize(start + size, 0);
            r.read_exact(&mut m.body[start..]).await?;
            line(r).await?;
        }
    } else if let Some(len) = m.headers.get("content-length") {
        let len: usize = len.parse().map_err(|_| io::Error::other("bad length"))?;
        m.body.resize(len, 0);
        r.read_exact(&mut m.body).await
    } else if until_close {
        r.read_to_end(&mut m.body).await.map(drop)
    } else {
        Ok(())
    }
}

/// Reads a whole response to a non-HEAD request.
pub async fn read_response(r: &mut Reader) -> io::Result<Message> {
    let mut m = read_head(r).await?;
    read_body(r, &mut m, true).await?;
    Ok(m)
}

/// Connects to the proxy; returns the writer and a buffered reader.
pub async fn dial(proxy: SocketAddr) -> (TcpStream, Reader) {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    (stream.clone(), BufReader::new(stream))
}

/// Sends `request` on a fresh connection and reads one response.
pub async fn ask(proxy: SocketAddr, request: &[u8]) -> Message {
    let (mut w, mut r) = dial(proxy).await;
    w.write_all(request).await.expect("send request");
    within(PROMPTLY, "response", read_response(&mut r))
        .await
        .expect("a response")
}

/// Sends `request` on a fresh connection to `addr` and reads everything until
/// the peer closes (a reset after the answer still leaves the answer read).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let (mut w, mut r) = dial(addr).await;
    w.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let _ = within(PROMPTLY, "the close", r.read_to_end(&mut out)).await;
    out
}

/// `chunk`-sized chunked encoding of `data`.
pub fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    out
}

/// An origin: reads one request per connection (head and body), hands it to
/// `reply`, writes what `reply` returns, and closes.
pub async fn origin<F, Fut>(reply: F) -> Service
where
    F: Fn(Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Vec<u8>> + Send + 'static,
{
    serve(local_listener().await, move |stream: TcpStream| {
        let reply = reply.clone();
        async move {
            let mut w = stream.clone();
            let mut r = BufReader::new(stream);
            let mut request = read_head(&mut r).await?;
            read_body(&mut r, &mut request, false).await?;
            w.write_all(&reply(request).await).await?;
            w.close().await
        }
    })
}

/// A listener whose accept queue is full, so a connect to it hangs (SYNs are
/// dropped): fills it with connections that complete, until one does not.
pub async fn full_listener() -> (SocketAddr, Vec<TcpStream>, std::os::fd::OwnedFd) {
    use nix::sys::socket::{Backlog, listen};
    let (fd, addr) = refusing_address();
    listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = TcpStream::connect(addr);
        let timeout = async {
            smol::Timer::after(Duration::from_millis(300)).await; // ok-sleep: a deadline
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        match futures_lite::FutureExt::or(attempt, timeout).await {
            Ok(stream) => fillers.push(stream),
            Err(_) => return (addr, fillers, fd),
        }
    }
    panic!("the accept queue never filled up");
}

/// An origin that records every byte each connection sends it, until that
/// connection closes; see [`recorder`].
pub struct Recorder {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepts: Arc<std::sync::atomic::AtomicUsize>,
    /// What each connection sent, once it closed.
    pub recordings: smol::channel::Receiver<Vec<u8>>,
    _service: Service,
}

impl Recorder {
    pub fn accepts(&self) -> usize {
        self.accepts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The bytes of the next connection to close.
    pub async fn next(&self) -> Vec<u8> {
        within(
            PROMPTLY,
            "a recorded origin connection",
            self.recordings.recv(),
        )
        .await
        .expect("recording")
    }
}

/// An origin whose connections are numbered from 0 and counted; `handler`
/// serves each with its number and the channel for recordings.
async fn counted<H, F>(handler: H) -> Recorder
where
    H: Fn(usize, TcpStream, smol::channel::Sender<Vec<u8>>) -> F + Send + 'static,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, recordings) = smol::channel::unbounded();
    let counter = accepts.clone();
    let service = serve(local_listener().await, move |stream: TcpStream| {
        let conn = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        handler(conn, stream, tx.clone())
    });
    Recorder {
        addr: service.addr,
        accepts,
        recordings,
        _service: service,
    }
}

/// An origin that answers the first request head of each connection with
/// `reply` (which should say `Connection: close`, so the proxy lets go), then
/// records what else arrives until the proxy closes or resets.
pub async fn recorder(reply: &[u8]) -> Recorder {
    let reply = Arc::new(reply.to_vec());
    counted(move |_, stream, tx| {
        let reply = reply.clone();
        async move {
            let (mut w, mut r) = (stream.clone(), stream);
            let (mut seen, mut buf, mut answered) = (Vec::new(), [0u8; 4096], false);
            loop {
                let n = r.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if !answered && seen.windows(4).any(|x| x == b"\r\n\r\n") {
                    answered = true;
                    let _ = w.write_all(&reply).await;
                }
            }
            let _ = tx.send(seen).await;
            Ok(())
        }
    })
    .await
}

/// What a [`scripted`] origin does with request number `request` (from 0) on
/// connection number `conn` (from 0): answer these bytes, or close (`None`).
pub type Script = fn(conn: usize, request: usize) -> Option<Vec<u8>>;

/// A keep-alive origin: reads requests (heads and Content-Length or chunked
/// bodies) one after another on each connection and answers as `script` says.
pub async fn scripted(script: Script) -> Recorder {
    counted(move |conn, stream, _| async move {
        let mut w = stream.clone();
        let mut r = BufReader::new(stream);
        for request in 0.. {
            let mut m = read_head(&mut r).await?;
            read_body(&mut r, &mut m, false).await?;
            match script(conn, request) {
                Some(reply) => w.write_all(&reply).await?,
                None => return Ok(()),
            }
        }
        Ok(())
    })
    .await
}
