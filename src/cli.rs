//! Command-line structs (argh) and how their flags fold into the config.
//!
//! Precedence for every setting: command-line flag, then environment
//! (`PORTHOLE_TOKEN`), then the config file, then the built-in default.

use argh::FromArgs;
use std::path::PathBuf;

use crate::config::{
    self, ClientConfig, ClientSettings, ClientTls, ClientTransport, ConfigError, ForwardConfig,
    ForwardRule, ForwardSettings, HttpProxyConfig, HttpProxySettings, ProxyAuth, Secret,
    ServerConfig, ServerSettings, ServerTls, ServerTransport, ServiceConfig,
};

/// Environment variable that supplies the token when `--token` is not given.
pub const TOKEN_ENV: &str = "PORTHOLE_TOKEN";

#[derive(FromArgs, Debug)]
/// porthole: expose TCP services behind NAT or a firewall through a public server.
/// Logs go to stderr; set PORTHOLE_LOG=error|warn|info|debug|trace (default info).
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Server(ServerArgs),
    Client(ClientArgs),
    Forward(ForwardArgs),
    HttpProxy(HttpProxyArgs),
    Check(CheckArgs),
    Demo(DemoArgs),
    GenCert(GenCertArgs),
}

#[derive(FromArgs, Debug)]
/// Make a private CA and a server certificate (and optionally a client
/// certificate) for a TLS tunnel, and print the config lines to use them.
/// Example: porthole gen-cert --name tunnel.example.com --out certs
#[argh(subcommand, name = "gen-cert")]
pub struct GenCertArgs {
    /// DNS name or IP address clients use to reach the server (repeatable)
    #[argh(option)]
    pub name: Vec<String>,
    /// directory to write the files into (default: current directory)
    #[argh(option, default = "PathBuf::from(\".\")")]
    pub out: PathBuf,
    /// also make a client certificate for mutual TLS
    #[argh(switch)]
    pub client: bool,
    /// validity in days (default 825)
    #[argh(option, default = "crate::gencert::DEFAULT_DAYS")]
    pub days: u32,
}

#[derive(FromArgs, Debug, Default)]
/// Forward TCP ports: every connection to LISTEN is relayed to TARGET (like socat
/// TCP-LISTEN,fork). Example: porthole forward 0.0.0.0:8080 10.0.0.5:80 [LISTEN TARGET ...]
#[argh(subcommand, name = "forward")]
pub struct ForwardArgs {
    /// config file (RON) with `forwards: [(listen, target)]`
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// deadline for connecting to a target, e.g. 5s (default 10s)
    #[argh(option)]
    pub connect_timeout: Option<String>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
    /// LISTEN TARGET pairs, e.g. 127.0.0.1:8080 127.0.0.1:80
    #[argh(positional)]
    pub pairs: Vec<String>,
}

#[derive(FromArgs, Debug, Default)]
/// Run an HTTP forward proxy (CONNECT tunnels and http:// requests). SIGUSR1 logs
/// its counters. Example: porthole http-proxy --listen 127.0.0.1:3128, then
/// curl -x http://127.0.0.1:3128 https://example.com
#[argh(subcommand, name = "http-proxy")]
pub struct HttpProxyArgs {
    /// config file (RON); flags override its values
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// address to listen on, e.g. 127.0.0.1:3128
    #[argh(option)]
    pub listen: Option<String>,
    /// require Basic proxy authentication, USER:PASSWORD (visible in `ps`; prefer the config)
    #[argh(option)]
    pub auth: Option<String>,
    /// allow only destinations matching: host glob, IP or CIDR, optional :PORTS (repeatable)
    #[argh(option)]
    pub allow: Vec<String>,
    /// deny destinations matching a rule (repeatable); deny beats allow
    #[argh(option)]
    pub deny: Vec<String>,
    /// deny loopback and link-local destinations unless allowed by address
    #[argh(switch)]
    pub deny_local: bool,
    /// deadline for resolving and connecting to an origin, e.g. 5s (default 10s)
    #[argh(option)]
    pub connect_timeout: Option<String>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
}

#[derive(FromArgs, Debug, Default)]
/// Run the public server: clients connect to it and it opens a public port per service.
#[argh(subcommand, name = "server")]
pub struct ServerArgs {
    /// config file (RON); flags override its values
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// address to listen on for clients, e.g. 0.0.0.0:7000 or [::]:7000
    #[argh(option)]
    pub bind: Option<String>,
    /// shared secret clients must prove (default: $PORTHOLE_TOKEN)
    #[argh(option)]
    pub token: Option<String>,
    /// public ports clients may use, e.g. 10000-20000 or 8080 (repeatable)
    #[argh(option)]
    pub allow_ports: Vec<String>,
    /// run without authentication: anyone who reaches the server can expose ports
    #[argh(switch)]
    pub insecure_no_auth: bool,
    /// use TLS for control and data links (needs --cert and --key unless the config has them)
    #[argh(switch)]
    pub tls: bool,
    /// TLS certificate chain (PEM), e.g. from `porthole gen-cert`
    #[argh(option)]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// demand client certificates signed by this CA (mutual TLS)
    #[argh(option)]
    pub client_ca: Option<PathBuf>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
}

#[derive(FromArgs, Debug, Default)]
/// Run a client next to private services and expose them through a server.
#[argh(subcommand, name = "client")]
pub struct ClientArgs {
    /// config file (RON); flags override its values
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// server address, e.g. tunnel.example.com:7000
    #[argh(option)]
    pub server: Option<String>,
    /// shared secret (default: $PORTHOLE_TOKEN)
    #[argh(option)]
    pub token: Option<String>,
    /// expose a local port: PORT, REMOTE:PORT or REMOTE:HOST:PORT (repeatable); REMOTE 0 or
    /// omitted lets the server pick a public port
    #[argh(option)]
    pub expose: Vec<String>,
    /// accept a server running with --insecure-no-auth (it cannot prove it is the real server)
    #[argh(switch)]
    pub insecure_no_auth: bool,
    /// use TLS for control and data links
    #[argh(switch)]
    pub tls: bool,
    /// CA certificate (PEM) that signed the server's certificate (default: the system's)
    #[argh(option)]
    pub ca: Option<PathBuf>,
    /// name the server's certificate must carry (default: the host of --server)
    #[argh(option)]
    pub server_name: Option<String>,
    /// client certificate (PEM) for a server that demands one (mutual TLS)
    #[argh(option)]
    pub cert: Option<PathBuf>,
    /// client private key (PEM)
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
}

#[derive(FromArgs, Debug)]
/// Validate a server or client config file and print the resolved settings (secrets masked).
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// config file (RON) to check
    #[argh(option, short = 'c')]
    pub config: PathBuf,
}

#[derive(FromArgs, Debug)]
/// Start a server, a client and a tiny service on loopback, push traffic through the
/// tunnel, print what happened, and keep serving until Ctrl-C.
#[argh(subcommand, name = "demo")]
pub struct DemoArgs {
    /// exit after the traffic check instead of serving until Ctrl-C
    #[argh(switch)]
    pub once: bool,
}

/// Resolves the server settings from a file and/or flags.
pub fn server_settings(
    args: &ServerArgs,
    env_token: Option<String>,
) -> Result<ServerSettings, ConfigError> {
    let mut cfg = match (&args.config, &args.bind) {
        (Some(path), _) => config::load_server(path)?,
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
    if let Some(token) = args.token.clone().or(env_token) {
        cfg.token = Some(Secret::new(token));
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
    server_tls_flags(args, &mut cfg.transport)?;
    cfg.validate()
}

/// `--tls` turns a TCP config into TLS; `--cert/--key/--client-ca` set or
/// override the files.
fn server_tls_flags(args: &ServerArgs, transport: &mut ServerTransport) -> Result<(), ConfigError> {
    let any_file = args.cert.is_some() || args.key.is_some() || args.client_ca.is_some();
    if !args.tls && !any_file {
        return Ok(());
    }
    if let ServerTransport::Tcp = transport {
        if !args.tls {
            return Err(cli_error(
                "--cert, --key and --client-ca need --tls (or a Tls transport in the config)",
            ));
        }
        if args.cert.is_none() || args.key.is_none() {
            return Err(cli_error(
                "--tls needs --cert and --key (make them with `porthole gen-cert`)",
            ));
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

/// `--tls` turns a TCP config into TLS; the other TLS flags set or override.
fn client_tls_flags(args: &ClientArgs, transport: &mut ClientTransport) -> Result<(), ConfigError> {
    let any = args.ca.is_some()
        || args.server_name.is_some()
        || args.cert.is_some()
        || args.key.is_some();
    if !args.tls && !any {
        return Ok(());
    }
    if let ClientTransport::Tcp = transport {
        if !args.tls {
            return Err(cli_error(
                "--ca, --server-name, --cert and --key need --tls (or a Tls transport in the config)",
            ));
        }
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
    let mut cfg = match (&args.config, &args.server) {
        (Some(path), _) => config::load_client(path)?,
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
    if let Some(server) = &args.server {
        cfg.server = server.clone();
    }
    if let Some(token) = token {
        cfg.token = Secret::new(token);
    }
    for spec in &args.expose {
        cfg.services.push(parse_expose(spec)?);
    }
    cfg.insecure_no_auth |= args.insecure_no_auth;
    cfg.workers = args.workers.or(cfg.workers);
    client_tls_flags(args, &mut cfg.transport)?;
    cfg.validate()
}

/// Resolves the forward settings from a file and/or LISTEN TARGET pairs.
pub fn forward_settings(args: &ForwardArgs) -> Result<ForwardSettings, ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => config::load_forward(path)?,
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
    cfg.validate()
}

/// Resolves the http-proxy settings from a file and/or flags.
pub fn http_proxy_settings(args: &HttpProxyArgs) -> Result<HttpProxySettings, ConfigError> {
    let mut cfg = match (&args.config, &args.listen) {
        (Some(path), _) => config::load_http_proxy(path)?,
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
    cfg.validate()
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

/// `PORT`, `REMOTE:PORT` or `REMOTE:HOST:PORT` (HOST may be `[v6]`).
pub fn parse_expose(spec: &str) -> Result<ServiceConfig, ConfigError> {
    let bad = || {
        cli_error(&format!(
            "--expose {spec:?}: expected PORT, REMOTE:PORT or REMOTE:HOST:PORT, e.g. 8080 or 10080:8080"
        ))
    };
    let port = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (remote, local) = match spec.split_once(':') {
        None => (0, format!("127.0.0.1:{}", port(spec)?)),
        Some((remote, rest)) if rest.parse::<u16>().is_ok() => {
            (port(remote)?, format!("127.0.0.1:{rest}"))
        }
        Some((remote, rest)) => (port(remote)?, rest.to_owned()),
    };
    let local_port = local.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    Ok(ServiceConfig {
        name: format!("port-{local_port}"),
        local,
        remote_port: remote,
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
        assert!(parse_expose("web").is_err());
        assert!(parse_expose("99999").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("10000-20000").expect("valid"), (10000, 20000));
        assert_eq!(parse_range("8080").expect("valid"), (8080, 8080));
        assert!(parse_range("a-b").is_err());
    }
}
