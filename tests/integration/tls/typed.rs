//! The TLS API's typed answers, on real sockets and generated certificates:
//! whether a failed dial is worth retrying ([`is_permanent_tls`]), and what
//! is wrong with the dates of our own certificates.

use super::{server_with, utc, validity_ending_in};
use crate::common::tls::{Pki, client_tls, localhost, new_ca, server_tls};
use crate::common::*;
use porthole::gencert::Validity;
use porthole::transport::tls::{Severity, TlsCause, tls_failure};
use porthole::transport::{TlsTransport, Transport, is_permanent_tls};
use std::net::SocketAddr;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// A TLS dial of `addr` trusting `ca` and expecting `name`, which must fail.
async fn dial_refused(ca: &Path, name: &str, addr: SocketAddr) -> std::io::Error {
    let transport = TlsTransport::client(&client_tls(ca, name, None));
    let target = addr.to_string();
    match within(PROMPTLY, "TLS dial", transport.connect(&target)).await {
        Ok(_) => panic!("{addr} accepted a TLS client for {name}"),
        Err(e) => e,
    }
}

#[test]
fn tls_dial_failures_say_whether_retrying_can_help() {
    run_test(async {
        let pki = Pki::new("dial");
        let ca = new_ca();
        let ca_file = pki.write("ca.crt", &ca.pem.cert);
        let (server, _service) = server_with(&pki, &ca, Validity::days(1), None).await;
        // Only an operator can fix these.
        let e = dial_refused(&ca_file, "127.0.0.1", server.addr).await;
        assert!(is_permanent_tls(&e), "{e}");
        let cause = tls_failure(&e).map(|f| f.cause());
        assert_eq!(cause, Some(TlsCause::WrongName), "{e}");
        let plain = start_server(server_settings())
            .await
            .expect("server starts");
        let e = dial_refused(&ca_file, "localhost", plain.addr).await;
        assert!(is_permanent_tls(&e), "{e}");
        assert_eq!(tls_failure(&e).map(|f| f.cause()), Some(TlsCause::NotTls));

        // A server that hangs up mid-handshake may be restarting: retry.
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let closing = listener.local_addr().expect("address");
        let closer = smol::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let e = dial_refused(&ca_file, "localhost", closing).await;
        assert!(!is_permanent_tls(&e), "{e}");
        // And so may a server that is not there at all.
        drop(closer);
        let e = dial_refused(&ca_file, "localhost", closing).await;
        assert!(!is_permanent_tls(&e), "{e}");
        plain.stop().await;
        server.stop().await;
    });
}

#[test]
fn certificate_warnings_report_the_dates_of_our_own_certificates() {
    let pki = Pki::new("own-dates");
    let ca = new_ca();
    let ca_file = pki.write("ca.crt", &ca.pem.cert);
    // A server certificate valid from tomorrow: a warning with its start.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns");
    let later = Validity {
        not_before: now + Duration::days(1),
        not_after: now + Duration::days(30),
    };
    let (cert, key) = pki.pair("later", &ca.server(&localhost(), later).expect("cert"));
    let server = server_tls(&cert, &key, None);
    let found = server.certificate_warnings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity(), Severity::Warning);
    let expected = format!("certificate {} is not valid until ", cert.display());
    assert!(found[0].message.starts_with(&expected), "{found:?}");
    assert!(
        found[0]
            .message
            .contains(&format!("(not valid before {}", utc(later.not_before))),
        "{found:?}"
    );
    // A client certificate (mutual TLS) with three days left.
    let soon = validity_ending_in(3);
    let (cert, key) = pki.pair("client", &ca.client("me", soon).expect("cert"));
    let client = client_tls(&ca_file, "localhost", Some((&cert, &key)));
    let found = client.certificate_warnings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity(), Severity::Warning);
    assert!(found[0].message.contains("expires in "), "{found:?}");
    assert!(
        found[0]
            .message
            .contains(&format!("(not valid after {})", utc(soon.not_after))),
        "{found:?}"
    );
    // Fine dates, and no client certificate: nothing to say.
    let fine = ca.server(&localhost(), Validity::days(90)).expect("cert");
    let (cert, key) = pki.pair("fine", &fine);
    assert_eq!(server_tls(&cert, &key, None).certificate_warnings(), []);
    assert_eq!(
        client_tls(&ca_file, "localhost", None).certificate_warnings(),
        []
    );
}
