//! `porthole forward` on loopback: integrity both ways, half-close, many
//! concurrent connections, an unreachable target, and the real binary.

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::forward;
use porthole::forward::{ForwardConfig, ForwardRule};
use porthole::shutdown;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// A running forwarder; dropping it stops it.
struct Forwarder {
    addrs: Vec<SocketAddr>,
    _stop: shutdown::Trigger,
    _task: smol::Task<std::io::Result<()>>,
}

async fn start_forward(targets: &[SocketAddr], connect_timeout: Duration) -> Forwarder {
    let mut cfg = ForwardConfig::new();
    for target in targets {
        cfg.forwards.push(ForwardRule {
            listen: "127.0.0.1:0".into(),
            target: target.to_string(),
        });
    }
    cfg.connect_timeout = connect_timeout;
    let settings = cfg.validate().expect("valid forward config");
    let bound = forward::bind(&settings).await.expect("bind forwards");
    let addrs = forward::local_addrs(&bound).expect("bound addresses");
    let (stop, signal) = shutdown::channel();
    let task = smol::spawn(forward::run(bound, settings.connect_timeout, signal));
    Forwarder {
        addrs,
        _stop: stop,
        _task: task,
    }
}

#[test]
fn forward_carries_eight_mib_each_way_intact() {
    run_test(async {
        let service = echo_service().await;
        let fwd = start_forward(&[service.addr], PROMPTLY).await;
        assert_echoes(fwd.addrs[0], 1, 8 * MIB).await;
        assert_echoes(fwd.addrs[0], 2, 64 * 1024 + 1).await;
        assert_echoes(fwd.addrs[0], 3, 0).await;
    });
}

#[test]
fn forward_propagates_half_close_both_ways() {
    run_test(async {
        // Backend: reads the request to EOF, then answers with its hash and a body.
        let body = payload(11, MIB + 7);
        let reply = body.clone();
        let service = serve(local_listener().await, move |mut stream| {
            let reply = reply.clone();
            async move {
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await?;
                stream.write_all(&sha256(&request)).await?;
                stream.write_all(&reply).await?;
                stream.close().await
            }
        });
        let fwd = start_forward(&[service.addr], PROMPTLY).await;
        let request = payload(12, 3 * MIB + 1);
        let got = exchange(fwd.addrs[0], &request).await.expect("exchange");
        assert_eq!(got.len(), 32 + body.len());
        assert_eq!(&got[..32], &sha256(&request)[..], "backend got all");
        assert_eq!(sha256(&got[32..]), sha256(&body), "reply intact");

        // The reverse: the backend speaks first and closes its write side; the
        // visitor still sends afterwards and the backend receives it.
        let (seen_tx, seen_rx) = smol::channel::bounded(1);
        let greeter = serve(local_listener().await, move |mut stream| {
            let seen = seen_tx.clone();
            async move {
                stream.write_all(b"hello").await?;
                stream.shutdown(std::net::Shutdown::Write)?;
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await?;
                let _ = seen.send(rest).await;
                Ok(())
            }
        });
        let fwd = start_forward(&[greeter.addr], PROMPTLY).await;
        let mut visitor = TcpStream::connect(fwd.addrs[0]).await.expect("connect");
        let mut greeting = Vec::new();
        visitor.read_to_end(&mut greeting).await.expect("greeting");
        assert_eq!(greeting, b"hello");
        let late = payload(13, 256 * 1024);
        visitor.write_all(&late).await.expect("send after EOF");
        visitor.close().await.expect("close");
        let seen = within(PROMPTLY, "backend receives", seen_rx.recv())
            .await
            .expect("backend result");
        assert_eq!(sha256(&seen), sha256(&late));
    });
}

#[test]
fn forward_serves_two_hundred_concurrent_connections_intact() {
    run_test(async {
        let service = echo_service().await;
        let fwd = start_forward(&[service.addr], PROMPTLY).await;
        let addr = fwd.addrs[0];
        let tasks: Vec<_> = (0..200u64)
            .map(|i| smol::spawn(async move { assert_echoes(addr, 100 + i, 64 * 1024 + 1).await }))
            .collect();
        for task in tasks {
            task.await;
        }
    });
}

#[test]
fn forward_closes_the_client_promptly_when_the_target_is_down() {
    run_test(async {
        let (_bound, down) = refusing_address();
        let fwd = start_forward(&[down], PROMPTLY).await;
        // Reset (maybe before `connect` returns) or closed, never served.
        assert_refused(fwd.addrs[0], PROMPTLY, "client of an unreachable target").await;
    });
}

#[test]
fn forward_binary_relays_to_an_echo() {
    run_test(async {
        let service = echo_service().await;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_porthole"))
            .args(["forward", "127.0.0.1:0", &service.addr.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start porthole forward");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = smol::channel::bounded(1);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("forwarding ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send_blocking(addr);
                }
            }
        });
        let addr: SocketAddr = within(PROMPTLY, "forward announces its address", rx.recv())
            .await
            .expect("address line")
            .parse()
            .expect("socket address");
        assert_echoes(addr, 7, 2 * MIB).await;
        child.kill().expect("kill forward");
        child.wait().expect("reap forward");
        reader.join().expect("stderr reader");
    });
}
