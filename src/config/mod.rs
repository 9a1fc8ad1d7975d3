//! Configuration: the RON file schema, its validation into typed settings, and errors
//! that point at the offending place.
//!
//! Owns two layers. The *raw* structs ([`ServerConfig`], [`ClientConfig`]) mirror the
//! files field for field (every struct denies unknown fields) and are what the CLI
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
//! the source text kept in the raw struct (see [`ValueMap`]).

use std::{
    collections::HashMap,
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use ron::{error::SpannedError, extensions::Extensions};
use serde::{Deserialize, Deserializer, de::IgnoredAny};

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
const RECONNECT_MAX_BACKOFF_SECS: u64 = 30;
/// Shorter than the idle timeouts of common NATs and firewalls (30 s and up).
const LINK_PROBE_INTERVAL_SECS: u64 = 20;
const MAX_SERVICES_PER_CLIENT: usize = 16;
const POOL_SIZE: usize = 4;
const MAX_LINKS: usize = 65_536;
const MAX_VISITORS_PER_CLIENT: usize = 65_536;
const MAX_WAITING_VISITORS: usize = 16_384;
const MAX_STREAMS_PER_LINK: usize = 16_384;
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

/// Where a raw config was read from, kept so validation can point into it.
#[derive(Clone)]
struct Source {
    path: PathBuf,
    text: String,
}

impl fmt::Debug for Source {
    // The text may hold the token; show only where it came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.fmt(f)
    }
}

/// Raw file shape of `server.ron`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    #[serde(default)]
    pub token: Option<Secret>,
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

/// Raw file shape of `client.ron`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: String,
    pub token: Secret,
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
}

/// Validated server settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// `None` only when `insecure_no_auth` was given and no token was set.
    pub token: Option<Secret>,
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
    pub max_visitors_per_client: usize,
    pub max_waiting_visitors: usize,
    pub max_streams_per_link: usize,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
}

impl ServerSettings {
    /// Whether a client may bind `port`. Port 0 is never allowed: it is a request for
    /// the server to pick, and the server picks from these ranges.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.iter().any(|range| range.contains(&port))
    }
}

/// Validated client settings.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Kept as text: it is resolved again on every reconnect, since DNS may move.
    pub server: String,
    pub token: Secret,
    /// TLS material when the transport is TLS; `None` is plain TCP.
    pub tls: Option<TlsClient>,
    pub data_links: DataLinks,
    pub services: Vec<ServiceSettings>,
    pub heartbeat_timeout: Duration,
    pub handshake_timeout: Duration,
    pub reconnect_max_backoff: Duration,
    pub max_links: usize,
    pub max_link_uses: u64,
    pub max_link_age: Duration,
    pub link_probe_interval: Duration,
    /// Accept a server that runs with `--insecure-no-auth` (it cannot prove it
    /// knows the token, so an impostor could pose as it).
    pub insecure_no_auth: bool,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
    /// The built-in proxy's settings, for services with `local: "http-proxy"`.
    pub http_proxy: crate::config::ProxySettings,
}

/// A validated service: `local` is `host:port` and resolved at load time.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub name: String,
    pub local: String,
    pub remote_port: u16,
}

/// A config file of either role, validated (what `porthole check` reports on).
#[derive(Clone, Debug)]
pub enum AnyConfig {
    Server(ServerSettings),
    Client(Box<ClientSettings>),
    Forward(ForwardSettings),
    HttpProxy(HttpProxySettings),
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

fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

fn default_allow_ports() -> Vec<(u16, u16)> {
    // Unprivileged ports only: a tunnel client should not be able to take port 22 or 80.
    vec![(1024, 65535)]
}

fn default_max_services() -> usize {
    MAX_SERVICES_PER_CLIENT
}

/// Parses `"500ms"`, `"10s"`, `"2m"` or `"1h"`. Zero is accepted here; whether zero makes
/// sense is up to validation, which knows the field.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration {text:?}: expected a number followed by ms, s, m or h");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let too_large = || format!("duration {text:?} is too large");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let secs_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid()),
    };
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(too_large)
}

/// serde `deserialize_with` helper: a duration written as a string with a unit.
fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"10s\" or \"500ms\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    // `any`, not `str`: ron answers `deserialize_str` on a number with a bare
    // "Expected string"; this way the message says what a duration looks like.
    de.deserialize_any(Visitor)
}

fn ron_options() -> ron::Options {
    // IMPLICIT_SOME lets people write `token: "x"` rather than `token: Some("x")`;
    // UNWRAP_VARIANT_NEWTYPES lets them write `Tls(cert: ..)` rather than
    // `Tls((cert: ..))`.
    ron::Options::default()
        .with_default_extension(Extensions::IMPLICIT_SOME | Extensions::UNWRAP_VARIANT_NEWTYPES)
}

fn parse_error(origin: &Path, err: SpannedError) -> ConfigError {
    ConfigError {
        origin: origin.to_path_buf(),
        line: err.span.start.line,
        column: err.span.start.col,
        message: ron_message(&err.code),
    }
}

/// ron's wording for the errors people hit most, rephrased to say what to change.
fn ron_message(code: &ron::Error) -> String {
    use ron::Error as E;
    match code {
        E::NoSuchStructField {
            expected, found, ..
        } => {
            format!(
                "unknown field `{found}`; expected one of: {}",
                expected.join(", ")
            )
        }
        E::NoSuchEnumVariant {
            expected, found, ..
        } => {
            format!(
                "unknown variant `{found}`; expected one of: {}",
                expected.join(", ")
            )
        }
        E::MissingStructField { field, .. } => format!("missing field `{field}`; add it"),
        E::DuplicateStructField { field, .. } => {
            format!("field `{field}` is given twice; keep one")
        }
        E::InvalidValueForType { expected, found } => format!("expected {expected}, found {found}"),
        other => other.to_string(),
    }
}

fn parse<'a, T: Deserialize<'a>>(source: &'a str, origin: &Path) -> Result<T, ConfigError> {
    ron_options()
        .from_str(source)
        .map_err(|e| parse_error(origin, e))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the config file: {e}"),
    })
}

fn source(text: &str, origin: &Path) -> Option<Source> {
    Some(Source {
        path: origin.to_path_buf(),
        text: text.to_owned(),
    })
}

/// Parses server RON text; `origin` names it in errors. Does not validate.
pub fn parse_server(text: &str, origin: &Path) -> Result<ServerConfig, ConfigError> {
    let mut config: ServerConfig = parse(text, origin)?;
    config.source = source(text, origin);
    Ok(config)
}

/// Parses client RON text; `origin` names it in errors. Does not validate.
pub fn parse_client(text: &str, origin: &Path) -> Result<ClientConfig, ConfigError> {
    let mut config: ClientConfig = parse(text, origin)?;
    config.source = source(text, origin);
    Ok(config)
}

/// Reads and parses a server file. CLI overrides go on the result, then `validate`.
pub fn load_server(path: &Path) -> Result<ServerConfig, ConfigError> {
    parse_server(&read(path)?, path)
}

/// Reads and parses a client file. CLI overrides go on the result, then `validate`.
pub fn load_client(path: &Path) -> Result<ClientConfig, ConfigError> {
    parse_client(&read(path)?, path)
}

/// Just enough of either file to tell which it is; unknown fields are ignored here.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    bind: Option<IgnoredAny>,
    #[serde(default)]
    server: Option<IgnoredAny>,
    #[serde(default)]
    forwards: Option<IgnoredAny>,
    #[serde(default)]
    listen: Option<IgnoredAny>,
}

/// Reads a file, recognises its role by its distinctive field (`bind` => server,
/// `server` => client, `forwards` => forward, `listen` => http-proxy), parses and
/// validates it.
pub fn load_any(path: &Path) -> Result<AnyConfig, ConfigError> {
    let text = read(path)?;
    let probe: Probe = parse(&text, path)?;
    let roles = [
        probe.bind.is_some(),
        probe.server.is_some(),
        probe.forwards.is_some(),
        probe.listen.is_some(),
    ];
    let role_error = match roles {
        [true, false, false, false] => {
            return parse_server(&text, path)?.validate().map(AnyConfig::Server);
        }
        [false, true, false, false] => {
            return parse_client(&text, path)?
                .validate()
                .map(|c| AnyConfig::Client(Box::new(c)));
        }
        [false, false, true, false] => {
            return parse_forward(&text, path)?
                .validate()
                .map(AnyConfig::Forward);
        }
        [false, false, false, true] => {
            return parse_http_proxy(&text, path)?
                .validate()
                .map(AnyConfig::HttpProxy);
        }
        [false, false, false, false] => {
            "cannot tell the role: a server config needs `bind`, a client config `server`, \
             a forward config `forwards`, an http-proxy config `listen`"
        }
        _ => {
            "mixes `bind` (server), `server` (client), `forwards` and `listen` (http-proxy); \
             a file configures one role"
        }
    };
    let source = Some(Source {
        path: path.to_path_buf(),
        text,
    });
    Err(Locator::new(&source).error(&[""], role_error))
}

mod forward;
mod http_proxy;
mod locate;
mod tls;
mod validate;

use crate::transport::tls::{TlsClient, TlsServer};
pub use tls::{ClientTls, ClientTransport, ServerTls, ServerTransport};

pub use forward::{
    ForwardConfig, ForwardRule, ForwardSettings, MAX_FORWARDS, load_forward, parse_forward,
};

pub use http_proxy::{
    DEFAULT_MAX_CONNECTIONS, HttpProxyConfig, HttpProxySettings, MAX_CONNECTIONS, ProxyAuth,
    ProxySettings, load_http_proxy, parse_http_proxy,
};

use locate::Locator;

#[cfg(test)]
mod tests;
