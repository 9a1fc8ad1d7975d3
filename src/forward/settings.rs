//! The settings of `porthole forward`, owned by the feature: the config file's
//! raw shape (a list of listen → target pairs), its validation and defaults.
//! Loaded by the generic loader in [`crate::config`].
//!
//! ```ron
//! (
//!     forwards: [(listen: "0.0.0.0:8080", target: "10.0.0.5:80")],
//!     connect_timeout: "10s",
//! )
//! ```

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use crate::config::{
    ConfigError, ConfigFile, Locator, Source, admin, check_address, duration, secs, workers,
};

/// Most forwards in one process: each is a listener (a descriptor and a task).
pub const MAX_FORWARDS: usize = 1024;
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// Raw file shape of a forward config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    pub forwards: Vec<ForwardRule>,
    #[serde(
        default = "secs::<CONNECT_TIMEOUT_SECS>",
        deserialize_with = "duration"
    )]
    pub connect_timeout: Duration,
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

/// One forward: accept on `listen`, connect each connection to `target`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRule {
    pub listen: String,
    pub target: String,
}

/// Validated forward settings.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// (listen address, target `host:port`; the target is resolved per connection).
    pub forwards: Vec<(SocketAddr, String)>,
    pub connect_timeout: Duration,
    /// Data-plane worker threads (resolved: never zero).
    pub workers: usize,
    /// Where the admin endpoint listens; `None`: no endpoint.
    pub admin: Option<SocketAddr>,
}

impl ConfigFile for ForwardConfig {
    fn set_source(&mut self, source: Source) {
        self.source = Some(source);
    }
}

impl ForwardConfig {
    /// A config with no forwards and default timeouts, for the command line.
    pub fn new() -> Self {
        ForwardConfig {
            forwards: Vec::new(),
            connect_timeout: secs::<CONNECT_TIMEOUT_SECS>(),
            workers: None,
            admin: None,
            source: None,
        }
    }

    pub fn validate(self) -> Result<ForwardSettings, ConfigError> {
        let at = Locator::new(&self.source);
        if self.forwards.is_empty() {
            return Err(at.error(
                &["forwards", ""],
                "no forwards: give at least one (listen, target) pair",
            ));
        }
        if self.forwards.len() > MAX_FORWARDS {
            let n = self.forwards.len();
            return Err(at.error(
                &["forwards"],
                format!("{n} forwards; at most {MAX_FORWARDS}"),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(at.error(&["connect_timeout"], "connect_timeout must be above zero"));
        }
        let mut forwards = Vec::with_capacity(self.forwards.len());
        for (i, rule) in self.forwards.iter().enumerate() {
            let listen_path = format!("forwards[{i}].listen");
            let target_path = format!("forwards[{i}].target");
            let listen = check_address(
                &at,
                &[&listen_path, "forwards"],
                "listen",
                &rule.listen,
                true,
            )?;
            check_address(
                &at,
                &[&target_path, "forwards"],
                "target",
                &rule.target,
                false,
            )?;
            if listen.port() != 0
                && forwards
                    .iter()
                    .any(|(l, _): &(SocketAddr, String)| *l == listen)
            {
                return Err(at.error(
                    &[&listen_path],
                    format!("listen {listen} is used by two forwards"),
                ));
            }
            forwards.push((listen, rule.target.clone()));
        }
        Ok(ForwardSettings {
            forwards,
            connect_timeout: self.connect_timeout,
            workers: workers(&at, self.workers)?,
            admin: admin(&at, self.admin.as_deref())?,
        })
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self::new()
    }
}
