//! Validation of the raw config structs into typed settings; every error is placed
//! at the offending value by [`Locator`].

use super::*;

mod address;
use address::address_shape;

impl ServerConfig {
    /// A server config with every default, as built from command-line flags.
    pub fn new(bind: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            public_bind: None,
            token: None,
            token_file: None,
            clients: Vec::new(),
            insecure_no_auth: false,
            transport: ServerTransport::default(),
            allow_ports: default_allow_ports(),
            max_services_per_client: MAX_SERVICES_PER_CLIENT,
            heartbeat_interval: secs::<HEARTBEAT_INTERVAL_SECS>(),
            heartbeat_timeout: secs::<HEARTBEAT_TIMEOUT_SECS>(),
            handshake_timeout: secs::<HANDSHAKE_TIMEOUT_SECS>(),
            hello_timeout: secs::<HELLO_TIMEOUT_SECS>(),
            reconnect_grace: secs::<RECONNECT_GRACE_SECS>(),
            visitor_timeout: secs::<VISITOR_TIMEOUT_SECS>(),
            drain_timeout: secs::<DRAIN_TIMEOUT_SECS>(),
            max_visitors_per_client: MAX_VISITORS_PER_CLIENT,
            max_waiting_visitors: MAX_WAITING_VISITORS,
            max_streams_per_link: MAX_STREAMS_PER_LINK,
            workers: None,
            admin: None,
            accept_proxy_protocol: None,
            udp_idle_timeout: secs::<UDP_IDLE_TIMEOUT_SECS>(),
            max_udp_flows: MAX_UDP_FLOWS,
            source: None,
        }
    }

    /// Checks every field and resolves `bind`. Errors point at the offending value.
    pub fn validate(self) -> Result<ServerSettings, ConfigError> {
        let at = Locator::new(&self.source);
        let bind = check_address(&at, &["bind"], "bind", &self.bind, true)?;
        let public_bind = match &self.public_bind {
            Some(text) => public_ip(&at, text)?,
            None => bind.ip(),
        };
        let allow_ports = port_ranges(&at, "allow_ports", &self.allow_ports)?;
        let max = self.max_services_per_client;
        if !(1..=MAX_SERVICES).contains(&max) {
            let msg =
                format!("max_services_per_client {max} is out of range; use 1 to {MAX_SERVICES}");
            return Err(at.error(&["max_services_per_client"], msg));
        }
        let clients = credentials::clients(&at, self.clients, &allow_ports, max)?;
        let token = credentials::token_or_file(&at, "", self.token, self.token_file.as_deref())?;
        let token = server_token(&at, token, !clients.is_empty(), self.insecure_no_auth)?;
        for (field, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("hello_timeout", self.hello_timeout),
            ("visitor_timeout", self.visitor_timeout),
            ("udp_idle_timeout", self.udp_idle_timeout),
        ] {
            nonzero(&at, field, value)?;
        }
        for (field, value, max) in [
            (
                "max_visitors_per_client",
                self.max_visitors_per_client,
                MAX_VISITORS_LIMIT,
            ),
            (
                "max_waiting_visitors",
                self.max_waiting_visitors,
                MAX_VISITORS_LIMIT,
            ),
            (
                "max_streams_per_link",
                self.max_streams_per_link,
                MAX_STREAMS_LIMIT,
            ),
            ("max_udp_flows", self.max_udp_flows, MAX_UDP_FLOWS_LIMIT),
        ] {
            in_range(&at, field, value, max)?;
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
            public_bind,
            token,
            clients,
            tls: self.transport.load(&at)?,
            allow_ports,
            max_services_per_client: max,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            handshake_timeout: self.handshake_timeout,
            hello_timeout: self.hello_timeout,
            reconnect_grace: self.reconnect_grace,
            visitor_timeout: self.visitor_timeout,
            drain_timeout: self.drain_timeout,
            max_visitors_per_client: self.max_visitors_per_client,
            max_waiting_visitors: self.max_waiting_visitors,
            max_streams_per_link: self.max_streams_per_link,
            workers: workers(&at, self.workers)?,
            admin: admin(&at, self.admin.as_deref())?,
            accept_proxy_protocol: proxy_protocol::proxy_trust(&at, self.accept_proxy_protocol)?,
            udp_idle_timeout: self.udp_idle_timeout,
            max_udp_flows: self.max_udp_flows,
        })
    }
}

/// `public_bind` is a bare IP address: the ports come from `allow_ports`.
fn public_ip(at: &Locator, text: &str) -> Result<IpAddr, ConfigError> {
    text.parse().map_err(|_| {
        let hint = match text.parse::<SocketAddr>() {
            Ok(addr) => format!(
                "drop the port (public ports come from allow_ports): {:?}",
                addr.ip().to_string()
            ),
            Err(_) => "write an IP address, e.g. \"0.0.0.0\" or \"::\"".to_owned(),
        };
        at.error(
            &["public_bind"],
            format!("public_bind {text:?} is not an IP address; {hint}"),
        )
    })
}

/// A non-empty token (or any `clients` entry) always turns authentication on:
/// `insecure_no_auth` only permits running *without* one, it never discards
/// one that was set (the safer reading). With `clients`, the shared token is
/// optional.
fn server_token(
    at: &Locator,
    token: Option<Secret>,
    has_clients: bool,
    insecure_no_auth: bool,
) -> Result<Option<Secret>, ConfigError> {
    let token = token.filter(|t| !t.expose().is_empty());
    if (token.is_some() || has_clients) && insecure_no_auth {
        tracing::warn!("insecure_no_auth is set but so are credentials; authentication stays on");
    }
    match token {
        Some(token) => Ok(Some(token)),
        None if has_clients || insecure_no_auth => Ok(None),
        None => Err(at.error(
            &["token", "token_file", ""],
            "token is empty: set a shared secret (or PORTHOLE_TOKEN, or token_file), list clients with their own tokens, or pass --insecure-no-auth to run without authentication",
        )),
    }
}

/// `field`'s port ranges (`allow_ports`, or a client's `clients[i].allow_ports`).
pub(super) fn port_ranges(
    at: &Locator,
    field: &str,
    ranges: &[(u16, u16)],
) -> Result<Vec<RangeInclusive<u16>>, ConfigError> {
    if ranges.is_empty() {
        let msg = format!("{field} is empty: list at least one range, e.g. [(10000, 20000)]");
        return Err(at.error(&[field], msg));
    }
    let mut out = Vec::with_capacity(ranges.len());
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let path = format!("{field}[{i}]");
        if lo > hi {
            let msg = format!(
                "{field} range ({lo}, {hi}) is reversed; write the lower port first: ({hi}, {lo})"
            );
            return Err(at.error(&[&path, field], msg));
        }
        if lo == 0 {
            let msg = format!(
                "{field} range ({lo}, {hi}) includes port 0, which cannot be bound; start at 1"
            );
            return Err(at.error(&[&path, field], msg));
        }
        out.push(lo..=hi);
    }
    Ok(out)
}

/// Resolves `admin`: an address to listen on (port 0 picks one; the log
/// says which).
pub fn admin(at: &Locator, value: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    value
        .map(|text| check_address(at, &["admin"], "admin", text, true))
        .transpose()
}

/// Resolves `workers`: absent means one per core; 0 or more than
/// [`MAX_WORKERS`](crate::runtime::MAX_WORKERS) is an error.
pub fn workers(at: &Locator, value: Option<usize>) -> Result<usize, ConfigError> {
    let max = crate::runtime::MAX_WORKERS;
    match value {
        None => Ok(crate::runtime::default_workers()),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(at.error(
            &["workers"],
            format!(
                "workers {n} is out of range; use 1 to {max} (or leave it out for one per core)"
            ),
        )),
    }
}

/// A count setting must be in `1..=max`.
fn in_range(at: &Locator, field: &str, value: usize, max: usize) -> Result<(), ConfigError> {
    if !(1..=max).contains(&value) {
        let msg = format!("{field} {value} is out of range; use 1 to {max}");
        return Err(at.error(&[field], msg));
    }
    Ok(())
}

fn nonzero(at: &Locator, field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        let msg = format!("{field} is zero; give a positive duration such as \"10s\"");
        return Err(at.error(&[field], msg));
    }
    Ok(())
}

/// Checks `text` is `host:port` (IPv6 in brackets) and resolves it; returns the first
/// address. Blocking DNS is fine: this runs once, at start-up. A malformed value
/// gets a message that says what is missing and shows the value written right.
pub fn check_address(
    at: &Locator,
    paths: &[&str],
    what: &str,
    text: &str,
    port_zero_ok: bool,
) -> Result<SocketAddr, ConfigError> {
    let fail = |msg: String| at.error(paths, format!("{what} {text:?}: {msg}"));
    let (host, port) = address_shape(what, text).map_err(fail)?;
    if port == 0 && !port_zero_ok {
        return Err(fail(
            "port 0 is not allowed here; give the real port".into(),
        ));
    }
    // Loopback without a resolver (RFC 6761), as the dialer does; a bind
    // takes the first of its addresses, the IPv4 one (see `runtime::dial`).
    if crate::runtime::dial::is_localhost(host) {
        return Ok(crate::runtime::dial::localhost_addrs(port)[0]);
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot be resolved ({e}); check the host name")))?;
    addrs
        .next()
        .ok_or_else(|| fail("resolves to no address; check the host name".into()))
}

impl ClientConfig {
    /// A client config with every default and no services, as built from flags.
    pub fn new(server: impl Into<String>, token: Secret) -> Self {
        Self {
            server: vec![server.into()],
            id: None,
            token: Some(token),
            token_file: None,
            transport: ClientTransport::default(),
            data_links: DataLinks::default(),
            services: Vec::new(),
            heartbeat_timeout: secs::<HEARTBEAT_TIMEOUT_SECS>(),
            handshake_timeout: secs::<HANDSHAKE_TIMEOUT_SECS>(),
            reconnect_max_backoff: secs::<RECONNECT_MAX_BACKOFF_SECS>(),
            port_in_use_timeout: secs::<PORT_IN_USE_TIMEOUT_SECS>(),
            drain_timeout: secs::<DRAIN_TIMEOUT_SECS>(),
            max_links: MAX_LINKS,
            max_link_uses: MAX_LINK_USES,
            max_link_age: secs::<MAX_LINK_AGE_SECS>(),
            link_probe_interval: secs::<LINK_PROBE_INTERVAL_SECS>(),
            insecure_no_auth: false,
            workers: None,
            admin: None,
            http_proxy: TunnelProxyConfig::default(),
            source: None,
        }
    }

    /// Checks every field; each `server` and each `local` must resolve now. The
    /// built-in proxy's rules are left to whoever starts the proxy (it parses
    /// them then); use [`validate_with`](Self::validate_with) to check them now.
    pub fn validate(self) -> Result<ClientSettings, ConfigError> {
        self.validate_with(|_| Ok::<(), std::convert::Infallible>(()))
    }

    /// [`validate`](Self::validate), with `check_proxy` judging the `http_proxy`
    /// rules in their place among the checks; its error is placed at
    /// `http_proxy` in the file. The `http_proxy` feature owns that check (this
    /// module does not know the rule syntax), so the caller passes it in.
    pub fn validate_with<E: fmt::Display>(
        self,
        check_proxy: impl FnOnce(&TunnelProxyConfig) -> Result<(), E>,
    ) -> Result<ClientSettings, ConfigError> {
        let at = Locator::new(&self.source);
        super::servers::check(&at, &self.server)?;
        let token = credentials::client_token(&at, &self)?;
        match self.data_links {
            DataLinks::Pooled { size } if !(1..=MAX_POOL_SIZE).contains(&size) => {
                let msg = format!(
                    "data_links: pool size {size} is out of range; use 1 to {MAX_POOL_SIZE}"
                );
                return Err(at.error(&["data_links.size", "data_links"], msg));
            }
            DataLinks::Multiplexed { links } if !(1..=MAX_MUX_LINKS).contains(&links) => {
                let msg = format!(
                    "data_links: {links} multiplexed links is out of range; use 1 to {MAX_MUX_LINKS}"
                );
                return Err(at.error(&["data_links.links", "data_links"], msg));
            }
            _ => {}
        }
        nonzero(&at, "heartbeat_timeout", self.heartbeat_timeout)?;
        nonzero(&at, "handshake_timeout", self.handshake_timeout)?;
        nonzero(&at, "reconnect_max_backoff", self.reconnect_max_backoff)?;
        nonzero(&at, "max_link_age", self.max_link_age)?;
        nonzero(&at, "link_probe_interval", self.link_probe_interval)?;
        in_range(&at, "max_links", self.max_links, MAX_VISITORS_LIMIT)?;
        if self.max_link_uses == 0 {
            return Err(at.error(
                &["max_link_uses"],
                "max_link_uses is 0: use at least 1 (1 closes every link after its visitor)",
            ));
        }
        let (tls, tls_name_per_server) = self.transport.load_for(&at, &self.server)?;
        check_proxy(&self.http_proxy)
            .map_err(|e| at.error(&["http_proxy"], format!("http_proxy: {e}")))?;
        Ok(ClientSettings {
            tls,
            tls_name_per_server,
            services: services(&at, self.services)?,
            server: self.server,
            id: self.id,
            token,
            data_links: self.data_links,
            heartbeat_timeout: self.heartbeat_timeout,
            handshake_timeout: self.handshake_timeout,
            reconnect_max_backoff: self.reconnect_max_backoff,
            port_in_use_timeout: self.port_in_use_timeout,
            drain_timeout: self.drain_timeout,
            max_links: self.max_links,
            max_link_uses: self.max_link_uses,
            max_link_age: self.max_link_age,
            link_probe_interval: self.link_probe_interval,
            insecure_no_auth: self.insecure_no_auth,
            workers: workers(&at, self.workers)?,
            admin: admin(&at, self.admin.as_deref())?,
            http_proxy: self.http_proxy,
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
    // A TCP and a UDP service may share a number: they are different ports.
    let mut ports: HashMap<(Protocol, u16), &str> = HashMap::new();
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
        if let Some(first) = ports.insert((service.protocol, port), name) {
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
            proxy_protocol: s.proxy_protocol,
            protocol: s.protocol,
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
    if service.protocol == Protocol::Udp {
        let field = match (service.local == HTTP_PROXY_LOCAL, service.proxy_protocol) {
            (true, _) => Some((
                "local",
                "the built-in HTTP proxy speaks TCP; drop protocol: Udp",
            )),
            (false, Some(_)) => Some((
                "proxy_protocol",
                "PROXY headers are for TCP services; drop proxy_protocol (the local service sees each visitor as its own UDP source)",
            )),
            (false, None) => None,
        };
        if let Some((field, why)) = field {
            return Err(at.error(
                &[&format!("services[{i}].{field}"), &format!("services[{i}]")],
                format!("service {name:?}: {why}"),
            ));
        }
    }
    if service.local == HTTP_PROXY_LOCAL {
        if service.proxy_protocol.is_some() {
            let msg = format!(
                "service {name:?}: the built-in HTTP proxy does not read PROXY headers; drop proxy_protocol (the proxy logs the visitor's address itself)"
            );
            return Err(at.error(
                &[
                    &format!("services[{i}].proxy_protocol"),
                    &format!("services[{i}]"),
                ],
                msg,
            ));
        }
        return Ok(());
    }
    let what = format!("service {name:?}: local");
    let paths = [
        &format!("services[{i}].local") as &str,
        &format!("services[{i}]"),
    ];
    check_address(at, &paths, &what, &service.local, false).map(drop)
}
