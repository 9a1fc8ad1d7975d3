//! Aborts travel as aborts: when a relay is cut — the client or the server
//! process killed with SIGKILL, the visitor or the local service resetting, the
//! local service unreachable, a `porthole forward` peer resetting — the
//! connection on the other side gets a TCP reset (its read fails with
//! `ConnectionReset`), never a clean EOF at a truncated length; and a clean
//! close still gives a clean EOF with every byte.
//!
//! The killed side runs as a real process of the built binary (owned by a
//! [`Proc`] guard that kills and reaps it on drop); everything else runs in this
//! process. Every wait is on an explicit signal (a log line, a byte count, a
//! channel), under the test's deadline.

use crate::common::process::{Proc, porthole};
use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::config::DataLinks;
use porthole::gencert::{Ca, Validity};
use smol::channel::{Sender, bounded};
use smol::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Bytes a reader takes before the test cuts the transfer: "mid-transfer".
const SOME_BYTES: usize = 64 * 1024;
/// Most bytes any load loop here moves: bounds a stream that should have been
/// cut long before.
const MAX_BYTES: usize = 1 << 30;
/// Write size of the endless streams.
const CHUNK: usize = 64 * 1024;

/// An in-process server and a client exposing `local` as `svc` over `mode`
/// links.
async fn tunnel(local: SocketAddr, mode: &DataLinks) -> Tunnel {
    let mode = mode.clone();
    TunnelBuilder::new()
        .service("svc", local)
        .client(move |c| c.data_links = mode)
        .start()
        .await
}

/// A directory of files for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("porthole-aborts-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ron_links(mode: &DataLinks) -> String {
    match mode {
        DataLinks::Pooled { size } => format!("Pooled(size: {size})"),
        DataLinks::Multiplexed { links } => format!("Multiplexed(links: {links})"),
    }
}

/// A client config exposing `local` as `stream` through `server`; `transport`
/// is RON.
fn client_config(
    server: SocketAddr,
    local: SocketAddr,
    mode: &DataLinks,
    transport: &str,
) -> String {
    format!(
        "(server: \"{server}\", token: \"{TOKEN}\", transport: {transport},
          data_links: {}, workers: Some(1),
          services: [(name: \"stream\", local: \"{local}\", remote_port: 0)])",
        ron_links(mode)
    )
}

/// `porthole client -c CONFIG` (see [`client_config`]); returns it and the
/// public address it logs.
fn client_process(config: &Path) -> (Proc, SocketAddr) {
    let mut client = Proc::spawn(porthole(&["client", "-c", &config.to_string_lossy()]));
    let public = client.address_after("service stream is public at ", PROMPTLY * 2);
    (client, public)
}

/// `porthole server` on `127.0.0.1:0`; returns it and its control address.
fn server_process() -> (Proc, SocketAddr) {
    let mut server = Proc::spawn(porthole(&[
        "server",
        "--bind",
        "127.0.0.1:0",
        "--token",
        TOKEN,
    ]));
    let addr = server.address_after("listening for clients on ", PROMPTLY * 2);
    (server, addr)
}

// ---------------------------------------------------------------- streams

/// Writes up to [`MAX_BYTES`] and closes; a failed write ends it.
async fn endless(mut stream: TcpStream) -> io::Result<()> {
    let chunk = vec![0x5a; CHUNK];
    for _ in 0..MAX_BYTES / CHUNK {
        stream.write_all(&chunk).await?;
    }
    stream.close().await
}

/// Reads until EOF (`Ok`) or an error, at most [`MAX_BYTES`]; tells `some`
/// once [`SOME_BYTES`] arrived. Returns how the stream ended and what it read.
async fn read_until_end(
    mut stream: TcpStream,
    some: Option<Sender<()>>,
) -> (io::Result<()>, usize) {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    let mut some = some;
    while total < MAX_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) => return (Ok(()), total),
            Ok(n) => total += n,
            Err(e) => return (Err(e), total),
        }
        if total >= SOME_BYTES {
            if let Some(tx) = some.take() {
                let _ = tx.send(()).await;
            }
        }
    }
    panic!("read {MAX_BYTES} bytes from a stream that should have been cut")
}

fn assert_reset(end: io::Result<()>, read: usize, what: &str) {
    match end {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: expected a reset, got {:?}: {e}", e.kind()),
        Ok(()) => panic!("{what}: clean EOF after {read} bytes where a reset was due"),
    }
}

const POOLED: DataLinks = DataLinks::Pooled { size: 1 };
const MUXED: DataLinks = DataLinks::Multiplexed { links: 1 };

// ---------------------------------------------------------------- the client dies

/// A visitor reads an endless stream from the service behind a client process;
/// the client is SIGKILLed once the visitor has some of it. (Hand-written: the
/// client is a process of the real binary, here and in [`server_killed`].)
async fn client_killed(server: Server, dir: &Dir, mode: DataLinks, transport: &str) {
    let service = serve(local_listener().await, endless);
    let config = client_config(server.addr, service.addr, &mode, transport);
    let config = dir.write("client.ron", &config);
    // Waiting on a child's stderr blocks; do it off the async thread.
    let (client, public) = smol::unblock(move || client_process(&config)).await;
    let visitor = TcpStream::connect(public).await.expect("connect visitor");
    let (some_tx, some) = bounded(1);
    let reading = smol::spawn(read_until_end(visitor, Some(some_tx)));
    within(PROMPTLY, "the visitor's first bytes", some.recv())
        .await
        .expect("the visitor got some bytes");
    client.kill9();
    let (end, read) = within(PROMPTLY, "the visitor's end", reading).await;
    assert_reset(end, read, &format!("{mode:?} visitor of a killed client"));
    drop(client);
    server.stop().await;
}

#[test]
fn a_killed_client_resets_the_visitor_with_pooled_links() {
    run_test(async {
        let server = start_server(server_settings()).await.expect("server");
        client_killed(server, &Dir::new("kill-client-pooled"), POOLED, "Tcp").await;
    });
}

#[test]
fn a_killed_client_resets_the_visitor_with_multiplexed_links() {
    run_test(async {
        let server = start_server(server_settings()).await.expect("server");
        client_killed(server, &Dir::new("kill-client-mux"), MUXED, "Tcp").await;
    });
}

#[test]
fn a_killed_client_resets_the_visitor_with_pooled_tls_links() {
    run_test(async {
        let dir = Dir::new("kill-client-tls");
        let ca = Ca::new("aborts CA", Validity::days(1)).expect("CA");
        let pem = ca
            .server(&["localhost".to_owned()], Validity::days(1))
            .expect("server cert");
        let (cert, key) = (
            dir.write("server.crt", &pem.cert),
            dir.write("server.key", &pem.key),
        );
        let ca_file = dir.write("ca.crt", &ca.pem.cert);
        let mut settings = server_settings();
        settings.tls = Some(crate::common::tls::server_tls(&cert, &key, None));
        let server = start_server(settings).await.expect("server");
        let transport = tls_transport(&ca_file);
        client_killed(server, &dir, POOLED, &transport).await;
    });
}

fn tls_transport(ca: &Path) -> String {
    format!(
        "Tls(ca: Some(\"{}\"), server_name: Some(\"localhost\"))",
        ca.display()
    )
}

// ---------------------------------------------------------------- the server dies

/// A visitor sends an endless stream to a service behind an in-process client;
/// the server process is SIGKILLed once the service has some of it.
async fn server_killed(mode: DataLinks) {
    let (server, server_addr) = smol::unblock(server_process).await;
    let (some_tx, some) = bounded(1);
    let (end_tx, end) = bounded(1);
    let service = serve(local_listener().await, move |stream| {
        let (some_tx, end_tx) = (some_tx.clone(), end_tx.clone());
        async move {
            let _ = end_tx
                .send(read_until_end(stream, Some(some_tx)).await)
                .await;
            Ok(())
        }
    });
    let mut settings = client_settings(server_addr, TOKEN, &[("sink", service.addr, 0)]);
    settings.data_links = mode.clone();
    let client = start_client(settings);
    let public = client.registered("sink").await;
    let visitor = TcpStream::connect(public).await.expect("connect visitor");
    // Fails once the server is gone; its end is not what this test is about.
    let _writing = smol::spawn(endless(visitor));
    within(PROMPTLY, "the service's first bytes", some.recv())
        .await
        .expect("the service got some bytes");
    server.kill9();
    let (result, read) = within(PROMPTLY, "the service's end", end.recv())
        .await
        .expect("the service reports its end");
    assert_reset(
        result,
        read,
        &format!("{mode:?} service of a killed server"),
    );
    drop(client);
    drop(server);
}

#[test]
fn a_killed_server_resets_the_local_service_with_pooled_links() {
    run_test(server_killed(POOLED));
}

#[test]
fn a_killed_server_resets_the_local_service_with_multiplexed_links() {
    run_test(server_killed(MUXED));
}

// ---------------------------------------------------------------- clean ends

/// Request and reply sizes: each well above a splice pipe and a mux window.
const REQUEST_LEN: usize = (1 << 20) + 1;
const REPLY_LEN: usize = (4 << 20) + 3;

/// The visitor sends its request and a FIN; the service reads it to a clean
/// EOF (reported on `got`), answers and closes; the visitor reads the whole
/// reply to a clean EOF.
async fn clean_ends(mode: DataLinks) {
    let (got_tx, got) = bounded(1);
    let service = serve(local_listener().await, move |mut stream: TcpStream| {
        let got_tx = got_tx.clone();
        async move {
            let mut request = Vec::new();
            let read = stream.read_to_end(&mut request).await.map(|_| request);
            let _ = got_tx.send(read).await;
            stream.write_all(&payload(2, REPLY_LEN)).await?;
            stream.close().await
        }
    });
    let t = tunnel(service.addr, &mode).await;
    let public = t.public;
    let request = payload(1, REQUEST_LEN);
    let reply = within(PROMPTLY * 2, "the exchange", exchange(public, &request))
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: the visitor's read failed: {e}"));
    let seen = within(PROMPTLY, "the service's read", got.recv())
        .await
        .expect("the service reports")
        .unwrap_or_else(|e| panic!("{mode:?}: the service's read failed: {e}"));
    assert_eq!(seen.len(), REQUEST_LEN, "{mode:?}: request length");
    assert_eq!(sha256(&seen), sha256(&request), "{mode:?}: request bytes");
    assert_eq!(reply.len(), REPLY_LEN, "{mode:?}: reply length");
    assert_eq!(
        sha256(&reply),
        sha256(&payload(2, REPLY_LEN)),
        "{mode:?}: reply bytes"
    );
    t.stop().await;
}

#[test]
fn clean_closes_stay_clean_with_every_byte_on_pooled_links() {
    run_test(clean_ends(POOLED));
}

#[test]
fn clean_closes_stay_clean_with_every_byte_on_multiplexed_links() {
    run_test(clean_ends(MUXED));
}

// ---------------------------------------------------------------- the service fails

/// A service that sends a little, waits until the visitor has it, then resets.
async fn service_resets(mode: DataLinks) {
    let (seen_tx, seen) = bounded::<()>(1);
    let service = serve(local_listener().await, move |mut stream: TcpStream| {
        let seen = seen.clone();
        async move {
            stream.write_all(b"partial").await?;
            let _ = seen.recv().await;
            reset_on_close(&stream);
            Ok(())
        }
    });
    let t = tunnel(service.addr, &mode).await;
    let public = t.public;
    let mut visitor = TcpStream::connect(public).await.expect("connect visitor");
    let mut first = [0u8; 7];
    within(PROMPTLY, "the first bytes", visitor.read_exact(&mut first))
        .await
        .expect("the visitor gets the service's first bytes");
    seen_tx.send(()).await.expect("service waiting");
    let (end, read) = within(PROMPTLY, "the visitor's end", read_until_end(visitor, None)).await;
    assert_reset(
        end,
        read,
        &format!("{mode:?} visitor of a resetting service"),
    );
    t.stop().await;
}

#[test]
fn a_service_reset_resets_the_visitor_with_pooled_links() {
    run_test(service_resets(POOLED));
}

#[test]
fn a_service_reset_resets_the_visitor_with_multiplexed_links() {
    run_test(service_resets(MUXED));
}

/// A visitor that sends a little, waits until the service has it, then resets.
async fn visitor_resets(mode: DataLinks) {
    let (seen_tx, seen) = bounded(1);
    let (end_tx, end) = bounded(1);
    let service = serve(local_listener().await, move |mut stream: TcpStream| {
        let (seen_tx, end_tx) = (seen_tx.clone(), end_tx.clone());
        async move {
            let mut first = [0u8; 7];
            stream.read_exact(&mut first).await?;
            let _ = seen_tx.send(()).await;
            let _ = end_tx.send(read_until_end(stream, None).await).await;
            Ok(())
        }
    });
    let t = tunnel(service.addr, &mode).await;
    let public = t.public;
    let mut visitor = TcpStream::connect(public).await.expect("connect visitor");
    visitor.write_all(b"partial").await.expect("write");
    within(PROMPTLY, "the service's first bytes", seen.recv())
        .await
        .expect("the service got the visitor's first bytes");
    reset_on_close(&visitor);
    drop(visitor);
    let (result, read) = within(PROMPTLY, "the service's end", end.recv())
        .await
        .expect("the service reports its end");
    assert_reset(
        result,
        read,
        &format!("{mode:?} service of a resetting visitor"),
    );
    t.stop().await;
}

#[test]
fn a_visitor_reset_resets_the_service_with_pooled_links() {
    run_test(visitor_resets(POOLED));
}

#[test]
fn a_visitor_reset_resets_the_service_with_multiplexed_links() {
    run_test(visitor_resets(MUXED));
}

async fn service_unreachable(mode: DataLinks) {
    let (_bound, local) = refusing_address();
    let t = tunnel(local, &mode).await;
    let public = t.public;
    let what = format!("{mode:?} visitor of an unreachable service");
    // The reset can come back before `connect` has even returned (it checks
    // the socket's error once it is writable): that is the reset, too.
    let (end, read) = match TcpStream::connect(public).await {
        Ok(visitor) => within(PROMPTLY, "the visitor's end", read_until_end(visitor, None)).await,
        Err(e) => (Err(e), 0),
    };
    assert_reset(end, read, &what);
    t.stop().await;
}

#[test]
fn an_unreachable_service_resets_the_visitor_with_pooled_links() {
    run_test(service_unreachable(POOLED));
}

#[test]
fn an_unreachable_service_resets_the_visitor_with_multiplexed_links() {
    run_test(service_unreachable(MUXED));
}

// ---------------------------------------------------------------- forward

/// `porthole forward` to `target`, in this process; dropping it stops it.
struct Forwarder {
    addr: SocketAddr,
    _stop: porthole::shutdown::Trigger,
    _task: smol::Task<io::Result<()>>,
}

async fn start_forward(target: SocketAddr) -> Forwarder {
    let mut cfg = porthole::forward::ForwardConfig::new();
    cfg.forwards.push(porthole::forward::ForwardRule {
        listen: "127.0.0.1:0".into(),
        target: target.to_string(),
    });
    let settings = cfg.validate().expect("valid forward config");
    let bound = porthole::forward::bind(&settings).await.expect("bind");
    let addr = porthole::forward::local_addrs(&bound).expect("addresses")[0];
    let (stop, signal) = porthole::shutdown::channel();
    let task = smol::spawn(porthole::forward::run(
        bound,
        settings.connect_timeout,
        signal,
    ));
    Forwarder {
        addr,
        _stop: stop,
        _task: task,
    }
}

#[test]
fn forward_passes_an_upstream_reset_to_the_client() {
    run_test(async {
        let (seen_tx, seen) = bounded::<()>(1);
        let upstream = serve(local_listener().await, move |mut stream: TcpStream| {
            let seen = seen.clone();
            async move {
                stream.write_all(b"partial").await?;
                let _ = seen.recv().await;
                reset_on_close(&stream);
                Ok(())
            }
        });
        let fwd = start_forward(upstream.addr).await;
        let mut client = TcpStream::connect(fwd.addr).await.expect("connect");
        let mut first = [0u8; 7];
        within(PROMPTLY, "the first bytes", client.read_exact(&mut first))
            .await
            .expect("the client gets the upstream's first bytes");
        seen_tx.send(()).await.expect("upstream waiting");
        let (end, read) = within(PROMPTLY, "the client's end", read_until_end(client, None)).await;
        assert_reset(end, read, "client of a resetting upstream");
    });
}

#[test]
fn forward_passes_a_client_reset_to_the_upstream() {
    run_test(async {
        let (seen_tx, seen) = bounded(1);
        let (end_tx, end) = bounded(1);
        let upstream = serve(local_listener().await, move |mut stream: TcpStream| {
            let (seen_tx, end_tx) = (seen_tx.clone(), end_tx.clone());
            async move {
                let mut first = [0u8; 7];
                stream.read_exact(&mut first).await?;
                let _ = seen_tx.send(()).await;
                let _ = end_tx.send(read_until_end(stream, None).await).await;
                Ok(())
            }
        });
        let fwd = start_forward(upstream.addr).await;
        let mut client = TcpStream::connect(fwd.addr).await.expect("connect");
        client.write_all(b"partial").await.expect("write");
        within(PROMPTLY, "the upstream's first bytes", seen.recv())
            .await
            .expect("the upstream got the client's first bytes");
        reset_on_close(&client);
        drop(client);
        let (result, read) = within(PROMPTLY, "the upstream's end", end.recv())
            .await
            .expect("the upstream reports its end");
        assert_reset(result, read, "upstream of a resetting client");
    });
}
