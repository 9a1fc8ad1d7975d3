//! The admin endpoint every role can open (`admin: Some("127.0.0.1:9090")`,
//! `--admin ADDR`): `GET /metrics` (Prometheus text format 0.0.4),
//! `GET /healthz` (`200 ok`, or `503` and the reason) and `GET /status`
//! (JSON, what `porthole status` prints).
//!
//! It is a tiny origin server on the control plane (smol's executor), never on
//! a data-plane worker: a scrape costs the relays nothing but the sums it
//! reads ([`crate::metrics`]). Requests are read with the HTTP proxy's head
//! parser and bounds ([`crate::http_proxy::head`]: 16 KiB per head), under
//! [`HEAD_TIMEOUT`]; one request per connection; at most [`MAX_CONNECTIONS`]
//! at once. A malformed or oversized head gets `400`, a slow one `408`, and the
//! connection closes; nothing a peer sends here reaches the tunnel.
//!
//! What each role reports is its [`Probe`]: the role's own metric families,
//! its health and its status. The endpoint adds the `process_*` families and
//! `porthole_build_info`.

mod route;
pub mod status;

pub use route::{Response, respond};
pub use status::Status;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tracing::{debug, info, warn};

use crate::http_proxy::head::{self, HeadError, RequestHead};
use crate::metrics::Exposition;
use crate::tasks::TaskSet;
use crate::wire::with_timeout;

/// How long a client has to send its whole request head, as the HTTP proxy's
/// default `head_timeout`: a slow or silent connection (slowloris) holds a
/// slot no longer.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a response may take before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; more are closed at accept. A scraper,
/// a health checker and a person need a handful; the cap bounds what a flood
/// of idle connections can hold (each holds at most one 16 KiB head).
pub const MAX_CONNECTIONS: usize = 32;

/// What a role reports through the endpoint.
pub trait Probe: Send + Sync + 'static {
    /// Writes the role's metric families.
    fn metrics(&self, out: &mut Exposition);
    /// Whether the role is serving, and if not, why.
    fn health(&self) -> Health;
    /// What `porthole status` shows.
    fn status(&self) -> Status;
}

/// A role's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// Not serving, with the reason (one line, for people).
    Unavailable(String),
}

/// A bound admin endpoint, not yet serving.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    /// Binds `addr` and logs where the endpoint is (at once, so a log line
    /// written after it, e.g. the server's "listening", comes after it).
    pub async fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} for the admin endpoint: {e}"),
            )
        })?;
        if let Ok(addr) = listener.local_addr() {
            info!("admin endpoint on http://{addr} (/metrics, /healthz, /status)");
        }
        Ok(Endpoint { listener })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the future is dropped (which cancels every connection).
    pub async fn serve(self, probe: Arc<dyn Probe>) {
        let connections = TaskSet::new();
        let open = Arc::new(AtomicUsize::new(0));
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!("admin endpoint: accept failed: {e}");
                    async_io::Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                debug!("admin endpoint: {peer} closed at once: {MAX_CONNECTIONS} connections open");
                continue;
            }
            open.fetch_add(1, Ordering::AcqRel);
            let (probe, open) = (probe.clone(), open.clone());
            connections.spawn(async move {
                if let Err(e) = serve_connection(stream, probe.as_ref()).await {
                    debug!("admin endpoint: {peer}: {e}");
                }
                open.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

/// One request, one response, close.
async fn serve_connection(mut stream: TcpStream, probe: &dyn Probe) -> io::Result<()> {
    let response = match with_timeout(HEAD_TIMEOUT, "reading the request", read_head(&mut stream))
        .await
    {
        Ok(Ok(head)) => respond(&head, probe),
        Ok(Err(e)) => Response::text(400, &format!("bad request: {e}\n")),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Response::text(408, "request timeout\n"),
        Err(e) => return Err(e),
    };
    let bytes = response.encode();
    with_timeout(WRITE_TIMEOUT, "writing the response", async {
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        stream.shutdown(std::net::Shutdown::Write)
    })
    .await
}

/// Reads until a whole head is in; `Err` in the outer result is I/O, in the
/// inner one a head the parser refused.
async fn read_head(stream: &mut TcpStream) -> io::Result<Result<RequestHead, HeadError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a whole request head",
            ));
        }
        // The parser refuses a head past its bound before we keep more.
        buf.extend_from_slice(&chunk[..n]);
        match head::parse_request_head(&buf) {
            Ok(Some((head, _))) => return Ok(Ok(head)),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests;
