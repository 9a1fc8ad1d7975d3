//! A reload on a running server: every setting applies at once except those
//! the process is built around (`bind`, `public_bind`, the transport,
//! `workers`, `admin`), which are reported as "restart needed" and kept.
//!
//! "At once" means: the next handshake, registration, visitor or heartbeat
//! read uses the new value. Sessions keep what was agreed when they began:
//! the heartbeat interval announced in `AuthOk`, and the sizes of their
//! waiting-visitor queue and multiplexed-link stream tables.

use std::sync::Arc;
use tracing::{info, warn};

use super::{Shared, credentials};
use crate::config::ServerSettings;
use crate::reload::Requests;
use crate::transport::Transport;

/// Applies every reload request until the requests end.
pub(super) async fn serve<T: Transport>(
    shared: Arc<Shared<T>>,
    requests: Requests<ServerSettings>,
) {
    while let Ok(request) = requests.recv().await {
        apply(&shared, request.settings).await;
    }
}

/// Swaps in `new`, keeping what needs a restart; one log line per change.
pub(super) async fn apply<T: Transport>(shared: &Shared<T>, mut new: ServerSettings) {
    let old = shared.settings.load_full();
    let restart = keep_fixed(&old, &mut new);
    if !restart.is_empty() {
        warn!(
            "restart needed: {} (kept as they are until then; the rest applies)",
            restart.join(", ")
        );
    }
    let changes = changes(&old, &new);
    if changes.is_empty() {
        return info!("config reloaded: no change to apply");
    }
    for change in &changes {
        info!("config reloaded: {change}");
    }
    let new = Arc::new(new);
    shared.settings.store(new.clone());
    // Sessions whose credentials the new settings no longer admit end now.
    credentials::revoke_changed(shared, &new).await;
}

/// Copies into `new` the settings that cannot change live, naming those that
/// differed.
fn keep_fixed(old: &ServerSettings, new: &mut ServerSettings) -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! keep {
        ($($field:ident),*) => {$(
            // Compared through `Debug`: plain data, and TLS material shows
            // its paths and options there.
            if format!("{:?}", old.$field) != format!("{:?}", new.$field) {
                names.push(stringify!($field));
                new.$field = old.$field.clone();
            }
        )*};
    }
    keep!(bind, public_bind, tls, workers, admin);
    names
}

/// One line per setting that differs (a token is never printed).
fn changes(old: &ServerSettings, new: &ServerSettings) -> Vec<String> {
    let mut lines = Vec::new();
    macro_rules! differ {
        ($($field:ident),*) => {$(
            let (was, now) = (format!("{:?}", old.$field), format!("{:?}", new.$field));
            if was != now {
                lines.push(format!("{} {was} -> {now}", stringify!($field)));
            }
        )*};
    }
    differ!(
        allow_ports,
        max_services_per_client,
        heartbeat_interval,
        heartbeat_timeout,
        handshake_timeout,
        hello_timeout,
        reconnect_grace,
        visitor_timeout,
        drain_timeout,
        max_visitors_per_client,
        max_waiting_visitors,
        max_streams_per_link,
        udp_idle_timeout,
        max_udp_flows
    );
    let token = |s: &ServerSettings| s.token.as_ref().map(|t| t.expose().to_owned());
    match (token(old), token(new)) {
        (a, b) if a == b => {}
        (_, None) => lines.push("shared token removed".to_owned()),
        (None, Some(_)) => lines.push("shared token set".to_owned()),
        (Some(_), Some(_)) => lines.push("shared token changed".to_owned()),
    }
    if old.accept_proxy_protocol != new.accept_proxy_protocol {
        let show = |t: &Option<crate::config::ProxyTrust>| match t {
            None => "off".to_owned(),
            Some(t) => {
                let from: Vec<String> = t.from.iter().map(|c| c.to_string()).collect();
                format!("from [{}] within {:?}", from.join(", "), t.timeout)
            }
        };
        lines.push(format!(
            "accept_proxy_protocol {} -> {} (for new connections)",
            show(&old.accept_proxy_protocol),
            show(&new.accept_proxy_protocol)
        ));
    }
    if old.authenticates() != new.authenticates() {
        let now = if new.authenticates() { "on" } else { "OFF" };
        lines.push(format!("authentication is {now}"));
    }
    client_changes(old, new, &mut lines);
    lines
}

/// One line per client added, removed or changed (by id; never a token).
fn client_changes(old: &ServerSettings, new: &ServerSettings, lines: &mut Vec<String>) {
    for was in &old.clients {
        if new.client(&was.id).is_none() {
            lines.push(format!("client {} removed", was.id));
        }
    }
    for now in &new.clients {
        let Some(was) = old.client(&now.id) else {
            lines.push(format!("client {} added", now.id));
            continue;
        };
        if was.token.expose() != now.token.expose() {
            lines.push(format!("client {}: token changed", now.id));
        }
        if was.allow_ports != now.allow_ports {
            let (a, b) = (&was.allow_ports, &now.allow_ports);
            lines.push(format!("client {}: allow_ports {a:?} -> {b:?}", now.id));
        }
        if was.max_services != now.max_services {
            let (a, b) = (was.max_services, now.max_services);
            lines.push(format!("client {}: max_services {a} -> {b}", now.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, ServerConfig};

    fn settings(edit: impl FnOnce(&mut ServerConfig)) -> ServerSettings {
        let mut config = ServerConfig::new("127.0.0.1:0");
        config.token = Some(Secret::new("old"));
        edit(&mut config);
        config.validate().expect("valid")
    }

    #[test]
    fn fixed_settings_are_kept_and_named_and_the_rest_is_listed() {
        let old = settings(|_| {});
        let mut new = settings(|c| {
            c.bind = "127.0.0.2:0".into();
            c.allow_ports = vec![(20000, 20010)];
            c.token = Some(Secret::new("new"));
        });
        assert_eq!(keep_fixed(&old, &mut new), ["bind", "public_bind"]);
        assert_eq!(new.bind, old.bind, "bind kept");
        assert_eq!(new.public_bind, old.public_bind);
        let lines = changes(&old, &new);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("allow_ports [") && lines[0].ends_with("-> [20000..=20010]"),
            "{lines:?}"
        );
        assert_eq!(lines[1], "shared token changed");
        assert!(!lines.iter().any(|l| l.contains("new")), "no token text");
    }
}
