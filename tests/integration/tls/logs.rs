//! What `porthole server` (the real binary) logs about TLS: the refusals it
//! makes, in its own options' words, the plain/TLS mix-ups from its side, and
//! the dates of its certificate at start. A log line is waited for with a
//! deadline (see `tests/common/process.rs`); clients run in-process.

use super::{assert_in_words, refused, tls_client, utc, validity_ending_in};
use crate::common::process::{Proc, porthole};
use crate::common::tls::{Pki, localhost, new_ca};
use crate::common::*;
use porthole::config::ClientSettings;
use porthole::gencert::{Ca, Validity};
use std::net::SocketAddr;
use std::path::Path;

/// `porthole server --bind 127.0.0.1:0 ARGS` with the test token; returns it
/// and the address it listens on.
fn server_process(args: Vec<String>) -> (Proc, SocketAddr) {
    let mut all = vec!["server", "--bind", "127.0.0.1:0"];
    all.extend(args.iter().map(String::as_str));
    let mut cmd = porthole(&all);
    cmd.env("PORTHOLE_TOKEN", TOKEN);
    let mut server = Proc::spawn(cmd);
    let addr = server.address_after("listening for clients on ", PROMPTLY * 2);
    (server, addr)
}

fn arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temporary path").to_owned()
}

/// `--tls --cert C --key K` for a fresh `localhost` certificate from `ca`.
fn tls_args(pki: &Pki, ca: &Ca, validity: Validity) -> Vec<String> {
    let pem = ca.server(&localhost(), validity).expect("server cert");
    let (cert, key) = pki.pair("server", &pem);
    vec![
        "--tls".into(),
        "--cert".into(),
        arg(&cert),
        "--key".into(),
        arg(&key),
    ]
}

/// Starts `client` against the server process and returns the rest of the
/// server's first "refused: " log line, once the client was refused too.
async fn refusal_logged(mut server: Proc, client: ClientSettings) -> String {
    let client = start_client(client);
    let (server, line) = smol::unblock(move || {
        let line = server.wait_for("refused: ", PROMPTLY * 2);
        (server, line)
    })
    .await;
    refused(client).await;
    drop(server);
    assert_in_words(&line);
    line
}

#[test]
fn a_server_refusing_a_client_certificate_names_client_ca_in_its_log() {
    run_test(async {
        let pki = Pki::new("mtls-log");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let mut args = tls_args(&pki, &ca, Validity::days(1));
        args.extend(["--client-ca".into(), arg(&ca_file)]);
        let (server, addr) = smol::unblock(move || server_process(args)).await;
        let outsider = Ca::new("outsider CA", Validity::days(1))
            .expect("CA")
            .client("outsider", Validity::days(1))
            .expect("cert");
        let (cert, key) = pki.pair("outsider", &outsider);
        let service = echo_service().await;
        let client = tls_client(
            addr,
            service.addr,
            &ca_file,
            "localhost",
            Some((&cert, &key)),
        );
        let line = refusal_logged(server, client).await;
        assert!(
            line.contains(
                "TLS handshake failed: the client's certificate is signed by an unknown authority \
                 (give its CA with `client_ca` / --client-ca)"
            ),
            "{line}"
        );
        assert!(!line.contains("`ca` / --ca"), "{line}");
    });
}

#[test]
fn a_plain_server_says_in_its_log_that_a_client_tried_tls() {
    run_test(async {
        let pki = Pki::new("tls-to-plain-log");
        let ca_file = pki.write("ca.crt", &new_ca().pem.cert);
        let (server, addr) = smol::unblock(|| server_process(Vec::new())).await;
        let service = echo_service().await;
        let client = tls_client(addr, service.addr, &ca_file, "localhost", None);
        let line = refusal_logged(server, client).await;
        assert!(
            line.contains(
                "the client tried TLS, and this server runs plain TCP \
                 — start the server with --tls, or the client without"
            ),
            "{line}"
        );
    });
}

#[test]
fn a_tls_server_says_in_its_log_that_a_client_does_not_speak_tls() {
    run_test(async {
        let pki = Pki::new("plain-to-tls-log");
        let args = tls_args(&pki, &new_ca(), Validity::days(1));
        let (server, addr) = smol::unblock(move || server_process(args)).await;
        let service = echo_service().await;
        let client = client_settings(addr, TOKEN, &[("echo", service.addr, 0)]);
        let line = refusal_logged(server, client).await;
        assert!(
            line.contains(
                "TLS handshake failed: the client does not speak TLS \
                 (start the client with --tls, or this server without)"
            ),
            "{line}"
        );
    });
}

#[test]
fn a_server_started_with_an_expired_certificate_logs_an_error_with_the_date() {
    run_test(async {
        let pki = Pki::new("expired-at-start");
        let validity = validity_ending_in(-3);
        let args = tls_args(&pki, &new_ca(), validity);
        let cert = pki.dir.join("server.crt");
        let line = smol::unblock(move || {
            let mut all = vec!["server", "--bind", "127.0.0.1:0"];
            all.extend(args.iter().map(String::as_str));
            let mut cmd = porthole(&all);
            cmd.env("PORTHOLE_TOKEN", TOKEN);
            let mut server = Proc::spawn(cmd);
            let line = server.wait_for(" ERROR ", PROMPTLY * 2);
            // It still serves: the clients are the ones to refuse.
            server.address_after("listening for clients on ", PROMPTLY * 2);
            line
        })
        .await;
        let not_after = validity.not_after;
        let expected = format!(
            "certificate {} expired on {:04}-{:02}-{:02} (not valid after {})",
            cert.display(),
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day(),
            utc(not_after)
        );
        assert!(line.contains(&expected), "{line}\nexpected: {expected}");
    });
}
