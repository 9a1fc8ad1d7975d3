//! The TLS transport end to end on loopback, with certificates generated at test
//! time (nothing checked in can expire): a working tunnel over TLS, every
//! certificate problem refused with a message that names it in words (never
//! rustls's `Debug`) and with the printing side's own options, mutual TLS,
//! the plain/TLS mix-ups failing fast and named on both sides, which failures
//! are permanent, certificate dates reported at start, and a stalled
//! handshake blocking no one.

use crate::common::proxy::link_proxy;
use crate::common::tls::{Pki, client_tls, localhost, new_ca, server_tls};
use crate::common::*;
use futures_lite::AsyncWriteExt;
use porthole::client::Event;
use porthole::config::{ClientSettings, ServerSettings};
use porthole::gencert::{Ca, Validity};
use porthole::transport::tls::{ServerFiles, load_server};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// The same failures as the real binary logs them, at the other end.
mod logs;
/// The typed side of the API: permanence of dial failures, certificate dates.
mod typed;

// The tests that expect a refusal, or need certificates other than the
// ordinary ones (`TunnelBuilder::tls`), start server and client by hand.

fn tls_server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> ServerSettings {
    let mut settings = server_settings();
    settings.tls = Some(server_tls(cert, key, client_ca));
    settings
}

fn tls_client(
    server: SocketAddr,
    service: SocketAddr,
    ca: &Path,
    name: &str,
    identity: Option<(&Path, &Path)>,
) -> ClientSettings {
    let mut settings = client_settings(server, TOKEN, &[("echo", service, 0)]);
    settings.tls = Some(client_tls(ca, name, identity));
    settings
}

/// How a refused client ended.
#[derive(Debug)]
enum Refusal {
    /// Disconnected with this reason, and will try again (a transient fault).
    Retrying(String),
    /// Gave up with this error (a permanent one).
    GaveUp(String),
}

impl Refusal {
    fn reason(&self) -> &str {
        let (Refusal::Retrying(reason) | Refusal::GaveUp(reason)) = self;
        reason
    }
}

/// Rust `Debug` renderings of rustls and std types: never in a message.
const DEBUG_MARKS: [&str; 7] = [
    "IpAddress(",
    "DnsName(",
    "Some(",
    "Ipv4Addr",
    "UnknownCA",
    "UnixTime",
    "AlertReceived",
];

fn assert_in_words(text: &str) {
    for mark in DEBUG_MARKS {
        assert!(!text.contains(mark), "{mark:?} in {text:?}");
    }
}

/// Waits for `client` to be refused: the reason of its first `Disconnected`
/// (then stops it), or the error it gave up with. Fails if it registers.
async fn refused(client: Client) -> Refusal {
    loop {
        match within(PROMPTLY, "client refusal", client.events.recv()).await {
            Ok(Event::Disconnected { reason, .. }) => {
                client.stop().await;
                assert_in_words(&reason);
                return Refusal::Retrying(reason);
            }
            Ok(Event::Registered { name, .. }) => panic!("{name} registered; expected a refusal"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    match within(PROMPTLY, "client exit", client.task).await {
        Err(e) => {
            let reason = e.to_string();
            assert_in_words(&reason);
            Refusal::GaveUp(reason)
        }
        Ok(()) => panic!("the client ended without an error"),
    }
}

/// A server with a `localhost` certificate from `ca`, and an echo service.
async fn server_with(
    pki: &Pki,
    ca: &Ca,
    validity: Validity,
    client_ca: Option<&Path>,
) -> (Server, Service) {
    let pem = ca.server(&localhost(), validity).expect("server cert");
    let (cert, key) = pki.pair("server", &pem);
    let server = start_server(tls_server(&cert, &key, client_ca))
        .await
        .expect("server starts");
    (server, echo_service().await)
}

#[test]
fn a_tunnel_over_tls_carries_bytes_intact_both_ways() {
    run_test(async {
        let t = TunnelBuilder::new().tls().start().await;
        let public = t.public;
        // Pooled TLS links: several visitors, sizes around the 16 KiB TLS record
        // and the 64 KiB copy buffer, and 4 MiB; `exchange` half-closes first.
        for (seed, len) in [
            (1, 0),
            (2, 1),
            (3, 16 * 1024 + 1),
            (4, 64 * 1024 - 1),
            (5, 4 << 20),
        ] {
            assert_echoes(public, seed, len).await;
        }
        let concurrent: Vec<_> = (0..20u64)
            .map(|i| smol::spawn(assert_echoes(public, 100 + i, 100_000)))
            .collect();
        for visitor in concurrent {
            within(PROMPTLY * 2, "concurrent visitor", visitor).await;
        }
        t.stop().await;
    });
}

/// A server whose `localhost` certificate comes from the test CA and is valid
/// for `validity`; a client that trusts `trusted` (the test CA when `None`) and
/// expects `name`. Returns the reason of the client's first refusal.
async fn refusal(test: &str, validity: Validity, trusted: Option<Ca>, name: &str) -> String {
    let pki = Pki::new(test);
    let ca = new_ca();
    let (server, service) = server_with(&pki, &ca, validity, None).await;
    let trust = pki.write("trusted.crt", &trusted.as_ref().unwrap_or(&ca).pem.cert);
    let client = start_client(tls_client(server.addr, service.addr, &trust, name, None));
    let refusal = refused(client).await;
    server.stop().await;
    refusal.reason().to_owned()
}

#[test]
fn a_client_trusting_another_ca_is_refused_naming_the_unknown_authority() {
    run_test(async {
        let other = Ca::new("another CA", Validity::days(1)).expect("CA");
        let reason = refusal("other-ca", Validity::days(1), Some(other), "localhost").await;
        assert!(
            reason.contains("the server's certificate is signed by an unknown authority"),
            "{reason}"
        );
        assert!(reason.contains("give its CA with `ca` / --ca"), "{reason}");
        // A different CA with the same name (two `gen-cert` runs, say).
        let reason = refusal("twin-ca", Validity::days(1), Some(new_ca()), "localhost").await;
        assert!(
            reason.contains("not signed by the CA you trust"),
            "{reason}"
        );
        assert!(reason.contains("`ca` / --ca"), "{reason}");
    });
}

#[test]
fn a_wrong_server_name_is_refused_naming_the_names() {
    run_test(async {
        let reason = refusal("name-ip", Validity::days(1), None, "127.0.0.1").await;
        assert!(
            reason.contains("the server's certificate is for localhost, not 127.0.0.1"),
            "{reason}"
        );
        assert!(
            reason.contains("set `server_name` / --server-name to a name it carries"),
            "{reason}"
        );
        assert!(
            reason.contains("porthole gen-cert --name 127.0.0.1"),
            "{reason}"
        );
        let reason = refusal("name-dns", Validity::days(1), None, "tunnel.example.com").await;
        assert!(
            reason.contains("is for localhost, not tunnel.example.com"),
            "{reason}"
        );
    });
}

/// "2026-01-02 03:04:05 UTC".
fn utc(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Valid from 30 days ago until `days_left` days from now (negative: ago),
/// to the second (certificates hold no fraction of one).
fn validity_ending_in(days_left: i64) -> Validity {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns");
    Validity {
        not_before: now - Duration::days(30),
        not_after: now + Duration::days(days_left),
    }
}

#[test]
fn an_expired_server_certificate_is_refused_naming_its_end_date() {
    run_test(async {
        let validity = validity_ending_in(-1);
        let reason = refusal("expired", validity, None, "localhost").await;
        let expected = format!(
            "the server's certificate has expired (not valid after {}; it is now ",
            utc(validity.not_after)
        );
        assert!(reason.contains(&expected), "{reason}\nexpected: {expected}");
    });
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_accepts_the_right_one() {
    run_test(async {
        let pki = Pki::new("mtls");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let (server, service) = server_with(&pki, &ca, Validity::days(1), Some(&ca_file)).await;

        // Refusals of our certificate only an operator can fix: the client
        // gives up (TLS 1.3 brings them with the first read).
        let anonymous = start_client(tls_client(
            server.addr,
            service.addr,
            &ca_file,
            "localhost",
            None,
        ));
        let refusal = refused(anonymous).await;
        let Refusal::GaveUp(reason) = &refusal else {
            panic!("permanent: {refusal:?}");
        };
        assert!(
            reason.contains("the server requires a client certificate (mutual TLS)"),
            "{reason}"
        );
        assert!(
            reason.contains("set `cert` and `key` / --cert --key"),
            "{reason}"
        );

        // From a CA the server does not know, and from a look-alike of its
        // own CA (same name, another key: two gen-cert runs).
        let outsiders = [
            (
                Ca::new("outsider CA", Validity::days(1)).expect("CA"),
                "the server refused our client certificate: it does not trust the CA that signed it",
            ),
            (
                new_ca(),
                "the server refused our client certificate: its signature does not verify",
            ),
        ];
        for (other, expected) in outsiders {
            let pem = other.client("outsider", Validity::days(1)).expect("cert");
            let (cert, key) = pki.pair("outsider", &pem);
            let outsider = start_client(tls_client(
                server.addr,
                service.addr,
                &ca_file,
                "localhost",
                Some((&cert, &key)),
            ));
            let refusal = refused(outsider).await;
            let Refusal::GaveUp(reason) = &refusal else {
                panic!("permanent: {refusal:?}");
            };
            assert!(reason.contains(expected), "{reason}");
            assert!(reason.contains("--cert --key"), "{reason}");
        }

        let member = ca.client("member", Validity::days(1)).expect("cert");
        let (cert, key) = pki.pair("member", &member);
        let client = start_client(tls_client(
            server.addr,
            service.addr,
            &ca_file,
            "localhost",
            Some((&cert, &key)),
        ));
        let public = client.registered("echo").await;
        assert_echoes(public, 7, 100_000).await;
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn a_plain_client_at_a_tls_server_fails_fast_with_a_clear_message() {
    run_test(async {
        let pki = Pki::new("plain-to-tls");
        let (server, service) = server_with(&pki, &new_ca(), Validity::days(1), None).await;
        let client = start_client(client_settings(
            server.addr,
            TOKEN,
            &[("echo", service.addr, 0)],
        ));
        // Permanent: the client gives up at once.
        let refusal = refused(client).await;
        let Refusal::GaveUp(reason) = &refusal else {
            panic!("permanent: {refusal:?}");
        };
        assert!(
            reason.contains(
                "the server speaks TLS: add --tls (and --ca if its certificate is from gen-cert)"
            ),
            "{reason}"
        );
        server.stop().await;
    });
}

#[test]
fn a_tls_client_at_a_plain_server_fails_fast_with_a_clear_message() {
    run_test(async {
        let pki = Pki::new("tls-to-plain");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let server = start_server(server_settings())
            .await
            .expect("server starts");
        let service = echo_service().await;
        let client = start_client(tls_client(
            server.addr,
            service.addr,
            &ca_file,
            "localhost",
            None,
        ));
        let refusal = refused(client).await;
        let reason = refusal.reason();
        assert!(reason.contains("the server does not speak TLS"), "{reason}");
        assert!(
            reason.contains("start it with --tls, or this client without"),
            "{reason}"
        );
        server.stop().await;
    });
}

#[test]
fn a_stalled_tls_handshake_does_not_delay_another_client() {
    run_test(async {
        let pki = Pki::new("stall");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let (server, service) = server_with(&pki, &ca, Validity::days(1), None).await;
        // Hand-written: the stalled peers must be in place before the client
        // starts. Half a TLS record header, then silence.
        let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
        stalled.write_all(&[0x16, 0x03]).await.expect("write");
        let idle = TcpStream::connect(server.addr).await.expect("connect");
        let client = start_client(tls_client(
            server.addr,
            service.addr,
            &ca_file,
            "localhost",
            None,
        ));
        let public = within(
            PROMPTLY,
            "registration past stalled peers",
            client.registered("echo"),
        )
        .await;
        assert_echoes(public, 8, 1000).await;
        drop((stalled, idle));
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn bad_tls_material_is_refused_at_load_naming_the_file_and_problem() {
    let pki = Pki::new("material");
    let ca = new_ca();
    let one = ca.server(&localhost(), Validity::days(1)).expect("cert");
    let two = ca.server(&localhost(), Validity::days(1)).expect("cert");
    let (cert, _) = pki.pair("one", &one);
    let (_, other_key) = pki.pair("two", &two);
    let not_pem = pki.write("empty.crt", "no certificates here\n");
    let missing = pki.dir.join("missing.crt");
    let load = |cert: &Path, key: &Path| {
        let files = ServerFiles {
            cert,
            key,
            client_ca: None,
            allow_tls12: false,
        };
        match load_server(&files) {
            Ok(_) => panic!("{} / {} should be refused", cert.display(), key.display()),
            Err(e) => e.to_string(),
        }
    };
    let e = load(&cert, &other_key);
    assert!(e.contains("does not match"), "{e}");
    let e = load(&not_pem, &other_key);
    assert!(
        e.contains("no certificate") && e.contains("empty.crt"),
        "{e}"
    );
    let e = load(&missing, &other_key);
    assert!(
        e.contains("cannot read") && e.contains("missing.crt"),
        "{e}"
    );
}

#[test]
fn the_tls_flag_turns_tcp_configs_into_a_tls_tunnel() {
    use porthole::cli::{
        ClientArgs, ServerArgs, client_settings as from_client_args,
        server_settings as from_server_args,
    };
    run_test(async {
        // Hand-written: the settings under test come from command-line flags.
        let pki = Pki::new("flag");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let (cert, key) = pki.pair(
            "server",
            &ca.server(&localhost(), Validity::days(1)).expect("cert"),
        );
        let server_ron = pki.write(
            "server.ron",
            &format!("(bind: \"127.0.0.1:0\", token: \"{TOKEN}\", transport: Tcp)"),
        );
        let mut args = ServerArgs {
            config: Some(server_ron),
            cert: Some(cert),
            ..ServerArgs::default()
        };
        let err = from_server_args(&args, None).expect_err("--cert alone on a TCP config");
        assert!(
            err.to_string().contains("implied by --cert") && err.to_string().contains("--key"),
            "{err}"
        );
        args.tls = true;
        let settings = from_server_args(&args, None).expect_err("--tls without --key");
        assert!(settings.to_string().contains("--key"), "{settings}");
        args.key = Some(key);
        let settings = from_server_args(&args, None).expect("--tls --cert --key");
        assert!(settings.tls.is_some(), "server runs TLS");
        let server = start_server(settings).await.expect("server starts");

        let service = echo_service().await;
        let client_ron = pki.write(
            "client.ron",
            &format!(
                "(server: \"{}\", token: \"{TOKEN}\", services: [(name: \"echo\", local: \"{}\")])",
                server.addr, service.addr
            ),
        );
        let args = ClientArgs {
            config: Some(client_ron),
            tls: true,
            ca: Some(ca_file),
            server_name: Some("localhost".into()),
            ..ClientArgs::default()
        };
        let mut settings = from_client_args(&args, None).expect("client --tls");
        assert!(settings.tls.is_some(), "client runs TLS");
        settings.reconnect_max_backoff = std::time::Duration::from_millis(200);
        let client = start_client(settings);
        let public = client.registered("echo").await;
        assert_echoes(public, 9, 1 << 20).await;
        client.stop().await;
        server.stop().await;
    });
}

#[test]
fn a_pooled_tls_link_carries_visitor_after_visitor_without_a_new_handshake() {
    run_test(async {
        let (t, proxy) = TunnelBuilder::new()
            .tls()
            .pooled(1)
            .start_via(link_proxy)
            .await;
        let public = t.public;
        // Two visitors first leave exactly one link (see link_reuse.rs).
        assert_echoes(public, 1, 10).await;
        assert_echoes(public, 2, 10).await;
        let before = proxy.take_new().len();
        for i in 0..200u64 {
            let len = [0, 1, 16 * 1024 + 1, 64 * 1024 - 1, 300_000][i as usize % 5];
            assert_echoes(public, 10 + i, len).await;
        }
        assert_eq!(
            proxy.take_new().len(),
            0,
            "no new link (and TLS handshake) after {before}"
        );
        t.stop().await;
    });
}
