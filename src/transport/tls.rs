//! TLS over the TCP transport, with rustls and the *ring* crypto provider.
//!
//! The provider is passed explicitly (`builder_with_provider`): futures-rustls
//! defaults to aws-lc-rs, and rustls panics when two providers are enabled and
//! none was chosen. TLS 1.3 only unless `allow_tls12` is set.
//!
//! Certificates and keys are PEM files read with rustls-pki-types' `PemObject`.
//! Everything that can be wrong with them is found when the config is loaded
//! ([`load_server`], [`load_client`]), so a bad file stops the program at start-up
//! with the file named ([`TlsError`]), not at the first connection; what
//! loading cannot see, the dates of our own certificate, is reported by
//! [`TlsServer::certificate_warnings`] and [`TlsClient::certificate_warnings`].
//! Handshake failures become a typed [`TlsFailure`] inside the `io::Error`:
//! a sentence that names the problem with the hint of the side that prints
//! it, and whether retrying can help ([`is_permanent_tls`]).

use crate::runtime::TcpStream;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Transport;
use super::tcp::{TcpTransport, socket_is_dead};

mod describe;
mod error;
mod failure;
mod validity;

pub use error::TlsError;
use error::pem_error;
use failure::explain;
pub use failure::{Side, TlsCause, TlsFailure, is_permanent_tls, tls_failure};
pub use validity::{
    CertIssue, CertWarning, EXPIRY_WARNING_DAYS, Severity, certificate_warnings, log_warnings,
};

/// Certificates read from one PEM file at most; a chain is a handful. Bounds
/// what a mistaken path (a huge bundle) costs.
const MAX_CERTS_PER_FILE: usize = 1000;

/// The *ring* provider, the only one porthole builds with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS13_AND_12: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

fn versions(allow_tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if allow_tls12 {
        &TLS13_AND_12
    } else {
        &TLS13_ONLY
    }
}

/// Server TLS material, loaded and checked.
#[derive(Clone)]
pub struct TlsServer {
    /// Where it came from, for `porthole check` and logs.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub allow_tls12: bool,
    /// The first certificate of `cert`'s chain: ours.
    leaf: CertificateDer<'static>,
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// What is wrong with the dates of the server's certificate (the first
    /// in `cert`), now: see [`certificate_warnings`].
    pub fn certificate_warnings(&self) -> Vec<CertWarning> {
        certificate_warnings(&self.cert, &self.leaf, time::OffsetDateTime::now_utc())
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

/// Client TLS material, loaded and checked.
#[derive(Clone)]
pub struct TlsClient {
    /// `None`: the system's trust store.
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
    /// Client certificate and key for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub allow_tls12: bool,
    /// The first certificate of `cert`'s chain, with mutual TLS.
    leaf: Option<CertificateDer<'static>>,
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// What is wrong with the dates of the client's own certificate (mutual
    /// TLS), now; empty without one. See [`certificate_warnings`].
    pub fn certificate_warnings(&self) -> Vec<CertWarning> {
        match (&self.cert, &self.leaf) {
            (Some(path), Some(leaf)) => {
                certificate_warnings(path, leaf, time::OffsetDateTime::now_utc())
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .field("server_name", &self.server_name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// What the server needs: its certificate chain and key, and optionally the CA
/// whose client certificates it demands (mutual TLS).
pub struct ServerFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
    pub allow_tls12: bool,
}

/// Loads and checks the server's material. The error says which file is wrong
/// and how.
pub fn load_server(files: &ServerFiles<'_>) -> Result<TlsServer, TlsError> {
    let provider = provider();
    let (certs, key) = cert_and_key(files.cert, files.key, &provider)?;
    let leaf = leaf_of(&certs, files.cert)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(files.allow_tls12))
        .map_err(TlsError::Versions)?;
    let builder = match files.client_ca {
        Some(ca) => {
            let roots = Arc::new(roots_from(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: ca.to_owned(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::BadCert {
            path: files.cert.to_owned(),
            source,
        })?;
    Ok(TlsServer {
        cert: files.cert.to_owned(),
        key: files.key.to_owned(),
        client_ca: files.client_ca.map(Path::to_owned),
        allow_tls12: files.allow_tls12,
        leaf,
        config: Arc::new(config),
    })
}

/// What the client needs: whom to trust, which name to expect, and optionally
/// its own certificate for mutual TLS.
pub struct ClientFiles<'a> {
    pub ca: Option<&'a Path>,
    pub server_name: &'a str,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub allow_tls12: bool,
}

/// Loads and checks the client's material.
pub fn load_client(files: &ClientFiles<'_>) -> Result<TlsClient, TlsError> {
    let provider = provider();
    let server_name = ServerName::try_from(files.server_name.to_owned()).map_err(|_| {
        TlsError::BadServerName {
            name: files.server_name.to_owned(),
        }
    })?;
    let roots = match files.ca {
        Some(ca) => roots_from(ca)?,
        None => system_roots()?,
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(TlsError::TrustStore)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(files.allow_tls12))
        .map_err(TlsError::Versions)?
        .with_webpki_verifier(verifier);
    let (config, leaf) = match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let (certs, key_der) = cert_and_key(cert, key, &provider)?;
            let leaf = leaf_of(&certs, cert)?;
            let config = builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|source| TlsError::BadCert {
                    path: cert.to_owned(),
                    source,
                })?;
            (config, Some(leaf))
        }
        (None, None) => (builder.with_no_client_auth(), None),
        _ => return Err(TlsError::CertWithoutKey),
    };
    Ok(TlsClient {
        ca: files.ca.map(Path::to_owned),
        server_name,
        cert: files.cert.map(Path::to_owned),
        key: files.key.map(Path::to_owned),
        allow_tls12: files.allow_tls12,
        leaf,
        config: Arc::new(config),
    })
}

/// The first certificate of a chain read by [`certs_from`] (never empty).
fn leaf_of(
    certs: &[CertificateDer<'static>],
    path: &Path,
) -> Result<CertificateDer<'static>, TlsError> {
    certs
        .first()
        .cloned()
        .ok_or_else(|| TlsError::NoCertificate {
            path: path.to_owned(),
        })
}

/// Reads a certificate chain and its key and checks that they belong together.
fn cert_and_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = certs_from(cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "private key", e))?;
    // rustls checks the pairing only where it can; ask explicitly so a key
    // that does not match is a start-up error, not a failing handshake.
    rustls::sign::CertifiedKey::from_der(certs.clone(), key_der.clone_key(), provider).map_err(
        |e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: key.to_owned(),
                cert: cert.to_owned(),
            },
            source => TlsError::BadKey {
                path: key.to_owned(),
                source,
            },
        },
    )?;
    Ok((certs, key_der))
}

fn certs_from(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter =
        CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, "certificate", e))?;
    let mut certs = Vec::new();
    for cert in iter.take(MAX_CERTS_PER_FILE) {
        certs.push(cert.map_err(|e| pem_error(path, "certificate", e))?);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(path)? {
        roots.add(cert).map_err(|source| TlsError::NotACa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The operating system's trust store (rustls-native-certs: the rustls
/// project's loader for the platform's certificates).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoSystemRoots {
            errors: found.errors.len(),
        });
    }
    Ok(roots)
}

/// A TLS transport for one side: the server's acceptor or the client's connector.
#[derive(Clone)]
pub struct TlsTransport {
    end: End,
}

#[derive(Clone)]
enum End {
    Server(TlsAcceptor),
    Client {
        connector: TlsConnector,
        name: ServerName<'static>,
    },
}

impl TlsTransport {
    pub fn server(tls: &TlsServer) -> Self {
        TlsTransport {
            end: End::Server(TlsAcceptor::from(tls.config.clone())),
        }
    }

    pub fn client(tls: &TlsClient) -> Self {
        TlsTransport {
            end: End::Client {
                connector: TlsConnector::from(tls.config.clone()),
                name: tls.server_name.clone(),
            },
        }
    }
}

/// A TLS link whose I/O errors name the TLS problem. In TLS 1.3 the client's
/// handshake completes before the server has judged the client's certificate,
/// so a refusal (an alert) surfaces on the first read, not in `connect`.
pub struct TlsLink {
    inner: TlsStream<TcpStream>,
    /// Our side of the link, for the words of its errors.
    side: Side,
}

impl TlsLink {
    fn map<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Err(e)) => Poll::Ready(Err(explain(e, self.side, false))),
            other => other,
        }
    }
}

impl AsyncRead for TlsLink {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.map(poll)
    }
}

impl AsyncWrite for TlsLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.map(poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.map(poll)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_close(cx);
        self.map(poll)
    }
}

impl Transport for TlsTransport {
    type Stream = TlsLink;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let End::Client { connector, name } = &self.end else {
            return Err(io::Error::other("a server-side TLS transport cannot dial"));
        };
        let tcp = TcpTransport.connect(addr).await?;
        let side = Side::Client;
        match connector.connect(name.clone(), tcp).await {
            Ok(tls) => {
                tracing::debug!(
                    "tls link up: {:?} handshake",
                    tls.get_ref().1.handshake_kind()
                );
                Ok(TlsLink {
                    inner: TlsStream::Client(tls),
                    side,
                })
            }
            Err(e) => Err(explain(e, side, true)),
        }
    }

    async fn handshake(&self, conn: TcpStream) -> io::Result<Self::Stream> {
        let End::Server(acceptor) = &self.end else {
            return Err(io::Error::other(
                "a client-side TLS transport cannot accept",
            ));
        };
        let conn = TcpTransport.handshake(conn).await?;
        let side = Side::Server;
        match acceptor.accept(conn).await {
            Ok(tls) => Ok(TlsLink {
                inner: TlsStream::Server(tls),
                side,
            }),
            Err(e) => Err(explain(e, side, true)),
        }
    }

    fn as_raw(_: &Self::Stream) -> Option<&TcpStream> {
        None
    }

    fn rehome(stream: &mut Self::Stream) -> io::Result<()> {
        match &mut stream.inner {
            TlsStream::Client(s) => s.get_mut().0.rehome(),
            TlsStream::Server(s) => s.get_mut().0.rehome(),
        }
    }

    fn is_dead(stream: &Self::Stream) -> bool {
        // EOF or an error: gone. Bytes are probes, or a close_notify that the
        // wait for `Accept` then finds (and the visitor goes to another link).
        socket_is_dead(stream.inner.get_ref().0)
    }

    fn name(&self) -> &'static str {
        "tls"
    }
}
