//! How command-line flags fold into each role's raw config before it is
//! validated. Flags win over the file; `PORTHOLE_TOKEN` stands in for `--token`.

use std::path::PathBuf;

use super::{ClientArgs, ForwardArgs, HttpProxyArgs, ServerArgs};
use crate::config::{
    self, ClientConfig, ClientSettings, ClientTls, ClientTransport, ConfigError, Locator, Protocol,
    ProxyProtocol, Secret, ServerConfig, ServerSettings, ServerTls, ServerTransport, ServiceConfig,
};
use crate::forward::{ForwardConfig, ForwardRule, ForwardSettings};
use crate::http_proxy::{HttpProxyConfig, HttpProxySettings, ProxyAuth, check_tunnel_rules};

/// Where the token came from, for the log (never the token itself): a stale
/// `PORTHOLE_TOKEN` silently beating the file's token costs an hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource<'a> {
    Flag,
    Env {
        overrides: Option<&'a std::path::Path>,
    },
    File(&'a std::path::Path),
}

impl std::fmt::Display for TokenSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("--token"),
            TokenSource::Env { overrides: None } => write!(f, "{}", super::TOKEN_ENV),
            TokenSource::Env {
                overrides: Some(path),
            } => write!(
                f,
                "{} (it overrides any token in {})",
                super::TOKEN_ENV,
                path.display()
            ),
            TokenSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The token's source by the precedence of [`server_settings`] and
/// [`client_settings`]: the flag, the environment, then the file; `None`
/// when there is no token at all.
pub fn token_source<'a>(
    flag: Option<&str>,
    env: Option<&str>,
    config: &'a Option<PathBuf>,
) -> Option<TokenSource<'a>> {
    match (flag, env, config) {
        (Some(_), _, _) => Some(TokenSource::Flag),
        (None, Some(_), file) => Some(TokenSource::Env {
            overrides: file.as_deref(),
        }),
        (None, None, Some(file)) => Some(TokenSource::File(file)),
        (None, None, None) => None,
    }
}

/// Resolves the server settings from a file and/or flags.
pub fn server_settings(
    args: &ServerArgs,
    env_token: Option<String>,
) -> Result<ServerSettings, ConfigError> {
    let mut cfg = match (&args.config, &args.bind) {
        (Some(path), _) => config::load::<ServerConfig>(path)?,
        (None, Some(bind)) => ServerConfig::new(bind.clone()),
        (None, None) => {
            return Err(cli_error(
                "give a config file (-c server.ron) or --bind ADDR",
            ));
        }
    };
    if let Some(bind) = &args.bind {
        cfg.bind = bind.clone();
    }
    if let Some(ip) = &args.public_bind {
        cfg.public_bind = Some(ip.clone());
    }
    if let Some(token) = args.token.clone().or(env_token) {
        // The flag (or environment) replaces the file's token, from wherever.
        (cfg.token, cfg.token_file) = (Some(Secret::new(token)), None);
    }
    if !args.allow_ports.is_empty() {
        cfg.allow_ports = args
            .allow_ports
            .iter()
            .map(|r| parse_range(r))
            .collect::<Result<_, _>>()?;
    }
    cfg.insecure_no_auth |= args.insecure_no_auth;
    cfg.workers = args.workers.or(cfg.workers);
    admin_flag(args.admin.as_deref(), &mut cfg.admin)?;
    server_tls_flags(args, &mut cfg.transport)?;
    cfg.validate()
}

/// `--tls`, or any of `--cert/--key/--client-ca` (which imply it), turns a
/// TCP config into TLS; the files set or override the config's.
fn server_tls_flags(args: &ServerArgs, transport: &mut ServerTransport) -> Result<(), ConfigError> {
    let any_file = args.cert.is_some() || args.key.is_some() || args.client_ca.is_some();
    if !args.tls && !any_file {
        return Ok(());
    }
    if let ServerTransport::Tcp = transport {
        if args.cert.is_none() || args.key.is_none() {
            let given = if args.tls {
                "--tls"
            } else {
                "TLS (implied by --cert, --key and --client-ca)"
            };
            return Err(cli_error(&format!(
                "{given} needs --cert and --key (make them with `porthole gen-cert`)"
            )));
        }
        *transport = ServerTransport::Tls(ServerTls::default());
    }
    if let ServerTransport::Tls(tls) = transport {
        if let Some(cert) = &args.cert {
            tls.cert = absolute(cert)?;
        }
        if let Some(key) = &args.key {
            tls.key = absolute(key)?;
        }
        if let Some(ca) = &args.client_ca {
            tls.client_ca = Some(absolute(ca)?);
        }
    }
    Ok(())
}

/// `--tls`, or any other TLS flag (which implies it), turns a TCP config
/// into TLS; the other TLS flags set or override the config's.
fn client_tls_flags(args: &ClientArgs, transport: &mut ClientTransport) -> Result<(), ConfigError> {
    let any = args.ca.is_some()
        || args.server_name.is_some()
        || args.cert.is_some()
        || args.key.is_some();
    if !args.tls && !any {
        return Ok(());
    }
    if let ClientTransport::Tcp = transport {
        *transport = ClientTransport::Tls(ClientTls::default());
    }
    if let ClientTransport::Tls(tls) = transport {
        if let Some(ca) = &args.ca {
            tls.ca = Some(absolute(ca)?);
        }
        if let Some(name) = &args.server_name {
            tls.server_name = Some(name.clone());
        }
        if let Some(cert) = &args.cert {
            tls.cert = Some(absolute(cert)?);
        }
        if let Some(key) = &args.key {
            tls.key = Some(absolute(key)?);
        }
    }
    Ok(())
}

/// Paths from flags are relative to the working directory, never to the config.
fn absolute(path: &std::path::Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|e| cli_error(&format!("{}: {e}", path.display())))
}

/// Resolves the client settings from a file and/or flags.
pub fn client_settings(
    args: &ClientArgs,
    env_token: Option<String>,
) -> Result<ClientSettings, ConfigError> {
    let token = args.token.clone().or(env_token);
    let mut cfg = match (&args.config, args.server.first()) {
        (Some(path), _) => config::load::<ClientConfig>(path)?,
        (None, Some(server)) => {
            let token = token
                .clone()
                .ok_or_else(|| cli_error("give --token or set PORTHOLE_TOKEN"))?;
            ClientConfig::new(server.clone(), Secret::new(token))
        }
        (None, None) => {
            return Err(cli_error(
                "give a config file (-c client.ron) or --server HOST:PORT",
            ));
        }
    };
    // Repeated, the flags are the whole list: a server is never added to
    // the file's list, so the flags alone say whom the client talks to.
    if !args.server.is_empty() {
        cfg.server.clone_from(&args.server);
    }
    if let Some(token) = token {
        (cfg.token, cfg.token_file) = (Some(Secret::new(token)), None);
    }
    if let Some(id) = &args.id {
        cfg.id = Some(id.clone());
    }
    if args.config.is_none() && args.expose.is_empty() {
        return Err(cli_error(
            "nothing to expose: add --expose 8080 (a local port; see --help for more forms), or use a config file with -c client.ron",
        ));
    }
    for spec in &args.expose {
        cfg.services.push(parse_expose(spec)?);
    }
    cfg.insecure_no_auth |= args.insecure_no_auth;
    cfg.workers = args.workers.or(cfg.workers);
    admin_flag(args.admin.as_deref(), &mut cfg.admin)?;
    client_tls_flags(args, &mut cfg.transport)?;
    cfg.validate_with(check_tunnel_rules)
}

/// Resolves the forward settings from a file and/or LISTEN TARGET pairs.
pub fn forward_settings(args: &ForwardArgs) -> Result<ForwardSettings, ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => config::load::<ForwardConfig>(path)?,
        None => ForwardConfig::new(),
    };
    if args.pairs.len() % 2 != 0 {
        return Err(cli_error(
            "forward takes LISTEN TARGET pairs, e.g. 127.0.0.1:8080 127.0.0.1:80",
        ));
    }
    for pair in args.pairs.chunks(2) {
        cfg.forwards.push(ForwardRule {
            listen: pair[0].clone(),
            target: pair[1].clone(),
        });
    }
    if let Some(text) = &args.connect_timeout {
        cfg.connect_timeout = config::parse_duration(text)
            .map_err(|e| cli_error(&format!("--connect-timeout: {e}")))?;
    }
    cfg.workers = args.workers.or(cfg.workers);
    admin_flag(args.admin.as_deref(), &mut cfg.admin)?;
    cfg.validate()
}

/// Resolves the http-proxy settings from a file and/or flags.
pub fn http_proxy_settings(args: &HttpProxyArgs) -> Result<HttpProxySettings, ConfigError> {
    let mut cfg = match (&args.config, &args.listen) {
        (Some(path), _) => config::load::<HttpProxyConfig>(path)?,
        (None, Some(listen)) => HttpProxyConfig::new(listen.clone()),
        (None, None) => {
            return Err(cli_error(
                "give a config file (-c proxy.ron) or --listen ADDR",
            ));
        }
    };
    if let Some(listen) = &args.listen {
        cfg.listen = listen.clone();
    }
    if let Some(auth) = &args.auth {
        let (user, password) = auth
            .split_once(':')
            .ok_or_else(|| cli_error("--auth takes USER:PASSWORD"))?;
        cfg.auth = Some(ProxyAuth {
            user: user.to_owned(),
            password: Secret::new(password),
        });
    }
    cfg.allow.extend(args.allow.iter().cloned());
    cfg.deny.extend(args.deny.iter().cloned());
    cfg.deny_local |= args.deny_local;
    if let Some(text) = &args.connect_timeout {
        cfg.connect_timeout = config::parse_duration(text)
            .map_err(|e| cli_error(&format!("--connect-timeout: {e}")))?;
    }
    cfg.workers = args.workers.or(cfg.workers);
    admin_flag(args.admin.as_deref(), &mut cfg.admin)?;
    cfg.validate()
}

/// `--admin ADDR` replaces the file's `admin`. Checked here, so that a bad
/// value is blamed on the flag, not on a config field nobody wrote.
fn admin_flag(flag: Option<&str>, admin: &mut Option<String>) -> Result<(), ConfigError> {
    if let Some(text) = flag {
        config::check_address(&Locator::new(&None), &[], "--admin", text, true)?;
        *admin = Some(text.to_owned());
    }
    Ok(())
}

/// `10000-20000` or `8080`.
fn parse_range(text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        cli_error(&format!(
            "--allow-ports {text:?}: expected LOW-HIGH or PORT, e.g. 10000-20000"
        ))
    };
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    Ok((lo, hi))
}

/// `PORT`, `REMOTE:PORT` or `REMOTE:HOST:PORT` (HOST may be `[v6]`), each
/// optionally after `udp:` (a UDP service), after `NAME=` (the service
/// name; `port-PORT`, or `udp-PORT`, without it) and before options
/// (`,proxy-protocol=v1` or `v2`).
pub fn parse_expose(spec: &str) -> Result<ServiceConfig, ConfigError> {
    let bad = || {
        cli_error(&format!(
            "--expose {spec:?}: expected [NAME=]PORT, [NAME=]REMOTE:PORT or [NAME=]REMOTE:HOST:PORT (with udp: before the port for a UDP service), then options such as ,proxy-protocol=v2; e.g. 8080, web=8080, web=10080:8080,proxy-protocol=v2 or dns=udp:10053:53"
        ))
    };
    let (address, options) = spec.split_once(',').unwrap_or((spec, ""));
    let mut proxy_protocol = None;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        proxy_protocol = Some(match option.to_ascii_lowercase().as_str() {
            "proxy-protocol=v1" => ProxyProtocol::V1,
            "proxy-protocol=v2" => ProxyProtocol::V2,
            _ => return Err(bad()),
        });
    }
    let (name, rest) = match address.split_once('=') {
        Some(("", _)) => return Err(bad()),
        Some((name, rest)) => (Some(name), rest),
        None => (None, address),
    };
    let (protocol, rest) = match rest.strip_prefix("udp:") {
        Some(rest) => (Protocol::Udp, rest),
        None => (Protocol::Tcp, rest),
    };
    let port = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (remote, local) = match rest.split_once(':') {
        None => (0, format!("127.0.0.1:{}", port(rest)?)),
        Some((remote, rest)) if rest.parse::<u16>().is_ok() => {
            (port(remote)?, format!("127.0.0.1:{rest}"))
        }
        Some((remote, rest)) => (port(remote)?, rest.to_owned()),
    };
    let local_port = local.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let prefix = match protocol {
        Protocol::Tcp => "port",
        Protocol::Udp => "udp",
    };
    Ok(ServiceConfig {
        name: name.map_or_else(|| format!("{prefix}-{local_port}"), str::to_owned),
        local,
        remote_port: remote,
        proxy_protocol,
        protocol,
    })
}

fn cli_error(message: &str) -> ConfigError {
    ConfigError {
        origin: PathBuf::from("<command line>"),
        line: 0,
        column: 0,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_forms() {
        let s = parse_expose("8080").expect("valid");
        assert_eq!(
            (s.remote_port, s.local.as_str(), s.name.as_str()),
            (0, "127.0.0.1:8080", "port-8080")
        );
        let s = parse_expose("10080:8080").expect("valid");
        assert_eq!((s.remote_port, s.local.as_str()), (10080, "127.0.0.1:8080"));
        let s = parse_expose("0:[::1]:22").expect("valid");
        assert_eq!((s.remote_port, s.local.as_str()), (0, "[::1]:22"));
        let s = parse_expose("web=10080:8080").expect("valid");
        assert_eq!(
            (s.remote_port, s.local.as_str(), s.name.as_str()),
            (10080, "127.0.0.1:8080", "web")
        );
        let s = parse_expose("ssh=10022:192.168.1.5:22").expect("valid");
        assert_eq!(
            (s.name.as_str(), s.local.as_str()),
            ("ssh", "192.168.1.5:22")
        );
        assert_eq!(parse_expose("web=8080").expect("valid").remote_port, 0);
        assert!(parse_expose("web").is_err());
        assert!(parse_expose("=8080").is_err());
        assert!(parse_expose("web=").is_err());
        assert!(parse_expose("99999").is_err());
        assert_eq!(parse_expose("8080").expect("valid").proxy_protocol, None);
        let s = parse_expose("web=10080:8080,proxy-protocol=v2").expect("valid");
        assert_eq!(
            (s.name.as_str(), s.remote_port, s.proxy_protocol),
            ("web", 10080, Some(ProxyProtocol::V2))
        );
        let s = parse_expose("0:[::1]:22,PROXY-PROTOCOL=V1").expect("valid");
        assert_eq!(
            (s.local.as_str(), s.proxy_protocol),
            ("[::1]:22", Some(ProxyProtocol::V1))
        );
        assert!(parse_expose("8080,proxy-protocol=v3").is_err());
        assert!(parse_expose("8080,").is_ok(), "an empty option is none");
        assert!(parse_expose("8080,udp").is_err());
    }

    #[test]
    fn workers_come_from_the_flag_then_the_file_then_one_per_core() {
        let dir = std::env::temp_dir().join(format!("porthole-workers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("server.ron");
        let text = r#"(bind: "127.0.0.1:0", token: "t", workers: 3)"#;
        std::fs::write(&path, text).expect("write config");
        let mut args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        assert_eq!(server_settings(&args, None).expect("valid").workers, 3);
        args.workers = Some(1);
        assert_eq!(server_settings(&args, None).expect("valid").workers, 1);
        args.workers = Some(0);
        let err = server_settings(&args, None).expect_err("zero workers");
        assert!(
            err.to_string().contains("workers 0 is out of range"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
        let mut config = ServerConfig::new("127.0.0.1:0");
        config.token = Some(Secret::new("t"));
        let settings = config.validate().expect("valid");
        assert_eq!(settings.workers, crate::runtime::default_workers());
    }

    #[test]
    fn admin_flag_overrides_the_file_and_a_bad_one_names_the_flag() {
        let dir = std::env::temp_dir().join(format!("porthole-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("forward.ron");
        let text = r#"(forwards: [(listen: "127.0.0.1:0", target: "127.0.0.1:1")], admin: Some("127.0.0.1:9092"))"#;
        std::fs::write(&path, text).expect("write config");
        let mut args = ForwardArgs {
            config: Some(path.clone()),
            ..ForwardArgs::default()
        };
        let from_file = forward_settings(&args).expect("valid").admin;
        assert_eq!(from_file, Some("127.0.0.1:9092".parse().expect("address")));
        args.admin = Some("127.0.0.1:0".to_owned());
        let from_flag = forward_settings(&args).expect("valid").admin;
        assert_eq!(from_flag, Some("127.0.0.1:0".parse().expect("address")));
        args.admin = Some("9090".to_owned());
        let err = forward_settings(&args).expect_err("a port without a host");
        let text = err.to_string();
        assert!(text.contains("--admin \"9090\""), "{text}");
        assert!(text.contains("127.0.0.1:9090"), "{text}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn server_flags_repeat_and_replace_the_files_list() {
        let dir = std::env::temp_dir().join(format!("porthole-servers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("client.ron");
        let text = r#"(server: ["127.0.0.1:7000", "127.0.0.1:7001"], token: "t",
            services: [(name: "web", local: "127.0.0.1:8080")])"#;
        std::fs::write(&path, text).expect("write config");
        let mut args = ClientArgs {
            config: Some(path.clone()),
            ..ClientArgs::default()
        };
        let from_file = client_settings(&args, None).expect("valid").server;
        assert_eq!(from_file, ["127.0.0.1:7000", "127.0.0.1:7001"]);
        args.server = vec!["127.0.0.1:7002".to_owned()];
        let one = client_settings(&args, None).expect("valid").server;
        assert_eq!(one, ["127.0.0.1:7002"], "the flag replaces the list");
        args.server.push("127.0.0.1:7003".to_owned());
        let two = client_settings(&args, None).expect("valid").server;
        assert_eq!(two, ["127.0.0.1:7002", "127.0.0.1:7003"]);
        args.server.push("127.0.0.1:7002".to_owned());
        let err = client_settings(&args, None).expect_err("a server twice");
        assert!(err.to_string().contains("given twice"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
        let flags_only = ClientArgs {
            server: vec!["127.0.0.1:7000".to_owned(), "127.0.0.1:7001".to_owned()],
            token: Some("t".to_owned()),
            expose: vec!["8080".to_owned()],
            ..ClientArgs::default()
        };
        let settings = client_settings(&flags_only, None).expect("valid");
        assert_eq!(settings.server, ["127.0.0.1:7000", "127.0.0.1:7001"]);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("10000-20000").expect("valid"), (10000, 20000));
        assert_eq!(parse_range("8080").expect("valid"), (8080, 8080));
        assert!(parse_range("a-b").is_err());
    }
}
