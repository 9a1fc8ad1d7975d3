//! The runtime's invariants, each under a deadline.

use super::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn run<T>(fut: impl Future<Output = T>) -> T {
    smol::block_on(async {
        futures_lite::future::or(fut, async {
            async_io::Timer::after(DEADLINE).await;
            panic!("test deadline passed");
        })
        .await
    })
}

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    // Armed out of order, on one worker, all in one poll: a stall of the
    // worker before that poll cannot let a deadline pass unarmed.
    let offsets_ms = [160u64, 40, 120, 20, 100, 60, 140, 80];
    let fired = run(spawn_at(0, async move {
        let start = Instant::now();
        let mut sleeps: Vec<_> = offsets_ms
            .iter()
            .map(|&ms| {
                let deadline = start + Duration::from_millis(ms);
                (ms, deadline, Box::pin(sleep_until(deadline)))
            })
            .collect();
        let mut fired = Vec::new();
        std::future::poll_fn(|cx| {
            sleeps.retain_mut(|(ms, deadline, sleep)| {
                let done = sleep.as_mut().poll(cx).is_ready();
                if done {
                    fired.push((*ms, *deadline, Instant::now()));
                }
                !done
            });
            if sleeps.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        fired
    }));
    let order: Vec<u64> = fired.iter().map(|(ms, _, _)| *ms).collect();
    let mut sorted = offsets_ms.to_vec();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "timers fired out of deadline order");
    for (ms, deadline, at) in fired.iter() {
        assert!(at >= deadline, "timer of {ms} ms fired early");
    }
}

#[test]
fn a_timeout_cancels_its_timer() {
    run(spawn_at(0, async {
        let hour = Duration::from_secs(3600);
        let pending = async {
            futures_lite::future::yield_now().await;
            Ok(7)
        };
        let quick = timeout(hour, pending).await;
        assert_eq!(quick.unwrap(), 7);
        // The hour-long timer is gone (other tests' timers are far shorter).
        let latest = reactor::last_timer();
        assert!(latest.is_none_or(|d| d < Instant::now() + hour / 2));
        let never = futures_lite::future::pending::<std::io::Result<()>>();
        let slow = timeout(Duration::from_millis(5), never).await;
        assert_eq!(slow.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    }));
}

/// Spins (bounded) until worker `i` is about to block in `epoll_wait`.
fn wait_until_sleeping(i: usize) {
    let start = Instant::now();
    while !shared(i).sleeping.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(start.elapsed() < DEADLINE, "worker {i} never went idle");
        std::thread::yield_now();
    }
}

#[test]
fn a_spawn_from_another_thread_wakes_a_blocked_worker() {
    let last = workers() - 1;
    run(spawn_at(last, async {}));
    for _ in 0..100 {
        wait_until_sleeping(last);
        let value = std::thread::spawn(move || smol::block_on(spawn_at(last, async { 42 })))
            .join()
            .unwrap();
        assert_eq!(value, 42);
    }
}

/// Pending until `flag` is set; leaves its waker in `slot`.
struct Flagged {
    flag: Arc<AtomicBool>,
    slot: mpsc::Sender<Waker>,
}

impl Future for Flagged {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let _ = self.slot.send(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_waker_fired_from_another_thread_runs_its_task() {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let task = spawn_at(
        0,
        Flagged {
            flag: flag.clone(),
            slot: tx,
        },
    );
    let waker = rx.recv_timeout(DEADLINE).expect("task polled");
    flag.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::spawn(move || waker.wake()).join().unwrap();
    run(task);
}

#[test]
fn no_edge_is_lost_between_eagain_and_parking() {
    const ROUNDS: usize = 10_000;
    let (reader, mut writer) = UnixStream::pair().unwrap();
    reader.set_nonblocking(true).unwrap();
    let (ack_tx, ack_rx) = mpsc::channel();
    let task = spawn_at(0, async move {
        let reader = Socket::new(reader).unwrap();
        for i in 0..ROUNDS {
            let mut byte = [0u8; 1];
            let n = reader.read_with(|mut r| r.read(&mut byte)).await.unwrap();
            assert_eq!((n, byte[0]), (1, i as u8));
            ack_tx.send(()).unwrap();
        }
    });
    // Each byte lands at a random instant relative to the reader's EAGAIN.
    let writer = std::thread::spawn(move || {
        for i in 0..ROUNDS {
            writer.write_all(&[i as u8]).unwrap();
            ack_rx.recv_timeout(DEADLINE).expect("reader saw the byte");
        }
    });
    run(task);
    writer.join().unwrap();
}

#[test]
fn a_dropped_socket_with_a_pending_read_is_closed_and_deregistered() {
    let (reader, mut peer) = UnixStream::pair().unwrap();
    reader.set_nonblocking(true).unwrap();
    let (read_started_tx, read_started) = mpsc::channel();
    let task = spawn_at(0, async move {
        let reader = Socket::new(reader).unwrap();
        let key = reader.key().expect("registered with the worker");
        let _ = read_started_tx.send((key, reactor::is_live(key)));
        let mut byte = [0u8; 1];
        let _ = reader.read_with(|mut r| r.read(&mut byte)).await;
    });
    let (key, live) = read_started.recv_timeout(DEADLINE).unwrap();
    assert!(live, "the socket was registered");
    // Cancelling drops the future, and its socket, on the worker.
    run(task.cancel());
    let after = run(spawn_at(0, async move { reactor::is_live(key) }));
    assert!(!after, "the registration slot was freed");
    // The descriptor is closed: the peer sees EOF.
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(peer.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_socket_moved_between_workers_keeps_working() {
    run(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            for _ in 0..2 {
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            }
        });
        let first = 0;
        let second = 1 % workers();
        let stream = spawn_at(first, async move {
            let mut s = TcpStream::connect_addr(addr).await.unwrap();
            assert_eq!(s.socket().worker(), Some(first));
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            s
        })
        .await;
        spawn_at(second, async move {
            let mut s = stream;
            if second != first {
                let mut buf = [0u8; 1];
                let wrong = s.read(&mut buf).await;
                assert!(wrong.is_err(), "I/O away from the owning worker must fail");
            }
            s.rehome().unwrap();
            assert_eq!(s.socket().worker(), Some(second));
            s.write_all(b"pong").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
        })
        .await;
        server.await;
    });
}

#[test]
fn a_listener_group_shares_one_port_and_never_joins_a_foreign_group() {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let group = sys::listen_group(addr, 3).unwrap();
    let port = group[0].local_addr().unwrap().port();
    assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
    // Someone else's SO_REUSEPORT listener on a port: joining it would split
    // its visitors, so the group is refused instead.
    let foreign = sys::listen_reuseport(addr).unwrap();
    let taken = foreign.local_addr().unwrap();
    let err = sys::listen_group(taken, 2).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // And a plain listener (the wildcard address included) refuses it too.
    let plain = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let on_loopback = std::net::SocketAddr::new(addr.ip(), plain.local_addr().unwrap().port());
    let err = sys::listen_group(on_loopback, 2).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
