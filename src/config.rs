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
/// Longest service name; names appear in logs and on the wire, so keep them short.
pub const MAX_SERVICE_NAME_LEN: usize = 64;
/// Origin shown for configs built from command-line flags rather than a file.
pub const COMMAND_LINE: &str = "<command line>";

// Defaults in one place, so serde and the `new` constructors cannot disagree.
const HEARTBEAT_INTERVAL_SECS: u64 = 10;
const HEARTBEAT_TIMEOUT_SECS: u64 = 30;
const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
const RECONNECT_GRACE_SECS: u64 = 30;
const VISITOR_TIMEOUT_SECS: u64 = 10;
const RECONNECT_MAX_BACKOFF_SECS: u64 = 30;
const MAX_SERVICES_PER_CLIENT: usize = 16;
const POOL_SIZE: usize = 4;

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

/// How links reach the server. RON: `transport: Tcp`. An enum so `Tls(...)` can join.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub enum TransportConfig {
    #[default]
    Tcp,
}

/// How visitor bytes travel. RON: `data_links: Pooled(size: 8)`; size is 1..=256.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DataLinks {
    Pooled { size: usize },
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
    pub transport: TransportConfig,
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
    #[serde(skip)]
    source: Option<Source>,
}

/// Raw file shape of `client.ron`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: String,
    pub token: Secret,
    #[serde(default)]
    pub transport: TransportConfig,
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
    #[serde(skip)]
    source: Option<Source>,
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
    pub transport: TransportConfig,
    pub allow_ports: Vec<RangeInclusive<u16>>,
    pub max_services_per_client: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub handshake_timeout: Duration,
    pub reconnect_grace: Duration,
    pub visitor_timeout: Duration,
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
    pub transport: TransportConfig,
    pub data_links: DataLinks,
    pub services: Vec<ServiceSettings>,
    pub heartbeat_timeout: Duration,
    pub handshake_timeout: Duration,
    pub reconnect_max_backoff: Duration,
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
    Client(ClientSettings),
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
    // IMPLICIT_SOME lets people write `token: "x"` rather than `token: Some("x")`.
    ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME)
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
}

/// Reads a file, recognises its role (`bind` => server, `server` => client), parses and
/// validates it.
pub fn load_any(path: &Path) -> Result<AnyConfig, ConfigError> {
    let text = read(path)?;
    let probe: Probe = parse(&text, path)?;
    let role_error = match (probe.bind.is_some(), probe.server.is_some()) {
        (true, false) => return parse_server(&text, path)?.validate().map(AnyConfig::Server),
        (false, true) => return parse_client(&text, path)?.validate().map(AnyConfig::Client),
        (true, true) => {
            "has both `bind` (server) and `server` (client); a file configures one role"
        }
        (false, false) => {
            "cannot tell the role: a server config needs `bind`, a client config `server`"
        }
    };
    let source = Some(Source {
        path: path.to_path_buf(),
        text,
    });
    Err(Locator::new(&source).error(&[""], role_error))
}

impl ServerConfig {
    /// A server config with every default, as built from command-line flags.
    pub fn new(bind: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            token: None,
            insecure_no_auth: false,
            transport: TransportConfig::default(),
            allow_ports: default_allow_ports(),
            max_services_per_client: MAX_SERVICES_PER_CLIENT,
            heartbeat_interval: secs::<HEARTBEAT_INTERVAL_SECS>(),
            heartbeat_timeout: secs::<HEARTBEAT_TIMEOUT_SECS>(),
            handshake_timeout: secs::<HANDSHAKE_TIMEOUT_SECS>(),
            reconnect_grace: secs::<RECONNECT_GRACE_SECS>(),
            visitor_timeout: secs::<VISITOR_TIMEOUT_SECS>(),
            source: None,
        }
    }

    /// Checks every field and resolves `bind`. Errors point at the offending value.
    pub fn validate(self) -> Result<ServerSettings, ConfigError> {
        let at = Locator::new(&self.source);
        let bind = check_address(&at, &["bind"], "bind", &self.bind, true)?;
        let token = server_token(&at, self.token, self.insecure_no_auth)?;
        let allow_ports = port_ranges(&at, &self.allow_ports)?;
        let max = self.max_services_per_client;
        if !(1..=MAX_SERVICES).contains(&max) {
            let msg =
                format!("max_services_per_client {max} is out of range; use 1 to {MAX_SERVICES}");
            return Err(at.error(&["max_services_per_client"], msg));
        }
        for (field, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("visitor_timeout", self.visitor_timeout),
        ] {
            nonzero(&at, field, value)?;
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            let msg = format!(
                "heartbeat_timeout ({:?}) must be longer than heartbeat_interval ({:?}); three intervals is a good choice",
                self.heartbeat_timeout, self.heartbeat_interval
            );
            return Err(at.error(&["heartbeat_timeout", "heartbeat_interval"], msg));
        }
        Ok(ServerSettings {
            bind,
            token,
            transport: self.transport,
            allow_ports,
            max_services_per_client: max,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            handshake_timeout: self.handshake_timeout,
            reconnect_grace: self.reconnect_grace,
            visitor_timeout: self.visitor_timeout,
        })
    }
}

/// A non-empty token always turns authentication on: `insecure_no_auth` only permits
/// running *without* one, it never discards one that was set (the safer reading).
fn server_token(
    at: &Locator,
    token: Option<Secret>,
    insecure_no_auth: bool,
) -> Result<Option<Secret>, ConfigError> {
    match token.filter(|t| !t.expose().is_empty()) {
        Some(token) => {
            if insecure_no_auth {
                tracing::warn!("insecure_no_auth is set but so is a token; authentication stays on");
            }
            Ok(Some(token))
        }
        None if insecure_no_auth => Ok(None),
        None => Err(at.error(
            &["token", ""],
            "token is empty: set a shared secret (or PORTHOLE_TOKEN), or pass --insecure-no-auth to run without authentication",
        )),
    }
}

fn port_ranges(
    at: &Locator,
    ranges: &[(u16, u16)],
) -> Result<Vec<RangeInclusive<u16>>, ConfigError> {
    if ranges.is_empty() {
        let msg = "allow_ports is empty: list at least one range, e.g. [(10000, 20000)]";
        return Err(at.error(&["allow_ports"], msg));
    }
    let mut out = Vec::with_capacity(ranges.len());
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let path = format!("allow_ports[{i}]");
        if lo > hi {
            let msg = format!(
                "allow_ports range ({lo}, {hi}) is reversed; write the lower port first: ({hi}, {lo})"
            );
            return Err(at.error(&[&path, "allow_ports"], msg));
        }
        if lo == 0 {
            let msg = format!(
                "allow_ports range ({lo}, {hi}) includes port 0, which cannot be bound; start at 1"
            );
            return Err(at.error(&[&path, "allow_ports"], msg));
        }
        out.push(lo..=hi);
    }
    Ok(out)
}

fn nonzero(at: &Locator, field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        let msg = format!("{field} is zero; give a positive duration such as \"10s\"");
        return Err(at.error(&[field], msg));
    }
    Ok(())
}

/// Checks `text` is `host:port` (IPv6 in brackets) and resolves it; returns the first
/// address. Blocking DNS is fine: this runs once, at start-up.
fn check_address(
    at: &Locator,
    paths: &[&str],
    what: &str,
    text: &str,
    port_zero_ok: bool,
) -> Result<SocketAddr, ConfigError> {
    let fail = |msg: String| at.error(paths, format!("{what} {text:?}{msg}"));
    let example = "write it as \"host:port\", e.g. \"127.0.0.1:8080\"";
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| fail(format!(" has no port; {example}")))?;
    if host.is_empty() {
        return Err(fail(format!(" has no host; {example}")));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(fail(
            ": put an IPv6 address in brackets, e.g. \"[::1]:7000\"".into(),
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| fail(format!(": port {port:?} is not a number from 1 to 65535")))?;
    if port == 0 && !port_zero_ok {
        return Err(fail(
            ": port 0 is not allowed here; give the real port".into(),
        ));
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| fail(format!(" cannot be resolved ({e}); check the host name")))?;
    addrs
        .next()
        .ok_or_else(|| fail(" resolves to no address; check the host name".into()))
}

impl ClientConfig {
    /// A client config with every default and no services, as built from flags.
    pub fn new(server: impl Into<String>, token: Secret) -> Self {
        Self {
            server: server.into(),
            token,
            transport: TransportConfig::default(),
            data_links: DataLinks::default(),
            services: Vec::new(),
            heartbeat_timeout: secs::<HEARTBEAT_TIMEOUT_SECS>(),
            handshake_timeout: secs::<HANDSHAKE_TIMEOUT_SECS>(),
            reconnect_max_backoff: secs::<RECONNECT_MAX_BACKOFF_SECS>(),
            source: None,
        }
    }

    /// Checks every field; `server` and each `local` must resolve now.
    pub fn validate(self) -> Result<ClientSettings, ConfigError> {
        let at = Locator::new(&self.source);
        check_address(&at, &["server"], "server", &self.server, false)?;
        if self.token.expose().is_empty() {
            let msg = "token is empty: set the shared secret the server uses (or PORTHOLE_TOKEN)";
            return Err(at.error(&["token", ""], msg));
        }
        let DataLinks::Pooled { size } = self.data_links;
        if !(1..=MAX_POOL_SIZE).contains(&size) {
            let msg =
                format!("data_links: pool size {size} is out of range; use 1 to {MAX_POOL_SIZE}");
            return Err(at.error(&["data_links.size", "data_links"], msg));
        }
        nonzero(&at, "heartbeat_timeout", self.heartbeat_timeout)?;
        nonzero(&at, "handshake_timeout", self.handshake_timeout)?;
        nonzero(&at, "reconnect_max_backoff", self.reconnect_max_backoff)?;
        Ok(ClientSettings {
            services: services(&at, self.services)?,
            server: self.server,
            token: self.token,
            transport: self.transport,
            data_links: self.data_links,
            heartbeat_timeout: self.heartbeat_timeout,
            handshake_timeout: self.handshake_timeout,
            reconnect_max_backoff: self.reconnect_max_backoff,
        })
    }
}

fn services(
    at: &Locator,
    services: Vec<ServiceConfig>,
) -> Result<Vec<ServiceSettings>, ConfigError> {
    if services.is_empty() {
        let msg = "services is empty: add at least one, e.g. (name: \"web\", local: \"127.0.0.1:8080\", remote_port: 10080)";
        return Err(at.error(&["services", ""], msg));
    }
    if services.len() > MAX_SERVICES {
        let msg = format!(
            "{} services given, at most {MAX_SERVICES} are allowed; split them across clients",
            services.len()
        );
        return Err(at.error(&["services"], msg));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ports: HashMap<u16, &str> = HashMap::new();
    for (i, service) in services.iter().enumerate() {
        check_service(at, i, service)?;
        let name = service.name.as_str();
        if let Some(first) = names.insert(name, i) {
            let msg = format!(
                "service name {name:?} is used twice (services {} and {}); give each service its own name",
                first + 1,
                i + 1
            );
            return Err(at.error(
                &[&format!("services[{i}].name"), &format!("services[{i}]")],
                msg,
            ));
        }
        let port = service.remote_port;
        if port == 0 {
            continue;
        }
        if let Some(first) = ports.insert(port, name) {
            let msg = format!(
                "service {name:?}: remote_port {port} is already used by service {first:?}; give each service its own port (or 0 to let the server pick)"
            );
            return Err(at.error(
                &[
                    &format!("services[{i}].remote_port"),
                    &format!("services[{i}]"),
                ],
                msg,
            ));
        }
    }
    Ok(services
        .into_iter()
        .map(|s| ServiceSettings {
            name: s.name,
            local: s.local,
            remote_port: s.remote_port,
        })
        .collect())
}

fn check_service(at: &Locator, i: usize, service: &ServiceConfig) -> Result<(), ConfigError> {
    let name = &service.name;
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty()
        || name.chars().count() > MAX_SERVICE_NAME_LEN
        || !name.chars().all(valid_char)
    {
        let msg = format!(
            "service name {name:?} is invalid: use 1 to {MAX_SERVICE_NAME_LEN} characters from A-Z, a-z, 0-9, '_', '.', '-'"
        );
        return Err(at.error(
            &[&format!("services[{i}].name"), &format!("services[{i}]")],
            msg,
        ));
    }
    let what = format!("service {name:?}: local");
    let paths = [
        &format!("services[{i}].local") as &str,
        &format!("services[{i}]"),
    ];
    check_address(at, &paths, &what, &service.local, false).map(drop)
}

/// Turns a value path (`"token"`, `"services[2].remote_port"`) into a [`ConfigError`]
/// positioned at that value in the source, when there is a source.
struct Locator {
    origin: PathBuf,
    values: Vec<(String, usize, usize)>,
}

impl Locator {
    fn new(source: &Option<Source>) -> Self {
        match source {
            Some(s) => Self {
                origin: s.path.clone(),
                values: value_positions(&s.text),
            },
            None => Self {
                origin: PathBuf::from(COMMAND_LINE),
                values: Vec::new(),
            },
        }
    }

    /// An error at the first of `paths` found in the source (`""` is the whole config),
    /// or without a position if none is (the value came from a flag or a default).
    fn error(&self, paths: &[&str], message: impl Into<String>) -> ConfigError {
        let (line, column) = paths
            .iter()
            .find_map(|p| self.values.iter().find(|(path, ..)| path == p))
            .map_or((0, 0), |&(_, line, col)| (line, col));
        ConfigError {
            origin: self.origin.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// One open bracket while scanning: its value path, the key awaiting a value, the
/// positional index (for lists and tuples), and the path of the value being read.
struct Frame {
    path: String,
    key: Option<String>,
    index: usize,
    current: Option<String>,
}

/// A character cursor that counts 1-based lines and columns in characters, as ron does.
struct Cursor {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

impl Cursor {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            (self.line, self.col) = (self.line + 1, 1);
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// Skips whitespace and comments (block comments nest in RON).
    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => self.skip_block_comment(),
                _ => return,
            }
        }
    }

    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.bump() {
            match (c, self.peek(0)) {
                ('/', Some('*')) => (depth, _) = (depth + 1, self.bump()),
                ('*', Some('/')) => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Skips a quoted string or char literal starting at the quote, honouring `\`.
    fn skip_quoted(&mut self, quote: char) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                c if c == quote => return,
                _ => {}
            }
        }
    }

    /// Skips `r"..."` or `r#"..."#` starting at the `r`.
    fn skip_raw_string(&mut self) {
        self.bump();
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            (hashes, _) = (hashes + 1, self.bump());
        }
        self.bump();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                (0..hashes).for_each(|_| {
                    self.bump();
                });
                return;
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
            out.push(c);
            self.bump();
        }
        out
    }
}

/// Maps every value in RON text to the path that names it and its line and column:
/// `""` for the whole config, `token`, `allow_ports[1]`, `services[2].remote_port`.
/// A lightweight scan, not a parser: it runs only on text ron has already accepted.
fn value_positions(text: &str) -> Vec<(String, usize, usize)> {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let root = Frame {
        path: String::new(),
        key: None,
        index: 0,
        current: None,
    };
    let (mut stack, mut out) = (vec![root], Vec::new());
    loop {
        cur.skip_trivia();
        let Some(c) = cur.peek(0) else { return out };
        let (line, col) = (cur.line, cur.col);
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            return out;
        };
        match c {
            ',' => {
                (top.key, top.current, top.index) = (None, None, top.index + 1);
                cur.bump();
                continue;
            }
            ')' | ']' | '}' => {
                if depth > 1 {
                    stack.pop();
                }
                cur.bump();
                continue;
            }
            _ => {}
        }
        let is_raw = c == 'r' && matches!(cur.peek(1), Some('"' | '#'));
        let mut consumed = false;
        if top.current.is_none() && (c.is_alphabetic() || c == '_') && !is_raw {
            let ident = cur.ident();
            cur.skip_trivia();
            if cur.peek(0) == Some(':') {
                top.key = Some(ident);
                cur.bump();
                continue;
            }
            consumed = true;
        }
        if top.current.is_none() {
            let path = match (&top.key, depth) {
                (_, 1) => String::new(),
                (Some(key), _) if top.path.is_empty() => key.clone(),
                (Some(key), _) => format!("{}.{key}", top.path),
                (None, _) => format!("{}[{}]", top.path, top.index),
            };
            out.push((path.clone(), line, col));
            top.current = Some(path);
        }
        if consumed {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                let path = top.current.clone().unwrap_or_default();
                stack.push(Frame {
                    path,
                    key: None,
                    index: 0,
                    current: None,
                });
                cur.bump();
            }
            '"' | '\'' => cur.skip_quoted(c),
            _ if is_raw => cur.skip_raw_string(),
            _ => {
                cur.bump();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures(kind: &str) -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(kind);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "ron"))
            .collect();
        files.sort();
        // A loop over zero fixtures passes silently; make that a failure.
        assert!(!files.is_empty(), "no fixtures in {}", dir.display());
        files
    }

    #[test]
    fn valid_fixtures_load() {
        for path in fixtures("valid") {
            if let Err(e) = load_any(&path) {
                panic!("{} should load: {e}", path.display());
            }
        }
    }

    #[test]
    fn invalid_fixtures_fail_where_expected() {
        for path in fixtures("invalid") {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let expect = text
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("// expect: "))
                .unwrap_or_else(|| {
                    panic!("{}: first line must be `// expect: ...`", path.display())
                });
            match load_any(&path) {
                Ok(_) => panic!("{} should fail", path.display()),
                Err(e) => assert!(
                    e.to_string().contains(expect),
                    "{}: error {:?} lacks {expect:?}",
                    path.display(),
                    e.to_string()
                ),
            }
        }
    }

    #[test]
    fn shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for name in ["server.ron", "client.ron"] {
            if let Err(e) = load_any(&dir.join(name)) {
                panic!("examples/{name} should load: {e}");
            }
        }
    }

    #[test]
    fn secrets_are_masked() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "******** ********");
        assert_eq!(secret.expose(), "hunter2");
        let config = parse_server(
            r#"(bind: "127.0.0.1:0", token: "hunter2")"#,
            Path::new("s.ron"),
        );
        let config = config.expect("parses");
        // The raw struct keeps the source text; its Debug must not print it.
        assert!(!format!("{config:?}").contains("hunter2"));
        let settings = config.validate().expect("valid");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "1.5s", " 10s", "-1s", "10 s", "10S"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.contains("expected a number followed by ms, s, m or h"),
                "{err}"
            );
        }
        assert!(parse_duration("99999999999999999999s").is_err_and(|e| e.contains("too large")));
        assert!(parse_duration("18446744073709551615h").is_err_and(|e| e.contains("too large")));
    }

    #[test]
    fn duration_must_be_a_string() {
        let text = "(bind: \"127.0.0.1:0\", token: \"t\", visitor_timeout: 10)";
        let err = parse_server(text, Path::new("s.ron")).expect_err("integer duration");
        assert!(
            err.to_string()
                .contains("a duration string such as \"10s\""),
            "{err}"
        );
    }

    #[test]
    fn validation_error_has_line_and_column() {
        let text = "(\n  bind: \"127.0.0.1:0\",\n  // token: \"old\",\n  token: \"\", // empty\n)";
        let err = parse_server(text, Path::new("s.ron")).and_then(ServerConfig::validate);
        let err = err.expect_err("empty token");
        assert_eq!((err.line, err.column), (4, 10));
        assert!(
            err.to_string().starts_with("s.ron:4:10: token is empty"),
            "{err}"
        );
    }

    #[test]
    fn command_line_errors_have_no_position() {
        let err = ServerConfig::new("127.0.0.1:0")
            .validate()
            .expect_err("no token");
        assert_eq!(err.to_string().split(':').next(), Some(COMMAND_LINE));
        assert!(
            err.to_string()
                .starts_with("<command line>: token is empty"),
            "{err}"
        );
        let err = ClientConfig::new("127.0.0.1:7000", Secret::new("t")).validate();
        assert!(
            err.expect_err("no services")
                .to_string()
                .starts_with("<command line>: services is empty")
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let mut config = ServerConfig::new("[::1]:0");
        config.insecure_no_auth = true;
        let settings = config
            .validate()
            .expect("insecure is allowed without a token");
        assert!(settings.token.is_none());
        assert_eq!(settings.heartbeat_timeout, Duration::from_secs(30));
        assert!(settings.port_allowed(1024) && settings.port_allowed(65535));
        assert!(!settings.port_allowed(0) && !settings.port_allowed(80));
        // A token set alongside insecure_no_auth keeps authentication on.
        let mut config = ServerConfig::new("127.0.0.1:0");
        (config.insecure_no_auth, config.token) = (true, Some(Secret::new("t")));
        assert!(config.validate().expect("valid").token.is_some());
        let client = ClientConfig::new("127.0.0.1:7000", Secret::new("t"));
        assert_eq!(client.data_links, DataLinks::Pooled { size: 4 });
    }

    #[test]
    fn parsed_defaults_match_new() {
        let mut parsed = parse_server(r#"(bind: "x")"#, Path::new("s.ron")).expect("parses");
        parsed.source = None;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ServerConfig::new("x"))
        );
        let text = r#"(server: "x", token: "t")"#;
        let mut parsed = parse_client(text, Path::new("c.ron")).expect("parses");
        parsed.source = None;
        let built = ClientConfig::new("x", Secret::new("t"));
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn value_positions_skip_comments_and_strings() {
        let text = "/* (a: [ */ (\n  // services: [\n  x: \"a, b: ]\", y: r#\"(\"#,\n  s: [(n: 1), Some((m: 'c'))],\n)";
        let found = value_positions(text);
        let at = |p: &str| {
            found
                .iter()
                .find(|(path, ..)| path == p)
                .map(|&(_, l, c)| (l, c))
        };
        assert_eq!(at(""), Some((1, 13)));
        assert_eq!(at("x"), Some((3, 6)));
        assert_eq!(at("y"), Some((3, 20)));
        assert_eq!(at("s[0].n"), Some((4, 11)));
        assert_eq!(at("s[1]"), Some((4, 15)));
        assert_eq!(at("a"), None);
        assert_eq!(at("services"), None);
    }
}
