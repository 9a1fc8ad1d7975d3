//! The tunnel harness: an in-process server and client on loopback port 0.
//!
//! Everything waits on explicit ready signals (a bound address, a `Registered`
//! event); the only timers are deadlines that turn a hang into a failure.

use smol::Task;
use smol::channel::{Receiver, Sender, unbounded};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use porthole::client::{ClientError, Event};
use porthole::config::{
    ClientConfig, ClientSettings, Secret, ServerConfig, ServerSettings, ServiceConfig,
};
use porthole::shutdown::{self, Trigger};

use super::deadline::{PROMPTLY, within};
use super::services::{Service, echo_service};

/// The shared secret every well-behaved party in these tests uses.
pub const TOKEN: &str = "integration-test-token";

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

// ---------------------------------------------------------------- tunnel

/// Server (default settings) + echo service + client exposing it as `echo`.
pub struct Tunnel {
    pub server: Server,
    _service: Service,
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
        _service: service,
        client,
        public,
    }
}
