//! Dialling `host:port`: resolving the name, then racing connection attempts
//! over its addresses ("happy eyeballs", RFC 8305, simplified).
//!
//! Resolution ([`resolve`]): an IP literal is used as is; `localhost` and
//! names under `.localhost` are loopback and answered here, never by DNS or
//! `/etc/hosts` (RFC 6761 §6.3, as curl does), as both `127.0.0.1` and `::1`,
//! so a server listening on either loopback is found; any other name goes to
//! the system resolver, off the calling thread.
//!
//! Connecting ([`connect_addrs`]): the addresses are ordered by [`interleave`]
//! (families alternate, the resolver's first family first) and capped at
//! [`MAX_DIAL_ADDRS`]. The first attempt starts at once; the next starts when
//! any attempt fails or [`CONNECTION_ATTEMPT_DELAY`] after the latest start,
//! whichever comes first. The first connection established wins and every
//! other attempt is dropped, which closes its socket. So an address that
//! black-holes SYNs costs a quarter of a second, not the caller's whole
//! deadline, and a refused one costs nothing.
//!
//! Invariants: the attempts are futures owned by the dialling future (nothing
//! is spawned), so dropping it (a caller's deadline) closes every socket it
//! opened; at most [`MAX_DIAL_ADDRS`] sockets are ever open for one dial. Time
//! is bounded by the caller: every dial in porthole runs under a deadline.

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::{Sleep, TcpStream, sleep};

/// How long an attempt runs alone before the next address is tried too: RFC
/// 8305 §8 recommends 250 ms, long enough for a healthy path's SYN-ACK on any
/// continent, short enough that a dead first address is barely noticed.
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Most addresses tried per dial. Each attempt in flight holds a socket, so a
/// name with hundreds of records (or a hostile resolver) must not make one
/// dial open hundreds; 16 staggered attempts span 4 s, past which the
/// caller's deadline (10 s by default) has little left to wait for anyway.
pub const MAX_DIAL_ADDRS: usize = 16;

/// Whether `host` is `localhost` or a name under it (`app.localhost`), in any
/// case and with or without the root's trailing dot: loopback by definition
/// (RFC 6761 §6.3), whatever a resolver would say.
pub fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    let name = b"localhost";
    let Some(split) = host.len().checked_sub(name.len()) else {
        return false;
    };
    let (head, tail) = host.split_at(split);
    tail.eq_ignore_ascii_case(name) && (head.is_empty() || head.ends_with(b"."))
}

/// The loopback addresses a `localhost` name stands for, IPv4 first: it is
/// what the config check binds `localhost` to (an IPv4 loopback exists on
/// every host, `::1` not where IPv6 is off), so the usual server is reached
/// by the first attempt and one bound on `::1` by the second, a refusal later.
pub fn localhost_addrs(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
    ]
}

/// The addresses of `addr` (`host:port`, IPv6 in brackets); see the module
/// docs. Errors name `addr`.
pub async fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(literal) = addr.parse::<SocketAddr>() {
        return Ok(vec![literal]);
    }
    if let Some((host, port)) = addr.rsplit_once(':') {
        if is_localhost(host) {
            let port = port.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr}: port {port:?} is not a number from 0 to 65535"),
                )
            })?;
            return Ok(localhost_addrs(port).to_vec());
        }
    }
    let addrs = smol::net::resolve(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {addr}: {e}")))?;
    if addrs.is_empty() {
        let msg = format!("{addr} resolves to no address");
        return Err(io::Error::new(io::ErrorKind::NotFound, msg));
    }
    Ok(addrs)
}

/// The order attempts are made in (RFC 8305 §4, a first-family count of 1):
/// the first address's family, then the other, alternating while both last;
/// duplicates dropped, and at most [`MAX_DIAL_ADDRS`] kept.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let v6_first = first.is_ipv6();
    let (mut lead, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) = (Vec::new(), Vec::new());
    for &a in addrs {
        if lead.contains(&a) || other.contains(&a) {
            continue;
        }
        if a.is_ipv6() == v6_first {
            lead.push(a);
        } else {
            other.push(a);
        }
        if lead.len() + other.len() == MAX_DIAL_ADDRS {
            break;
        }
    }
    let mut out = Vec::with_capacity(lead.len() + other.len());
    let (mut lead, mut other) = (lead.into_iter(), other.into_iter());
    loop {
        match (lead.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to `addr` (`host:port`): [`resolve`], [`interleave`], then
/// [`connect_addrs`].
pub async fn connect(addr: &str) -> io::Result<TcpStream> {
    // A literal address: nothing to resolve or race, and the caller's
    // message names it already.
    if let Ok(literal) = addr.parse::<SocketAddr>() {
        return TcpStream::connect_addr(literal).await;
    }
    let addrs = resolve(addr).await?;
    connect_addrs(&interleave(&addrs)).await
}

/// Races connection attempts to `addrs`, in this order, staggered (see the
/// module docs); the first connection established wins. If every attempt
/// fails, the error names each address with its error, and has the kind of
/// the most telling one ([`telling`]).
pub async fn connect_addrs(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let addrs = &addrs[..addrs.len().min(MAX_DIAL_ADDRS)];
    if let [only] = addrs {
        // Nothing to race: no timer, no allocation.
        return TcpStream::connect_addr(*only)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{only}: {e}")));
    }
    let mut waiting = addrs.iter().copied();
    let mut running = Vec::with_capacity(addrs.len());
    let mut failed: Vec<(SocketAddr, io::Error)> = Vec::new();
    let mut delay: Option<Sleep> = None;
    // Start the next attempt without waiting for the delay.
    let mut now = true;
    poll_fn(|cx| {
        loop {
            let due = now
                || delay
                    .as_mut()
                    .is_none_or(|d| Pin::new(d).poll(cx).is_ready());
            now = false;
            if due {
                if let Some(addr) = waiting.next() {
                    running.push((addr, Box::pin(TcpStream::connect_addr(addr))));
                    delay = Some(sleep(CONNECTION_ATTEMPT_DELAY));
                    continue;
                }
                delay = None;
            }
            let mut i = 0;
            while let Some((addr, attempt)) = running.get_mut(i) {
                match attempt.as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(e)) => {
                        failed.push((*addr, e));
                        // Its socket is closed already (or never opened).
                        drop(running.swap_remove(i));
                        now = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if running.is_empty() && waiting.len() == 0 {
                return Poll::Ready(Err(all_failed(std::mem::take(&mut failed))));
            }
            if !now {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// The error of a dial whose every attempt failed: each address with its
/// error (at most [`MAX_DIAL_ADDRS`]), the kind of the most telling one.
fn all_failed(failed: Vec<(SocketAddr, io::Error)>) -> io::Error {
    let list = failed
        .iter()
        .map(|(addr, e)| format!("{addr}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    let kind = telling(failed.iter().map(|(_, e)| e.kind())).unwrap_or(io::ErrorKind::NotFound);
    if list.is_empty() {
        return io::Error::new(kind, "no address to connect to");
    }
    io::Error::new(kind, list)
}

/// The kind that says most about why a dial failed, from its attempts' kinds
/// in the order they failed: the last one, unless it only says that its
/// address family is unusable on this host (IPv6 switched off, no route),
/// while another attempt reached further (was refused, timed out).
pub fn telling(kinds: impl IntoIterator<Item = io::ErrorKind>) -> Option<io::ErrorKind> {
    use io::ErrorKind::{AddrNotAvailable, NetworkUnreachable, Unsupported};
    let local =
        |k: &io::ErrorKind| matches!(k, AddrNotAvailable | NetworkUnreachable | Unsupported);
    let kinds: Vec<io::ErrorKind> = kinds.into_iter().collect();
    let reached = kinds.iter().rev().find(|k| !local(k));
    reached.or(kinds.last()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("test address"))
            .collect()
    }

    #[test]
    fn localhost_names_are_recognised_and_nothing_else() {
        for yes in [
            "localhost",
            "LocalHost",
            "localhost.",
            "app.localhost",
            "a.b.LOCALHOST.",
        ] {
            assert!(is_localhost(yes), "{yes}");
        }
        for no in [
            "",
            "notlocalhost",
            "localhost.example.com",
            "localhostx",
            "127.0.0.1",
            ".",
        ] {
            assert!(!is_localhost(no), "{no}");
        }
    }

    #[test]
    fn families_alternate_starting_with_the_first_answer() {
        let v4_first = addrs(&[
            "10.0.0.1:1",
            "10.0.0.2:1",
            "10.0.0.3:1",
            "[::a]:1",
            "[::b]:1",
        ]);
        assert_eq!(
            interleave(&v4_first),
            addrs(&[
                "10.0.0.1:1",
                "[::a]:1",
                "10.0.0.2:1",
                "[::b]:1",
                "10.0.0.3:1"
            ])
        );
        let v6_first = addrs(&["[::a]:1", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]);
        assert_eq!(
            interleave(&v6_first),
            addrs(&["[::a]:1", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"])
        );
        let one_family = addrs(&["10.0.0.2:1", "10.0.0.1:1"]);
        assert_eq!(interleave(&one_family), one_family);
        assert!(interleave(&[]).is_empty());
    }

    #[test]
    fn duplicates_go_and_the_list_is_capped() {
        let twice = addrs(&["[::a]:1", "10.0.0.1:1", "[::a]:1", "10.0.0.1:1"]);
        assert_eq!(interleave(&twice), addrs(&["[::a]:1", "10.0.0.1:1"]));
        let many: Vec<SocketAddr> = (1..=100u16)
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .collect();
        let capped = interleave(&many);
        assert_eq!(capped, many[..MAX_DIAL_ADDRS]);
    }

    #[test]
    fn an_unusable_family_is_not_the_reason_given() {
        use io::ErrorKind::*;
        assert_eq!(
            telling([ConnectionRefused, AddrNotAvailable]),
            Some(ConnectionRefused)
        );
        assert_eq!(telling([NetworkUnreachable, TimedOut]), Some(TimedOut));
        assert_eq!(telling([ConnectionRefused, TimedOut]), Some(TimedOut));
        assert_eq!(telling([AddrNotAvailable]), Some(AddrNotAvailable));
        assert_eq!(telling([]), None);
    }

    #[test]
    fn localhost_resolves_to_both_loopbacks_without_a_resolver() {
        let got = smol::block_on(resolve("app.localhost:7000")).expect("resolves");
        assert_eq!(got, addrs(&["127.0.0.1:7000", "[::1]:7000"]));
        let bad = smol::block_on(resolve("localhost:http")).expect_err("port is a number");
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput);
        assert!(bad.to_string().contains("localhost:http"), "{bad}");
        let literal = smol::block_on(resolve("[::1]:9")).expect("literal");
        assert_eq!(literal, addrs(&["[::1]:9"]));
    }

    // ------------------------------------------------------ real sockets

    const DEADLINE: Duration = Duration::from_secs(20);

    fn run<T>(fut: impl Future<Output = T>) -> T {
        smol::block_on(futures_lite::future::or(fut, async {
            async_io::Timer::after(DEADLINE).await;
            panic!("test deadline passed");
        }))
    }

    /// An address that refuses and stays ours while the socket lives: bound
    /// to `127.0.0.1:0`, never listening (no port is released and reused).
    fn refusing() -> (std::os::fd::OwnedFd, SocketAddr) {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
        };
        use std::os::fd::AsRawFd;
        let flags = SockFlag::empty();
        let fd = socket(AddressFamily::Inet, SockType::Stream, flags, None).expect("socket");
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
        let local: SockaddrIn = getsockname(fd.as_raw_fd()).expect("name");
        (fd, std::net::SocketAddrV4::from(local).into())
    }

    fn listener() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        (listener, addr)
    }

    #[test]
    fn a_refused_address_falls_through_to_the_next_one() {
        let (_held, refusing) = refusing();
        let (_listener, accepting) = listener();
        // Off the workers (async-io) and on one.
        let off = run(connect_addrs(&[refusing, accepting])).expect("connects");
        assert_eq!(off.peer_addr().expect("peer"), accepting);
        let on = run(super::super::spawn_at(0, async move {
            let s = connect_addrs(&[refusing, accepting])
                .await
                .expect("connects");
            s.peer_addr().expect("peer")
        }));
        assert_eq!(on, accepting);
    }

    #[test]
    fn a_black_holed_address_costs_one_attempt_delay() {
        // A listener whose queue is full drops SYNs: the kernel retransmits
        // for minutes, as for an address behind a dead route.
        let (hole, black_hole) = listener();
        let backlog = nix::sys::socket::Backlog::new(0).expect("backlog 0");
        nix::sys::socket::listen(&hole, backlog).expect("shrink the backlog");
        let _queued = std::net::TcpStream::connect(black_hole).expect("fills the queue");
        let (_good, accepting) = listener();
        let started = std::time::Instant::now();
        let s = run(super::super::spawn_at(0, async move {
            connect_addrs(&[black_hole, accepting]).await
        }))
        .expect("connects");
        let took = started.elapsed();
        assert_eq!(s.peer_addr().expect("peer"), accepting);
        assert!(
            took >= CONNECTION_ATTEMPT_DELAY,
            "the second attempt waited for the first: {took:?}"
        );
        // Sequential attempts would wait for the first one's SYN timeout.
        assert!(took < DEADLINE / 4, "connected after {took:?}");
    }

    #[test]
    fn when_every_attempt_fails_the_error_names_each_address() {
        let ((_a, first), (_b, second)) = (refusing(), refusing());
        let err = run(connect_addrs(&[first, second])).expect_err("both refuse");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let text = err.to_string();
        assert!(text.contains(&first.to_string()), "{text}");
        assert!(text.contains(&second.to_string()), "{text}");
        let one = run(connect_addrs(&[first])).expect_err("refuses");
        assert_eq!(one.kind(), io::ErrorKind::ConnectionRefused, "{one}");
        assert!(one.to_string().contains(&first.to_string()), "{one}");
        let none = run(connect_addrs(&[])).expect_err("nothing to try");
        assert_eq!(none.kind(), io::ErrorKind::NotFound, "{none}");
    }
}
