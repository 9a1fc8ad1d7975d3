//! Command-line structs (argh); how their flags fold into each role's config
//! ([`settings`]); and `porthole check`'s loading of a file of any role
//! ([`check`]). The top of the dependency graph: it knows every role and
//! feature, so that `config` and the features need not know each other.
//!
//! Precedence for every setting: command-line flag, then environment
//! (`PORTHOLE_TOKEN`), then the config file, then the built-in default.

use argh::FromArgs;
use std::path::PathBuf;

pub mod check;
pub mod settings;

pub use check::{AnyConfig, load_any};
pub use settings::{
    client_settings, forward_settings, http_proxy_settings, parse_expose, server_settings,
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
    /// IP address public ports bind on, e.g. 0.0.0.0 or :: (default: the IP of --bind)
    #[argh(option)]
    pub public_bind: Option<String>,
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
