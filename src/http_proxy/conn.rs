//! One client connection: read a request head, check it, then either open a
//! CONNECT tunnel or forward one absolute-form request, and repeat while the
//! client keeps the connection alive.
//!
//! Each forwarded request gets its own origin connection (sent
//! `Connection: close`): no origin pool to poison or to leak between clients,
//! at the cost of a TCP handshake per request. The request body upload and the
//! response download run concurrently, so an origin that answers while still
//! reading (or echoes as it reads) cannot deadlock the exchange. A response cut
//! after its first bytes reached the client (the origin reset, timed out or
//! broke the framing) resets the client rather than closing it, and a CONNECT
//! tunnel passes a reset from either side on (see [`crate::relay`]).

use crate::runtime::SharedTcpStream as TcpStream;
use futures_lite::AsyncWriteExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::debug;

use super::body::{Buffered, HeadFailure, copy_body};
use super::head::{self, Framing, Request, Response, Version, parse_request, parse_response};
use super::{Proxy, auth::Credentials};
use crate::wire::with_timeout;

/// How a connection goes on after one exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close with a reset: the response was cut after some of it reached the
    /// client, which must not take it for complete (a read-to-close body has
    /// no length of its own).
    Abort,
}

/// A response the proxy generates itself, and whether the connection survives it.
pub(super) struct Refuse {
    status: u16,
    text: String,
    extra: Vec<(&'static str, String)>,
}

impl Refuse {
    pub(super) fn new(status: u16, text: impl Into<String>) -> Self {
        Refuse {
            status,
            text: text.into(),
            extra: Vec::new(),
        }
    }
}

/// Serves `stream` until the client closes, an error, or a timeout.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>) {
    let mut writer = stream.clone();
    let mut client = Buffered::new(stream);
    // Declared after the sockets so it drops first: the count is already down
    // when the client sees the close.
    let _active = proxy.stats.open();
    let mut first = true;
    loop {
        let settings = &proxy.settings;
        if !first && client.data().is_empty() {
            // Keep-alive idle wait: nothing owed to the client, so a silent close.
            match with_timeout(settings.idle_timeout, "keep-alive idle", client.fill()).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
        let read = with_timeout(settings.head_timeout, "reading a request head", async {
            Ok(client.read_head(parse_request).await)
        });
        let request = match read.await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return,
            Ok(Err(HeadFailure::Invalid(e))) => {
                debug!("{peer}: {e}");
                let refuse = Refuse::new(e.status(), e.to_string());
                respond(&proxy, &mut writer, refuse, false).await;
                return;
            }
            Ok(Err(HeadFailure::Io(e))) => return debug!("{peer}: {e}"),
            Err(_) => {
                let refuse = Refuse::new(408, "timed out reading the request head");
                respond(&proxy, &mut writer, refuse, false).await;
                return;
            }
        };
        let next = if request.is_connect() {
            tunnel(&proxy, client, writer, peer, request).await;
            return;
        } else {
            exchange(&proxy, &mut client, &mut writer, peer, request).await
        };
        match next {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Abort => {
                // Failing, the close is a FIN: nothing better is left to do.
                let _ = writer.get_ref().reset_on_close();
                return;
            }
        }
    }
}

/// Writes a generated response; counts it as an error.
async fn respond(proxy: &Proxy, writer: &mut TcpStream, refuse: Refuse, keep_alive: bool) {
    proxy.stats.error(refuse.status);
    let extra: Vec<(&str, &str)> = refuse.extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let bytes = head::proxy_response(refuse.status, &extra, &refuse.text, keep_alive);
    let limit = proxy.settings.head_timeout;
    let _ = with_timeout(limit, "writing a response", async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    })
    .await;
}

/// Authentication, then destination rules, resolution and the connect.
async fn open_origin(proxy: &Proxy, req: &Request) -> Result<TcpStream, Refuse> {
    if let Some(credentials) = &proxy.settings.auth {
        if !credentials.accepts(req.header("proxy-authorization")) {
            let mut refuse = Refuse::new(407, "proxy authentication required");
            refuse
                .extra
                .push(("Proxy-Authenticate", Credentials::challenge()));
            return Err(refuse);
        }
    }
    proxy.connect(&req.dest).await
}

/// A CONNECT: `200`, then bytes that followed the head, then a splice relay.
async fn tunnel(
    proxy: &Proxy,
    client: Buffered<TcpStream>,
    mut writer: TcpStream,
    peer: SocketAddr,
    req: Request,
) {
    let mut origin = match open_origin(proxy, &req).await {
        Ok(origin) => origin,
        Err(refuse) => {
            debug!("{peer}: CONNECT {}: {}", req.dest.authority(), refuse.text);
            // Bytes after the head may already be tunnel data: never reuse.
            return respond(proxy, &mut writer, refuse, false).await;
        }
    };
    let early = client.data().to_vec();
    let limit = proxy.settings.idle_timeout;
    let started = with_timeout(limit, "starting a tunnel", async {
        writer
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        origin.write_all(&early).await
    })
    .await;
    if let Err(e) = started {
        return debug!("{peer}: CONNECT {}: {e}", req.dest.authority());
    }
    proxy.stats.connect();
    proxy.stats.bytes(early.len() as u64, 0);
    drop(writer);
    // `writer` was the client stream's only other owner.
    let relayed = match (client.stream.into_inner(), origin.into_inner()) {
        (Ok(client), Ok(origin)) => crate::relay::relay_tcp(client, origin).await,
        _ => Err(io::Error::other("tunnel sockets are still shared")),
    };
    match relayed {
        Ok(moved) => proxy.stats.bytes(moved.a_to_b, moved.b_to_a),
        Err(e) => debug!("{peer}: tunnel to {} ended: {e}", req.dest.authority()),
    }
}

/// One forwarded request and its response.
async fn exchange(
    proxy: &Proxy,
    client: &mut Buffered<TcpStream>,
    writer: &mut TcpStream,
    peer: SocketAddr,
    req: Request,
) -> Next {
    let framing = req.framing().unwrap_or(Framing::None);
    let origin = match open_origin(proxy, &req).await {
        Ok(origin) => origin,
        Err(refuse) => {
            debug!(
                "{peer}: {} {}: {}",
                req.method,
                req.dest.authority(),
                refuse.text
            );
            // Without a body to skip, a refused request leaves the connection usable.
            let keep = framing == Framing::None && req.keep_alive() && refuse.status == 407;
            respond(proxy, writer, refuse, keep).await;
            return if keep { Next::KeepAlive } else { Next::Close };
        }
    };
    let idle = proxy.settings.idle_timeout;
    let mut origin_writer = origin.clone();
    let upload = async {
        let head = head::origin_request(&req);
        with_timeout(
            idle,
            "sending a request head",
            origin_writer.write_all(&head),
        )
        .await?;
        let body = copy_body(client, &mut origin_writer, framing, idle).await?;
        Ok::<u64, io::Error>(head.len() as u64 + body)
    };
    let mut sent = 0;
    let download = relay_response(proxy, origin, writer, &req, &mut sent);
    let (up, down) = futures_lite::future::zip(upload, download).await;
    proxy.stats.request();
    proxy.stats.bytes(
        *up.as_ref().unwrap_or(&0),
        down.as_ref().map_or(0, |_| sent),
    );
    match (up, down) {
        (Ok(_), Ok(true)) => Next::KeepAlive,
        (Ok(_), Ok(false)) => Next::Close,
        (up, down) => {
            // Cut only if the response failed once bytes of it were out:
            // before that the client got a 502, and an upload that failed
            // after a complete response (an origin that answered early and
            // closed) leaves that response intact.
            let cut = down.is_err() && sent > 0;
            if let Err(e) = up.map(drop).and(down.map(drop)) {
                debug!("{peer}: {} {}: {e}", req.method, req.dest.authority());
            }
            // The origin's exchange failed either way: reset, not closed.
            let _ = origin_writer.get_ref().reset_on_close();
            if cut { Next::Abort } else { Next::Close }
        }
    }
}

/// Reads the origin's response (passing interim 1xx heads along) and streams it
/// to the client, counting the bytes written in `sent`. Returns whether the
/// client may keep the connection. A failure before any byte reached the client
/// becomes a `502`.
async fn relay_response(
    proxy: &Proxy,
    origin: TcpStream,
    writer: &mut TcpStream,
    req: &Request,
    sent: &mut u64,
) -> io::Result<bool> {
    let idle = proxy.settings.idle_timeout;
    let mut origin = Buffered::new(origin);
    loop {
        let (response, framing) = match response_head(&mut origin, req, idle).await {
            Ok(head) => head,
            Err(why) => {
                if *sent == 0 {
                    let text = format!("bad response from the origin: {why}");
                    respond(proxy, writer, Refuse::new(502, text), false).await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        };
        let keep = req.keep_alive()
            && framing != Framing::UntilClose
            && !(req.version == Version::Http10 && framing == Framing::Chunked);
        let head = head::client_response(&response, req.version, keep);
        with_timeout(idle, "writing the response head", writer.write_all(&head)).await?;
        *sent += head.len() as u64;
        if (100..200).contains(&response.status) {
            continue;
        }
        *sent += copy_body(&mut origin, writer, framing, idle).await?;
        with_timeout(idle, "flushing the response", writer.flush()).await?;
        return Ok(keep);
    }
}

/// One response head from the origin and its body framing, or why not.
async fn response_head(
    origin: &mut Buffered<TcpStream>,
    req: &Request,
    idle: std::time::Duration,
) -> Result<(Response, Framing), String> {
    let read = with_timeout(idle, "reading the response head", async {
        Ok(origin.read_head(parse_response).await)
    });
    let response = match read.await {
        Ok(Ok(Some(response))) if response.status != 101 => response,
        Ok(Ok(Some(_))) => return Err("protocol switch without Upgrade".to_owned()),
        Ok(Ok(None)) => return Err("closed without a response".to_owned()),
        Ok(Err(HeadFailure::Io(e))) | Err(e) => return Err(e.to_string()),
        Ok(Err(HeadFailure::Invalid(e))) => return Err(e.to_string()),
    };
    let framing = response.framing(&req.method).map_err(|e| e.to_string())?;
    Ok((response, framing))
}
