//! One client connection: read a request head, check it, then either open a
//! CONNECT tunnel, answer it here (`Max-Forwards: 0`), or forward it
//! ([`super::exchange`]), and repeat while the client keeps the connection.
//!
//! A CONNECT, or a forwarded `Upgrade` the origin accepts with `101`, becomes
//! a splice relay; the 16 KiB head buffer is freed before it starts, so an
//! idle tunnel costs what a `forward` connection does. A tunnel passes a reset
//! from either side on (see [`crate::relay`]), and its bytes are counted by
//! the relay as they move.

use crate::runtime::SharedTcpStream as TcpStream;
use futures_lite::AsyncWriteExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::debug;

use super::body::{Buffered, HeadFailure};
use super::exchange::{Exchange, Next};
use super::framing::{self, Framing};
use super::head::{Request, parse_request};
use super::refuse::{Refuse, respond};
use super::rewrite::{self, Upstream};
use super::syntax::{HeadError, Version};
use super::{Proxy, auth::Credentials};
use crate::wire::with_timeout;

/// What to do with a forwarded request, decided before any origin is touched.
enum Plan {
    Forward {
        max_forwards: Option<u32>,
        upgrade: Option<Vec<u8>>,
    },
    /// The proxy is the final recipient: this is the whole response.
    Answer(Vec<u8>),
}

/// Serves `stream` until the client closes, an error, or a timeout.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>) {
    let mut writer = stream.clone();
    let mut client = Buffered::new(stream);
    // Declared after the sockets so it drops first: the count is already down
    // when the client sees the close.
    let active = proxy.stats.open();
    let mut first = true;
    loop {
        if !first && client.data().is_empty() {
            // Keep-alive idle wait: nothing owed to the client, so a silent close.
            let idle = proxy.settings.idle_timeout;
            match with_timeout(idle, "keep-alive idle", client.fill()).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
        let Some(request) = read_request(&proxy, &mut client, &mut writer, peer).await else {
            return;
        };
        if request.is_connect() {
            if tunnel(&proxy, client, writer, peer, request).await.is_err() {
                active.failed();
            }
            return;
        }
        let next = handle(&proxy, &mut client, &mut writer, peer, &request).await;
        match next {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Abort => {
                active.failed();
                // Failing, the close is a FIN: nothing better is left to do.
                let _ = writer.get_ref().reset_on_close();
                return;
            }
            Next::Switch(origin) => {
                let (origin, early) = origin.into_parts();
                if splice(&proxy, client, writer, origin, early, peer)
                    .await
                    .is_err()
                {
                    active.failed();
                }
                return;
            }
        }
    }
}

/// Answers or forwards one request (not CONNECT).
async fn handle(
    proxy: &Proxy,
    client: &mut Buffered<TcpStream>,
    writer: &mut TcpStream,
    peer: SocketAddr,
    request: &Request,
) -> Next {
    match plan(proxy, request) {
        Ok(Plan::Answer(bytes)) => answer(proxy, writer, &bytes, request).await,
        Ok(Plan::Forward {
            max_forwards,
            upgrade,
        }) => {
            let exchange = Exchange {
                proxy,
                client,
                writer,
                peer,
                req: request,
                up: Upstream {
                    max_forwards,
                    upgrade: upgrade.as_deref(),
                },
            };
            // Boxed: inline, its state (heads, buffers, the two halves)
            // would size this task for every connection, idle tunnels too.
            Box::pin(exchange.forward()).await
        }
        Err(refuse) => {
            debug!(
                "{peer}: {} {}: {}",
                request.method,
                request.dest.authority(),
                refuse.text
            );
            // Without a body to skip, a refused request leaves the connection usable.
            let keep =
                request.framing == Framing::None && request.keep_alive() && refuse.status == 407;
            respond(proxy, writer, refuse, keep).await;
            if keep { Next::KeepAlive } else { Next::Close }
        }
    }
}

/// Reads and checks one request head, answering any failure itself.
async fn read_request(
    proxy: &Proxy,
    client: &mut Buffered<TcpStream>,
    writer: &mut TcpStream,
    peer: SocketAddr,
) -> Option<Request> {
    let read = with_timeout(
        proxy.settings.head_timeout,
        "reading a request head",
        async { Ok(client.read_head(parse_request).await) },
    );
    let refuse = match read.await {
        Ok(Ok(request)) => return request,
        Ok(Err(HeadFailure::Invalid(e))) => {
            debug!("{peer}: {e}");
            Refuse::from_head(&e)
        }
        Ok(Err(HeadFailure::Io(e))) => {
            debug!("{peer}: {e}");
            return None;
        }
        Err(_) => Refuse::new(408, "timed out reading the request head"),
    };
    respond(proxy, writer, refuse, false).await;
    None
}

/// Authentication, then `Max-Forwards`, `TRACE` and `Upgrade`.
fn plan(proxy: &Proxy, req: &Request) -> Result<Plan, Refuse> {
    authenticate(proxy, req)?;
    let local = matches!(req.method.as_str(), "OPTIONS" | "TRACE");
    let max_forwards = if local {
        framing::max_forwards(&req.headers).map_err(|e| Refuse::from_head(&e))?
    } else {
        None
    };
    let keep = req.framing == Framing::None && req.keep_alive();
    match (req.method.as_str(), max_forwards) {
        ("OPTIONS", Some(0)) => return Ok(Plan::Answer(rewrite::options_response(keep))),
        ("TRACE", Some(0)) => return Ok(Plan::Answer(rewrite::trace_response(req, keep))),
        ("TRACE", _) => {
            return Err(Refuse::from_head(&HeadError::Method(req.method.clone())));
        }
        _ => {}
    }
    Ok(Plan::Forward {
        max_forwards: max_forwards.map(|n| n - 1),
        upgrade: upgrade(req),
    })
}

/// The protocol a request asks to switch to, if the proxy forwards the ask:
/// HTTP/1.1, `Connection: upgrade` with an `Upgrade` field, and no body (the
/// switch happens right after the head).
fn upgrade(req: &Request) -> Option<Vec<u8>> {
    let asks = framing::connection_tokens(&req.headers)
        .unwrap_or_default()
        .iter()
        .any(|t| t == "upgrade");
    let protocol = req.header("upgrade")?;
    (asks && req.version == Version::Http11 && req.framing == Framing::None)
        .then(|| protocol.to_vec())
}

fn authenticate(proxy: &Proxy, req: &Request) -> Result<(), Refuse> {
    let Some(credentials) = &proxy.settings.auth else {
        return Ok(());
    };
    let given = req
        .header("proxy-authorization")
        .and_then(|v| std::str::from_utf8(v).ok());
    if credentials.accepts(given) {
        return Ok(());
    }
    let mut refuse = Refuse::new(407, "proxy authentication required");
    refuse
        .extra
        .push(("Proxy-Authenticate", Credentials::challenge()));
    Err(refuse)
}

/// Writes a response the proxy made as the final recipient.
async fn answer(proxy: &Proxy, writer: &mut TcpStream, bytes: &[u8], req: &Request) -> Next {
    let limit = proxy.settings.head_timeout;
    let written = with_timeout(limit, "writing a response", async {
        writer.write_all(bytes).await?;
        writer.flush().await
    })
    .await;
    proxy.stats.request();
    match written {
        Ok(()) if req.framing == Framing::None && req.keep_alive() => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// A CONNECT: `200`, then bytes that followed the head, then a splice relay.
/// `Err` when the tunnel broke (a refusal is an answer, not a failure).
async fn tunnel(
    proxy: &Proxy,
    client: Buffered<TcpStream>,
    mut writer: TcpStream,
    peer: SocketAddr,
    req: Request,
) -> Result<(), Broken> {
    let connected = match authenticate(proxy, &req) {
        Ok(()) => proxy.connect(&req.dest).await,
        Err(refuse) => Err(refuse),
    };
    let origin = match connected {
        Ok(origin) => origin,
        Err(refuse) => {
            debug!("{peer}: CONNECT {}: {}", req.dest.authority(), refuse.text);
            // Bytes after the head may already be tunnel data: never reuse.
            respond(proxy, &mut writer, refuse, false).await;
            return Ok(());
        }
    };
    let limit = proxy.settings.idle_timeout;
    let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
    if let Err(e) = with_timeout(limit, "starting a tunnel", writer.write_all(established)).await {
        debug!("{peer}: CONNECT {}: {e}", req.dest.authority());
        return Err(Broken);
    }
    proxy.stats.connect();
    // The request's fields are of no use to the tunnel.
    drop(req);
    splice(proxy, client, writer, origin, Vec::new(), peer).await
}

/// Joins the client and the origin: the bytes each side sent early go to the
/// other, then a splice relay metered on the proxy's counters. Frees both
/// head buffers first.
async fn splice(
    proxy: &Proxy,
    client: Buffered<TcpStream>,
    writer: TcpStream,
    mut origin: TcpStream,
    to_client: Vec<u8>,
    peer: SocketAddr,
) -> Result<(), Broken> {
    let (client, to_origin) = client.into_parts();
    let mut writer = writer;
    let limit = proxy.settings.idle_timeout;
    let started = with_timeout(limit, "starting a tunnel", async {
        writer.write_all(&to_client).await?;
        origin.write_all(&to_origin).await
    })
    .await;
    drop(writer);
    if let Err(e) = started {
        debug!("{peer}: tunnel: {e}");
        return Err(Broken);
    }
    proxy
        .stats
        .bytes(to_origin.len() as u64, to_client.len() as u64);
    drop((to_client, to_origin));
    // `writer` was the client stream's only other owner.
    let relayed = match (client.into_inner(), origin.into_inner()) {
        (Ok(client), Ok(origin)) => {
            crate::relay::relay_tcp(client, origin, proxy.stats.meter()).await
        }
        _ => Err(io::Error::other("tunnel sockets are still shared")),
    };
    relayed.map(drop).map_err(|e| {
        debug!("{peer}: tunnel ended: {e}");
        Broken
    })
}

/// A tunnel that did not end cleanly (already logged); counted as a failed
/// connection.
struct Broken;
