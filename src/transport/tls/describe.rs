//! rustls errors in the words of the person reading the log, with the hint
//! that fixes them naming the options of the side that prints it (`ca` and
//! `server_name` on a client, `client_ca` on a server). Nothing here prints a
//! rustls type with `Debug`: names, addresses, dates and alerts are spelled
//! out, and whatever has no words of its own gets a plain fallback (the
//! detail goes to the debug log, see `failure::explain`).

use std::net::IpAddr;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::ServerName;

use super::failure::{Side, TlsCause};
use super::validity::unix_utc;

/// The cause of `e` and a sentence for `side`, the side that met it.
pub(super) fn describe_for(e: &rustls::Error, side: Side) -> (TlsCause, String) {
    let peer = side.peer();
    match e {
        rustls::Error::InvalidCertificate(cert) => peer_certificate(cert, side),
        rustls::Error::NoCertificatesPresented => {
            let why = match side {
                Side::Server => {
                    "and this server requires one (mutual TLS: `client_ca` / --client-ca is set)"
                }
                Side::Client => "and this client requires one",
            };
            let words = format!("the {peer} presented no certificate, {why}");
            (TlsCause::CertificateMissing, words)
        }
        rustls::Error::AlertReceived(alert) => alert_received(*alert, side),
        rustls::Error::InvalidMessage(m) => {
            use rustls::InvalidMessage as M;
            match m {
                // The first record header is not TLS at all.
                M::InvalidContentType | M::UnknownProtocolVersion | M::MessageTooLarge => {
                    (TlsCause::NotTls, not_tls(side))
                }
                _ => (
                    TlsCause::Protocol,
                    format!("the {peer} sent a malformed TLS message"),
                ),
            }
        }
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
            (TlsCause::Incompatible, incompatible(side))
        }
        rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => (
            TlsCause::Protocol,
            format!("the {peer} sent a TLS message out of turn"),
        ),
        rustls::Error::PeerMisbehaved(_) | rustls::Error::PeerSentOversizedRecord => (
            TlsCause::Protocol,
            format!("the {peer} broke the TLS protocol"),
        ),
        rustls::Error::DecryptError => (
            TlsCause::Protocol,
            format!("a TLS record from the {peer} did not decrypt (damaged on the way?)"),
        ),
        rustls::Error::HandshakeNotComplete => (
            TlsCause::Protocol,
            "the TLS handshake did not complete".to_owned(),
        ),
        rustls::Error::FailedToGetCurrentTime => (
            TlsCause::Other,
            "cannot read this machine's clock".to_owned(),
        ),
        rustls::Error::FailedToGetRandomBytes => (
            TlsCause::Other,
            "the system's random generator failed".to_owned(),
        ),
        // rustls's own sentence, a plain string.
        rustls::Error::General(words) => (TlsCause::Other, words.clone()),
        _ => (TlsCause::Other, "an unexpected TLS error".to_owned()),
    }
}

/// The peer's certificate, refused by this side's verifier.
fn peer_certificate(cert: &CertificateError, side: Side) -> (TlsCause, String) {
    let peer = side.peer();
    let trust = match side {
        Side::Client => "`ca` / --ca",
        Side::Server => "`client_ca` / --client-ca",
    };
    let renew = "renew it (porthole gen-cert makes a new one), or check the clocks";
    let (cause, why) = match cert {
        CertificateError::Expired => (TlsCause::Expired, format!("has expired: {renew}")),
        CertificateError::ExpiredContext { time, not_after } => (
            TlsCause::Expired,
            format!(
                "has expired (not valid after {}; it is now {}): {renew}",
                unix_utc(*not_after),
                unix_utc(*time)
            ),
        ),
        CertificateError::NotValidYet => (
            TlsCause::NotValidYet,
            "is not valid yet: check the clocks of both machines".to_owned(),
        ),
        CertificateError::NotValidYetContext { time, not_before } => (
            TlsCause::NotValidYet,
            format!(
                "is not valid yet (not valid before {}; it is now {}): check the clocks of both machines",
                unix_utc(*not_before),
                unix_utc(*time)
            ),
        ),
        CertificateError::UnknownIssuer => (
            TlsCause::UntrustedCertificate,
            format!("is signed by an unknown authority (give its CA with {trust})"),
        ),
        // Two CAs with the same name (say, two `gen-cert` runs) look alike
        // to the verifier: the chain points at our CA, whose key did not
        // sign it.
        CertificateError::BadSignature => (
            TlsCause::UntrustedCertificate,
            format!(
                "is not signed by the CA you trust (bad signature; is {trust} the right file? \
                 two gen-cert runs make two CAs of the same name)"
            ),
        ),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => (TlsCause::WrongName, wrong_name(expected, presented, side)),
        CertificateError::NotValidForName => (
            TlsCause::WrongName,
            match side {
                Side::Client => "is not for the name we expect (set `server_name` / --server-name to a name it carries)".to_owned(),
                Side::Server => "is not for the name expected".to_owned(),
            },
        ),
        CertificateError::Revoked => (TlsCause::Revoked, "has been revoked".to_owned()),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            TlsCause::BadCertificate,
            format!("is not made for a TLS {peer} (its extended key usage forbids it)"),
        ),
        CertificateError::BadEncoding => (TlsCause::BadCertificate, "is malformed".to_owned()),
        CertificateError::UnhandledCriticalExtension => (
            TlsCause::BadCertificate,
            "has a critical extension this program does not know".to_owned(),
        ),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            TlsCause::BadCertificate,
            "is signed with an algorithm this program does not support".to_owned(),
        ),
        _ => (TlsCause::BadCertificate, "was refused".to_owned()),
    };
    (cause, format!("the {peer}'s certificate {why}"))
}

/// "is for localhost, not 127.0.0.1 (…)", with the fix for this side.
fn wrong_name(expected: &ServerName<'_>, presented: &[String], side: Side) -> String {
    let expected = expected.to_str();
    let names: Vec<String> = presented.iter().filter_map(|p| natural_name(p)).collect();
    let is = match names.as_slice() {
        [] => format!("names no host, so it is not for {expected}"),
        names => format!("is for {}, not {expected}", either(names)),
    };
    let fix = match (side, names.is_empty()) {
        (Side::Client, false) => format!(
            "set `server_name` / --server-name to a name it carries, or make a certificate for \
             {expected} with porthole gen-cert --name {expected}"
        ),
        (Side::Client, true) => {
            format!("make a certificate for {expected} with porthole gen-cert --name {expected}")
        }
        (Side::Server, _) => format!("the client must carry the name {expected}"),
    };
    format!("{is} ({fix})")
}

/// A name as webpki lists it (`DnsName("localhost")`, `IpAddress(::1)`),
/// the way a user writes it; `None` for names that are no host (a URI, a
/// directory name).
fn natural_name(presented: &str) -> Option<String> {
    if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
    {
        return Some(dns.to_owned());
    }
    if let Some(ip) = presented
        .strip_prefix("IpAddress(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        // webpki spells IPv6 its own way ("0::1"): write it the usual way.
        return Some(match ip.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => ip.to_owned(),
        });
    }
    let other_kinds = [
        "UniformResourceIdentifier(",
        "DirectoryName",
        "Unsupported(",
    ];
    if other_kinds.iter().any(|kind| presented.starts_with(kind)) {
        return None;
    }
    // A form this code does not know (a newer webpki): as it came.
    Some(presented.to_owned())
}

/// "a", "a or b", "a, b or c".
fn either(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn not_tls(side: Side) -> String {
    match side {
        Side::Client => "the server does not speak TLS (is it running without --tls? \
                         start it with --tls, or this client without)"
            .to_owned(),
        Side::Server => "the client does not speak TLS \
                         (start the client with --tls, or this server without)"
            .to_owned(),
    }
}

fn incompatible(side: Side) -> String {
    format!(
        "the {} has no TLS version or cipher suite in common with this {} \
         (porthole speaks TLS 1.3, and TLS 1.2 with `allow_tls12: true`)",
        side.peer(),
        side.own()
    )
}

/// A fatal alert from the peer: mostly its verdict on our certificate.
fn alert_received(alert: AlertDescription, side: Side) -> (TlsCause, String) {
    use AlertDescription as A;
    let peer = side.peer();
    let ours = match side {
        Side::Client => "our client certificate",
        Side::Server => "this server's certificate",
    };
    // What the operator of this side can do about a certificate the peer
    // does not trust.
    let untrusted_fix = match side {
        Side::Client => {
            "set `cert` and `key` / --cert --key to a certificate from the CA the server trusts"
        }
        Side::Server => "the client must be given the CA that signed `cert` / --cert",
    };
    let refused = |why: String| {
        let words = format!("the {peer} refused {ours}: {why}");
        (TlsCause::CertificateRefused, words)
    };
    match alert {
        A::CertificateRequired => match side {
            Side::Client => (
                TlsCause::CertificateMissing,
                "the server requires a client certificate (mutual TLS): \
                 set `cert` and `key` / --cert --key"
                    .to_owned(),
            ),
            Side::Server => (
                TlsCause::CertificateMissing,
                "the client requires a certificate from this server".to_owned(),
            ),
        },
        A::UnknownCA => refused(format!(
            "it does not trust the CA that signed it ({untrusted_fix})"
        )),
        A::CertificateExpired => {
            refused("it has expired or is not valid yet (renew it, or check the clocks)".to_owned())
        }
        A::CertificateRevoked => refused("it has been revoked".to_owned()),
        // rustls answers a signature by a look-alike CA (same name, other
        // key) with decrypt_error.
        A::DecryptError => refused(format!(
            "its signature does not verify (a different CA of the same name? {untrusted_fix})"
        )),
        A::BadCertificate | A::UnsupportedCertificate | A::CertificateUnknown => refused(format!(
            "it does not accept it (bad certificate; the {peer}'s log says why)"
        )),
        A::AccessDenied => (
            TlsCause::CertificateRefused,
            format!("the {peer} denied access"),
        ),
        A::UnrecognisedName => (
            TlsCause::WrongName,
            match side {
                Side::Client => "the server has no certificate for the name we asked for \
                                 (set `server_name` / --server-name to its name)"
                    .to_owned(),
                Side::Server => {
                    "the client asked for a name this server has no certificate for".to_owned()
                }
            },
        ),
        A::HandshakeFailure
        | A::ProtocolVersion
        | A::InsufficientSecurity
        | A::NoApplicationProtocol => (TlsCause::Incompatible, incompatible(side)),
        A::CloseNotify | A::UserCanceled => (
            TlsCause::Closed,
            format!("the {peer} closed the connection"),
        ),
        A::InternalError => (
            TlsCause::Protocol,
            format!("the {peer} had an internal error"),
        ),
        A::DecodeError | A::IllegalParameter | A::UnexpectedMessage | A::BadRecordMac => (
            TlsCause::Protocol,
            format!("the {peer} could not make sense of our TLS messages"),
        ),
        other => (
            TlsCause::Protocol,
            format!(
                "the {peer} ended the connection with TLS alert number {}",
                u8::from(other)
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
