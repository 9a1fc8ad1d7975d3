//! One client with several servers (`server: [a, b]`): it registers every
//! service with each, and one server draining, crashing or refusing the
//! client never disturbs the others. A server stopped and started again on
//! the listener the test kept is registered with again; the client ends
//! with an error only once every server refused it for good.

mod binary;

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::net::SocketAddr;

use porthole::client::{ClientError, Event};

/// A token none of the clients here has.
const OTHER_TOKEN: &str = "a-token-this-client-does-not-have";

/// Two servers on kept listeners, an echo service, and a client with both;
/// returns once the service is registered with each.
struct Pair {
    /// Until handed over to a restarted server.
    listeners: [Option<KeptListener>; 2],
    addrs: [SocketAddr; 2],
    servers: [Option<Server>; 2],
    client: Client,
    /// The echo service's public address at each server.
    publics: Vec<SocketAddr>,
    _echo: Service,
}

impl Pair {
    async fn start() -> Pair {
        let listeners = [KeptListener::bind(), KeptListener::bind()];
        let servers = [
            Some(start_server_on(&listeners[0], server_settings())),
            Some(start_server_on(&listeners[1], server_settings())),
        ];
        let echo = echo_service().await;
        let addrs = [listeners[0].addr, listeners[1].addr];
        let client = start_client(multi_client_settings(
            &addrs,
            TOKEN,
            &[("echo", echo.addr, 0)],
        ));
        let publics = client.registered_with(&addrs, "echo").await;
        Pair {
            listeners: listeners.map(Some),
            addrs,
            servers,
            client,
            publics,
            _echo: echo,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Takes server `i` (to stop or crash it).
    fn take(&mut self, i: usize) -> Server {
        self.servers[i].take().expect("server running")
    }

    async fn stop(self) {
        self.client.stop().await;
        for server in self.servers.into_iter().flatten() {
            server.stop().await;
        }
    }
}

/// A visitor kept open across a change: each call is one round trip.
struct Held(TcpStream);

impl Held {
    async fn open(public: SocketAddr) -> Held {
        let stream = within(PROMPTLY, "visitor connect", TcpStream::connect(public))
            .await
            .expect("connect to the public port");
        let mut held = Held(stream);
        held.round_trip(b"first").await;
        held
    }

    async fn round_trip(&mut self, line: &[u8]) {
        let mut back = vec![0u8; line.len()];
        within(PROMPTLY, "round trip of a held visitor", async {
            self.0.write_all(line).await.expect("send");
            self.0.read_exact(&mut back).await.expect("echo");
        })
        .await;
        assert_eq!(back, line);
    }
}

#[test]
fn a_client_registers_with_every_server_and_each_public_port_reaches_the_service() {
    run_test(async {
        let pair = Pair::start().await;
        assert_ne!(pair.publics[0], pair.publics[1], "a port at each server");
        assert_echoes(pair.publics[0], 71, 100_000).await;
        assert_echoes(pair.publics[1], 72, 100_000).await;
        pair.stop().await;
    });
}

#[test]
fn a_server_that_drains_leaves_the_other_serving_and_is_registered_with_again() {
    run_test(one_server_goes_away(true));
}

#[test]
fn a_server_that_crashes_leaves_the_other_serving_and_is_registered_with_again() {
    run_test(one_server_goes_away(false));
}

/// Server 1 drains (its shutdown signal) or crashes (its task dropped, its
/// listener and links with it); server 0 keeps serving a visitor held
/// across it and new ones, and once server 1 runs again on the kept
/// listener the client registers with it again.
async fn one_server_goes_away(drains: bool) {
    let mut pair = Pair::start().await;
    let mut held = Held::open(pair.publics[0]).await;
    let gone = pair.take(1);
    if drains {
        gone.stop().await;
    } else {
        drop(gone);
    }
    let lost = pair
        .client
        .event_about(pair.addr(1), |e| matches!(e, Event::Disconnected { .. }))
        .await;
    if drains {
        assert!(format!("{lost:?}").contains("draining"), "{lost:?}");
    }
    // During the outage: the other server's visitors never notice.
    held.round_trip(b"during").await;
    assert_echoes(pair.publics[0], 73, 100_000).await;

    let kept = pair.listeners[1].take().expect("listener kept");
    let again = restart_server_on(kept, server_settings());
    pair.servers[1] = Some(again);
    let publics = pair.client.registered_with(&[pair.addr(1)], "echo").await;
    assert_echoes(publics[0], 74, 100_000).await;
    held.round_trip(b"after").await;
    assert_echoes(pair.publics[0], 75, 100_000).await;
    pair.stop().await;
}

#[test]
fn a_server_refusing_the_token_is_given_up_while_the_other_serves_on() {
    run_test(async {
        let good = KeptListener::bind();
        let wrong = KeptListener::bind();
        let mut other = server_settings();
        other.token = Some(porthole::config::Secret::new(OTHER_TOKEN));
        let servers = [
            start_server_on(&good, server_settings()),
            start_server_on(&wrong, other),
        ];
        let echo = echo_service().await;
        let client = start_client(multi_client_settings(
            &[good.addr, wrong.addr],
            TOKEN,
            &[("echo", echo.addr, 0)],
        ));
        // Either may come first: the registration at one, the refusal at
        // the other.
        let (mut public, mut reason) = (None, None);
        while public.is_none() || reason.is_none() {
            match client.next_event(PROMPTLY).await {
                Event::Registered {
                    server, public: p, ..
                } if server == good.addr.to_string() => {
                    public = Some(p.parse::<SocketAddr>().expect("ip:port"));
                }
                Event::GaveUp { server, reason: r } if server == wrong.addr.to_string() => {
                    reason = Some(r);
                }
                Event::GaveUp { server, reason } => panic!("gave up on {server}: {reason}"),
                _ => {}
            }
        }
        let (public, reason) = (public.expect("registered"), reason.expect("given up"));
        assert!(reason.contains("authentication failed"), "{reason}");
        // The client goes on through the server that accepts it.
        assert_echoes(public, 76, 100_000).await;
        assert!(!client.task.is_finished(), "the client keeps running");
        client.stop().await;
        for server in servers {
            server.stop().await;
        }
    });
}

#[test]
fn the_client_exits_with_the_error_once_every_server_refused_it() {
    run_test(async {
        let listeners = [KeptListener::bind(), KeptListener::bind()];
        let mut settings = server_settings();
        settings.token = Some(porthole::config::Secret::new(OTHER_TOKEN));
        let servers = [
            start_server_on(&listeners[0], settings.clone()),
            start_server_on(&listeners[1], settings),
        ];
        let echo = echo_service().await;
        let addrs = [listeners[0].addr, listeners[1].addr];
        let client = start_client(multi_client_settings(
            &addrs,
            TOKEN,
            &[("echo", echo.addr, 0)],
        ));
        let ended = within(PROMPTLY * 2, "client exit", client.task).await;
        let Err(ClientError::EveryServer(failed)) = ended else {
            panic!("expected every server to be given up, got {ended:?}");
        };
        let named: Vec<String> = failed.iter().map(|(s, _)| s.clone()).collect();
        let want: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
        assert_eq!(named, want, "each server, in config order");
        for (server, e) in &failed {
            assert!(
                e.to_string().contains("authentication failed"),
                "{server}: {e}"
            );
        }
        let message = ClientError::EveryServer(failed).to_string();
        assert!(
            message.contains(&want[0]) && message.contains(&want[1]),
            "{message}"
        );
        for server in servers {
            server.stop().await;
        }
    });
}
