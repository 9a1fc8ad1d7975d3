//! The `transport` field: plain TCP or TLS, per role.
//!
//! ```ron
//! // server.ron
//! transport: Tls(cert: "server.crt", key: "server.key", client_ca: Some("ca.crt")),
//! // client.ron
//! transport: Tls(ca: Some("ca.crt"), server_name: Some("tunnel.example.com")),
//! ```
//!
//! Relative paths are relative to the config file's directory (to the working
//! directory when they come from the command line). The PEM files are read and
//! checked during validation, so a bad file is a config error with a position.

use super::*;
use crate::transport::tls::{self, ClientFiles, ServerFiles, TlsClient, TlsServer};

/// Server transport. RON: `transport: Tcp` (default) or `Tls(cert: .., key: ..)`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub enum ServerTransport {
    #[default]
    Tcp,
    Tls(ServerTls),
}

/// The server's TLS files.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Demand client certificates signed by this CA (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Also accept TLS 1.2 (TLS 1.3 only by default).
    #[serde(default)]
    pub allow_tls12: bool,
}

/// Client transport. RON: `transport: Tcp` (default) or `Tls(..)`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub enum ClientTransport {
    #[default]
    Tcp,
    Tls(ClientTls),
}

/// The client's TLS settings; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// CA that signed the server's certificate; `None` trusts the system store.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name the server's certificate must carry; default: the host of `server`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate and key, for a server that demands them.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub allow_tls12: bool,
}

impl ServerTransport {
    /// Loads the TLS material, if any. Errors point at the `transport` value.
    pub(super) fn load(&self, at: &Locator) -> Result<Option<TlsServer>, ConfigError> {
        let ServerTransport::Tls(t) = self else {
            return Ok(None);
        };
        let (cert, key) = (at.resolve(&t.cert), at.resolve(&t.key));
        let client_ca = t.client_ca.as_deref().map(|p| at.resolve(p));
        let files = ServerFiles {
            cert: &cert,
            key: &key,
            client_ca: client_ca.as_deref(),
            allow_tls12: t.allow_tls12,
        };
        tls::load_server(&files)
            .map(Some)
            .map_err(|msg| at.error(&["transport"], format!("transport: {msg}")))
    }
}

impl ClientTransport {
    /// Loads the TLS material, if any; `server` supplies the default name.
    pub(super) fn load(
        &self,
        at: &Locator,
        server: &str,
    ) -> Result<Option<TlsClient>, ConfigError> {
        let ClientTransport::Tls(t) = self else {
            return Ok(None);
        };
        let host = host_of(server);
        let ca = t.ca.as_deref().map(|p| at.resolve(p));
        let cert = t.cert.as_deref().map(|p| at.resolve(p));
        let key = t.key.as_deref().map(|p| at.resolve(p));
        let files = ClientFiles {
            ca: ca.as_deref(),
            server_name: t.server_name.as_deref().unwrap_or(host),
            cert: cert.as_deref(),
            key: key.as_deref(),
            allow_tls12: t.allow_tls12,
        };
        tls::load_client(&files)
            .map(Some)
            .map_err(|msg| at.error(&["transport"], format!("transport: {msg}")))
    }
}

/// `host` of `host:port`, `[v6]:port` or `v6` with a port.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("tunnel.example.com:7000"), "tunnel.example.com");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
    }
}
