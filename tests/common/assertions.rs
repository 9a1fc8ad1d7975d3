//! Payloads and I/O assertions: reproducible random bytes and their hashes, a
//! round trip that half-closes after the last byte, and the checks tests make on
//! a connection (echoed intact, closed within a deadline, refused unserved).

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::deadline::within;

/// Most bytes a "wait for close" helper will read and discard before giving up:
/// bounds the loop against a peer that keeps talking.
const MAX_DRAIN_BYTES: usize = 1 << 20;

/// `len` reproducible pseudo-random bytes.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut data);
    data
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Connects to `addr`, sends `data` while reading, shuts the write side down after
/// the last byte and returns everything read until EOF.
pub async fn exchange(addr: SocketAddr, data: &[u8]) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    exchange_on(stream, data).await
}

pub async fn exchange_on(stream: TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = stream.clone();
    let mut reader = stream;
    let send = async {
        writer.write_all(data).await?;
        writer.close().await
    };
    let receive = async {
        let mut got = Vec::with_capacity(data.len());
        reader.read_to_end(&mut got).await?;
        Ok(got)
    };
    let ((), got) = futures_lite::future::try_zip(send, receive).await?;
    Ok(got)
}

/// Sends `len` random bytes through an echo at `addr` and checks the hash of what
/// came back.
pub async fn assert_echoes(addr: SocketAddr, seed: u64, len: usize) {
    let sent = payload(seed, len);
    let got = exchange(addr, &sent)
        .await
        .unwrap_or_else(|e| panic!("echo round trip through {addr} failed: {e}"));
    assert_eq!(got.len(), sent.len(), "echoed length (seed {seed})");
    assert_eq!(sha256(&got), sha256(&sent), "echoed bytes (seed {seed})");
}

/// Reads (and discards) until the peer closes: `Ok(0)` or an error. Panics if that
/// does not happen within `limit`. Returns how long it took and what was read.
pub async fn assert_closed_within(
    stream: &mut TcpStream,
    limit: Duration,
    what: &str,
) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let drain = async {
        let mut buf = [0u8; 4096];
        while seen.len() < MAX_DRAIN_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        false
    };
    let closed = within(limit, what, drain).await;
    assert!(
        closed,
        "{what}: peer kept sending past {MAX_DRAIN_BYTES} bytes"
    );
    (started.elapsed(), seen)
}

/// Connects to `addr` and checks that the connection is refused unserved: reset
/// (the reset may even beat `connect`'s own check of the socket) or closed
/// within `limit`, without a byte either way.
pub async fn assert_refused(addr: SocketAddr, limit: Duration, what: &str) {
    match TcpStream::connect(addr).await {
        Ok(mut stream) => {
            let (_, seen) = assert_closed_within(&mut stream, limit, what).await;
            assert!(seen.is_empty(), "{what}: got {} bytes", seen.len());
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: connect failed: {e}"),
    }
}
