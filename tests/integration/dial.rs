//! Where links are dialled: a client given `localhost` finds a server that
//! listens on `::1` only (in process and with the real binary), and local
//! services named by `localhost` are found the same way.
//!
//! A "refusing" address here is a socket bound to `127.0.0.1:P` that never
//! listens, held for the whole test; the server (or service) then binds
//! `[::1]:P`. So `localhost:P`, whose first address is `127.0.0.1:P`, is
//! refused for certain and must be found on its second, `[::1]:P`.

use crate::common::process::{Proc, porthole as args};
use crate::common::*;
use smol::net::TcpListener;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use porthole::client::Event;
use porthole::config::{ClientConfig, Secret, ServerConfig, ServiceConfig};

/// Whether `::1` can be bound on this machine (checked once per run).
fn ipv6_loopback() -> bool {
    static BINDS: OnceLock<bool> = OnceLock::new();
    *BINDS.get_or_init(|| std::net::TcpListener::bind("[::1]:0").is_ok())
}

/// Skips the calling test (returns true) when `::1` cannot be bound.
fn skip_without_ipv6(test: &str) -> bool {
    let skip = !ipv6_loopback();
    if skip {
        eprintln!("{test}: skipped, ::1 cannot be bound on this machine");
    }
    skip
}

/// A refusing `127.0.0.1:P` (see the module docs) and `[::1]:P`, free for the
/// caller to bind (no other test binds `::1` on a port it does not hold on
/// `127.0.0.1`).
fn v6_only_port() -> (OwnedFd, SocketAddr) {
    let (held, refusing) = refusing_address();
    (
        held,
        SocketAddr::new("::1".parse().expect("::1"), refusing.port()),
    )
}

/// Waits for the client's `Registered` for `name`; returns its public port.
async fn registered_port(client: &Client, name: &str) -> u16 {
    within(PROMPTLY * 2, "service registration", async {
        loop {
            match client.events.recv().await {
                Ok(Event::Registered {
                    name: got, port, ..
                }) if got == name => return port,
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

#[test]
fn a_client_given_localhost_reaches_a_server_and_a_service_on_ipv6_loopback_only() {
    if skip_without_ipv6("localhost to ::1") {
        return;
    }
    run_test(async {
        let (_server_v4, server_v6) = v6_only_port();
        let mut config = ServerConfig::new(server_v6.to_string());
        config.token = Some(Secret::new(TOKEN));
        let server = start_server(config.validate().expect("valid server config"))
            .await
            .expect("server binds [::1]");
        assert_eq!(server.addr, server_v6);
        let (_echo_v4, echo_v6) = v6_only_port();
        let service = serve(TcpListener::bind(echo_v6).await.expect("bind [::1]"), echo);
        // `localhost` for the server (control and data links), a name under
        // `.localhost` for the service (dialled per visitor): neither is in
        // /etc/hosts as ::1, and both IPv4 loopbacks refuse.
        let server_name = format!("localhost:{}", server_v6.port());
        let mut client = ClientConfig::new(server_name, Secret::new(TOKEN));
        client.services.push(ServiceConfig {
            name: "echo".to_owned(),
            local: format!("echo.localhost:{}", service.addr.port()),
            remote_port: 0,
        });
        let client = start_client(client.validate().expect("valid client config"));
        let port = registered_port(&client, "echo").await;
        // Public ports bind on the control port's IP: ::1.
        let public = SocketAddr::new(server_v6.ip(), port);
        assert_echoes(public, 0xd1, 200_000).await;
        assert_echoes(public, 0xd2, 1000).await;
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn the_binary_client_given_localhost_registers_with_a_server_on_ipv6_loopback() {
    if skip_without_ipv6("binary localhost to ::1") {
        return;
    }
    run_test(async {
        let echo = echo_service().await;
        let local = echo.addr.port().to_string();
        let (_held, bind) = v6_only_port();
        let token = "dial-process-token";
        let (server, client, public_port) = smol::unblock(move || {
            let bind = bind.to_string();
            let cmd = args(&["server", "--bind", &bind, "--token", token]);
            let mut server = Proc::spawn(cmd);
            let listening = server.address_after("listening for clients on ", PROMPTLY * 2);
            assert_eq!(listening.to_string(), bind, "the server bound [::1]");
            let dial = format!("localhost:{}", listening.port());
            let cmd = args(&[
                "client", "--server", &dial, "--token", token, "--expose", &local,
            ]);
            let mut client = Proc::spawn(cmd);
            let rest = client.wait_for("is public at ", PROMPTLY * 2);
            let public = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let port = public
                .strip_prefix("localhost:")
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("public address {public:?} is localhost:PORT"));
            (server, client, port)
        })
        .await;
        let public = SocketAddr::new("::1".parse().expect("::1"), public_port);
        assert_echoes(public, 0xd3, 100_000).await;
        drop((client, server));
    });
}
