//! Dialling: the server (connect, then authenticate with the handshake
//! machines of `crate::handshake`), and a local service for a visitor.
//! Every dial runs under the handshake timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::{debug, warn};

use futures_lite::AsyncWriteExt;

use super::context::Context;
use super::upstream::Upstream;
use crate::config::ProxyProtocol;
use crate::handshake::{Accepted, ClientHandshake, HandshakeError, drive};
use crate::protocol::SessionId;
use crate::protocol::proxy_header;
use crate::runtime::TcpStream;
use crate::transport::Transport;
use crate::wire::{with_deadline, with_timeout};

/// Connects to `server` and authenticates a control link.
pub(super) async fn control<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
) -> Result<(T::Stream, Accepted), HandshakeError> {
    let mut link = connect(ctx, server).await?;
    let nonce = crate::auth::random()?;
    let insecure = ctx.settings.insecure_no_auth;
    let creds = ctx.live().credentials.clone();
    let (machine, hello) = match &creds.id {
        Some(id) => {
            ClientHandshake::named_control(&creds.key, ctx.client_id, id.clone(), nonce, insecure)
        }
        None => ClientHandshake::control(&creds.key, ctx.client_id, nonce, insecure),
    };
    let limit = ctx.settings.handshake_timeout;
    let done = with_deadline(limit, "handshake", drive::client(&mut link, machine, hello)).await?;
    // A control machine ends only in `Accepted`.
    let accepted = done.ok_or(HandshakeError::Unexpected {
        expected: "auth ok",
        got: "nothing",
    })?;
    // The session's data links prove what its control link proved.
    server.session_credentials.store(creds);
    Ok((link, accepted))
}

/// Connects to `server` and authenticates a data link of `session`
/// (multiplexed when `muxed`), all under the handshake timeout.
pub(super) async fn data_link<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
    session: SessionId,
    muxed: bool,
) -> Result<T::Stream, HandshakeError> {
    let link = with_deadline(ctx.settings.handshake_timeout, "opening data link", async {
        let mut link = server.transport.connect(&server.address).await?;
        let creds = server.session_credentials.load_full();
        let (machine, hello) = ClientHandshake::data(&creds.key, session, muxed);
        drive::client(&mut link, machine, hello).await?;
        Ok(link)
    })
    .await;
    server.links.dialed(link.is_ok());
    link
}

/// The transport's connect, under the handshake timeout, its error naming
/// the server.
async fn connect<T: Transport>(
    ctx: &Context<T>,
    server: &Upstream<T>,
) -> Result<T::Stream, HandshakeError> {
    let limit = ctx.settings.handshake_timeout;
    let connect = server.transport.connect(&server.address);
    match with_timeout(limit, "connecting to the server", connect).await {
        Ok(link) => Ok(link),
        // The cause stays the error's source: a TLS refusal keeps its type
        // (`HandshakeError::is_permanent` reads it).
        Err(source) => Err(HandshakeError::Io(io::Error::new(
            source.kind(),
            ConnectError {
                server: server.address.clone(),
                source,
            },
        ))),
    }
}

/// Dialling the server failed.
#[derive(Debug)]
struct ConnectError {
    server: String,
    source: io::Error,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to {}: {}", self.server, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Connects to the local address of `service` for a visitor, and writes
/// the PROXY header first when the service asks for one; `None` (logged)
/// when the service is unknown or unreachable.
pub(super) async fn connect_local<T: Transport>(
    ctx: &Context<T>,
    service: &str,
    visitor: SocketAddr,
    public: Option<SocketAddr>,
) -> Option<TcpStream> {
    let target = ctx
        .live()
        .service(service)
        .map(|s| (s.local.clone(), s.proxy_protocol));
    let Some((local, proxy_protocol)) = target else {
        warn!("server started a visitor for unknown service {service:?}");
        return None;
    };
    let limit = ctx.settings.handshake_timeout;
    let connect = async {
        let stream = TcpStream::connect(local.as_str()).await?;
        if let Some(version) = proxy_protocol {
            write_proxy_header(&stream, version, visitor, public).await?;
        }
        Ok(stream)
    };
    match with_timeout(limit, "connecting to the local service", connect).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            debug!("visitor {visitor} -> {service} ({local})");
            Some(stream)
        }
        Err(e) => {
            if let Some(counters) = ctx.counters.service(service) {
                counters.local_failed();
            }
            warn!("service {service}: cannot reach {local}: {e}; visitor {visitor} closed");
            None
        }
    }
}

/// Tells the local service who the visitor is, before any of its bytes.
/// The server names the public address the visitor connected to; one that
/// did not (the service turned PROXY headers on in a reload and has not
/// registered again yet) gets the service's own address as destination:
/// the source, which is what services use, is right either way.
async fn write_proxy_header(
    stream: &TcpStream,
    version: ProxyProtocol,
    visitor: SocketAddr,
    public: Option<SocketAddr>,
) -> io::Result<()> {
    let destination = match public {
        Some(public) => public,
        None => stream.peer_addr()?,
    };
    // A dual-stack public port sees IPv4 visitors as `::ffff:a.b.c.d`;
    // services expect them as the IPv4 addresses they are.
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (visitor, destination) = (canonical(visitor), canonical(destination));
    let version = match version {
        ProxyProtocol::V1 => proxy_header::Version::V1,
        ProxyProtocol::V2 => proxy_header::Version::V2,
    };
    let mut header = Vec::with_capacity(proxy_header::MAX_ENCODED_LEN);
    proxy_header::encode(version, visitor, destination, &mut header);
    let mut stream = stream;
    stream.write_all(&header).await
}

/// A delay between 50% and 100% of `base`, so clients that lost the same server
/// do not all come back in the same millisecond.
pub(super) fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64() * 0.5)
}
