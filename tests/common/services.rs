//! Backend services on `127.0.0.1:0`: an echo, a tagged echo, any handler, and an
//! address that refuses connections while it stays ours.

use futures_lite::AsyncWriteExt;
use smol::Task;
use smol::net::{TcpListener, TcpStream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use porthole::tasks::TaskSet;

/// A backend on `127.0.0.1:0`; dropping it stops accepting and cancels every
/// connection it is serving.
pub struct Service {
    pub addr: SocketAddr,
    _task: Task<()>,
}

/// Serves every connection on `listener` with `handler`, each in its own owned task.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> Service
where
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr().expect("listener address");
    let task = smol::spawn(async move {
        let conns = TaskSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let fut = handler(stream);
            conns.spawn(async move {
                let _ = fut.await;
            });
        }
    });
    Service { addr, _task: task }
}

pub async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Echoes every byte back; on EOF shuts its write side down.
pub async fn echo_service() -> Service {
    serve(local_listener().await, echo)
}

pub async fn echo(stream: TcpStream) -> io::Result<()> {
    let mut writer = stream.clone();
    futures_lite::io::copy(stream, &mut writer).await?;
    writer.close().await
}

/// Writes `tag`, then echoes: lets a test see which backend answered.
pub async fn tagged_echo_service(tag: &'static str) -> Service {
    serve(local_listener().await, move |mut stream| async move {
        stream.write_all(tag.as_bytes()).await?;
        echo(stream).await
    })
}

/// A local address that refuses connections and stays ours while it lives: a
/// bound socket that never listens (no port number is released and reused).
pub fn refusing_address() -> (OwnedFd, SocketAddr) {
    use nix::sys::socket::*;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    bind(raw, &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
    let local: SockaddrIn = getsockname(raw).expect("name");
    (fd, std::net::SocketAddrV4::from(local).into())
}

/// Turns a [`refusing_address`] socket into a listener on the same address: the
/// port was never released, so nobody else can have taken it meanwhile.
pub fn listen_on(fd: OwnedFd) -> TcpListener {
    use nix::sys::socket::{Backlog, listen};
    listen(&fd, Backlog::new(128).expect("backlog")).expect("listen");
    let listener = std::net::TcpListener::from(fd);
    TcpListener::try_from(listener).expect("register the listener")
}
