//! Command-line structs (argh); how their flags fold into each role's config
//! ([`settings`]); `porthole check`'s loading of a file of any role
//! ([`check`]); and `porthole status`, which asks a running one ([`status`]).
//! The top of the dependency graph: it knows every role and feature, so that
//! `config` and the features need not know each other.
//!
//! Precedence for every setting: command-line flag, then environment
//! (`PORTHOLE_TOKEN`), then the config file, then the built-in default.

use argh::{ArgsInfo, FromArgs};
use std::path::PathBuf;

pub mod check;
pub mod completions;
pub mod render;
pub mod settings;
pub mod status;

pub use check::{AnyConfig, load_any};
pub use settings::{
    TokenSource, client_settings, forward_settings, http_proxy_settings, parse_expose,
    server_settings, token_source,
};

/// Environment variable that supplies the token when `--token` is not given.
pub const TOKEN_ENV: &str = "PORTHOLE_TOKEN";

#[derive(FromArgs, ArgsInfo, Debug)]
/// porthole: expose TCP services behind NAT or a firewall through a public server.
/// Logs go to stderr; set PORTHOLE_LOG=error|warn|info|debug|trace (default info)
/// and PORTHOLE_LOG_FORMAT=text|json (default text).
#[argh(
    help_triggers("-h", "--help", "help"),
    example = "porthole demo\nporthole server --bind 0.0.0.0:7000 --allow-ports 10000-20000\nporthole client --server tunnel.example.com:7000 --expose web=8080",
    note = "Run `porthole <command> --help` for a command's flags and examples.",
    error_code(
        1,
        "runtime failure (e.g. authentication failed, a certificate the server refuses)."
    ),
    error_code(2, "usage or config error.")
)]
pub struct Cli {
    /// print the version, the git commit it was built from and the target, and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand)]
pub enum Command {
    Server(ServerArgs),
    Client(ClientArgs),
    Forward(ForwardArgs),
    HttpProxy(HttpProxyArgs),
    Check(CheckArgs),
    Status(StatusArgs),
    Demo(DemoArgs),
    GenCert(GenCertArgs),
    Completions(CompletionsArgs),
}

#[derive(FromArgs, ArgsInfo, Debug)]
/// Make a private CA and a server certificate (and optionally a client
/// certificate) for a TLS tunnel, and print the config lines to use them.
#[argh(
    subcommand,
    name = "gen-cert",
    help_triggers("-h", "--help", "help"),
    usage = "--name <name> [--name <name>...] [--out <out>] [--client] [--days <days>]",
    example = "porthole gen-cert --name tunnel.example.com --out certs\nporthole gen-cert --name tunnel.example.com --name 203.0.113.7 --client --out certs"
)]
pub struct GenCertArgs {
    /// required: DNS name or IP address clients use to reach the server (repeat for more)
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

#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// Forward TCP ports: every connection to LISTEN is relayed to TARGET (like socat
/// TCP-LISTEN,fork).
#[argh(
    subcommand,
    name = "forward",
    help_triggers("-h", "--help", "help"),
    example = "porthole forward 0.0.0.0:8080 10.0.0.5:80 [LISTEN TARGET ...]\nporthole forward -c forward.ron"
)]
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
    /// admin endpoint (/metrics, /healthz, /status), e.g. 127.0.0.1:9090; off by default
    #[argh(option)]
    pub admin: Option<String>,
    /// LISTEN TARGET pairs, e.g. 127.0.0.1:8080 127.0.0.1:80
    #[argh(positional)]
    pub pairs: Vec<String>,
}

#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// Run an HTTP forward proxy (CONNECT tunnels and http:// requests). SIGUSR1 logs
/// its counters (other porthole commands ignore SIGUSR1).
#[argh(
    subcommand,
    name = "http-proxy",
    help_triggers("-h", "--help", "help"),
    example = "porthole http-proxy --listen 127.0.0.1:3128\ncurl -x http://127.0.0.1:3128 https://example.com\nporthole http-proxy -c http-proxy.ron"
)]
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
    /// admin endpoint (/metrics, /healthz, /status), e.g. 127.0.0.1:9090; off by default
    #[argh(option)]
    pub admin: Option<String>,
}

#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// Run the public server: clients connect to it and it opens a public port per service.
/// The token comes from --token, else $PORTHOLE_TOKEN, else the config file.
#[argh(
    subcommand,
    name = "server",
    help_triggers("-h", "--help", "help"),
    example = "export PORTHOLE_TOKEN=\"$(head -c 24 /dev/urandom | base64)\"\nporthole server --bind 0.0.0.0:7000 --allow-ports 10000-20000\nporthole server --bind 0.0.0.0:7000 --cert certs/server.crt --key certs/server.key   # TLS\nporthole server -c server.ron"
)]
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
    /// use TLS for control and data links (implied by --cert/--key; needs them unless the
    /// config has them)
    #[argh(switch)]
    pub tls: bool,
    /// TLS certificate chain (PEM), e.g. from `porthole gen-cert`; implies --tls
    #[argh(option)]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM); implies --tls
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// demand client certificates signed by this CA (mutual TLS); implies --tls
    #[argh(option)]
    pub client_ca: Option<PathBuf>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
    /// admin endpoint (/metrics, /healthz, /status), e.g. 127.0.0.1:9090; off by default
    #[argh(option)]
    pub admin: Option<String>,
}

#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// Run a client next to private services and expose them through a server.
/// The token comes from --token, else $PORTHOLE_TOKEN, else the config file.
#[argh(
    subcommand,
    name = "client",
    help_triggers("-h", "--help", "help"),
    example = "export PORTHOLE_TOKEN=...the server's token...\nporthole client --server tunnel.example.com:7000 --expose 8080\nporthole client --server tunnel.example.com:7000 --expose web=10080:8080 --expose ssh=10022:192.168.1.5:22\nporthole client --server tunnel.example.com:7000 --ca certs/ca.crt --expose 8080   # TLS\nporthole client -c client.ron"
)]
pub struct ClientArgs {
    /// config file (RON); flags override its values
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// server address, e.g. tunnel.example.com:7000 (repeatable: a session with
    /// each; replaces the config's `server`)
    #[argh(option)]
    pub server: Vec<String>,
    /// shared secret, or with --id this client's own token (default: $PORTHOLE_TOKEN)
    #[argh(option)]
    pub token: Option<String>,
    /// this client's id among the server's `clients` (per-client credentials)
    #[argh(option)]
    pub id: Option<String>,
    /// expose a local port: [NAME=]PORT, [NAME=]REMOTE:PORT or [NAME=]REMOTE:HOST:PORT
    /// (repeatable); REMOTE 0 or omitted lets the server pick; NAME defaults to port-PORT;
    /// add ,proxy-protocol=v1 or ,proxy-protocol=v2 to tell the service each visitor's address
    #[argh(option)]
    pub expose: Vec<String>,
    /// accept a server running with --insecure-no-auth (it cannot prove it is the real server)
    #[argh(switch)]
    pub insecure_no_auth: bool,
    /// use TLS for control and data links (implied by --ca, --server-name, --cert, --key)
    #[argh(switch)]
    pub tls: bool,
    /// CA certificate (PEM) that signed the server's certificate (default: the system's);
    /// implies --tls
    #[argh(option)]
    pub ca: Option<PathBuf>,
    /// name the server's certificate must carry (default: the host of --server); implies --tls
    #[argh(option)]
    pub server_name: Option<String>,
    /// client certificate (PEM) for a server that demands one (mutual TLS); implies --tls
    #[argh(option)]
    pub cert: Option<PathBuf>,
    /// client private key (PEM); implies --tls
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// data-plane worker threads (default: `workers` in the config, else one per core)
    #[argh(option)]
    pub workers: Option<usize>,
    /// admin endpoint (/metrics, /healthz, /status), e.g. 127.0.0.1:9090; off by default
    #[argh(option)]
    pub admin: Option<String>,
}

#[derive(FromArgs, ArgsInfo, Debug)]
/// Validate a config file of any role and print the resolved settings (secrets masked).
#[argh(
    subcommand,
    name = "check",
    help_triggers("-h", "--help", "help"),
    example = "porthole check -c server.ron"
)]
pub struct CheckArgs {
    /// config file (RON) to check
    #[argh(option, short = 'c')]
    pub config: PathBuf,
}

#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// Ask a running porthole (any role) for its status through its admin endpoint
/// and print it as a table, or as JSON with --json.
#[argh(
    subcommand,
    name = "status",
    help_triggers("-h", "--help", "help"),
    example = "porthole status\nporthole status --admin 127.0.0.1:9091 --json\nporthole status -c server.ron",
    error_code(1, "nothing answers, or the answer is not a porthole status."),
    error_code(2, "usage or config error (a bad --admin, -c or --timeout).")
)]
pub struct StatusArgs {
    /// the admin endpoint to ask, e.g. 127.0.0.1:9090 (default: the config's `admin`,
    /// else 127.0.0.1:9090)
    #[argh(option)]
    pub admin: Option<String>,
    /// config file (RON) of any role: ask the endpoint its `admin` names
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// print the status as JSON, for scripts
    #[argh(switch)]
    pub json: bool,
    /// deadline for the whole exchange, e.g. 2s (default 5s)
    #[argh(option)]
    pub timeout: Option<String>,
}

#[derive(FromArgs, ArgsInfo, Debug)]
/// Start a server, a client and a tiny service on loopback, push traffic through the
/// tunnel, print what happened, and keep serving until Ctrl-C.
#[argh(subcommand, name = "demo", help_triggers("-h", "--help", "help"))]
pub struct DemoArgs {
    /// exit after the traffic check instead of serving until Ctrl-C
    #[argh(switch)]
    pub once: bool,
}

#[derive(FromArgs, ArgsInfo, Debug)]
/// Print a shell completion script for porthole's commands and flags.
#[argh(
    subcommand,
    name = "completions",
    help_triggers("-h", "--help", "help"),
    example = "porthole completions bash > ~/.local/share/bash-completion/completions/porthole\nporthole completions zsh > \"${{fpath[1]}}/_porthole\"\nporthole completions fish > ~/.config/fish/completions/porthole.fish"
)]
pub struct CompletionsArgs {
    /// bash, zsh or fish
    #[argh(positional)]
    pub shell: String,
}
