//! The tunnel harness: an in-process server and client on loopback port 0, and
//! [`TunnelBuilder`], which starts the ordinary setup (server, client, services,
//! TCP or TLS, pooled or multiplexed links) and waits until every service is
//! registered:
//!
//! ```ignore
//! let t = TunnelBuilder::new().tls().multiplexed(1).start().await;
//! assert_echoes(t.public, 1, 1000).await;
//! t.stop().await;
//! ```
//!
//! Everything waits on explicit ready signals (a bound address, a `Registered`
//! event); the only timers are deadlines that turn a hang into a failure.

use smol::Task;
use smol::channel::{Receiver, Sender, unbounded};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use porthole::client::{ClientError, Event};
use porthole::config::{
    ClientConfig, ClientSettings, DataLinks, Protocol, Secret, ServerConfig, ServerSettings,
    ServiceConfig,
};
use porthole::shutdown::{self, Trigger};

use super::deadline::{PROMPTLY, within};
use super::services::{Service, echo_service};
use super::tls::TlsPair;

/// The shared secret every well-behaved party in these tests uses.
pub const TOKEN: &str = "integration-test-token";

// ---------------------------------------------------------------- settings

/// Server settings on `127.0.0.1:0` with [`TOKEN`] and every other default.
pub fn server_settings() -> ServerSettings {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.token = Some(Secret::new(TOKEN));
    // Tests stop servers with visitors still held: a short drain, so a stop
    // stays prompt (the drain itself is tested with the real binary).
    config.drain_timeout = DRAIN;
    config.validate().expect("test server config is valid")
}

/// The drain of every in-process server and client.
pub const DRAIN: Duration = Duration::from_millis(500);

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
            proxy_protocol: None,
            protocol: Protocol::Tcp,
        });
    }
    let mut settings = config.validate().expect("test client config is valid");
    settings.reconnect_max_backoff = Duration::from_millis(200);
    settings.drain_timeout = DRAIN;
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

    /// Skips `Connected` and `Disconnected` until `Registered { name }`; returns the
    /// public address. A `Refused` for `name`, or the client ending, fails the test.
    pub async fn registered(&self, name: &str) -> SocketAddr {
        within(PROMPTLY * 2, "service registration", async {
            loop {
                match self.events.recv().await {
                    Ok(Event::Registered {
                        name: got, public, ..
                    }) if got == name => {
                        return public.parse().expect("public address is ip:port");
                    }
                    Ok(Event::Refused {
                        name: got, message, ..
                    }) if got == name => {
                        panic!("service {name} refused: {message}")
                    }
                    Ok(_) => {}
                    Err(_) => panic!("client ended before registering {name}"),
                }
            }
        })
        .await
    }

    /// The first `Registered` (Ok, public address) or `Refused` (Err, its
    /// message) for `name`, for tests where a refusal is an outcome.
    pub async fn registration(&self, name: &str) -> Result<SocketAddr, String> {
        loop {
            match self.next_event(PROMPTLY).await {
                Event::Registered {
                    name: got, public, ..
                } if got == name => return Ok(public.parse().expect("ip:port")),
                Event::Refused {
                    name: got, message, ..
                } if got == name => return Err(message),
                _ => {}
            }
        }
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
                    Ok(Event::Refused { name, message, .. }) => {
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

// ---------------------------------------------------------------- tunnel

/// Client settings adjustments, applied once the server's address is known.
type Adjust = Box<dyn FnOnce(&mut ClientSettings)>;

/// Builds the ordinary tunnel: a server with [`server_settings`], a client with
/// [`client_settings`] and [`TOKEN`], and its services (one echo service named
/// `echo` unless [`TunnelBuilder::service`] names others), over TCP unless
/// [`TunnelBuilder::tls`].
pub struct TunnelBuilder {
    server: ServerSettings,
    tls: bool,
    services: Vec<(String, SocketAddr)>,
    adjust: Vec<Adjust>,
}

impl Default for TunnelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TunnelBuilder {
    pub fn new() -> TunnelBuilder {
        TunnelBuilder {
            server: server_settings(),
            tls: false,
            services: Vec::new(),
            adjust: Vec::new(),
        }
    }

    /// Changes the server's settings (limits, timeouts) before it starts.
    pub fn server(mut self, adjust: impl FnOnce(&mut ServerSettings)) -> Self {
        adjust(&mut self.server);
        self
    }

    /// Changes the client's settings before it starts (after everything else
    /// the builder sets, so this has the last word).
    pub fn client(mut self, adjust: impl FnOnce(&mut ClientSettings) + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// Pooled data links, `size` kept idle.
    pub fn pooled(self, size: usize) -> Self {
        self.client(move |c| c.data_links = DataLinks::Pooled { size })
    }

    /// Multiplexed data links, `links` of them.
    pub fn multiplexed(self, links: usize) -> Self {
        self.client(move |c| c.data_links = DataLinks::Multiplexed { links })
    }

    /// TLS on every link: a test CA, a `localhost` certificate for the server,
    /// a client that trusts the CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Exposes `local` as `name` (a server-picked public port). Without any,
    /// the tunnel exposes an echo service of its own as `echo`.
    pub fn service(mut self, name: &str, local: SocketAddr) -> Self {
        self.services.push((name.to_owned(), local));
        self
    }

    /// Exposes the UDP service at `local` as `name` (a server-picked public
    /// UDP port).
    pub fn udp_service(self, name: &str, local: SocketAddr) -> Self {
        let udp = name.to_owned();
        self.service(name, local).client(move |c| {
            for service in c.services.iter_mut().filter(|s| s.name == udp) {
                service.protocol = Protocol::Udp;
            }
        })
    }

    /// Starts the server and the client, and waits until every service is
    /// registered.
    pub async fn start(self) -> Tunnel {
        let (tunnel, ()) = self.start_via(|_| async {}).await;
        tunnel
    }

    /// [`TunnelBuilder::start`] with the client dialling what `proxy` starts in
    /// front of the server (given the server's address) instead of the server.
    pub async fn start_via<P, F>(mut self, proxy: impl FnOnce(SocketAddr) -> F) -> (Tunnel, P)
    where
        P: Via,
        F: Future<Output = P>,
    {
        let tls = self.tls.then(TlsPair::generate);
        if let Some(tls) = &tls {
            self.server.tls = Some(tls.server.clone());
        }
        let server = start_server(self.server).await.expect("server starts");
        let proxy = proxy(server.addr).await;
        let mut owned = Vec::new();
        if self.services.is_empty() {
            let echo = echo_service().await;
            self.services.push(("echo".to_owned(), echo.addr));
            owned.push(echo);
        }
        let services: Vec<(&str, SocketAddr, u16)> = self
            .services
            .iter()
            .map(|(name, local)| (name.as_str(), *local, 0))
            .collect();
        let dial = proxy.addr().unwrap_or(server.addr);
        let mut settings = client_settings(dial, TOKEN, &services);
        settings.tls = tls.map(|tls| tls.client);
        for adjust in self.adjust {
            adjust(&mut settings);
        }
        let client = start_client(settings);
        let names: Vec<&str> = services.iter().map(|(name, _, _)| *name).collect();
        let publics = client.registered_all(&names).await;
        let tunnel = Tunnel {
            public: publics[names[0]],
            publics,
            server,
            client,
            _services: owned,
        };
        (tunnel, proxy)
    }
}

/// What a client may dial instead of the server: a proxy in between, or
/// nothing (`()`: the server itself).
pub trait Via {
    fn addr(&self) -> Option<SocketAddr>;
}

impl Via for () {
    fn addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// A running tunnel. [`Tunnel::stop`] stops the client, then the server, each
/// cleanly and within [`PROMPTLY`]; dropping it instead is a crash of both.
pub struct Tunnel {
    pub server: Server,
    pub client: Client,
    /// The public address of the first service.
    pub public: SocketAddr,
    /// The public address of every service, by name.
    pub publics: HashMap<String, SocketAddr>,
    /// The echo service the tunnel started, if it started one.
    _services: Vec<Service>,
}

impl Tunnel {
    pub async fn stop(self) {
        self.client.stop().await;
        self.server.stop().await;
    }
}
