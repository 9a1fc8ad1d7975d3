//! What can be wrong with TLS material, found when the config is loaded (every
//! variant names the file or value at fault; the messages are what `porthole`
//! prints after `transport: `). Handshake failures are `failure.rs`'s.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rustls::server::VerifierBuilderError;

/// Why [`load_server`](super::load_server) or [`load_client`](super::load_client)
/// refused the material.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file cannot be read; `what` is "certificate" or "private key".
    Unreadable {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// The file holds no PEM block of the kind wanted.
    NoPem {
        path: PathBuf,
        what: &'static str,
    },
    /// A PEM block is malformed.
    BadPem {
        path: PathBuf,
        what: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file without a certificate block.
    NoCertificate {
        path: PathBuf,
    },
    /// A CA file whose certificate cannot anchor trust.
    NotACa {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The system trust store yielded no certificate.
    NoSystemRoots {
        errors: usize,
    },
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
    },
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    /// rustls refused the certificate (chain) in `path`.
    BadCert {
        path: PathBuf,
        source: rustls::Error,
    },
    BadServerName {
        name: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    CertWithoutKey,
    ClientCa {
        path: PathBuf,
        source: VerifierBuilderError,
    },
    TrustStore(VerifierBuilderError),
    Versions(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, what, source } => {
                write!(f, "cannot read the {what} {}: {source}", path.display())
            }
            Self::NoPem { path, what } => {
                write!(f, "no {what} in {} (expected PEM)", path.display())
            }
            Self::BadPem { path, what, source } => {
                write!(f, "not a valid PEM {what} in {}: {source}", path.display())
            }
            Self::NoCertificate { path } => write!(
                f,
                "no certificate in {} (expected a PEM block \"-----BEGIN CERTIFICATE-----\")",
                path.display()
            ),
            Self::NotACa { path, source } => {
                write!(
                    f,
                    "{}: not a usable CA certificate: {}",
                    path.display(),
                    describe_material(source)
                )
            }
            Self::NoSystemRoots { errors } => write!(
                f,
                "no CA certificates in the system trust store ({errors} errors); give `ca` (--ca) explicitly"
            ),
            Self::KeyMismatch { key, cert } => write!(
                f,
                "key {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::BadKey { path, source } => {
                write!(f, "key {}: {}", path.display(), describe_material(source))
            }
            Self::BadCert { path, source } => {
                write!(f, "cert {}: {}", path.display(), describe_material(source))
            }
            Self::BadServerName { name } => {
                write!(f, "server_name {name:?} is not a DNS name or an IP address")
            }
            Self::CertWithoutKey => {
                f.write_str("give both cert and key for a client certificate, or neither")
            }
            Self::ClientCa { path, source } => write!(f, "client_ca {}: {source}", path.display()),
            Self::TrustStore(e) => write!(f, "trust store: {e}"),
            Self::Versions(e) => write!(f, "TLS versions: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } => Some(source),
            Self::BadPem { source, .. } => Some(source),
            Self::NotACa { source, .. }
            | Self::BadKey { source, .. }
            | Self::BadCert { source, .. } => Some(source),
            Self::ClientCa { source, .. } | Self::TrustStore(source) => Some(source),
            Self::Versions(source) => Some(source),
            Self::NoPem { .. }
            | Self::NoCertificate { .. }
            | Self::NoSystemRoots { .. }
            | Self::KeyMismatch { .. }
            | Self::BadServerName { .. }
            | Self::CertWithoutKey => None,
        }
    }
}

/// The error for a PEM read of `what` from `path`.
pub(super) fn pem_error(
    path: &std::path::Path,
    what: &'static str,
    e: rustls_pki_types::pem::Error,
) -> TlsError {
    use rustls_pki_types::pem::Error;
    let path = path.to_owned();
    match e {
        Error::Io(source) => TlsError::Unreadable { path, what, source },
        Error::NoItemsFound => TlsError::NoPem { path, what },
        source => TlsError::BadPem { path, what, source },
    }
}

/// What rustls finds wrong with a certificate or key being loaded (it
/// checks little more than that the key parses and matches), in words.
fn describe_material(e: &rustls::Error) -> String {
    match e {
        // rustls's own sentence, a plain string.
        rustls::Error::General(words) => words.clone(),
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_owned(),
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
            "malformed (not an X.509 certificate)".to_owned()
        }
        rustls::Error::InvalidCertificate(_) => "not a usable certificate".to_owned(),
        _ => "refused by rustls".to_owned(),
    }
}
