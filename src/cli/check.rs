//! `porthole check`: load a config file of any role, validated exactly as the
//! role's own command would (the client's `http_proxy` rules included).

use std::path::Path;

use crate::config::{
    self, ClientConfig, ClientSettings, ConfigError, Role, ServerConfig, ServerSettings,
};
use crate::forward::{ForwardConfig, ForwardSettings};
use crate::http_proxy::{HttpProxyConfig, HttpProxySettings, check_tunnel_rules};

/// A config file of any role, validated (what `porthole check` reports on).
#[derive(Clone, Debug)]
pub enum AnyConfig {
    Server(ServerSettings),
    Client(Box<ClientSettings>),
    Forward(ForwardSettings),
    HttpProxy(HttpProxySettings),
}

/// Reads a file, recognises its role ([`config::recognise`]), parses and
/// validates it.
pub fn load_any(path: &Path) -> Result<AnyConfig, ConfigError> {
    let (role, text) = config::recognise(path)?;
    match role {
        Role::Server => config::parse::<ServerConfig>(&text, path)?
            .validate()
            .map(AnyConfig::Server),
        Role::Client => config::parse::<ClientConfig>(&text, path)?
            .validate_with(check_tunnel_rules)
            .map(|c| AnyConfig::Client(Box::new(c))),
        Role::Forward => config::parse::<ForwardConfig>(&text, path)?
            .validate()
            .map(AnyConfig::Forward),
        Role::HttpProxy => config::parse::<HttpProxyConfig>(&text, path)?
            .validate()
            .map(AnyConfig::HttpProxy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|ext| ext == "ron") {
                found += 1;
                if let Err(e) = load_any(&path) {
                    panic!("{} should load: {e}", path.display());
                }
            }
        }
        assert!(
            found >= 4,
            "expected the server, client, forward and http-proxy examples"
        );
    }
}
