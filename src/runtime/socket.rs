//! Sockets owned by a worker (or, off the workers, by async-io's reactor).
//!
//! A [`Socket`] is registered once, where it is created: with the calling
//! worker's poller on a worker thread, with async-io's reactor elsewhere. I/O
//! goes through [`Socket::poll_read_with`] / [`Socket::poll_write_with`]: the
//! operation is tried while its direction may be ready, and `EAGAIN` marks it
//! not ready and parks the task's waker for the next edge (see
//! [`super::reactor`]). Dropping a worker socket closes it, which
//! removes the registration without an `epoll_ctl`, and frees its slot.

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::reactor::{self, Dir};

/// A non-blocking I/O object registered with a worker or with async-io.
#[derive(Debug)]
pub struct Socket<T: AsFd> {
    home: Home<T>,
}

#[derive(Debug)]
enum Home<T: AsFd> {
    Worker {
        io: T,
        worker: usize,
        key: u64,
    },
    Reactor(Async<T>),
    /// Registered nowhere, after a [`Socket::rehome`] whose registration
    /// failed: I/O on it fails, and it is closed on drop.
    Detached(T),
    /// Only inside [`Socket::rehome`]; left behind only if async-io fails to
    /// deregister a descriptor it registered, which the kernel never does.
    Moving,
}

fn not_registered() -> io::Error {
    io::Error::other("socket is not registered with any poller")
}

impl<T: AsFd> Socket<T> {
    /// Registers `io` (already non-blocking) with the calling thread's home.
    pub fn new(io: T) -> io::Result<Socket<T>> {
        let home = match super::current_loop() {
            Some(worker) => Socket::on_worker(worker, io).map_err(|(e, _)| e)?,
            None => Home::Reactor(Async::new(io)?),
        };
        Ok(Socket { home })
    }

    /// Registers `io` with `worker` (the calling one), or gives it back.
    fn on_worker(worker: usize, io: T) -> Result<Home<T>, (io::Error, T)> {
        match reactor::register(&super::loop_shared(worker).epoll, io.as_fd()) {
            Ok(key) => Ok(Home::Worker { io, worker, key }),
            Err(e) => Err((e, io)),
        }
    }

    pub fn get_ref(&self) -> &T {
        match &self.home {
            Home::Worker { io, .. } | Home::Detached(io) => io,
            Home::Reactor(a) => a.get_ref(),
            Home::Moving => unreachable!("socket lost in a move (see Home::Moving)"),
        }
    }

    /// Its registration key on its worker.
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<u64> {
        match self.home {
            Home::Worker { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The worker this socket is registered with (`None`: async-io).
    pub fn worker(&self) -> Option<usize> {
        match self.home {
            Home::Worker { worker, .. } => Some(worker),
            _ => None,
        }
    }

    /// Deregisters and returns the I/O object.
    pub fn into_inner(mut self) -> io::Result<T> {
        Self::take(std::mem::replace(&mut self.home, Home::Moving))
    }

    fn take(home: Home<T>) -> io::Result<T> {
        match home {
            Home::Worker { io, worker, key } => {
                release(worker, key);
                // Fails only if it is not registered, which is the goal.
                let _ = super::loop_shared(worker).epoll.delete(io.as_fd());
                Ok(io)
            }
            Home::Reactor(a) => a.into_inner(),
            Home::Detached(io) => Ok(io),
            Home::Moving => Err(not_registered()),
        }
    }

    /// Moves the socket onto the calling worker; nothing happens when it is
    /// there already. Off the workers this is an error: sockets move onto a
    /// worker, never back. If the new registration fails the socket is left
    /// unregistered (its I/O fails) and the error returned.
    pub fn rehome(&mut self) -> io::Result<()> {
        let Some(here) = super::current_loop() else {
            return Err(io::Error::other("sockets move only onto a worker"));
        };
        if matches!(self.home, Home::Worker { worker, .. } if worker == here) {
            return Ok(());
        }
        let io = Self::take(std::mem::replace(&mut self.home, Home::Moving))?;
        match Socket::on_worker(here, io) {
            Ok(home) => {
                self.home = home;
                Ok(())
            }
            Err((e, io)) => {
                self.home = Home::Detached(io);
                Err(e)
            }
        }
    }

    /// Runs `op` while the socket may be readable; on `WouldBlock` parks the
    /// task for the next readable edge.
    pub fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(cx, Dir::Read, op)
    }

    /// As [`Socket::poll_read_with`], for writes.
    pub fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(cx, Dir::Write, op)
    }

    /// Runs `op` once the socket is readable (tried first).
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_read_with(cx, &mut op)).await
    }

    /// Runs `op` once the socket is writable (tried first).
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_write_with(cx, &mut op)).await
    }

    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Dir,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match &self.home {
            Home::Worker { io, worker, key } => {
                if super::current_loop() != Some(*worker) {
                    return Poll::Ready(Err(io::Error::other(
                        "socket used away from its worker thread",
                    )));
                }
                if !reactor::ready_or_park(*key, dir, cx.waker()) {
                    return Poll::Pending;
                }
                match op(io) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // No event can be dispatched between the EAGAIN above
                        // and this: both run inside this poll, on this thread.
                        reactor::clear_and_park(*key, dir, cx.waker());
                        Poll::Pending
                    }
                    r => Poll::Ready(r),
                }
            }
            Home::Reactor(a) => loop {
                match op(a.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return Poll::Ready(r),
                }
                let ready = match dir {
                    Dir::Read => a.poll_readable(cx),
                    Dir::Write => a.poll_writable(cx),
                };
                match ready {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            },
            Home::Detached(_) | Home::Moving => Poll::Ready(Err(not_registered())),
        }
    }
}

impl<T: AsFd> Drop for Socket<T> {
    fn drop(&mut self) {
        if let Home::Worker { worker, key, .. } = self.home {
            // The descriptor closes right after this (with `io`), which removes
            // the poller's registration; only the slot remains to free.
            release(worker, key);
        }
    }
}

impl<T: AsFd> AsFd for Socket<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

/// Frees a registration's slot, on its worker or (rarely) by asking it to.
fn release(worker: usize, key: u64) {
    if super::current_loop() == Some(worker) {
        reactor::forget(key);
    } else {
        let w = super::loop_shared(worker);
        let _ = w.orphans.push(key);
        w.wake();
    }
}

/// A TCP connection on the runtime (see the module docs). `close` shuts the
/// write half down, so the peer sees FIN.
#[derive(Debug)]
pub struct TcpStream(Socket<std::net::TcpStream>);

impl TcpStream {
    /// Registers a connected, non-blocking standard stream here.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream(Socket::new(stream)?))
    }

    /// Takes over a smol stream (which must not have been cloned).
    pub fn from_smol(stream: smol::net::TcpStream) -> io::Result<TcpStream> {
        let shared: std::sync::Arc<Async<std::net::TcpStream>> = stream.into();
        let only = std::sync::Arc::try_unwrap(shared)
            .map_err(|_| io::Error::other("stream is shared; cannot move it"))?;
        // async-io keeps it non-blocking.
        TcpStream::from_std(only.into_inner()?)
    }

    /// Connects to `addr` (`host:port`): `localhost` names are loopback,
    /// other names are resolved off the thread, and the addresses are raced
    /// happy-eyeballs style (see [`super::dial`]).
    pub async fn connect(addr: &str) -> io::Result<TcpStream> {
        super::dial::connect(addr).await
    }

    /// A non-blocking connect to one address.
    pub async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = super::sys::connect_nonblocking(addr)?;
        let stream = TcpStream(Socket::new(socket)?);
        stream
            .0
            .write_with(|s| match s.take_error()? {
                Some(e) => Err(e),
                None => match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                },
            })
            .await?;
        Ok(stream)
    }

    pub fn get_ref(&self) -> &std::net::TcpStream {
        self.0.get_ref()
    }

    pub fn socket(&self) -> &Socket<std::net::TcpStream> {
        &self.0
    }

    /// Moves the stream onto the calling worker (see [`Socket::rehome`]).
    pub fn rehome(&mut self) -> io::Result<()> {
        self.0.rehome()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().local_addr()
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().set_nodelay(on)
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.get_ref().shutdown(how)
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

// The owned stream does what a shared reference does (see below).
impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_close(cx)
    }
}

/// The standard listener inside a smol one (which must not have been cloned),
/// deregistered from async-io and still non-blocking.
pub fn std_listener(listener: smol::net::TcpListener) -> io::Result<std::net::TcpListener> {
    let shared: std::sync::Arc<Async<std::net::TcpListener>> = listener.into();
    std::sync::Arc::try_unwrap(shared)
        .map_err(|_| io::Error::other("listener is shared; cannot move it"))?
        .into_inner()
}

impl AsyncRead for &TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_read_with(cx, |mut s| s.read(buf))
    }
}

impl AsyncWrite for &TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown(Shutdown::Write))
    }
}

/// A [`TcpStream`] with several owners (a connection's reader and writer
/// halves); each direction keeps its own waker, so both can wait at once.
#[derive(Clone, Debug)]
pub struct SharedTcpStream(std::sync::Arc<TcpStream>);

impl SharedTcpStream {
    /// The stream itself, once this is its only owner.
    pub fn into_inner(self) -> Result<TcpStream, SharedTcpStream> {
        std::sync::Arc::try_unwrap(self.0).map_err(SharedTcpStream)
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl From<TcpStream> for SharedTcpStream {
    fn from(stream: TcpStream) -> Self {
        SharedTcpStream(std::sync::Arc::new(stream))
    }
}

impl AsyncRead for SharedTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_close(cx)
    }
}

/// A TCP listener on the runtime.
#[derive(Debug)]
pub struct TcpListener(Socket<std::net::TcpListener>);

impl TcpListener {
    /// Registers a bound listener here.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener(Socket::new(listener)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    pub fn get_ref(&self) -> &std::net::TcpListener {
        self.0.get_ref()
    }

    /// Accepts one connection, registered here. Cancel-safe.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.accept_std().await?;
        Ok((TcpStream::from_std(stream)?, peer))
    }

    /// Accepts one connection, left unregistered (and non-blocking). Out of
    /// descriptors, queued connections are refused (closed) rather than left
    /// waiting: see [`super::fds`].
    pub async fn accept_std(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        super::fds::keep_spare();
        let (stream, peer) = self
            .0
            .read_with(|l| {
                loop {
                    match l.accept() {
                        Err(e) if super::fds::exhausted(&e) && super::fds::refuse_one(l) => {}
                        other => return other,
                    }
                }
            })
            .await?;
        stream.set_nonblocking(true)?;
        Ok((stream, peer))
    }
}
