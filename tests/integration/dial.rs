//! Where links are dialled and where public ports bind: a client given
//! `localhost` finds a server that listens on `::1` only (in process and with
//! the real binary), local services named by `localhost` are found the same
//! way, and `public_bind` puts the public ports on another IP than the
//! control port.
//!
//! A "refusing" address here is a socket bound to `127.0.0.1:P` that never
//! listens, held for the whole test; the server (or service) then binds
//! `[::1]:P`. So `localhost:P`, whose first address is `127.0.0.1:P`, is
//! refused for certain and must be found on its second, `[::1]:P`.

use crate::common::process::{Proc, porthole as args, run};
use crate::common::*;
use smol::net::TcpListener;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::OnceLock;

use porthole::client::Event;
use porthole::config::{ClientConfig, Protocol, Secret, ServerConfig, ServiceConfig};

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
            proxy_protocol: None,
            protocol: Protocol::Tcp,
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

#[test]
fn public_ports_bind_on_public_bind_and_not_on_the_control_ip() {
    run_test(async {
        // The public port P is held (refusing) on 127.0.0.1, the control
        // port's IP: bound there, the registration would fail.
        let (_held, on_control_ip) = refusing_address();
        let p = on_control_ip.port();
        let public_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let t = TunnelBuilder::new()
            .server(|s| {
                s.public_bind = public_ip;
                s.allow_ports = vec![p..=p];
            })
            .client(move |c| c.services[0].remote_port = p)
            .start()
            .await;
        assert_eq!(t.public.port(), p, "the client got the port it asked for");
        assert_echoes(SocketAddr::new(public_ip, p), 0xd4, 100_000).await;
        t.stop().await;
    });
}

#[test]
fn public_bind_defaults_to_the_ip_of_bind_and_the_flag_sets_it_and_is_logged() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.token = Some(Secret::new(TOKEN));
    let default = config.clone().validate().expect("valid");
    assert_eq!(default.public_bind, default.bind.ip());
    config.public_bind = Some("::".to_owned());
    let wildcard = config.validate().expect("valid");
    assert_eq!(wildcard.public_bind, "::".parse::<IpAddr>().expect("::"));
    let flags = porthole::cli::ServerArgs {
        bind: Some("127.0.0.1:0".to_owned()),
        public_bind: Some("0.0.0.0".to_owned()),
        token: Some(TOKEN.to_owned()),
        ..Default::default()
    };
    let settings = porthole::cli::server_settings(&flags, None).expect("valid flags");
    assert_eq!(settings.public_bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // The server says where public ports go when that is not the bind IP.
    let cmd = [
        "server",
        "--bind",
        "127.0.0.1:0",
        "--token",
        "t",
        "--public-bind",
        "127.0.0.2",
    ];
    let mut server = Proc::spawn(args(&cmd));
    let rest = server.wait_for("public ports bind on ", PROMPTLY * 2);
    assert_eq!(rest.trim(), "127.0.0.2");
}

#[test]
fn an_invalid_public_bind_is_a_config_error_naming_the_field_and_its_place() {
    let text =
        "(\n    bind: \"127.0.0.1:0\",\n    token: \"t\",\n    public_bind: \"0.0.0.0:80\",\n)\n";
    let config =
        porthole::config::parse::<ServerConfig>(text, Path::new("server.ron")).expect("parses");
    let err = config.validate().expect_err("a port is not allowed");
    let shown = err.to_string();
    assert_eq!((err.line, err.column), (4, 18), "at the value: {shown}");
    assert!(shown.contains("public_bind \"0.0.0.0:80\""), "{shown}");
    assert!(shown.contains("drop the port"), "{shown}");
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.token = Some(Secret::new(TOKEN));
    config.public_bind = Some("public.example.com".to_owned());
    let err = config.validate().expect_err("a name is not an IP address");
    assert!(err.to_string().contains("public_bind"), "{err}");
    // And from the command line: a usage error, exit code 2.
    let cmd = [
        "server",
        "--bind",
        "127.0.0.1:0",
        "--token",
        "t",
        "--public-bind",
        "nowhere",
    ];
    let out = run(args(&cmd));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("public_bind \"nowhere\""),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("listening for clients"),
        "{}",
        out.stderr
    );
}
