//! UDP peers on `127.0.0.1:0`: a responder that answers each datagram (an
//! echo, a tiny DNS server) and records the sources it saw, visitor sockets
//! with room for the largest datagram, a request/response that resends on a
//! short timeout (a datagram may legitimately be lost under load, so one
//! lost datagram must not fail a test, but the resends are bounded), and the
//! count of this process's sockets connected to a service: the client's
//! per-flow sockets when the client runs in this process.

use smol::Task;
use smol::net::UdpSocket;
use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deadline::within;

/// The largest UDP payload over IPv4: 65,535 less the IP and UDP headers.
pub const MAX_DATAGRAM: usize = 65_507;
/// Socket buffers of every test socket: several of the largest datagrams.
/// The kernel caps it at `net.core.[rw]mem_max` (212,992 by default), which
/// still holds three of them.
pub const SOCKET_BUFFER_BYTES: usize = 1 << 20;
/// How long a request waits for its answer before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_millis(500);
/// Sends of one request before [`ask`] gives up (and the test fails).
pub const MAX_SENDS: usize = 10;

// ---------------------------------------------------------------- responders

/// What a responder saw: every datagram, and each source once, in order.
#[derive(Default)]
struct Seen {
    datagrams: AtomicU64,
    sources: Mutex<Vec<SocketAddr>>,
}

/// A UDP service on `127.0.0.1:0`; dropping it cancels its task.
pub struct UdpService {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    _task: Task<()>,
}

impl UdpService {
    /// Datagrams received so far.
    pub fn datagrams(&self) -> u64 {
        self.seen.datagrams.load(Ordering::Relaxed)
    }

    /// Every source address seen so far, each once, in order of first datagram.
    pub fn sources(&self) -> Vec<SocketAddr> {
        self.seen.sources.lock().expect("sources lock").clone()
    }
}

/// Answers each datagram with what `answer` makes of it (nothing for `None`).
pub async fn udp_responder<A>(answer: A) -> UdpService
where
    A: Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
{
    let socket = udp_socket().await;
    let addr = socket.local_addr().expect("service address");
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let task = smol::spawn(async move {
        let mut known = HashSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        // Ends with the socket's first error, which an unconnected socket
        // never gets in these tests (a lone failed answer is ignored).
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            record.datagrams.fetch_add(1, Ordering::Relaxed);
            if known.insert(from) {
                record.sources.lock().expect("sources lock").push(from);
            }
            if let Some(reply) = answer(&buf[..n]) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    UdpService {
        addr,
        seen,
        _task: task,
    }
}

/// Sends every datagram back as it came.
pub async fn udp_echo_service() -> UdpService {
    udp_responder(|datagram| Some(datagram.to_vec())).await
}

/// Answers `A` queries for `name` with `ip` (and any other name with
/// NXDOMAIN), keeping the query's id: enough DNS for a real resolver.
pub async fn dns_responder(name: &'static str, ip: Ipv4Addr) -> UdpService {
    udp_responder(move |query| dns_answer(query, name, ip)).await
}

/// The answer to one DNS query (RFC 1035, section 4.1); `None` for anything
/// but a standard query with one question.
pub fn dns_answer(query: &[u8], name: &str, ip: Ipv4Addr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let opcode = (header[2] >> 3) & 0x0f;
    let questions = u16::from_be_bytes([header[4], header[5]]);
    if header[2] & 0x80 != 0 || opcode != 0 || questions != 1 {
        return None;
    }
    let (asked, end) = question_name(query)?;
    let fixed = query.get(end..end + 4)?;
    let (qtype, qclass) = (
        u16::from_be_bytes([fixed[0], fixed[1]]),
        u16::from_be_bytes([fixed[2], fixed[3]]),
    );
    let ours = asked.eq_ignore_ascii_case(name.trim_end_matches('.'));
    let answers = u16::from(ours && qtype == 1 && qclass == 1);
    let mut reply = Vec::with_capacity(end + 4 + 16);
    reply.extend_from_slice(&header[..2]); // the id
    reply.push(0x84 | (header[2] & 0x01)); // QR, AA, the query's RD
    reply.push(if ours { 0 } else { 3 }); // NOERROR or NXDOMAIN
    reply.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..end + 4]); // the question
    if answers == 1 {
        // A pointer to the question's name, A, IN, TTL 60, four bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// The question's name (dotted, without the root) and where it ends.
fn question_name(query: &[u8]) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        match len {
            0 => return Some((labels.join("."), at)),
            // A compression pointer, or an extended label: not in a question.
            64.. => return None,
            _ => {
                let label = query.get(at..at + len)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += len;
            }
        }
    }
}

// ---------------------------------------------------------------- visitors

/// A socket on `127.0.0.1:0` with [`SOCKET_BUFFER_BYTES`] buffers.
pub async fn udp_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    big_buffers(&socket);
    socket
}

/// A visitor: a [`udp_socket`] connected to `public`, so that only the
/// public address's datagrams reach it.
pub async fn udp_visitor(public: SocketAddr) -> UdpSocket {
    let socket = udp_socket().await;
    socket
        .connect(public)
        .await
        .expect("connect to the public port");
    socket
}

/// Sets SO_SNDBUF and SO_RCVBUF to [`SOCKET_BUFFER_BYTES`] (std has no call
/// for either).
pub fn big_buffers(socket: &impl AsFd) {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES).expect("set SO_SNDBUF");
    setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES).expect("set SO_RCVBUF");
}

/// An answer, how many sends it took, and every other datagram that came
/// meanwhile (for the test to judge: a late copy of an earlier answer, or
/// another flow's datagram delivered to the wrong one).
#[derive(Debug)]
pub struct Asked {
    pub answer: Vec<u8>,
    pub sends: usize,
    pub others: Vec<Vec<u8>>,
}

/// Sends `request` on the connected `socket` until a datagram `expected`
/// comes back: every [`RESEND_AFTER`], at most [`MAX_SENDS`] times.
pub async fn ask(socket: &UdpSocket, request: &[u8], expected: &[u8]) -> Asked {
    ask_with(socket, request, expected, RESEND_AFTER, MAX_SENDS)
        .await
        .unwrap_or_else(|others| {
            let to = socket.peer_addr().expect("a connected socket");
            panic!(
                "no answer from {to} after {MAX_SENDS} sends of {} bytes ({} other datagrams)",
                request.len(),
                others.len()
            )
        })
}

/// [`ask`] with its own pace and bound; `Err` with the other datagrams when
/// `sends` sends got no answer.
pub async fn ask_with(
    socket: &UdpSocket,
    request: &[u8],
    expected: &[u8],
    resend_after: Duration,
    sends: usize,
) -> Result<Asked, Vec<Vec<u8>>> {
    let mut others = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    for sent in 1..=sends {
        send(socket, request).await;
        let until = Instant::now() + resend_after;
        while let Some(got) = receive(socket, &mut buf, until).await {
            if got == expected {
                return Ok(Asked {
                    answer: got.to_vec(),
                    sends: sent,
                    others,
                });
            }
            others.push(got.to_vec());
        }
    }
    Err(others)
}

/// Sends one datagram. A refusal (an ICMP port unreachable for an earlier
/// datagram, while a public port is briefly closed) is a lost datagram.
pub async fn send(socket: &UdpSocket, datagram: &[u8]) {
    match socket.send(datagram).await {
        Ok(n) => assert_eq!(n, datagram.len(), "a datagram is sent whole"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("send {} bytes: {e}", datagram.len()),
    }
}

/// The next datagram on `socket` before `until`, `None` after it. Refusals
/// (see [`send`]) are skipped.
pub async fn receive<'b>(
    socket: &UdpSocket,
    buf: &'b mut [u8],
    until: Instant,
) -> Option<&'b [u8]> {
    let wait = async {
        loop {
            match socket.recv(buf).await {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    };
    let timeout = async {
        smol::Timer::at(until).await; // ok-sleep: the wait's deadline
        None
    };
    let n = futures_lite::FutureExt::or(wait, timeout).await?;
    Some(&buf[..n])
}

/// Whether a datagram arrives on `socket` within `limit` (one is read and
/// dropped).
pub async fn anything_within(socket: &UdpSocket, limit: Duration) -> bool {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    receive(socket, &mut buf, Instant::now() + limit)
        .await
        .is_some()
}

// ---------------------------------------------------------------- flow sockets

/// This process's UDP sockets connected to `peer`: with an in-process client
/// and `peer` its local service, the client's per-flow sockets. Counts only
/// the descriptors of this process that are such sockets, so tests running
/// beside it in the same process do not change the count.
pub fn sockets_connected_to(peer: SocketAddr) -> usize {
    let ours = socket_inodes();
    let table = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote = proc_net_address(fields.get(2)?)?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (remote == peer && ours.contains(&inode)).then_some(())
        })
        .count()
}

/// The inodes of every socket this process has open.
fn socket_inodes() -> HashSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|entry| {
            // A descriptor closed since the listing is simply not counted.
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// `0100007F:1F90` as `/proc/net/udp` prints an IPv4 address: the address
/// as a host-order word of its network-order bytes, the port in hex.
fn proc_net_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port).into())
}

/// Polls `count` until it is `want`, within `limit`; returns how long that
/// took. Socket counts change with no event to wait on, so this polls.
pub async fn count_reaches(
    what: &str,
    limit: Duration,
    want: usize,
    count: impl Fn() -> usize,
) -> Duration {
    let started = Instant::now();
    within(limit, what, async {
        while count() != want {
            // A pause between looks, not a synchronisation: the loop ends
            // on the condition, and `within` bounds it.
            smol::Timer::after(Duration::from_millis(10)).await; // ok-sleep: poll interval
        }
    })
    .await;
    started.elapsed()
}
