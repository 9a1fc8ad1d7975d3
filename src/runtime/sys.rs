//! The socket calls std does not offer: a non-blocking connect, listeners
//! and UDP sockets bound with `SO_REUSEPORT`, and `SO_LINGER` 0 (a close
//! that resets).

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, bind,
    connect, listen, setsockopt, socket, sockopt,
};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

fn stream_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    Ok(socket(family, SockType::Stream, flags, None)?)
}

fn datagram_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    Ok(socket(family, SockType::Datagram, flags, None)?)
}

fn with_sockaddr<R>(addr: SocketAddr, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
    match addr {
        SocketAddr::V4(a) => f(&SockaddrIn::from(a)),
        SocketAddr::V6(a) => f(&SockaddrIn6::from(a)),
    }
}

/// Starts connecting to `addr`; the connection completes when the socket
/// becomes writable (check `SO_ERROR` then).
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let fd = stream_socket(&addr)?;
    match with_sockaddr(addr, |a| connect(fd.as_raw_fd(), a)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(std::net::TcpStream::from(fd))
}

/// Sets `SO_LINGER` to {on, 0 s}: closing the socket then sends a reset (RST)
/// and drops whatever it has not sent yet, instead of sending that and a FIN.
pub fn linger_zero(socket: &impl AsFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    Ok(setsockopt(socket, sockopt::Linger, &linger)?)
}

/// Fails with `EADDRINUSE` when anything listens on `addr`'s port.
fn probe_unused(addr: SocketAddr) -> io::Result<()> {
    let fd = stream_socket(&addr)?;
    // SO_REUSEADDR so that closed connections in TIME_WAIT do not count.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    with_sockaddr(addr, |a| bind(fd.as_raw_fd(), a))?;
    Ok(())
}

/// Listen backlog of shared listeners: the kernel caps it at `somaxconn`.
const BACKLOG: i32 = 4096;

/// Raises the backlog of an already listening socket to [`BACKLOG`] (Linux
/// takes a second `listen` as a new backlog). Connections that wait in the
/// kernel (for `TCP_DEFER_ACCEPT`, or while the process is busy) then do not
/// push a client's connection attempts into SYN retransmits.
pub fn raise_backlog(listener: &std::net::TcpListener) -> io::Result<()> {
    Ok(listen(
        listener,
        Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN),
    )?)
}

/// A non-blocking listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn listen_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let fd = stream_socket(&addr)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    with_sockaddr(addr, |a| bind(fd.as_raw_fd(), a))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

/// `count` listeners sharing `addr` with `SO_REUSEPORT` (one per worker); with
/// port 0 the first one picks the port and the others join it.
///
/// `SO_REUSEPORT` would also let this group join a group that another process
/// of the same user already listens with, silently splitting its visitors. So
/// a fixed port is first probed with a plain bind, which any listener on the
/// port (grouped or not, on this address or the wildcard) refuses with
/// `EADDRINUSE`. A process that binds the port with `SO_REUSEPORT` between the
/// probe and the group, or later, can still join: run one porthole per port
/// range and user.
pub fn listen_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        probe_unused(addr)?;
    }
    let first = listen_reuseport(addr)?;
    let bound = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count.max(1) {
        group.push(listen_reuseport(bound)?);
    }
    Ok(group)
}

/// Receive buffer asked for on public UDP sockets: a burst of datagrams
/// waits here while the worker is busy. The kernel caps it at
/// `net.core.rmem_max`.
const UDP_RECV_BUF: usize = 4 << 20;

/// `count` non-blocking UDP sockets sharing `addr` with `SO_REUSEPORT` (one
/// per worker); the kernel hashes each source address to one of them, so a
/// flow always arrives at the same worker. A fixed port is probed first, as
/// in [`listen_group`], so the group never joins another process's.
pub fn udp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    if addr.port() != 0 {
        let probe = datagram_socket(&addr)?;
        with_sockaddr(addr, |a| bind(probe.as_raw_fd(), a))?;
    }
    let mut group: Vec<std::net::UdpSocket> = Vec::with_capacity(count.max(1));
    let mut at = addr;
    for _ in 0..count.max(1) {
        let fd = datagram_socket(&at)?;
        setsockopt(&fd, sockopt::ReusePort, &true)?;
        // Best effort: the default still works, with less room for bursts.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &UDP_RECV_BUF);
        with_sockaddr(at, |a| bind(fd.as_raw_fd(), a))?;
        let socket = std::net::UdpSocket::from(fd);
        at = socket.local_addr()?;
        group.push(socket);
    }
    Ok(group)
}

/// A non-blocking UDP socket on an ephemeral port, connected to `addr`: it
/// sends only there and receives only from there.
pub fn udp_connected(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let fd = datagram_socket(&addr)?;
    with_sockaddr(addr, |a| connect(fd.as_raw_fd(), a))?;
    Ok(std::net::UdpSocket::from(fd))
}

// nix has no TCP_DEFER_ACCEPT; its own macro defines one the way nix defines
// every option it ships (the setsockopt call inside is nix's code).
use nix::libc;
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// `TCP_DEFER_ACCEPT` (seconds): `accept` returns a connection only once
    /// its first bytes arrived (or after this long).
    DeferAccept,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    i32
);

/// Asks the kernel to hand over connections only once their first bytes
/// arrived (for at most `secs`; later ones are handed over anyway).
pub fn defer_accept(listener: &std::net::TcpListener, secs: i32) -> io::Result<()> {
    Ok(setsockopt(listener, DeferAccept, &secs)?)
}
