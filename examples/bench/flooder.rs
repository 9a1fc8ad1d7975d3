//! The load behind `--flood`: connections to a tunnel server's control port
//! that never authenticate. A *silent* one connects and sends nothing; a
//! *trickling* one sends one byte of a plausible hello per second (the first
//! byte at once). A connection the server closes (or refuses) is reopened
//! after [`REOPEN_DELAY`], so the pressure lasts until [`Flood::stop`] or
//! [`MAX_DURATION`], and every socket is closed then.
//!
//! One thread drives every socket: non-blocking, level-triggered, on one
//! epoll instance (nix's safe wrapper) whose event data is the slot index.
//! Each socket is bound to the source address before it connects, with
//! `IP_BIND_ADDRESS_NO_PORT`, so the source port is picked per destination at
//! connect time and thousands of flood sockets do not use up the ephemeral
//! ports the measured visitors need.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, bind, connect, getsockopt, send,
    setsockopt, socket, sockopt,
};

/// A flood stops on its own after this long even if nobody stops it.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// Pause before a closed flood connection is reopened: sustained pressure,
/// but at most (connections / delay) connects per second, so a server that
/// closes at once costs this process a bounded share of the two CPUs.
const REOPEN_DELAY: Duration = Duration::from_millis(100);
/// Time between two bytes of a trickling connection.
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// Longest epoll wait: the resolution of reopen and trickle deadlines.
const TICK_MS: u16 = 50;
/// Events taken per epoll wait.
const EVENTS_PER_WAIT: usize = 1024;

/// What to flood.
pub struct Spec {
    /// The server's control port.
    pub target: SocketAddrV4,
    /// Source address of every flood socket (a loopback address).
    pub from: Ipv4Addr,
    pub silent: usize,
    pub trickling: usize,
    /// Bytes a trickling connection sends, one per second; it then goes
    /// quiet. Longer than a phase lasts, so no hello is ever complete.
    pub hello: Vec<u8>,
}

/// What the flood did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Connections established (reopened ones included).
    pub connected: u64,
    /// Established connections the server closed or reset.
    pub closed_by_server: u64,
    /// Connects that failed (refused, reset, no socket).
    pub connect_failed: u64,
    /// Bytes the trickling connections sent.
    pub trickled: u64,
    /// CPU time of the flood thread (it shares the host's CPUs with the
    /// server and the measured load).
    pub cpu: Duration,
}

/// A running flood; stopped (every socket closed) when dropped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Stats>>,
}

impl Flood {
    pub fn start(spec: Spec) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (s, o) = (stop.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name("flood".to_owned())
            .spawn(move || run(&spec, &epoll, &s, &o))?;
        Ok(Self {
            stop,
            open,
            thread: Some(thread),
        })
    }

    /// Flood connections established right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes every flood socket and returns what the flood did.
    pub fn stop(mut self) -> Stats {
        self.halt()
    }

    fn halt(&mut self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

enum State {
    /// No socket; (re)open at this instant.
    Closed(Instant),
    Connecting(OwnedFd),
    /// `sent` bytes of the hello so far, the next one due at `next`.
    Open {
        fd: OwnedFd,
        sent: usize,
        next: Instant,
    },
}

struct Slot {
    trickling: bool,
    state: State,
}

fn run(spec: &Spec, epoll: &Epoll, stop: &AtomicBool, open: &AtomicUsize) -> Stats {
    let started = Instant::now();
    let mut slots: Vec<Slot> = (0..spec.silent + spec.trickling)
        .map(|i| Slot {
            trickling: i >= spec.silent,
            state: State::Closed(started),
        })
        .collect();
    let mut stats = Stats::default();
    let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
    // Dropping the slots (after the loop) closes every socket and takes it
    // off the epoll set.
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_DURATION {
        let n = epoll.wait(&mut events, TICK_MS).unwrap_or(0);
        for ev in &events[..n] {
            let i = usize::try_from(ev.data()).unwrap_or(usize::MAX);
            if let Some(slot) = slots.get_mut(i) {
                ready(epoll, i, slot, &mut stats);
            }
        }
        let now = Instant::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            due(spec, epoll, i, slot, now, &mut stats);
        }
        let established = slots
            .iter()
            .filter(|s| matches!(s.state, State::Open { .. }))
            .count();
        open.store(established, Ordering::Relaxed);
    }
    open.store(0, Ordering::Relaxed);
    drop(slots);
    stats.cpu = thread_cpu();
    stats
}

/// User and system time of the calling thread.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_THREAD) else {
        return Duration::ZERO;
    };
    [usage.user_time(), usage.system_time()]
        .iter()
        .map(|t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
            Duration::from_secs(secs) + Duration::from_micros(micros)
        })
        .sum()
}

/// A socket of `slot` (index `i`) is ready: a connect finished, or the
/// server sent something or closed.
fn ready(epoll: &Epoll, i: usize, slot: &mut Slot, stats: &mut Stats) {
    let now = Instant::now();
    let reopen = State::Closed(now + REOPEN_DELAY);
    slot.state = match std::mem::replace(&mut slot.state, State::Closed(now)) {
        State::Connecting(fd) => match getsockopt(&fd, sockopt::SocketError) {
            Ok(0) => {
                let mut ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, key(i));
                if epoll.modify(&fd, &mut ev).is_err() {
                    stats.connect_failed += 1;
                    reopen
                } else {
                    stats.connected += 1;
                    State::Open {
                        fd,
                        sent: 0,
                        next: now,
                    }
                }
            }
            _ => {
                stats.connect_failed += 1;
                reopen
            }
        },
        State::Open { fd, sent, next } => {
            if drained_open(&fd) {
                State::Open { fd, sent, next }
            } else {
                stats.closed_by_server += 1;
                reopen
            }
        }
        closed => closed,
    };
}

/// Reads (and drops) whatever the server sent; `false` once it closed.
fn drained_open(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Timed work of one slot: (re)open it, or trickle its next byte.
fn due(spec: &Spec, epoll: &Epoll, i: usize, slot: &mut Slot, now: Instant, stats: &mut Stats) {
    match &mut slot.state {
        State::Closed(at) if *at <= now => {
            let dialed = dial(spec).and_then(|fd| {
                epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLOUT, key(i)))?;
                Ok(fd)
            });
            slot.state = match dialed {
                Ok(fd) => State::Connecting(fd),
                Err(_) => {
                    stats.connect_failed += 1;
                    State::Closed(now + REOPEN_DELAY)
                }
            };
        }
        State::Open { fd, sent, next }
            if slot.trickling && *next <= now && *sent < spec.hello.len() =>
        {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(fd.as_raw_fd(), &spec.hello[*sent..=*sent], flags) {
                Ok(_) => {
                    *sent += 1;
                    *next = now + TRICKLE_EVERY;
                    stats.trickled += 1;
                }
                // A full send buffer: the server reads nothing; next tick.
                Err(Errno::EAGAIN) => {}
                Err(_) => {
                    stats.closed_by_server += 1;
                    slot.state = State::Closed(now + REOPEN_DELAY);
                }
            }
        }
        _ => {}
    }
}

/// A non-blocking socket bound to `spec.from`, its connect to the control
/// port started.
fn dial(spec: &Spec) -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
    let [a, b, c, d] = spec.from.octets();
    bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0))?;
    match connect(fd.as_raw_fd(), &SockaddrIn::from(spec.target)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

fn key(i: usize) -> u64 {
    u64::try_from(i).unwrap_or(u64::MAX)
}
