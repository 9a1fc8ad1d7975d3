//! Helpers shared by the integration tests: a deadline for every async test, an
//! in-process server and client on loopback port 0, small backend services, payloads
//! with hashes, and a peer that speaks the real handshake by hand.
//!
//! Everything waits on explicit ready signals (a bound address, a `Registered`
//! event); the only timers are deadlines that turn a hang into a failure.

#![allow(dead_code)] // each test file uses a different subset

pub mod process;
pub mod proxy;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use smol::channel::{Receiver, Sender, unbounded};
use smol::net::{TcpListener, TcpStream};
use smol::{Task, Timer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use porthole::auth::Key;
use porthole::client::{ClientError, Event};
use porthole::config::{
    ClientConfig, ClientSettings, Secret, ServerConfig, ServerSettings, ServiceConfig,
};
use porthole::protocol::{Frame, LinkHello, SessionId, VERSION};
use porthole::shutdown::{self, Trigger};
use porthole::tasks::TaskSet;
use porthole::wire::{read_frame, write_frame};

/// The shared secret every well-behaved party in these tests uses.
pub const TOKEN: &str = "integration-test-token";
/// Whole-test deadline: generous, because the machine is shared and noisy.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);
/// What "promptly" means for a close or a reaction the code should make at once.
pub const PROMPTLY: Duration = Duration::from_secs(5);
/// Most bytes a "wait for close" helper will read and discard before giving up:
/// bounds the loop against a peer that keeps talking.
const MAX_DRAIN_BYTES: usize = 1 << 20;

/// Runs an async test body under [`TEST_DEADLINE`], so a deadlock fails the test.
pub fn run_test<F: Future<Output = ()>>(body: F) {
    smol::block_on(body.or(async {
        Timer::after(TEST_DEADLINE).await;
        panic!("test timed out after {TEST_DEADLINE:?}");
    }))
}

/// Awaits `fut` for at most `limit`; panics naming `what` if it takes longer.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let fut = async { Some(fut.await) };
    let timeout = async {
        Timer::after(limit).await; // ok-sleep: the deadline itself
        None
    };
    match fut.or(timeout).await {
        Some(value) => value,
        None => panic!("{what}: not done within {limit:?}"),
    }
}

// ---------------------------------------------------------------- settings

/// Server settings on `127.0.0.1:0` with [`TOKEN`] and every other default.
pub fn server_settings() -> ServerSettings {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.token = Some(Secret::new(TOKEN));
    config.validate().expect("test server config is valid")
}

/// Client settings for `server` exposing `(name, local, remote_port)` services.
/// Reconnects fast, so tests that restart a server need not wait long.
pub fn client_settings(
    server: SocketAddr,
    token: &str,
    services: &[(&str, SocketAddr, u16)],
) -> ClientSettings {
    let mut config = ClientConfig::new(server.to_string(), Secret::new(token));
    for &(name, local, remote_port) in services {
        config.services.push(ServiceConfig {
            name: name.to_owned(),
            local: local.to_string(),
            remote_port,
        });
    }
    let mut settings = config.validate().expect("test client config is valid");
    settings.reconnect_max_backoff = Duration::from_millis(200);
    settings
}

// ---------------------------------------------------------------- server

/// An in-process server. Dropping it cancels the server task (a crash: the
/// task goes before the trigger, whose drop would fire a clean shutdown).
pub struct Server {
    pub task: Task<io::Result<()>>,
    pub addr: SocketAddr,
    pub trigger: Trigger,
}

impl Server {
    /// Fires the shutdown signal and waits for `run` to return.
    pub async fn stop(self) {
        self.trigger.fire();
        within(PROMPTLY, "server shutdown", self.task)
            .await
            .expect("server stops cleanly");
    }
}

/// Binds `settings.bind` (port 0 unless the test chose one) and runs a server on it.
pub async fn start_server(settings: ServerSettings) -> io::Result<Server> {
    let listener = porthole::server::bind(&settings).await?;
    let addr = listener.local_addr()?;
    let (trigger, signal) = shutdown::channel();
    let task = smol::spawn(porthole::server::run_configured(listener, settings, signal));
    Ok(Server {
        addr,
        trigger,
        task,
    })
}

// ---------------------------------------------------------------- client

/// An in-process client and its event stream. Dropping it cancels the client task
/// without a goodbye, which is how the tests simulate a crash.
pub struct Client {
    /// Declared first so it drops first: dropping the trigger fires a clean
    /// shutdown (goodbye), which a crash must not get to send.
    pub task: Task<Result<(), ClientError>>,
    pub events: Receiver<Event>,
    pub trigger: Trigger,
}

impl Client {
    /// The next event, within `limit`.
    pub async fn next_event(&self, limit: Duration) -> Event {
        within(limit, "next client event", self.events.recv())
            .await
            .expect("client event channel open")
    }

    /// Waits for `Registered` of `name` and returns its public address. Panics on
    /// `Refused` for that name or if the client gives up.
    pub async fn registered(&self, name: &str) -> SocketAddr {
        wait_for_registered(&self.events, name).await
    }

    /// Waits until every one of `names` is registered; returns their public
    /// addresses by name. A `Refused` for any of them fails the test.
    pub async fn registered_all(&self, names: &[&str]) -> HashMap<String, SocketAddr> {
        let mut found = HashMap::new();
        within(PROMPTLY * 2, "registration of every service", async {
            while found.len() < names.len() {
                match self.events.recv().await {
                    Ok(Event::Registered { name, public, .. }) => {
                        found.insert(name, public.parse().expect("public address is ip:port"));
                    }
                    Ok(Event::Refused { name, message }) => {
                        panic!("service {name} refused: {message}")
                    }
                    Ok(_) => {}
                    Err(_) => panic!("client ended before registering {names:?}"),
                }
            }
        })
        .await;
        for name in names {
            assert!(found.contains_key(*name), "{name} registered");
        }
        found
    }

    /// Fires the shutdown signal and waits for `run` to return `Ok`.
    pub async fn stop(self) {
        self.trigger.fire();
        let result = within(PROMPTLY, "client shutdown", self.task).await;
        assert!(result.is_ok(), "client stops cleanly: {result:?}");
    }
}

pub fn start_client(settings: ClientSettings) -> Client {
    let (events_tx, events): (Sender<Event>, _) = unbounded();
    let (trigger, signal) = shutdown::channel();
    let task = smol::spawn(porthole::client::run_configured(
        settings,
        signal,
        Some(events_tx),
    ));
    Client {
        events,
        trigger,
        task,
    }
}

/// Skips `Connected` and `Disconnected` until `Registered { name }`; returns the
/// public address. A `Refused` for `name`, or the client ending, fails the test.
pub async fn wait_for_registered(events: &Receiver<Event>, name: &str) -> SocketAddr {
    within(PROMPTLY * 2, "service registration", async {
        loop {
            match events.recv().await {
                Ok(Event::Registered {
                    name: got, public, ..
                }) if got == name => {
                    return public.parse().expect("public address is ip:port");
                }
                Ok(Event::Refused { name: got, message }) if got == name => {
                    panic!("service {name} refused: {message}")
                }
                Ok(_) => {}
                Err(_) => panic!("client ended before registering {name}"),
            }
        }
    })
    .await
}

/// Server (default settings) + echo service + client exposing it as `echo`.
pub struct Tunnel {
    pub server: Server,
    pub service: Service,
    pub client: Client,
    pub public: SocketAddr,
}

pub async fn echo_tunnel(settings: ServerSettings) -> Tunnel {
    echo_tunnel_with(settings, |_| {}).await
}

/// [`echo_tunnel`] with the client's settings adjusted by `adjust` first.
pub async fn echo_tunnel_with(
    settings: ServerSettings,
    adjust: impl FnOnce(&mut ClientSettings),
) -> Tunnel {
    let server = start_server(settings).await.expect("server starts");
    let service = echo_service().await;
    let mut client = client_settings(server.addr, TOKEN, &[("echo", service.addr, 0)]);
    adjust(&mut client);
    let client = start_client(client);
    let public = client.registered("echo").await;
    Tunnel {
        server,
        service,
        client,
        public,
    }
}

// ---------------------------------------------------------------- services

/// A backend on `127.0.0.1:0`; dropping it stops accepting and cancels every
/// connection it is serving.
pub struct Service {
    pub addr: SocketAddr,
    _task: Task<()>,
}

/// Serves every connection on `listener` with `handler`, each in its own owned task.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> Service
where
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr().expect("listener address");
    let task = smol::spawn(async move {
        let conns = TaskSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let fut = handler(stream);
            conns.spawn(async move {
                let _ = fut.await;
            });
        }
    });
    Service { addr, _task: task }
}

pub async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Echoes every byte back; on EOF shuts its write side down.
pub async fn echo_service() -> Service {
    serve(local_listener().await, echo)
}

pub async fn echo(stream: TcpStream) -> io::Result<()> {
    let mut writer = stream.clone();
    futures_lite::io::copy(stream, &mut writer).await?;
    writer.close().await
}

/// Writes `tag`, then echoes: lets a test see which backend answered.
pub async fn tagged_echo_service(tag: &'static str) -> Service {
    serve(local_listener().await, move |mut stream| async move {
        stream.write_all(tag.as_bytes()).await?;
        echo(stream).await
    })
}

/// A port that was free a moment ago (bound on port 0, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("listener address").port()
}

// ---------------------------------------------------------------- payloads

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

/// A local address that refuses connections and stays ours while it lives: a
/// bound socket that never listens (no port number is released and reused).
pub fn refusing_address() -> (std::os::fd::OwnedFd, SocketAddr) {
    use nix::sys::socket::*;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    bind(raw, &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
    let local: SockaddrIn = getsockname(raw).expect("name");
    (fd, std::net::SocketAddrV4::from(local).into())
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

// ---------------------------------------------------------------- raw protocol

/// Performs the client side of a control-link handshake by hand and returns the
/// authenticated socket and the `AuthOk` frame. Nothing else is sent afterwards.
pub async fn raw_control_handshake(server: SocketAddr, token: &str) -> (TcpStream, SessionId) {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let client_nonce = porthole::auth::random().expect("rng");
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Control {
            client_id: porthole::auth::random().expect("rng"),
            nonce: client_nonce,
        },
    };
    write_frame(&mut stream, &hello).await.expect("send hello");
    let server_nonce = match read_frame(&mut stream).await.expect("challenge") {
        Frame::Challenge { nonce } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let key = Key::new(token);
    let mac = key.client_proof(&client_nonce, &server_nonce);
    write_frame(&mut stream, &Frame::AuthResponse { mac })
        .await
        .expect("send proof");
    match read_frame(&mut stream).await.expect("auth ok") {
        Frame::AuthOk {
            session_id,
            authenticated,
            mac,
            ..
        } => {
            assert!(authenticated, "server authenticates");
            assert!(
                key.verify_server(&client_nonce, &server_nonce, &session_id, &mac),
                "server proves the token"
            );
            (stream, session_id)
        }
        other => panic!("expected AuthOk, got {other:?}"),
    }
}

/// Opens a pooled data link of `session_id` by hand (Hello, Challenge,
/// AuthResponse); the server sends nothing more until a `Start`.
pub async fn raw_data_link(server: SocketAddr, token: &str, session_id: SessionId) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.expect("connect to server");
    let hello = Frame::Hello {
        version: VERSION,
        link: LinkHello::Data { session_id },
    };
    write_frame(&mut stream, &hello).await.expect("send hello");
    let nonce = match read_frame(&mut stream).await.expect("challenge") {
        Frame::Challenge { nonce } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let mac = Key::new(token).data_proof(&session_id, &nonce);
    write_frame(&mut stream, &Frame::AuthResponse { mac })
        .await
        .expect("send proof");
    stream
}

/// Registers `name` on a hand-driven control link; returns the public port.
pub async fn raw_register(control: &mut TcpStream, name: &str) -> u16 {
    let register = Frame::Register {
        name: name.to_owned(),
        remote_port: 0,
    };
    write_frame(control, &register)
        .await
        .expect("send register");
    loop {
        match read_frame(control).await.expect("registration answer") {
            Frame::Registered { port, .. } => return port,
            Frame::Heartbeat | Frame::OpenData { .. } => {}
            other => panic!("expected Registered, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- relay engines

/// Two connected loopback sockets: `(connecting side, accepted side)`. When
/// `accepted_rcvbuf` is set, SO_RCVBUF is set on the listener before the accept, so
/// the accepted socket inherits it and its window scale is chosen for it.
pub async fn tcp_pair_with(accepted_rcvbuf: Option<usize>) -> (TcpStream, TcpStream) {
    let listener = local_listener().await;
    if let Some(size) = accepted_rcvbuf {
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &size)
            .expect("set SO_RCVBUF on the listener");
    }
    let addr = listener.local_addr().expect("listener address");
    let (connected, (accepted, _)) =
        futures_lite::future::try_zip(TcpStream::connect(addr), listener.accept())
            .await
            .expect("loopback pair");
    (connected, accepted)
}

/// [`tcp_pair_with`] with default buffers.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    tcp_pair_with(None).await
}

/// The four sockets around one relay: `visitor ↔ [near | far] ↔ service`. The
/// relay is given `near` (its `a`) and `far` (its `b`), so `Moved::a_to_b` counts
/// visitor → service bytes.
pub struct RelaySockets {
    pub visitor: TcpStream,
    pub near: TcpStream,
    pub far: TcpStream,
    pub service: TcpStream,
}

/// Builds [`RelaySockets`]; `service_rcvbuf` shrinks the service's receive buffer.
pub async fn relay_sockets(service_rcvbuf: Option<usize>) -> RelaySockets {
    let (visitor, near) = tcp_pair().await;
    let (far, service) = tcp_pair_with(service_rcvbuf).await;
    RelaySockets {
        visitor,
        near,
        far,
        service,
    }
}

/// SO_LINGER {on, 0}: closing the last handle of `stream` sends RST instead of FIN.
pub fn reset_on_close(stream: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger)
        .expect("set SO_LINGER 0");
}

/// Descriptors open in this process right now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Moves a smol stream onto porthole's runtime, registered where this runs.
pub fn on_runtime(stream: TcpStream) -> porthole::runtime::TcpStream {
    porthole::runtime::TcpStream::from_smol(stream).expect("stream is not shared")
}
