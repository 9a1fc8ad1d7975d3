//! The words of every TLS failure users meet, for both sides: no rustls
//! `Debug` output, dates and names spelled out, hints naming the printing
//! side's options, and the permanent/transient split.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::{ServerName, UnixTime};

use super::super::failure::{Side, TlsCause, TlsFailure, is_permanent_tls, tls_failure};
use super::describe_for;

/// Debug renderings of rustls and std types that must never reach a user.
const DEBUG_MARKS: [&str; 8] = [
    "IpAddress(",
    "DnsName(",
    "Some(",
    "V4(",
    "Ipv4Addr",
    "UnknownCA",
    "Context {",
    "UnixTime",
];

fn words(e: rustls::Error, side: Side) -> (TlsCause, String) {
    let (cause, words) = describe_for(&e, side);
    for mark in DEBUG_MARKS {
        assert!(!words.contains(mark), "{mark:?} in {words:?}");
    }
    (cause, words)
}

fn cert(e: CertificateError, side: Side) -> (TlsCause, String) {
    words(rustls::Error::InvalidCertificate(e), side)
}

fn alert(a: AlertDescription, side: Side) -> (TlsCause, String) {
    words(rustls::Error::AlertReceived(a), side)
}

fn wrong_name(expected: ServerName<'static>, presented: &[&str]) -> String {
    let e = CertificateError::NotValidForNameContext {
        expected,
        presented: presented.iter().map(|p| p.to_string()).collect(),
    };
    let (cause, words) = cert(e, Side::Client);
    assert_eq!(cause, TlsCause::WrongName);
    words
}

#[test]
fn a_wrong_name_is_spelled_as_names_and_addresses() {
    let loopback = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let w = wrong_name(loopback.clone(), &["DnsName(\"localhost\")"]);
    assert!(
        w.contains("the server's certificate is for localhost, not 127.0.0.1"),
        "{w}"
    );
    assert!(w.contains("`server_name` / --server-name"), "{w}");
    assert!(w.contains("porthole gen-cert --name 127.0.0.1"), "{w}");

    // Several names; webpki's own IPv6 spelling ("0::1") comes out plain.
    let w = wrong_name(
        ServerName::try_from("tunnel.example.com").expect("name"),
        &[
            "DnsName(\"localhost\")",
            "IpAddress(127.0.0.1)",
            "IpAddress(0::1)",
            "UniformResourceIdentifier(\"spiffe://x\")",
        ],
    );
    assert!(
        w.contains("is for localhost, 127.0.0.1 or ::1, not tunnel.example.com"),
        "{w}"
    );

    let v6 = ServerName::from(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let w = wrong_name(v6, &[]);
    assert!(w.contains("names no host, so it is not for ::1"), "{w}");
}

#[test]
fn certificate_dates_are_printed_as_utc_dates() {
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_796_036_400));
    let not_after = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_767_323_045));
    let (cause, w) = cert(
        CertificateError::ExpiredContext { time, not_after },
        Side::Client,
    );
    assert_eq!(cause, TlsCause::Expired);
    assert!(
        w.contains(
            "the server's certificate has expired (not valid after 2026-01-02 03:04:05 UTC; \
             it is now 2026-11-30 "
        ),
        "{w}"
    );
    let (cause, w) = cert(
        CertificateError::NotValidYetContext {
            time: not_after,
            not_before: time,
        },
        Side::Server,
    );
    assert_eq!(cause, TlsCause::NotValidYet);
    assert!(
        w.contains("the client's certificate is not valid yet (not valid before 2026-11-30"),
        "{w}"
    );
}

#[test]
fn trust_hints_name_the_option_of_the_side_that_prints_them() {
    for e in [
        CertificateError::UnknownIssuer,
        CertificateError::BadSignature,
    ] {
        let (cause, client) = cert(e.clone(), Side::Client);
        assert_eq!(cause, TlsCause::UntrustedCertificate);
        assert!(client.contains("`ca` / --ca"), "{client}");
        let (_, server) = cert(e, Side::Server);
        assert!(server.contains("`client_ca` / --client-ca"), "{server}");
        assert!(!server.contains("--ca "), "{server}");
        assert!(!server.contains("`ca`"), "{server}");
    }
    let (cause, w) = words(rustls::Error::NoCertificatesPresented, Side::Server);
    assert_eq!(cause, TlsCause::CertificateMissing);
    assert!(w.contains("--client-ca"), "{w}");
}

#[test]
fn alerts_about_our_certificate_say_what_the_peer_refused() {
    let (cause, w) = alert(AlertDescription::UnknownCA, Side::Client);
    assert_eq!(cause, TlsCause::CertificateRefused);
    assert!(
        w.starts_with(
            "the server refused our client certificate: it does not trust the CA that signed it"
        ),
        "{w}"
    );
    assert!(w.contains("--cert"), "{w}");
    let (_, w) = alert(AlertDescription::UnknownCA, Side::Server);
    assert!(
        w.starts_with("the client refused this server's certificate: it does not trust"),
        "{w}"
    );
    assert!(!w.contains("--ca"), "{w}");
    let (_, w) = alert(AlertDescription::CertificateExpired, Side::Client);
    assert!(
        w.contains("the server refused our client certificate: it has expired"),
        "{w}"
    );
    let (cause, w) = alert(AlertDescription::CertificateRequired, Side::Client);
    assert_eq!(cause, TlsCause::CertificateMissing);
    assert!(w.contains("requires a client certificate"), "{w}");
    assert!(w.contains("--cert --key"), "{w}");
    // An alert without words of its own: named by number, not by Debug.
    let (cause, w) = alert(AlertDescription::Unknown(0xee), Side::Client);
    assert_eq!(cause, TlsCause::Protocol);
    assert!(w.contains("TLS alert number 238"), "{w}");
    let (_, w) = alert(AlertDescription::InappropriateFallback, Side::Server);
    assert!(w.contains("TLS alert number 86"), "{w}");
}

#[test]
fn a_peer_without_tls_is_told_from_a_peer_that_broke_tls() {
    use rustls::InvalidMessage as M;
    let (cause, w) = words(
        rustls::Error::InvalidMessage(M::InvalidContentType),
        Side::Client,
    );
    assert_eq!(cause, TlsCause::NotTls);
    assert!(w.contains("the server does not speak TLS"), "{w}");
    let (cause, w) = words(
        rustls::Error::InvalidMessage(M::InvalidContentType),
        Side::Server,
    );
    assert_eq!(cause, TlsCause::NotTls);
    assert!(
        w.contains("start the client with --tls, or this server without"),
        "{w}"
    );
    let (cause, _) = words(rustls::Error::InvalidMessage(M::InvalidCcs), Side::Client);
    assert_eq!(cause, TlsCause::Protocol);
}

/// An `io::Error` as futures-rustls makes it, explained for `side`.
fn explained(e: rustls::Error, side: Side) -> io::Error {
    super::super::failure::explain(io::Error::new(io::ErrorKind::InvalidData, e), side, true)
}

#[test]
fn operator_faults_are_permanent_and_network_faults_are_not() {
    let permanent = [
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        rustls::Error::InvalidCertificate(CertificateError::BadSignature),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        rustls::Error::InvalidCertificate(CertificateError::Expired),
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
        rustls::Error::NoCertificatesPresented,
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        rustls::Error::AlertReceived(AlertDescription::BadCertificate),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
    ];
    for e in permanent {
        let shown = format!("{e:?}");
        let io = explained(e, Side::Client);
        assert!(is_permanent_tls(&io), "{shown}: {io}");
        assert_eq!(io.kind(), io::ErrorKind::InvalidData, "kind kept");
        assert!(io.to_string().starts_with("TLS handshake failed: "), "{io}");
    }
    let transient = [
        rustls::Error::AlertReceived(AlertDescription::InternalError),
        rustls::Error::AlertReceived(AlertDescription::DecodeError),
        rustls::Error::DecryptError,
    ];
    for e in transient {
        let shown = format!("{e:?}");
        let io = explained(e, Side::Client);
        assert!(!is_permanent_tls(&io), "{shown}: {io}");
        assert!(tls_failure(&io).is_some(), "{shown} is still typed");
    }
    // Plain I/O faults during a handshake: typed, never permanent.
    for kind in [
        io::ErrorKind::UnexpectedEof,
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionRefused,
    ] {
        let io = super::super::failure::explain(io::Error::from(kind), Side::Client, true);
        assert_eq!(io.kind(), kind);
        let failure = tls_failure(&io).expect("typed");
        assert!(!failure.is_permanent(), "{kind:?}");
        assert_eq!(failure.side(), Side::Client);
    }
    // After the handshake, an I/O error passes unchanged.
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    let io = super::super::failure::explain(reset, Side::Server, false);
    assert!(tls_failure(&io).is_none());
    assert!(!is_permanent_tls(&io));
}

#[test]
fn a_permanent_failure_is_found_under_wrappers_that_keep_their_source() {
    #[derive(Debug)]
    struct Context(io::Error);
    impl std::fmt::Display for Context {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot connect: {}", self.0)
        }
    }
    impl std::error::Error for Context {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let inner = explained(
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        Side::Client,
    );
    let wrapped = io::Error::new(io::ErrorKind::InvalidData, Context(inner));
    assert!(is_permanent_tls(&wrapped));
    let twice = io::Error::other(wrapped);
    assert!(is_permanent_tls(&twice));
    // A wrapper that keeps only the text loses the type: not permanent.
    let flattened = io::Error::other(twice.to_string());
    assert!(!is_permanent_tls(&flattened));
    let failure: Option<&TlsFailure> = tls_failure(&twice);
    assert_eq!(
        failure.map(TlsFailure::cause),
        Some(TlsCause::UntrustedCertificate)
    );
}
