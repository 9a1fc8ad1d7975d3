//! Out of file descriptors, a listener refuses visitors (closes them at once)
//! with one clear warning, keeps accepting, and serves again once descriptors
//! are free — instead of leaving connections queued behind an `EMFILE` that an
//! edge-triggered poller would never report again. Runs the real binary under
//! a low `ulimit -n` (the http proxy, which holds exactly one descriptor per
//! silent visitor).

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The proxy's descriptor limit: its own needs are about 20.
const LIMIT: u32 = 64;

#[test]
fn out_of_descriptors_a_listener_refuses_visitors_and_recovers() {
    run_test(async {
        let service = echo_service().await;
        let script =
            format!("ulimit -n {LIMIT} && exec \"$0\" http-proxy --listen 127.0.0.1:0 --workers 1");
        let mut child = Reaped(
            Command::new("bash")
                .args(["-c", &script, env!("CARGO_BIN_EXE_porthole")])
                .env("PORTHOLE_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start porthole http-proxy"),
        );
        let stderr = child.0.stderr.take().expect("stderr");
        let (lines, rx) = smol::channel::unbounded();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send_blocking(line);
            }
        });
        let addr: SocketAddr = within(PROMPTLY, "proxy address", async {
            loop {
                let line = rx.recv().await.expect("proxy runs");
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.trim().parse().expect("socket address");
                }
            }
        })
        .await;

        // Silent visitors hold one descriptor each at the proxy: twice its
        // limit is more than it can hold, and it says so.
        let mut held = Vec::new();
        for _ in 0..2 * LIMIT {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        within(PROMPTLY, "out-of-descriptors warning", async {
            while !rx
                .recv()
                .await
                .expect("proxy runs")
                .contains("out of file descriptors")
            {}
        })
        .await;
        // One more is refused: closed at once, not left waiting in the queue.
        let mut refused = TcpStream::connect(addr).await.expect("connect");
        assert_closed_within(&mut refused, PROMPTLY, "a visitor past the limit").await;

        // With descriptors free again the same listener serves a real request.
        drop(held);
        let request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", service.addr);
        within(PROMPTLY, "served again", async {
            loop {
                if let Ok(echoed) = connect_and_echo(addr, &request).await {
                    assert_eq!(echoed, b"ping");
                    return;
                }
                // The proxy is still closing the silent ones; try again.
                smol::future::yield_now().await;
            }
        })
        .await;
        let warnings = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|l| l.contains("out of file descriptors"))
            .count();
        assert!(
            warnings <= 1,
            "the warning is rate-limited, saw {warnings} more"
        );
        drop(child);
        reader.join().expect("stderr reader");
    });
}

/// The proxy process, killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CONNECT tunnel through the proxy, then four bytes through the echo.
async fn connect_and_echo(proxy: SocketAddr, request: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    s.write_all(b"ping").await?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await?;
    Ok(back.to_vec())
}
