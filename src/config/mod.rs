//! Configuration: the RON file format, the one loader every role uses, errors that
//! point at the offending place, and the tunnel's own schema (server and client).
//!
//! Each feature owns its settings: `porthole forward`'s live in the `forward`
//! module, `porthole http-proxy`'s (and the meaning of a client's `http_proxy`
//! rules) in the `http_proxy` module. They build on what this module
//! offers every role: [`ConfigFile`] with [`parse`] and [`load`], [`Locator`] to
//! place a validation error, [`Secret`], durations ([`parse_duration`]) and the
//! shared checks ([`check_address`], [`workers`]). Nothing here imports a feature.
//!
//! Two layers per role. The *raw* structs ([`ServerConfig`], [`ClientConfig`]) mirror
//! the files field for field (every struct denies unknown fields) and are what the CLI
//! patches with its overrides. `validate` turns them into the *settings* structs
//! ([`ServerSettings`], [`ClientSettings`]) that the rest of porthole uses.
//!
//! Invariants of validated settings: addresses parse as `host:port` and resolved at load
//! time; a server has a non-empty token unless `insecure_no_auth` was given; timeouts
//! are non-zero and `heartbeat_timeout > heartbeat_interval`; service names and non-zero
//! remote ports are unique; every count is within its `MAX_*` bound.
//!
//! Every [`ConfigError`] names the file, 1-based line and column, and what to change.
//! Parse errors take their position from ron; validation errors find theirs by scanning
//! the source text kept in the raw struct (see [`Locator`]).

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Most services one client may declare, and most a server may allow per client: each
/// one is a public listener, so this bounds the sockets one config can make us open.
pub const MAX_SERVICES: usize = 1024;
/// Largest pool of idle data links: each is an open socket held on both ends for as long
/// as the client lives, so a huge pool is a cheap way to exhaust the server's fds.
pub const MAX_POOL_SIZE: usize = 256;
/// Most multiplexed data links per client (each carries any number of visitors).
pub const MAX_MUX_LINKS: usize = 16;
/// Longest service name; names appear in logs and on the wire, so keep them short.
pub const MAX_SERVICE_NAME_LEN: usize = 64;
/// Most servers one client keeps a session with (`server: [..]`). Each costs
/// a control link with its heartbeats and a whole set of data links (up to
/// [`MAX_POOL_SIZE`] sockets, held at the client and at that server), so this
/// bounds what one config makes the client open (16 × 257 links at most) and
/// keeps the `server` label of the client's metrics to a handful of values.
/// More servers than this want more clients, not one client with more sessions.
pub const MAX_SERVERS: usize = 16;
/// Origin shown for configs built from command-line flags rather than a file.
pub const COMMAND_LINE: &str = "<command line>";

// Defaults in one place, so serde and the `new` constructors cannot disagree.
const HEARTBEAT_INTERVAL_SECS: u64 = 10;
const HEARTBEAT_TIMEOUT_SECS: u64 = 30;
const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// A new connection to the control port must show its hello this soon.
const HELLO_TIMEOUT_SECS: u64 = 2;
const RECONNECT_GRACE_SECS: u64 = 30;
const VISITOR_TIMEOUT_SECS: u64 = 10;
/// How long a stopping server or client lets visitors in flight finish.
const DRAIN_TIMEOUT_SECS: u64 = 30;
const RECONNECT_MAX_BACKOFF_SECS: u64 = 30;
/// How long a client whose every service is refused with a port in use keeps
/// trying before it exits: a previous run of the same client that died
/// without closing its link holds its ports until the server's heartbeat
/// timeout (30 s by default) notices, so twice that.
const PORT_IN_USE_TIMEOUT_SECS: u64 = 60;
/// Shorter than the idle timeouts of common NATs and firewalls (30 s and up).
const LINK_PROBE_INTERVAL_SECS: u64 = 20;
const MAX_SERVICES_PER_CLIENT: usize = 16;
const POOL_SIZE: usize = 4;
const MAX_LINKS: usize = 65_536;
const MAX_VISITORS_PER_CLIENT: usize = 65_536;
const MAX_WAITING_VISITORS: usize = 16_384;
const MAX_STREAMS_PER_LINK: usize = 16_384;
/// A UDP flow with no datagram either way for this long ends (its link
/// closes, the client closes its local socket). DNS, game and VoIP flows
/// talk far more often; NATs forget UDP mappings after 30 s to 5 min.
const UDP_IDLE_TIMEOUT_SECS: u64 = 60;
/// Flows one UDP service holds at once; a new source past this is dropped
/// and counted. Each flow holds a data link (or a mux stream) and a local
/// socket at the client: this bounds what a spray of spoofed sources costs.
const MAX_UDP_FLOWS: usize = 4096;
/// Upper bound of `max_udp_flows`.
pub const MAX_UDP_FLOWS_LIMIT: usize = 1_000_000;
/// Upper bound of the per-client visitor settings: a million sockets is beyond
/// any one machine here, and a typo of a few more zeros is caught.
pub const MAX_VISITORS_LIMIT: usize = 1_000_000;
/// Upper bound of `max_streams_per_link` (and what a client accepts per link):
/// each stream may buffer its 256 KiB initial window, so 65,536 streams are a
/// 16 GiB worst case.
pub const MAX_STREAMS_LIMIT: usize = 65_536;
const MAX_LINK_USES: u64 = 100_000;
const MAX_LINK_AGE_SECS: u64 = 3600;

/// A secret string (the token). `Debug` and `Display` print `********` so it never
/// reaches a log by accident; `expose()` is the one deliberate way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// How visitor bytes travel. RON: `data_links: Pooled(size: 8)` (size 1..=256:
/// idle links kept open, each reused visitor after visitor) or `Multiplexed(links: 1)` (links
/// 1..=16, every visitor a stream on one of them).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DataLinks {
    Pooled {
        size: usize,
    },
    Multiplexed {
        #[serde(default = "one")]
        links: usize,
    },
}

fn one() -> usize {
    1
}

impl Default for DataLinks {
    fn default() -> Self {
        Self::Pooled { size: POOL_SIZE }
    }
}

/// Raw file shape of `server.ron`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    /// IP address the public ports bind on (`"0.0.0.0"`, `"::"`, one
    /// interface's address); absent means the IP of `bind`.
    #[serde(default)]
    pub public_bind: Option<String>,
    #[serde(default)]
    pub token: Option<Secret>,
    /// The shared token read from this file instead (see [`credentials`]).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Per-client credentials, beside or instead of the shared token.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    #[serde(default)]
    pub insecure_no_auth: bool,
    #[serde(default)]
    pub transport: ServerTransport,
    #[serde(default = "default_allow_ports")]
    pub allow_ports: Vec<(u16, u16)>,
    #[serde(default = "default_max_services")]
    pub max_services_per_client: usize,
    #[serde(
        default = "secs::<HEARTBEAT_INTERVAL_SECS>",
        deserialize_with = "duration"
    )]
    pub heartbeat_interval: Duration,
    #[serde(
        default = "secs::<HEARTBEAT_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub heartbeat_timeout: Duration,
    #[serde(
        default = "secs::<HANDSHAKE_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub handshake_timeout: Duration,
    /// Deadline from accept to the client's hello (after the TLS handshake,
    /// if any): a silent or trickling connection is closed this soon.
    #[serde(default = "secs::<HELLO_TIMEOUT_SECS>", deserialize_with = "duration")]
    pub hello_timeout: Duration,
    /// How long a vanished client's ports stay reserved for it; zero releases at once.
    #[serde(
        default = "secs::<RECONNECT_GRACE_SECS>",
        deserialize_with = "duration"
    )]
    pub reconnect_grace: Duration,
    /// How long a visitor waits for a data link before being dropped.
    #[serde(
        default = "secs::<VISITOR_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub visitor_timeout: Duration,
    /// On SIGTERM/SIGINT: how long visitors in flight may go on before they
    /// are closed; zero closes them at once.
    #[serde(default = "secs::<DRAIN_TIMEOUT_SECS>", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Visitors of one client's services at once (pooled and multiplexed);
    /// more are refused. Each costs about 2 KB here plus its sockets.
    #[serde(default = "default_max_visitors")]
    pub max_visitors_per_client: usize,
    /// Visitors of one client waiting for a data link; more are refused.
    #[serde(default = "default_max_waiting")]
    pub max_waiting_visitors: usize,
    /// Streams on one multiplexed link; a full link sends new visitors to
    /// another link, or to a pooled link. Each may buffer 256 KiB.
    #[serde(default = "default_max_streams")]
    pub max_streams_per_link: usize,
    /// Data-plane worker threads; absent means one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// The admin endpoint (`/metrics`, `/healthz`, `/status`), off when
    /// absent; meant for loopback or a private network.
    #[serde(default)]
    pub admin: Option<String>,
    /// Balancers in front of the public ports that send PROXY headers.
    #[serde(default)]
    pub accept_proxy_protocol: Option<AcceptProxyConfig>,
    /// A UDP flow quiet both ways this long ends.
    #[serde(
        default = "secs::<UDP_IDLE_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub udp_idle_timeout: Duration,
    /// Flows per UDP service at once; datagrams from more sources are dropped.
    #[serde(default = "default_max_udp_flows")]
    pub max_udp_flows: usize,
    #[serde(skip)]
    source: Option<Source>,
}

fn default_max_visitors() -> usize {
    MAX_VISITORS_PER_CLIENT
}

fn default_max_waiting() -> usize {
    MAX_WAITING_VISITORS
}

fn default_max_streams() -> usize {
    MAX_STREAMS_PER_LINK
}

fn default_max_udp_flows() -> usize {
    MAX_UDP_FLOWS
}

/// Raw file shape of `client.ron`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `"host:port"`, or a list of them: a session with each (see
    /// `crate::client`).
    #[serde(deserialize_with = "servers::one_or_more")]
    pub server: Vec<String>,
    /// This client's id among the server's `clients`; absent: the shared token.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub token: Option<Secret>,
    /// The token read from this file instead (see [`credentials`]).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Accept a server without authentication (`--insecure-no-auth` on both ends).
    #[serde(default)]
    pub insecure_no_auth: bool,
    #[serde(default)]
    pub transport: ClientTransport,
    #[serde(default)]
    pub data_links: DataLinks,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(
        default = "secs::<HEARTBEAT_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub heartbeat_timeout: Duration,
    #[serde(
        default = "secs::<HANDSHAKE_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub handshake_timeout: Duration,
    #[serde(
        default = "secs::<RECONNECT_MAX_BACKOFF_SECS>",
        deserialize_with = "duration"
    )]
    pub reconnect_max_backoff: Duration,
    /// How long to keep trying while every service is refused with a port
    /// in use, before exiting (1).
    #[serde(
        default = "secs::<PORT_IN_USE_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub port_in_use_timeout: Duration,
    /// On SIGTERM/SIGINT: how long visitors in flight may go on before they
    /// are closed; zero closes them at once.
    #[serde(default = "secs::<DRAIN_TIMEOUT_SECS>", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Data links (idle or carrying a visitor) at once; with pooled links this
    /// is the most visitors the client serves at once.
    #[serde(default = "default_max_links")]
    pub max_links: usize,
    /// Visitors one pooled link carries before it is closed and replaced.
    #[serde(default = "default_max_link_uses")]
    pub max_link_uses: u64,
    /// Age after which a pooled link is closed (at the end of its visitor).
    #[serde(default = "secs::<MAX_LINK_AGE_SECS>", deserialize_with = "duration")]
    pub max_link_age: Duration,
    /// A `Probe` on every idle pooled link this often: keeps NAT mappings of
    /// idle links alive and finds links whose path broke.
    #[serde(
        default = "secs::<LINK_PROBE_INTERVAL_SECS>",
        deserialize_with = "duration"
    )]
    pub link_probe_interval: Duration,
    /// Data-plane worker threads; absent means one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// The admin endpoint (`/metrics`, `/healthz`, `/status`), off when
    /// absent; meant for loopback or a private network.
    #[serde(default)]
    pub admin: Option<String>,
    /// Destination rules of the built-in proxy behind `local: "http-proxy"`.
    #[serde(default)]
    pub http_proxy: TunnelProxyConfig,
    #[serde(skip)]
    source: Option<Source>,
}

fn default_max_links() -> usize {
    MAX_LINKS
}

fn default_max_link_uses() -> u64 {
    MAX_LINK_USES
}

/// `local` value that serves the built-in HTTP proxy instead of a local address:
/// visitors at the public port browse through the client's network.
pub const HTTP_PROXY_LOCAL: &str = "http-proxy";

/// Rules of the tunnel's built-in HTTP proxy. By default it refuses the client
/// machine's loopback and link-local addresses (an open proxy into the private
/// side is the classic hole); `allow` entries (IP or CIDR) reopen them.
///
/// Kept here as written because it is part of the client file; the syntax and
/// meaning of a rule belong to the `http_proxy` module (`http_proxy::rules`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelProxyConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// One exposed service. `remote_port: 0` (the default) lets the server pick.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub local: String,
    #[serde(default)]
    pub remote_port: u16,
    /// Begin each local connection with a PROXY header naming the visitor.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// TCP (the default) or UDP: datagrams, one flow per visitor address.
    #[serde(default)]
    pub protocol: Protocol,
}

/// What a service carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum Protocol {
    /// Connections, relayed byte for byte.
    #[default]
    Tcp,
    /// Datagrams, each carried as one (see `crate::protocol::datagram`).
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Validated server settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Where public ports bind: `public_bind`, else the IP of `bind`.
    pub public_bind: IpAddr,
    /// The shared token; `None` when there is none (then `clients`
    /// authenticate, or with neither, `insecure_no_auth` was given).
    pub token: Option<Secret>,
    /// Per-client credentials, each held to its own ports and limit.
    pub clients: Vec<ClientCredentials>,
    /// TLS material when the transport is TLS; `None` is plain TCP.
    pub tls: Option<TlsServer>,
    pub allow_ports: Vec<RangeInclusive<u16>>,
    pub max_services_per_client: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub handshake_timeout: Duration,
    pub hello_timeout: Duration,
    pub reconnect_grace: Duration,
    pub visitor_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_visitors_per_client: usize,
    pub max_waiting_visitors: usize,
    pub max_streams_per_link: usize,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
    /// Where the admin endpoint listens; `None`: no endpoint.
    pub admin: Option<SocketAddr>,
    /// Sources whose connections to public ports start with a PROXY header.
    pub accept_proxy_protocol: Option<ProxyTrust>,
    pub udp_idle_timeout: Duration,
    pub max_udp_flows: usize,
}

impl ServerSettings {
    /// Whether a client may bind `port`. Port 0 is never allowed: it is a request for
    /// the server to pick, and the server picks from these ranges.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.iter().any(|range| range.contains(&port))
    }

    /// The `clients` entry of `id`.
    pub fn client(&self, id: &str) -> Option<&ClientCredentials> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// Whether clients must authenticate (a shared token or any `clients`).
    pub fn authenticates(&self) -> bool {
        self.token.is_some() || !self.clients.is_empty()
    }
}

/// Validated client settings.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Every server the client keeps a session with (1 to [`MAX_SERVERS`],
    /// distinct), in config order. Kept as text: each is resolved again on
    /// every reconnect, since DNS may move.
    pub server: Vec<String>,
    /// This client's own id at the server (per-client credentials); `None`:
    /// it proves the server's shared token.
    pub id: Option<String>,
    pub token: Secret,
    /// TLS material when the transport is TLS; `None` is plain TCP. Its
    /// server name is `server_name`, else the host of the first server.
    pub tls: Option<TlsClient>,
    /// TLS without a `server_name`: each server's certificate must carry that
    /// server's own host ([`ClientSettings::tls_for`]).
    pub tls_name_per_server: bool,
    pub data_links: DataLinks,
    pub services: Vec<ServiceSettings>,
    pub heartbeat_timeout: Duration,
    pub handshake_timeout: Duration,
    pub reconnect_max_backoff: Duration,
    pub port_in_use_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_links: usize,
    pub max_link_uses: u64,
    pub max_link_age: Duration,
    pub link_probe_interval: Duration,
    /// Accept a server that runs with `--insecure-no-auth` (it cannot prove it
    /// knows the token, so an impostor could pose as it).
    pub insecure_no_auth: bool,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
    /// Where the admin endpoint listens; `None`: no endpoint.
    pub admin: Option<SocketAddr>,
    /// The built-in proxy's rules as written, for services with
    /// `local: "http-proxy"`. Their meaning belongs to the `http_proxy` module,
    /// which parses them when the proxy starts; [`ClientConfig::validate_with`]
    /// lets the caller check them at load time, placed in the file.
    pub http_proxy: TunnelProxyConfig,
}

/// A validated service: `local` is `host:port` and resolved at load time.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub name: String,
    pub local: String,
    pub remote_port: u16,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub protocol: Protocol,
}

/// A config problem: where it is and what to change.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, or `<command line>`.
    pub origin: PathBuf,
    /// 1-based; 0 when there is no position (flags, a missing file).
    pub line: usize,
    /// 1-based, in characters; 0 when there is no position.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.display();
        if self.line == 0 {
            write!(f, "{origin}: {}", self.message)
        } else {
            write!(
                f,
                "{origin}:{}:{}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

fn default_allow_ports() -> Vec<(u16, u16)> {
    // Unprivileged ports only: a tunnel client should not be able to take port 22 or 80.
    vec![(1024, 65535)]
}

fn default_max_services() -> usize {
    MAX_SERVICES_PER_CLIENT
}

impl ConfigFile for ServerConfig {
    fn set_source(&mut self, source: Source) {
        self.source = Some(source);
    }
}

impl ConfigFile for ClientConfig {
    fn set_source(&mut self, source: Source) {
        self.source = Some(source);
    }
}

pub mod credentials;
mod duration;
mod load;
mod locate;
mod proxy_protocol;
mod servers;
mod tls;
mod validate;

use crate::transport::tls::{TlsClient, TlsServer};
pub use credentials::{ClientCredentials, ClientEntry};
pub use duration::{DurationError, duration, parse_duration, secs};
pub use load::{ConfigFile, Role, Source, load, parse, recognise};
pub use locate::Locator;
pub use proxy_protocol::{AcceptProxyConfig, ProxyProtocol, ProxyTrust};
pub use tls::{ClientTls, ClientTransport, ServerTls, ServerTransport};
pub use validate::{admin, check_address, workers};

#[cfg(test)]
mod tests;
