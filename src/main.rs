//! The `porthole` binary: parses the command line, sets up logging and signals,
//! runs one mode, and maps the outcome to an exit code (0 ok, 1 runtime failure,
//! 2 usage or config error).

#![forbid(unsafe_code)]

use argh::FromArgs;
use futures_lite::StreamExt;
use std::process::ExitCode;
use tracing::{error, info, warn};

use porthole::cli::{self, AnyConfig, Cli, Command};
use porthole::shutdown::{self, Signal, Trigger};
use porthole::{client, demo, forward, http_proxy, server};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map_or("porthole", String::as_str);
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[name], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            return if early.status.is_ok() {
                println!("{}", early.output);
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", early.output);
                ExitCode::from(EXIT_USAGE)
            };
        }
    };
    // The demo tells its own story on stdout; its logs stay quiet unless asked.
    init_logging(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    match cli.command {
        Command::Check(args) => check(&args.config),
        Command::Server(args) => run_server(&args),
        Command::Client(args) => run_client(&args),
        Command::Forward(args) => run_forward(&args),
        Command::HttpProxy(args) => run_http_proxy(&args),
        Command::Demo(args) => run_demo(args.once),
        Command::GenCert(args) => gen_cert(&args),
    }
}

fn init_logging(default: &str) {
    let wanted = std::env::var("PORTHOLE_LOG").unwrap_or_else(|_| default.to_owned());
    let level = match wanted.to_ascii_lowercase().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
}

fn check(path: &std::path::Path) -> ExitCode {
    match cli::load_any(path) {
        Ok(AnyConfig::Server(s)) => {
            println!("{}: valid server config\n{s:#?}", path.display());
            ExitCode::SUCCESS
        }
        Ok(AnyConfig::Client(c)) => {
            println!("{}: valid client config\n{c:#?}", path.display());
            ExitCode::SUCCESS
        }
        Ok(AnyConfig::Forward(f)) => {
            println!("{}: valid forward config\n{f:#?}", path.display());
            ExitCode::SUCCESS
        }
        Ok(AnyConfig::HttpProxy(p)) => {
            println!("{}: valid http-proxy config\n{p:#?}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(&e),
    }
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn runtime_error(e: &dyn std::fmt::Display) -> ExitCode {
    error!("{e}");
    ExitCode::from(EXIT_RUNTIME)
}

/// Fires the returned signal on the first SIGINT or SIGTERM.
fn signals() -> std::io::Result<Signal> {
    let (trigger, signal) = shutdown::channel();
    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
    // Detached on purpose: it lives as long as the process and only fires the
    // trigger, which every component watches.
    smol::spawn(async move {
        if let Some(Ok(sig)) = signals.next().await {
            info!("received {sig:?}, shutting down");
            Trigger::fire(&trigger);
        }
    })
    .detach();
    Ok(signal)
}

/// Runs `mode` until it ends or SIGINT/SIGTERM; any error is a runtime failure.
fn run_until_signal<F, Fut, E>(mode: F) -> ExitCode
where
    F: FnOnce(Signal) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    raise_descriptor_limit();
    smol::block_on(async {
        let shutdown = match signals() {
            Ok(s) => s,
            Err(e) => return runtime_error(&e),
        };
        match mode(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => runtime_error(&e),
        }
    })
}

/// Every visitor costs descriptors (two at the server with a pooled link, two
/// at the client): lift the soft limit to the hard one and say what it allows.
fn raise_descriptor_limit() {
    match porthole::runtime::fds::raise_limit() {
        Ok(limit) => info!(
            "file descriptor limit {limit}: room for about {} visitors at once",
            limit / 2
        ),
        Err(e) => warn!("cannot raise the file descriptor limit: {e}"),
    }
}

fn run_server(args: &cli::ServerArgs) -> ExitCode {
    let settings = match cli::server_settings(args, std::env::var(cli::TOKEN_ENV).ok()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    run_until_signal(|shutdown| async move {
        let listener = server::bind(&settings).await?;
        server::run_configured(listener, settings, shutdown).await
    })
}

fn run_client(args: &cli::ClientArgs) -> ExitCode {
    let settings = match cli::client_settings(args, std::env::var(cli::TOKEN_ENV).ok()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    run_until_signal(|shutdown| client::run_configured(settings, shutdown, None))
}

fn run_forward(args: &cli::ForwardArgs) -> ExitCode {
    let settings = match cli::forward_settings(args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    run_until_signal(|shutdown| async move {
        let forwards = forward::bind(&settings).await?;
        forward::run(forwards, settings.connect_timeout, shutdown).await
    })
}

fn run_http_proxy(args: &cli::HttpProxyArgs) -> ExitCode {
    let settings = match cli::http_proxy_settings(args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    run_until_signal(|shutdown| async move {
        let listener = http_proxy::bind(&settings).await?;
        let proxy = http_proxy::Proxy::new(settings.proxy);
        log_stats_on_usr1(&proxy)?;
        http_proxy::run(listener, proxy, settings.stats_interval, shutdown).await
    })
}

/// Logs the proxy's counters on every SIGUSR1.
fn log_stats_on_usr1(proxy: &std::sync::Arc<http_proxy::Proxy>) -> std::io::Result<()> {
    let mut signals = async_signal::Signals::new([async_signal::Signal::Usr1])?;
    let stats = proxy.stats().clone();
    // Detached on purpose: it lives as long as the process and only logs.
    smol::spawn(async move {
        while let Some(Ok(_)) = signals.next().await {
            info!("http proxy stats: {}", stats.snapshot());
        }
    })
    .detach();
    Ok(())
}

fn gen_cert(args: &cli::GenCertArgs) -> ExitCode {
    let Some(name) = args.name.first() else {
        return usage_error(&"gen-cert needs --name (the host name or IP clients dial)");
    };
    match porthole::gencert::write_bundle(&args.out, &args.name, args.client, args.days) {
        Ok(written) => {
            for file in &written.files {
                println!("wrote {}", file.display());
            }
            print!("\n{}", written.instructions(name));
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(&e),
    }
}

fn run_demo(once: bool) -> ExitCode {
    smol::block_on(async {
        let shutdown = if once {
            Signal::never()
        } else {
            match signals() {
                Ok(s) => s,
                Err(e) => return runtime_error(&e),
            }
        };
        match demo::run(once, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => runtime_error(&e),
        }
    })
}
