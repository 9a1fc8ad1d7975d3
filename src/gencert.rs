//! `porthole gen-cert`: a private CA and the certificates a TLS tunnel needs.
//!
//! One CA (`ca.crt`, `ca.key`) signs a server certificate for the given names
//! (`server.crt`, `server.key`) and, on request, a client certificate for mutual
//! TLS (`client.crt`, `client.key`). Keys are ECDSA P-256 (cheap handshakes),
//! written with mode 0600, and existing files are never overwritten. The same
//! functions make throw-away certificates for the tests.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Validity a new certificate gets by default.
pub const DEFAULT_DAYS: u32 = 825;
/// Longest validity accepted (ten years).
pub const MAX_DAYS: u32 = 3650;

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew) for `days` days.
    pub fn days(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    /// Expired yesterday (for tests of the error path).
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

/// A certificate and its private key, both PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that can sign server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: Pem,
}

/// Why a certificate or the bundle could not be made. Paths name the file at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum GenCertError {
    /// rcgen refused (a bad name, a key it cannot make).
    Generate(rcgen::Error),
    /// A server certificate needs at least one name.
    NoName,
    DaysOutOfRange {
        days: u32,
    },
    /// The system random generator failed (for the CA's unique name).
    Random(io::Error),
    CreateDir {
        path: PathBuf,
        source: io::Error,
    },
    /// The file is already there; nothing was written.
    Exists {
        path: PathBuf,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
}

impl GenCertError {
    /// Whether the arguments were wrong (a usage error), rather than the
    /// machine (files, randomness).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::NoName | Self::DaysOutOfRange { .. } | Self::Generate(_) | Self::Exists { .. }
        )
    }
}

impl fmt::Display for GenCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Generate(e) => write!(f, "certificate generation failed: {e}"),
            Self::NoName => f.write_str("give at least one --name"),
            Self::DaysOutOfRange { days } => {
                write!(f, "--days {days} is out of range; use 1 to {MAX_DAYS}")
            }
            Self::Random(e) => write!(f, "{e}"),
            Self::CreateDir { path, source } | Self::Write { path, source } => {
                write!(f, "{}: {source}", path.display())
            }
            Self::Exists { path } => write!(
                f,
                "{} exists; not overwriting it (choose another --out)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for GenCertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Generate(e) => Some(e),
            Self::Random(e) | Self::CreateDir { source: e, .. } | Self::Write { source: e, .. } => {
                Some(e)
            }
            Self::NoName | Self::DaysOutOfRange { .. } | Self::Exists { .. } => None,
        }
    }
}

fn err(e: rcgen::Error) -> GenCertError {
    GenCertError::Generate(e)
}

impl Ca {
    pub fn new(common_name: &str, validity: Validity) -> Result<Ca, GenCertError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = (validity.not_before, validity.not_after);
        let cert = params.self_signed(&key).map_err(err)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(Ca {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[String], validity: Validity) -> Result<Pem, GenCertError> {
        let first = names.first().ok_or(GenCertError::NoName)?;
        self.leaf(names, first, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A client certificate (mutual TLS) naming `name`.
    pub fn client(&self, name: &str, validity: Validity) -> Result<Pem, GenCertError> {
        self.leaf(&[], name, ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    fn leaf(
        &self,
        names: &[String],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<Pem, GenCertError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = (validity.not_before, validity.not_after);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// What `gen-cert` wrote.
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub client: bool,
}

/// Makes a CA, a server certificate for `names` and optionally a client
/// certificate, and writes them into `out` (created if missing).
pub fn write_bundle(
    out: &Path,
    names: &[String],
    client: bool,
    days: u32,
) -> Result<Written, GenCertError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(GenCertError::DaysOutOfRange { days });
    }
    let validity = Validity::days(days);
    // A unique name: two CAs with one name confuse verifiers' error messages.
    let id: [u8; 4] = crate::auth::random().map_err(GenCertError::Random)?;
    let ca = Ca::new(
        &format!("porthole CA {}", crate::wire::short_id(&id)),
        validity,
    )?;
    let server = ca.server(names, validity)?;
    let mut files: Vec<(&str, &str, bool)> = vec![
        ("ca.crt", &ca.pem.cert, false),
        ("ca.key", &ca.pem.key, true),
        ("server.crt", &server.cert, false),
        ("server.key", &server.key, true),
    ];
    let client_pem = if client {
        Some(ca.client("porthole client", validity)?)
    } else {
        None
    };
    if let Some(c) = &client_pem {
        files.push(("client.crt", &c.cert, false));
        files.push(("client.key", &c.key, true));
    }
    std::fs::create_dir_all(out).map_err(|source| GenCertError::CreateDir {
        path: out.to_owned(),
        source,
    })?;
    // Check every name first so a refusal leaves nothing half-written.
    for (name, ..) in &files {
        let path = out.join(name);
        if path.exists() {
            return Err(GenCertError::Exists { path });
        }
    }
    let mut written = Vec::new();
    for (name, text, secret) in files {
        let path = out.join(name);
        if let Err(source) = write_new(&path, text, secret) {
            return Err(GenCertError::Write { path, source });
        }
        written.push(path);
    }
    Ok(Written {
        dir: out.to_owned(),
        files: written,
        client,
    })
}

fn write_new(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)?;
    file.write_all(text.as_bytes())
}

impl Written {
    /// The config lines and flags to use the files, for the user to paste.
    pub fn instructions(&self, name: &str) -> String {
        let p = |f: &str| self.dir.join(f).display().to_string();
        let mut s = format!(
            "Server (server.ron):\n    transport: Tls(cert: {:?}, key: {:?}{}),\n",
            p("server.crt"),
            p("server.key"),
            if self.client {
                format!(", client_ca: Some({:?})", p("ca.crt"))
            } else {
                String::new()
            },
        );
        s += &format!(
            "Client (client.ron):\n    transport: Tls(ca: Some({:?}), server_name: Some({name:?}){}),\n",
            p("ca.crt"),
            if self.client {
                format!(
                    ", cert: Some({:?}), key: Some({:?})",
                    p("client.crt"),
                    p("client.key")
                )
            } else {
                String::new()
            },
        );
        let (server_extra, client_extra) = if self.client {
            (
                format!(" --client-ca {}", p("ca.crt")),
                format!(" --cert {} --key {}", p("client.crt"), p("client.key")),
            )
        } else {
            (String::new(), String::new())
        };
        s += &format!(
            "Or with flags:\n    porthole server --tls --cert {} --key {}{server_extra} ...\n    porthole client --tls --ca {} --server-name {name}{client_extra} ...\n",
            p("server.crt"),
            p("server.key"),
            p("ca.crt"),
        );
        s +=
            "Copy ca.crt (and client.crt/client.key) to the client machine; keep ca.key offline.\n";
        s
    }
}
