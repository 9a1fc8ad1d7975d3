//! The proxy's own settings: the `porthole http-proxy` config file (its raw
//! shape, validation and defaults), the [`ProxySettings`] a proxy runs with, and
//! the rule lists a tunnel client's `http_proxy` section gives its built-in
//! proxy ([`ProxySettings::tunnel`], [`check_tunnel_rules`]).
//!
//! Loaded by the generic loader in [`crate::config`]; errors are placed in the
//! file by its [`Locator`].
//!
//! ```ron
//! (
//!     listen: "127.0.0.1:3128",
//!     auth: (user: "alice", password: "s3cret"),
//!     allow: ["*.example.com", "10.0.0.0/8:80"],
//!     deny: ["*:25"],
//!     deny_local: false,
//!     connect_timeout: "10s",
//!     head_timeout: "10s",
//!     idle_timeout: "60s",
//!     origin_idle_timeout: "30s",
//! )
//! ```

use std::{fmt, net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::auth::Credentials;
use super::rules::{MAX_RULES, Policy, Rule, RuleError};
use crate::config::{
    ConfigError, ConfigFile, Locator, Secret, Source, TunnelProxyConfig, admin, check_address,
    duration, secs, workers,
};

const CONNECT_TIMEOUT_SECS: u64 = 10;
const HEAD_TIMEOUT_SECS: u64 = 10;
const IDLE_TIMEOUT_SECS: u64 = 60;
const STATS_INTERVAL_SECS: u64 = 60;
/// How long an idle origin connection is kept for reuse. Origins close idle
/// connections after 5 s (Apache) to 75 s (nginx); a connection they closed
/// first is noticed before use, so the figure only bounds what is held.
const ORIGIN_IDLE_TIMEOUT_SECS: u64 = 30;
/// Default bound on open client connections: each holds a 16 KiB head buffer
/// (two while forwarding) and up to two descriptors, so this caps what a flood
/// of idle clients can take (about 64 MiB and 8192 descriptors).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Raw file shape of an http-proxy config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProxyConfig {
    pub listen: String,
    /// Basic proxy authentication; `None` lets anyone who reaches `listen` in.
    #[serde(default)]
    pub auth: Option<ProxyAuth>,
    /// Destination rules (syntax in [`crate::http_proxy::rules`]); empty allows all.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Refuse loopback and link-local destinations unless allowed by address.
    #[serde(default)]
    pub deny_local: bool,
    #[serde(
        default = "secs::<CONNECT_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub connect_timeout: Duration,
    /// Deadline for a whole request head, from its first byte.
    #[serde(default = "secs::<HEAD_TIMEOUT_SECS>", deserialize_with = "duration")]
    pub head_timeout: Duration,
    /// How long a keep-alive connection may sit between requests, and how long
    /// a body may stall.
    #[serde(default = "secs::<IDLE_TIMEOUT_SECS>", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long an idle origin connection is kept for the next request to the
    /// same origin; `"0s"` opens a connection per request.
    #[serde(
        default = "secs::<ORIGIN_IDLE_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub origin_idle_timeout: Duration,
    /// Period of the stats log line.
    #[serde(default = "secs::<STATS_INTERVAL_SECS>", deserialize_with = "duration")]
    pub stats_interval: Duration,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Data-plane worker threads; absent means one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// The admin endpoint (`/metrics`, `/healthz`, `/status`), off when
    /// absent; meant for loopback or a private network.
    #[serde(default)]
    pub admin: Option<String>,
    #[serde(skip)]
    source: Option<Source>,
}

/// `auth: (user: "u", password: "p")`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuth {
    pub user: String,
    pub password: Secret,
}

/// Validated proxy behaviour: everything but where it listens.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub auth: Option<Credentials>,
    pub policy: Policy,
    pub connect_timeout: Duration,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    /// Zero keeps no idle origin connection.
    pub origin_idle_timeout: Duration,
    pub max_connections: usize,
}

impl ProxySettings {
    /// Defaults for a standalone proxy: no auth, no rules, local networks allowed
    /// (whoever runs it chose who can reach `listen`).
    pub fn standalone() -> Self {
        ProxySettings {
            auth: None,
            policy: Policy::default(),
            connect_timeout: secs::<CONNECT_TIMEOUT_SECS>(),
            head_timeout: secs::<HEAD_TIMEOUT_SECS>(),
            idle_timeout: secs::<IDLE_TIMEOUT_SECS>(),
            origin_idle_timeout: secs::<ORIGIN_IDLE_TIMEOUT_SECS>(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Defaults for a proxy exposed through the tunnel: strangers at the public
    /// port must not reach the client machine's own services, so loopback
    /// (127.0.0.0/8, ::1, 0.0.0.0/8, ::) and link-local (169.254.0.0/16,
    /// fe80::/10) are denied unless an allow rule names them by address.
    pub fn for_tunnel() -> Self {
        let mut settings = Self::standalone();
        settings.policy.deny_local = true;
        settings
    }

    /// Replaces the rules with parsed `allow` and `deny` lists.
    pub fn with_rules(mut self, allow: &[String], deny: &[String]) -> Result<Self, RulesError> {
        self.policy.allow = parse_rules("allow", allow)?;
        self.policy.deny = parse_rules("deny", deny)?;
        Ok(self)
    }

    /// The built-in proxy of a tunnel client: [`for_tunnel`](Self::for_tunnel)
    /// with the rules of the client file's `http_proxy` section.
    pub fn tunnel(rules: &TunnelProxyConfig) -> Result<Self, RulesError> {
        Self::for_tunnel().with_rules(&rules.allow, &rules.deny)
    }
}

/// Checks a client file's `http_proxy` rules; for
/// [`ClientConfig::validate_with`](crate::config::ClientConfig::validate_with).
pub fn check_tunnel_rules(rules: &TunnelProxyConfig) -> Result<(), RulesError> {
    ProxySettings::tunnel(rules).map(drop)
}

/// Why an `allow` or `deny` list was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulesError {
    /// More than [`MAX_RULES`] rules in one list.
    TooMany { field: &'static str, count: usize },
    /// Rule `index` of the list does not parse.
    BadRule {
        field: &'static str,
        index: usize,
        rule: String,
        source: RuleError,
    },
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { field, count } => {
                write!(f, "{field}: {count} rules; at most {MAX_RULES}")
            }
            Self::BadRule {
                field,
                rule,
                source,
                ..
            } => write!(f, "{field} rule {rule:?}: {source}"),
        }
    }
}

impl std::error::Error for RulesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadRule { source, .. } => Some(source),
            Self::TooMany { .. } => None,
        }
    }
}

fn parse_rules(field: &'static str, texts: &[String]) -> Result<Vec<Rule>, RulesError> {
    if texts.len() > MAX_RULES {
        let count = texts.len();
        return Err(RulesError::TooMany { field, count });
    }
    texts
        .iter()
        .enumerate()
        .map(|(index, t)| {
            Rule::parse(t).map_err(|source| RulesError::BadRule {
                field,
                index,
                rule: t.clone(),
                source,
            })
        })
        .collect()
}

/// Validated `porthole http-proxy` settings.
#[derive(Clone, Debug)]
pub struct HttpProxySettings {
    pub listen: SocketAddr,
    pub proxy: ProxySettings,
    pub stats_interval: Duration,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
    /// Where the admin endpoint listens; `None`: no endpoint.
    pub admin: Option<SocketAddr>,
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

impl ConfigFile for HttpProxyConfig {
    fn set_source(&mut self, source: Source) {
        self.source = Some(source);
    }
}

impl HttpProxyConfig {
    /// Defaults listening on `listen`, for the command line.
    pub fn new(listen: impl Into<String>) -> Self {
        HttpProxyConfig {
            listen: listen.into(),
            auth: None,
            allow: Vec::new(),
            deny: Vec::new(),
            deny_local: false,
            connect_timeout: secs::<CONNECT_TIMEOUT_SECS>(),
            head_timeout: secs::<HEAD_TIMEOUT_SECS>(),
            idle_timeout: secs::<IDLE_TIMEOUT_SECS>(),
            origin_idle_timeout: secs::<ORIGIN_IDLE_TIMEOUT_SECS>(),
            stats_interval: secs::<STATS_INTERVAL_SECS>(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: None,
            admin: None,
            source: None,
        }
    }

    /// Checks every field and resolves `listen`. Errors point at the offending value.
    pub fn validate(self) -> Result<HttpProxySettings, ConfigError> {
        let at = Locator::new(&self.source);
        let listen = check_address(&at, &["listen"], "listen", &self.listen, true)?;
        let auth = credentials(&at, self.auth.as_ref())?;
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("head_timeout", self.head_timeout),
            ("idle_timeout", self.idle_timeout),
            ("stats_interval", self.stats_interval),
        ] {
            if value.is_zero() {
                let msg = format!("{field} is zero; give a positive duration such as \"10s\"");
                return Err(at.error(&[field], msg));
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            let msg = format!("max_connections must be 1 to {MAX_CONNECTIONS}");
            return Err(at.error(&["max_connections"], msg));
        }
        let policy = Policy {
            allow: located_rules(&at, "allow", &self.allow)?,
            deny: located_rules(&at, "deny", &self.deny)?,
            deny_local: self.deny_local,
        };
        Ok(HttpProxySettings {
            listen,
            proxy: ProxySettings {
                auth,
                policy,
                connect_timeout: self.connect_timeout,
                head_timeout: self.head_timeout,
                idle_timeout: self.idle_timeout,
                origin_idle_timeout: self.origin_idle_timeout,
                max_connections: self.max_connections,
            },
            stats_interval: self.stats_interval,
            workers: workers(&at, self.workers)?,
            admin: admin(&at, self.admin.as_deref())?,
        })
    }
}

fn credentials(at: &Locator, auth: Option<&ProxyAuth>) -> Result<Option<Credentials>, ConfigError> {
    match auth {
        Some(a) if a.user.is_empty() || a.user.contains(':') => {
            let msg =
                "auth.user must be non-empty and must not contain ':' (Basic cannot carry it)";
            Err(at.error(&["auth.user", "auth"], msg))
        }
        Some(a) => Ok(Some(Credentials::new(&a.user, a.password.expose()))),
        None => Ok(None),
    }
}

/// A rule list, with an error placed at the offending rule.
fn located_rules(
    at: &Locator,
    field: &'static str,
    texts: &[String],
) -> Result<Vec<Rule>, ConfigError> {
    parse_rules(field, texts).map_err(|e| {
        let index = match &e {
            RulesError::BadRule { index, .. } => *index,
            RulesError::TooMany { .. } => texts
                .iter()
                .position(|t| Rule::parse(t).is_err())
                .unwrap_or(0),
        };
        at.error(&[&format!("{field}[{index}]"), field], e.to_string())
    })
}
