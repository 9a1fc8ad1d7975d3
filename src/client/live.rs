//! What a reload changes in a running client, and how it reaches the server.
//!
//! The services, the drain timeout and the credentials (id and token) are
//! [`Live`]: swapped whole by [`Context::reload`], read lock-free by every
//! visitor. Everything else in the settings is fixed for the life of the
//! process; a reload that changes it says "restart needed" and applies the
//! rest. New credentials are used from the next connection: to rotate a
//! token, reload the client first, then the server, whose revocation of the
//! old token makes the client reconnect with the new one.
//!
//! The session that is up with each server *attaches* its control queue and
//! what it asked that server for; [`Context::sync`] then sends each of them
//! the difference between the services in force and those asked for: `Unregister` for a removed service,
//! `Unregister` then `Register` for a new `remote_port`, `Register` for a new
//! service or one that turns PROXY headers on or off (applied in place by
//! the server). A changed `local` needs no message: the next visitor connects to
//! the new address. Untouched services, and every visitor in flight, are not
//! disturbed. While no session is up with a server there is nothing to send
//! it: the next one registers what is in force then.

use smol::channel::Sender;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::context::Context;
use super::upstream::Upstream;
use crate::auth::Key;
use crate::config::{ClientSettings, HTTP_PROXY_LOCAL, Protocol, Secret, ServiceSettings};
use crate::protocol::Frame;
use crate::transport::Transport;

/// How long after a reload changed the client's credentials a refusal of
/// them is retried rather than final: time for the operator to reload the
/// server too.
pub const ROTATION_GRACE: Duration = Duration::from_secs(600);

/// What a session asked the server for one service: its `Register`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ask {
    pub name: String,
    pub remote_port: u16,
    /// The service writes PROXY headers, which name the public address.
    pub public_address: bool,
    /// A UDP service.
    pub udp: bool,
}

impl Ask {
    pub fn of(service: &ServiceSettings) -> Ask {
        Ask {
            name: service.name.clone(),
            remote_port: service.remote_port,
            public_address: service.proxy_protocol.is_some(),
            udp: service.protocol == Protocol::Udp,
        }
    }

    pub fn register(&self) -> Frame {
        Frame::Register {
            name: self.name.clone(),
            remote_port: self.remote_port,
            public_address: self.public_address,
            udp: self.udp,
        }
    }
}

/// The part of the settings a reload replaces.
pub(crate) struct Live {
    pub services: Vec<ServiceSettings>,
    pub drain_timeout: Duration,
    /// What the next control link authenticates with.
    pub credentials: Arc<Credentials>,
}

/// The client's name and token: a reload's new ones are used from the next
/// connection on, while the session that is up keeps its own.
pub(crate) struct Credentials {
    pub id: Option<String>,
    pub key: Key,
    token: Secret,
}

impl Credentials {
    fn of(settings: &ClientSettings) -> Self {
        Credentials {
            id: settings.id.clone(),
            key: Key::new(settings.token.expose()),
            token: settings.token.clone(),
        }
    }

    fn same(&self, settings: &ClientSettings) -> bool {
        self.id == settings.id && self.token.expose() == settings.token.expose()
    }
}

impl Live {
    pub fn of(settings: &ClientSettings) -> Self {
        Live {
            services: settings.services.clone(),
            drain_timeout: settings.drain_timeout,
            credentials: Arc::new(Credentials::of(settings)),
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSettings> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The session that is up with a server: where its control frames go, and
/// the services (as registered) it asked that server for.
pub(super) struct Control {
    pub tx: Sender<Frame>,
    pub asked: Vec<Ask>,
}

impl<T: Transport> Context<T> {
    /// Applies `new` (a reloaded config): one log line per change, and the
    /// settings that need a restart named and left as they are.
    pub async fn reload(&self, mut new: ClientSettings) {
        self.adopt_builtin_proxy(&mut new);
        let restart = restart_needed(&self.settings, &new);
        if !restart.is_empty() {
            warn!(
                "restart needed: {} (kept as they are until then)",
                restart.join(", ")
            );
        }
        let old = self.live();
        let mut changes = service_changes(&old.services, &new.services);
        if old.drain_timeout != new.drain_timeout {
            changes.push(format!(
                "drain_timeout {:?} -> {:?}",
                old.drain_timeout, new.drain_timeout
            ));
        }
        let credentials = if old.credentials.same(&new) {
            old.credentials.clone()
        } else {
            changes.push("id or token changed: used from the next connection".to_owned());
            *crate::tasks::lock(&self.rotated_at) = Some(std::time::Instant::now());
            Arc::new(Credentials::of(&new))
        };
        if changes.is_empty() {
            return info!("config reloaded: no change to apply");
        }
        for change in &changes {
            info!("config reloaded: {change}");
        }
        self.counters
            .keep_services(new.services.iter().map(|s| s.name.as_str()));
        let live = Live {
            credentials,
            ..Live::of(&new)
        };
        self.live.store(Arc::new(live));
        self.sync().await;
    }

    /// Points `local: "http-proxy"` services at the built-in proxy, as at
    /// start; without one running (no such service at start) they are left
    /// out until a restart.
    fn adopt_builtin_proxy(&self, new: &mut ClientSettings) {
        let wants_proxy = |s: &ServiceSettings| s.local == HTTP_PROXY_LOCAL;
        match &self.builtin_proxy_local {
            Some(proxy) => {
                for s in new.services.iter_mut().filter(|s| wants_proxy(s)) {
                    s.local.clone_from(proxy);
                }
            }
            None if new.services.iter().any(wants_proxy) => {
                warn!(
                    "restart needed: a service with local \"http-proxy\" (the built-in proxy starts with the client); that service is left out"
                );
                new.services.retain(|s| !wants_proxy(s));
            }
            None => {}
        }
    }

    /// Whether `e` is a refusal of credentials that a reload changed within
    /// [`ROTATION_GRACE`]: then the server may just not have the new ones
    /// (or may have revoked the old ones), and the client retries instead
    /// of giving up.
    pub(super) fn rotating(&self, e: &super::ClientError) -> bool {
        use crate::handshake::HandshakeError;
        let refused = match e {
            super::ClientError::Handshake(HandshakeError::Refused { code, .. }) => {
                *code == crate::protocol::ErrorCode::AuthFailed
            }
            super::ClientError::Handshake(HandshakeError::ServerUnproven) => true,
            _ => false,
        };
        let rotated = *crate::tasks::lock(&self.rotated_at);
        refused && rotated.is_some_and(|at| at.elapsed() < ROTATION_GRACE)
    }

    /// The session with `server` that is up registered `asked`; from now
    /// on it gets the changes (and at once those made while it registered).
    pub(super) async fn attach(&self, server: &Upstream<T>, tx: Sender<Frame>, asked: Vec<Ask>) {
        *server.control.lock().await = Some(Control { tx, asked });
        self.sync_one(server).await;
    }

    /// The session with `server` ended: changes wait for the next one.
    pub(super) async fn detach(&self, server: &Upstream<T>) {
        *server.control.lock().await = None;
    }

    /// Sends every session that is up what it needs to serve the services
    /// in force. All at once: a server whose link is stuck (its queue full
    /// until its heartbeat timeout ends the session) holds up only itself.
    async fn sync(&self) {
        let syncs = self.upstreams.iter().map(|server| self.sync_one(server));
        super::side_by_side(syncs.collect()).await;
    }

    /// [`Context::sync`] for one server. Holding its lock while sending
    /// keeps the frames of two syncs in order.
    async fn sync_one(&self, server: &Upstream<T>) {
        let mut control = server.control.lock().await;
        let Some(control) = control.as_mut() else {
            return;
        };
        let live = self.live();
        let want: Vec<Ask> = live.services.iter().map(Ask::of).collect();
        for frame in frames_for(&control.asked, &want) {
            // Only fails when the session is ending; the next one registers
            // what is in force.
            if control.tx.send(frame).await.is_err() {
                return;
            }
        }
        control.asked = want;
    }
}

/// The frames that take a session from `asked` to `want`: a service asked
/// for at another port (or with another protocol) is unregistered and
/// registered again; one that only
/// turns PROXY headers on or off is registered again, which the server
/// applies in place (same port, visitors undisturbed).
fn frames_for(asked: &[Ask], want: &[Ask]) -> Vec<Frame> {
    let mut frames = Vec::new();
    // Another protocol is another port: unregistered, registered anew.
    let same_port =
        |a: &Ask, b: &Ask| a.name == b.name && a.remote_port == b.remote_port && a.udp == b.udp;
    for ask in asked {
        if !want.iter().any(|w| same_port(w, ask)) {
            frames.push(Frame::Unregister {
                name: ask.name.clone(),
            });
        }
    }
    for ask in want {
        if !asked.contains(ask) {
            frames.push(ask.register());
        }
    }
    frames
}

/// One line per added, removed or changed service.
fn service_changes(old: &[ServiceSettings], new: &[ServiceSettings]) -> Vec<String> {
    let port = |p: u16| match p {
        0 => "a port the server picks".to_owned(),
        p => format!("port {p}"),
    };
    let mut lines = Vec::new();
    for s in old {
        if !new.iter().any(|n| n.name == s.name) {
            lines.push(format!("service {} removed", s.name));
        }
    }
    for s in new {
        let Some(was) = old.iter().find(|o| o.name == s.name) else {
            lines.push(format!(
                "service {} added ({} at {})",
                s.name,
                s.local,
                port(s.remote_port)
            ));
            continue;
        };
        if was.remote_port != s.remote_port {
            lines.push(format!(
                "service {}: {} -> {} (registering again)",
                s.name,
                port(was.remote_port),
                port(s.remote_port)
            ));
        }
        if was.local != s.local {
            lines.push(format!(
                "service {}: local {} -> {} (for new visitors)",
                s.name, was.local, s.local
            ));
        }
        if was.proxy_protocol != s.proxy_protocol {
            let show = |p: Option<crate::config::ProxyProtocol>| match p {
                Some(v) => format!("{v:?}"),
                None => "off".to_owned(),
            };
            lines.push(format!(
                "service {}: proxy_protocol {} -> {} (for new visitors)",
                s.name,
                show(was.proxy_protocol),
                show(s.proxy_protocol)
            ));
        }
    }
    lines
}

/// The settings that differ and only take effect after a restart.
fn restart_needed(old: &ClientSettings, new: &ClientSettings) -> Vec<&'static str> {
    // Compared through `Debug`: every field is plain data, and `Debug` of
    // TLS material shows its paths and options. The token is masked there,
    // so it is compared on its own.
    let mut names = Vec::new();
    macro_rules! differ {
        ($($field:ident),*) => {$(
            if format!("{:?}", old.$field) != format!("{:?}", new.$field) {
                names.push(stringify!($field));
            }
        )*};
    }
    differ!(
        server,
        tls,
        data_links,
        heartbeat_timeout,
        handshake_timeout,
        reconnect_max_backoff,
        port_in_use_timeout,
        max_links,
        max_link_uses,
        max_link_age,
        link_probe_interval,
        insecure_no_auth,
        workers,
        admin,
        http_proxy
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, local: &str, port: u16) -> ServiceSettings {
        ServiceSettings {
            name: name.to_owned(),
            local: local.to_owned(),
            remote_port: port,
            proxy_protocol: None,
            protocol: crate::config::Protocol::Tcp,
        }
    }

    fn ask(name: &str, remote_port: u16, public_address: bool) -> Ask {
        Ask {
            name: name.to_owned(),
            remote_port,
            public_address,
            udp: false,
        }
    }

    #[test]
    fn frames_unregister_removed_and_moved_services_then_register_new_ones() {
        let asked = [
            ask("web", 10080, false),
            ask("ssh", 10022, false),
            ask("smtp", 10025, false),
        ];
        let want = [
            ask("web", 10081, false),
            ask("dns", 0, false),
            ask("smtp", 10025, true),
        ];
        let frames = frames_for(&asked, &want);
        let unregister = |n: &str| Frame::Unregister { name: n.to_owned() };
        assert_eq!(
            frames,
            [
                unregister("web"),
                unregister("ssh"),
                ask("web", 10081, false).register(),
                ask("dns", 0, false).register(),
                ask("smtp", 10025, true).register(),
            ]
        );
        assert!(frames_for(&want, &want).is_empty(), "nothing changed");
    }

    #[test]
    fn service_changes_name_each_change_once() {
        let old = [
            svc("web", "127.0.0.1:80", 10080),
            svc("ssh", "127.0.0.1:22", 0),
        ];
        let mut new = [
            svc("web", "127.0.0.1:81", 10080),
            svc("dns", "127.0.0.1:53", 10053),
        ];
        new[0].proxy_protocol = Some(crate::config::ProxyProtocol::V2);
        assert_eq!(
            service_changes(&old, &new),
            [
                "service ssh removed",
                "service web: local 127.0.0.1:80 -> 127.0.0.1:81 (for new visitors)",
                "service web: proxy_protocol off -> V2 (for new visitors)",
                "service dns added (127.0.0.1:53 at port 10053)",
            ]
        );
    }
}
