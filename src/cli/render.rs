//! What `porthole check` prints: validated settings of any role written back as
//! a RON config file that the same loader reads to the same settings.
//!
//! Field names and order are the config schema's (the raw `*Config` structs),
//! every default is shown resolved (`workers: Some(2)` on a two-core machine),
//! durations are written the way [`config::parse_duration`] reads them
//! (`"10s"`, `"500ms"`, `"2m"`, `"1h"`), port ranges as `[(low, high)]` and
//! options as `Some(..)`/`None` (but a present struct bare, as the examples
//! write `auth: (user: .., password: ..)`). Paths are made absolute, so the
//! text reads the same from any directory.
//!
//! Secrets are masked as [`Secret`]'s `Debug` masks them (`"********"`): the
//! token, the proxy's password, and its user too, since the validated
//! credentials keep only a keyed hash of both.
//!
//! [`config::parse_duration`]: crate::config::parse_duration
//! [`Secret`]: crate::config::Secret

use std::path::Path;
use std::time::Duration;

use super::AnyConfig;
use crate::config::{ClientSettings, DataLinks, Protocol, ServerSettings};
use crate::forward::ForwardSettings;
use crate::http_proxy::HttpProxySettings;
use crate::http_proxy::rules::Rule;
use crate::transport::tls::{TlsClient, TlsServer};

/// How a secret is shown: as `Secret`'s `Debug` shows it.
pub const MASKED: &str = "********";

/// The settings as a RON document, one field a line, ending in a newline.
pub fn render(config: &AnyConfig) -> String {
    match config {
        AnyConfig::Server(s) => server(s),
        AnyConfig::Client(c) => client(c),
        AnyConfig::Forward(f) => forward(f),
        AnyConfig::HttpProxy(p) => http_proxy(p),
    }
}

/// The role's name as the commands spell it: `server`, `client`, `forward`,
/// `http-proxy`.
pub fn role_name(config: &AnyConfig) -> &'static str {
    match config {
        AnyConfig::Server(_) => "server",
        AnyConfig::Client(_) => "client",
        AnyConfig::Forward(_) => "forward",
        AnyConfig::HttpProxy(_) => "http-proxy",
    }
}

fn server(s: &ServerSettings) -> String {
    let mut doc = Doc::default();
    doc.field("bind", string(&s.bind.to_string()));
    doc.field(
        "public_bind",
        format!("Some({})", string(&s.public_bind.to_string())),
    );
    // A token from `token_file` is shown as read (masked): the file is
    // the config's business, the token the server's.
    doc.field("token", option(s.token.as_ref().map(|_| string(MASKED))));
    let clients = s.clients.iter().map(|c| {
        format!(
            "(id: {}, token: Some({}), allow_ports: Some({}), max_services: Some({}))",
            string(&c.id),
            string(MASKED),
            ranges(&c.allow_ports),
            c.max_services
        )
    });
    doc.list("clients", clients);
    // Only a server without credentials runs without authentication: a
    // token or a client keeps it on even when `insecure_no_auth` was set.
    doc.field("insecure_no_auth", !s.authenticates());
    server_transport(&mut doc, s.tls.as_ref());
    doc.field("allow_ports", ranges(&s.allow_ports));
    doc.field("max_services_per_client", s.max_services_per_client);
    doc.field("heartbeat_interval", duration(s.heartbeat_interval));
    doc.field("heartbeat_timeout", duration(s.heartbeat_timeout));
    doc.field("handshake_timeout", duration(s.handshake_timeout));
    doc.field("hello_timeout", duration(s.hello_timeout));
    doc.field("reconnect_grace", duration(s.reconnect_grace));
    doc.field("visitor_timeout", duration(s.visitor_timeout));
    doc.field("drain_timeout", duration(s.drain_timeout));
    doc.field("max_visitors_per_client", s.max_visitors_per_client);
    doc.field("max_waiting_visitors", s.max_waiting_visitors);
    doc.field("max_streams_per_link", s.max_streams_per_link);
    doc.field("workers", format!("Some({})", s.workers));
    doc.field("admin", option(s.admin.map(|a| string(&a.to_string()))));
    let accept = s.accept_proxy_protocol.as_ref().map(|t| {
        let from = inline_list(t.from.iter().map(|c| string(&c.to_string())));
        format!(
            "(from: {from}, timeout: {}, max_header_len: {})",
            duration(t.timeout),
            t.max_header_len
        )
    });
    doc.field("accept_proxy_protocol", option(accept));
    doc.field("udp_idle_timeout", duration(s.udp_idle_timeout));
    doc.field("max_udp_flows", s.max_udp_flows);
    doc.finish()
}

/// Port ranges as a config writes them: `[(10000, 20000)]`.
fn ranges(ranges: &[std::ops::RangeInclusive<u16>]) -> String {
    inline_list(
        ranges
            .iter()
            .map(|r| format!("({}, {})", r.start(), r.end())),
    )
}

fn server_transport(doc: &mut Doc, tls: Option<&TlsServer>) {
    let Some(tls) = tls else {
        return doc.field("transport", "Tcp");
    };
    let value = format!(
        "Tls(cert: {}, key: {}, client_ca: {}, allow_tls12: {})",
        path(&tls.cert),
        path(&tls.key),
        option(tls.client_ca.as_deref().map(path)),
        tls.allow_tls12,
    );
    doc.field("transport", value);
}

fn client(c: &ClientSettings) -> String {
    let mut doc = Doc::default();
    // One server as the examples write it; several as a list.
    match c.server.as_slice() {
        [one] => doc.field("server", string(one)),
        many => doc.field("server", inline_list(many.iter().map(|s| string(s)))),
    }
    doc.field("id", option(c.id.as_deref().map(string)));
    doc.field("token", option(Some(string(MASKED))));
    doc.field("insecure_no_auth", c.insecure_no_auth);
    // A name each server's own host gave is left unwritten, so that it
    // stays per server when the text is read again.
    let per_server = c.tls_name_per_server && c.server.len() > 1;
    client_transport(&mut doc, c.tls.as_ref(), per_server);
    let data_links = match c.data_links {
        DataLinks::Pooled { size } => format!("Pooled(size: {size})"),
        DataLinks::Multiplexed { links } => format!("Multiplexed(links: {links})"),
    };
    doc.field("data_links", data_links);
    let services = c.services.iter().map(|s| {
        let (name, local) = (string(&s.name), string(&s.local));
        let proxy = match s.proxy_protocol {
            Some(version) => format!(", proxy_protocol: {version:?}"),
            None => String::new(),
        };
        let udp = match s.protocol {
            Protocol::Udp => ", protocol: Udp",
            Protocol::Tcp => "",
        };
        format!(
            "(name: {name}, local: {local}, remote_port: {}{proxy}{udp})",
            s.remote_port
        )
    });
    doc.list("services", services);
    doc.field("heartbeat_timeout", duration(c.heartbeat_timeout));
    doc.field("handshake_timeout", duration(c.handshake_timeout));
    doc.field("reconnect_max_backoff", duration(c.reconnect_max_backoff));
    doc.field("port_in_use_timeout", duration(c.port_in_use_timeout));
    doc.field("drain_timeout", duration(c.drain_timeout));
    doc.field("max_links", c.max_links);
    doc.field("max_link_uses", c.max_link_uses);
    doc.field("max_link_age", duration(c.max_link_age));
    doc.field("link_probe_interval", duration(c.link_probe_interval));
    doc.field("workers", format!("Some({})", c.workers));
    doc.field("admin", option(c.admin.map(|a| string(&a.to_string()))));
    let rules = |list: &[String]| inline_list(list.iter().map(|r| string(r)));
    let proxy = format!(
        "(allow: {}, deny: {})",
        rules(&c.http_proxy.allow),
        rules(&c.http_proxy.deny)
    );
    doc.field("http_proxy", proxy);
    doc.finish()
}

fn client_transport(doc: &mut Doc, tls: Option<&TlsClient>, name_per_server: bool) {
    let Some(tls) = tls else {
        return doc.field("transport", "Tcp");
    };
    let name = (!name_per_server).then(|| string(&tls.server_name.to_str()));
    let value = format!(
        "Tls(ca: {}, server_name: {}, cert: {}, key: {}, allow_tls12: {})",
        option(tls.ca.as_deref().map(path)),
        option(name),
        option(tls.cert.as_deref().map(path)),
        option(tls.key.as_deref().map(path)),
        tls.allow_tls12,
    );
    doc.field("transport", value);
}

fn forward(f: &ForwardSettings) -> String {
    let mut doc = Doc::default();
    let forwards = f.forwards.iter().map(|(listen, target)| {
        let (listen, target) = (string(&listen.to_string()), string(target));
        format!("(listen: {listen}, target: {target})")
    });
    doc.list("forwards", forwards);
    doc.field("connect_timeout", duration(f.connect_timeout));
    doc.field("workers", format!("Some({})", f.workers));
    doc.field("admin", option(f.admin.map(|a| string(&a.to_string()))));
    doc.finish()
}

fn http_proxy(p: &HttpProxySettings) -> String {
    let mut doc = Doc::default();
    let proxy = &p.proxy;
    doc.field("listen", string(&p.listen.to_string()));
    // A present struct is written bare, as the example writes it: with the
    // loader's UNWRAP_VARIANT_NEWTYPES, ron reads `Some((user: ..))` as a
    // newtype to unwrap and fails, and `Some(user: ..)` would puzzle a reader.
    let auth = proxy.auth.as_ref().map_or_else(
        || "None".to_owned(),
        |_| format!("(user: {0}, password: {0})", string(MASKED)),
    );
    doc.field("auth", auth);
    let rules = |list: &[Rule]| inline_list(list.iter().map(|r| string(&r.to_string())));
    doc.field("allow", rules(&proxy.policy.allow));
    doc.field("deny", rules(&proxy.policy.deny));
    doc.field("deny_local", proxy.policy.deny_local);
    doc.field("connect_timeout", duration(proxy.connect_timeout));
    doc.field("head_timeout", duration(proxy.head_timeout));
    doc.field("idle_timeout", duration(proxy.idle_timeout));
    doc.field("origin_idle_timeout", duration(proxy.origin_idle_timeout));
    doc.field("stats_interval", duration(p.stats_interval));
    doc.field("max_connections", proxy.max_connections);
    doc.field("workers", format!("Some({})", p.workers));
    doc.field("admin", option(p.admin.map(|a| string(&a.to_string()))));
    doc.finish()
}

/// A RON struct being written, one field a line.
#[derive(Default)]
struct Doc {
    out: String,
}

impl Doc {
    const INDENT: &str = "    ";

    fn field(&mut self, name: &str, value: impl std::fmt::Display) {
        self.out
            .push_str(&format!("{}{name}: {value},\n", Self::INDENT));
    }

    /// A list of structs, one a line.
    fn list(&mut self, name: &str, items: impl Iterator<Item = String>) {
        let mut body = String::new();
        for item in items {
            body.push_str(&format!("{0}{0}{item},\n", Self::INDENT));
        }
        if body.is_empty() {
            return self.field(name, "[]");
        }
        let indent = Self::INDENT;
        self.out
            .push_str(&format!("{indent}{name}: [\n{body}{indent}],\n"));
    }

    fn finish(self) -> String {
        format!("(\n{})\n", self.out)
    }
}

/// `[a, b]` on one line.
fn inline_list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// A RON string literal. Rust's `Debug` escapes (`\"`, `\\`, `\n`, `\u{1b}`)
/// are all RON escapes too.
fn string(text: &str) -> String {
    format!("{text:?}")
}

fn option(value: Option<String>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| format!("Some({v})"))
}

/// An absolute path as a string. The settings hold paths already joined to
/// the config file's directory; made absolute, they mean the same to a file
/// anywhere. A non-UTF-8 path is shown lossily (RON strings are UTF-8).
fn path(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    string(&absolute.to_string_lossy())
}

/// `"500ms"`, `"10s"`, `"2m"`, `"1h"`: the largest unit that is exact.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let text = if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if secs != 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    };
    string(&text)
}

#[cfg(test)]
mod tests;
