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
use rustls_pki_types::ServerName;

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
    /// Name the server's certificate must carry; default: the host of each
    /// `server`.
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
    /// Loads the TLS material, if any, named for the first of `servers`
    /// unless `server_name` is given; with whether each server is then
    /// expected to show its own host (no `server_name`: every host must be a
    /// valid TLS name, checked here and placed at its entry).
    pub(super) fn load_for(
        &self,
        at: &Locator,
        servers: &[String],
    ) -> Result<(Option<TlsClient>, bool), ConfigError> {
        let ClientTransport::Tls(t) = self else {
            return Ok((None, false));
        };
        let first = servers.first().map_or("", String::as_str);
        let loaded = Self::load(t, at, first)?;
        if t.server_name.is_some() {
            return Ok((Some(loaded), false));
        }
        for (i, server) in servers.iter().enumerate().skip(1) {
            let name = host_of(server).to_owned();
            if ServerName::try_from(name.clone()).is_err() {
                let e = tls::TlsError::BadServerName { name };
                let entry = format!("server[{i}]");
                return Err(at.error(&[&entry, "transport"], format!("transport: {e}")));
            }
        }
        Ok((Some(loaded), true))
    }

    /// Loads the TLS material; `server` supplies the default name.
    fn load(t: &ClientTls, at: &Locator, server: &str) -> Result<TlsClient, ConfigError> {
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
            .map_err(|msg| at.error(&["transport"], format!("transport: {msg}")))
    }
}

impl ClientSettings {
    /// The TLS material for a session with `server` (one of `self.server`):
    /// `tls` as it is, or named for `server`'s own host when no
    /// `server_name` was given ([`ClientSettings::tls_name_per_server`]).
    pub fn tls_for(&self, server: &str) -> Option<TlsClient> {
        let mut tls = self.tls.clone()?;
        if self.tls_name_per_server {
            // Checked at load time; a host that is no name keeps the first's.
            if let Ok(name) = ServerName::try_from(host_of(server).to_owned()) {
                tls.server_name = name;
            }
        }
        Some(tls)
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
