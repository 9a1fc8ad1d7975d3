//! One client, several servers: a control listener the test keeps (so a
//! server stopped on it can be started again at the same address, with no
//! rebind race), client settings naming every server, and waits on the
//! events about one server.
//!
//! A kept listener is one socket shared by the test and the server run on
//! it (a duplicated descriptor): while the test holds it the port stays
//! bound, and a client's reconnects queue in its backlog until the next
//! server, given the socket itself, accepts them.

use smol::channel::Receiver;
use std::net::SocketAddr;

use porthole::client::Event;
use porthole::config::{ClientSettings, ServerSettings};
use porthole::shutdown;

use super::deadline::{PROMPTLY, within};
use super::harness::{Client, Server, client_settings};

/// A control listener on `127.0.0.1:0` that outlives the servers run on it.
pub struct KeptListener {
    socket: std::net::TcpListener,
    pub addr: SocketAddr,
}

impl KeptListener {
    pub fn bind() -> KeptListener {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("kept listener address");
        KeptListener { socket, addr }
    }

    /// The same socket, for the first server to run on.
    fn share(&self) -> smol::net::TcpListener {
        let dup = self
            .socket
            .try_clone()
            .expect("duplicate the kept listener");
        smol::net::TcpListener::try_from(dup).expect("register the kept listener")
    }

    /// The socket itself, for the server that runs on it after the first.
    ///
    /// Not another duplicate: the runtime's poller forgets a socket when its
    /// descriptor closes, which a duplicate held elsewhere prevents (the
    /// kernel keeps that registration while the socket lives). A second
    /// duplicate could get the first one's number back and be refused as
    /// registered already; the kept descriptor's number was never given out.
    fn hand_over(self) -> smol::net::TcpListener {
        smol::net::TcpListener::try_from(self.socket).expect("register the kept listener")
    }
}

/// Runs the first server on `listener` (its `bind` is ignored: the listener
/// is already bound); the test keeps the listener.
pub fn start_server_on(listener: &KeptListener, settings: ServerSettings) -> Server {
    run_on(listener.share(), listener.addr, settings)
}

/// Runs a server on `listener` after the first one stopped: the same
/// address, no rebind.
pub fn restart_server_on(listener: KeptListener, settings: ServerSettings) -> Server {
    let addr = listener.addr;
    run_on(listener.hand_over(), addr, settings)
}

fn run_on(listener: smol::net::TcpListener, addr: SocketAddr, settings: ServerSettings) -> Server {
    let (trigger, signal) = shutdown::channel();
    let task = smol::spawn(porthole::server::run_configured(listener, settings, signal));
    Server {
        addr,
        trigger,
        task,
    }
}

/// [`client_settings`] with every one of `servers`, in this order.
pub fn multi_client_settings(
    servers: &[SocketAddr],
    token: &str,
    services: &[(&str, SocketAddr, u16)],
) -> ClientSettings {
    let first = *servers.first().expect("at least one server");
    let mut settings = client_settings(first, token, services);
    settings.server = servers.iter().map(SocketAddr::to_string).collect();
    settings
}

impl Client {
    /// Waits until `name` is registered with every one of `servers`, in any
    /// order; returns the public addresses in the order of `servers`. A
    /// refusal or a server given up fails the test; events about other
    /// servers are skipped.
    pub async fn registered_with(&self, servers: &[SocketAddr], name: &str) -> Vec<SocketAddr> {
        let mut publics: Vec<Option<SocketAddr>> = vec![None; servers.len()];
        within(PROMPTLY * 2, "registration with every server", async {
            while publics.iter().any(Option::is_none) {
                let event = next(&self.events).await;
                let Some(i) = servers.iter().position(|s| s.to_string() == event.server()) else {
                    continue;
                };
                match event {
                    Event::Registered {
                        name: got, public, ..
                    } if got == name => {
                        publics[i] = Some(public.parse().expect("public address is ip:port"));
                    }
                    Event::Refused { .. } | Event::GaveUp { .. } => panic!("{event:?}"),
                    _ => {}
                }
            }
        })
        .await;
        publics.into_iter().flatten().collect()
    }

    /// Skips events until one about `server` that `wanted` accepts; returns it.
    pub async fn event_about(&self, server: SocketAddr, wanted: impl Fn(&Event) -> bool) -> Event {
        let server = server.to_string();
        within(PROMPTLY * 2, "an event about one server", async {
            loop {
                let event = next(&self.events).await;
                if event.server() == server && wanted(&event) {
                    return event;
                }
            }
        })
        .await
    }
}

async fn next(events: &Receiver<Event>) -> Event {
    events.recv().await.expect("the client ended")
}
