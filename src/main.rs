//! The `porthole` binary: parses the command line, sets up logging and signals,
//! runs one mode, and maps the outcome to an exit code (0 ok, 1 runtime failure,
//! 2 usage or config error).

#![forbid(unsafe_code)]

use argh::FromArgs;
use futures_lite::StreamExt;
use smol::channel::{Receiver, Sender};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

use porthole::cli::{self, AnyConfig, Cli, Command};
use porthole::reload::{self, Cause, Request};
use porthole::shutdown::{self, Signal, Trigger};
use porthole::transport::tls::Severity;
use porthole::{client, demo, forward, http_proxy, server};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match parse_command_line() {
        Ok(command) => command,
        Err(done) => return done,
    };
    // The demo tells its own story on stdout; its logs stay quiet unless asked.
    let default_level = if matches!(command, Command::Demo(_)) {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    if let Err(e) = porthole::logging::init(default_level) {
        return usage_error(&e);
    }
    match command {
        Command::Check(args) => check(&args.config),
        Command::Server(args) => run_server(args),
        Command::Client(args) => run_client(args),
        Command::Forward(args) => run_forward(&args),
        Command::HttpProxy(args) => run_http_proxy(&args),
        Command::Status(args) => status(&args),
        Command::Demo(args) => run_demo(args.once),
        Command::GenCert(args) => gen_cert(&args),
        Command::Completions(args) => match args.shell.parse() {
            Ok(shell) => {
                print!("{}", cli::completions::script(shell));
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        },
    }
}

/// The command to run; or the exit code once help, the version or a usage
/// error has been printed.
fn parse_command_line() -> Result<Command, ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    // Named as users type it, whatever path it was started by.
    let cli = match Cli::from_args(&["porthole"], &rest) {
        Ok(cli) => cli,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return Err(ExitCode::SUCCESS);
        }
        Err(early) => {
            // argh does not say which command it was parsing: the first
            // argument, when it names one.
            let command = rest.first().filter(|c| !c.starts_with('-'));
            let help = command.map_or("porthole --help".to_owned(), |c| {
                format!("porthole {c} --help")
            });
            let output = early.output.trim_end();
            return Err(usage_error(&format_args!(
                "{output}\nrun `{help}` for usage"
            )));
        }
    };
    match cli.command {
        _ if cli.version => {
            println!("{}", version());
            Err(ExitCode::SUCCESS)
        }
        Some(command) => Ok(command),
        None => Err(usage_error(
            &"no command given; run `porthole --help` for the list",
        )),
    }
}

/// `porthole 0.1.0 (commit 1234abcd5678, x86_64-unknown-linux-gnu)`.
fn version() -> String {
    let commit = match porthole::GIT_COMMIT {
        "" => "not built from a git checkout".to_owned(),
        commit => format!("commit {commit}"),
    };
    format!(
        "porthole {} ({commit}, {})",
        porthole::VERSION,
        porthole::TARGET
    )
}

/// Asks a running porthole for its status. A bad flag or config is a usage
/// error; no answer, or a wrong one, a runtime failure. Printed as
/// `error: …` like every one-shot command's, not logged.
fn status(args: &cli::StatusArgs) -> ExitCode {
    let target = match cli::status::target(args) {
        Ok(target) => target,
        Err(e) => return usage_error(&e),
    };
    match cli::status::fetch(target) {
        Ok(fetched) => {
            print!("{}", fetched.output(args.json));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Prints the config back as RON with every default resolved, and what is
/// wrong with the dates of its certificates: an expired one is an error
/// (exit 2), one not yet valid or expiring soon a warning.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match cli::load_any(path) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    let role = cli::render::role_name(&config);
    print!(
        "{}: valid {role} config\n{}",
        path.display(),
        cli::render::render(&config)
    );
    let warnings = match &config {
        AnyConfig::Server(s) => s.tls.as_ref().map(|t| t.certificate_warnings()),
        AnyConfig::Client(c) => c.tls.as_ref().map(|t| t.certificate_warnings()),
        AnyConfig::Forward(_) | AnyConfig::HttpProxy(_) => None,
    };
    let mut expired = false;
    for warning in warnings.unwrap_or_default() {
        match warning.severity() {
            Severity::Error => {
                expired = true;
                eprintln!("error: {warning}");
            }
            Severity::Warning => eprintln!("warning: {warning}"),
        }
    }
    if expired {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
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

/// What a command does on SIGUSR1: the HTTP proxy logs its counters.
type OnUsr1 = Box<dyn Fn() + Send>;

/// How a server or client reloads: SIGHUP and changes of its config file
/// feed `causes`, and `drive` (see `porthole::reload::drive`) loads the
/// config again and hands it to the running mode.
struct Reload {
    causes: (Sender<Cause>, Receiver<Cause>),
    /// The config file, watched for changes; `None` when run from flags.
    watch: Option<PathBuf>,
    drive: Box<dyn FnOnce(Receiver<Cause>) -> BoxedFuture + Send>,
}

type BoxedFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Reload {
    fn new<S, E>(watch: Option<PathBuf>, load: reload::Load<S, E>, mode: Sender<Request<S>>) -> Self
    where
        S: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Reload {
            causes: smol::channel::bounded(1),
            watch,
            drive: Box::new(move |causes| Box::pin(reload::drive(causes, load, mode))),
        }
    }

    /// Starts the driver and the file watch; both end when dropped.
    fn start(self) -> Vec<smol::Task<()>> {
        let (tx, rx) = self.causes;
        let mut tasks = vec![smol::spawn((self.drive)(rx))];
        if let Some(path) = self.watch {
            match reload::Watcher::new(&path) {
                Ok(watcher) => tasks.push(smol::spawn(async move {
                    if let Err(e) = watcher.run(tx).await {
                        warn!(
                            "stopped watching {}: {e}; SIGHUP still reloads",
                            path.display()
                        );
                    }
                })),
                Err(e) => warn!("config changes are not followed ({e}); SIGHUP reloads"),
            }
        }
        tasks
    }
}

/// The signals every long-running command handles, so that none of them
/// dies of a signal meant for another porthole process (`pkill -USR1
/// porthole`): SIGINT and SIGTERM drain it (a second one stops it at
/// once), SIGHUP reloads a server or client (`reload`), SIGUSR1 makes the
/// HTTP proxy report; otherwise they are logged and ignored. Registered
/// before anything else runs.
fn signals(on_usr1: Option<OnUsr1>, reload: Option<Sender<Cause>>) -> std::io::Result<Signal> {
    use async_signal::Signal as Sig;
    let (trigger, signal) = shutdown::channel();
    let mut signals = async_signal::Signals::new([Sig::Int, Sig::Term, Sig::Hup, Sig::Usr1])?;
    // Detached on purpose: it lives as long as the process and only fires the
    // trigger, which every component watches, or logs.
    smol::spawn(async move {
        let mut stopping = false;
        while let Some(Ok(sig)) = signals.next().await {
            let name = signal_name(sig);
            match sig {
                Sig::Int | Sig::Term if stopping => {
                    info!("received {name} again: stopping now");
                    std::process::exit(0);
                }
                Sig::Int | Sig::Term => {
                    // Server and client (the modes that reload) drain;
                    // forward and http-proxy stop at once.
                    match reload {
                        Some(_) => {
                            info!("received {name}: draining (send it again to stop at once)")
                        }
                        None => info!("received {name}, shutting down"),
                    }
                    stopping = true;
                    if let Some(n) = porthole::notify::notifier() {
                        n.stopping();
                    }
                    Trigger::fire(&trigger);
                }
                Sig::Usr1 => match &on_usr1 {
                    Some(report) => report(),
                    None => info!("received {name}: ignored (only http-proxy reports on it)"),
                },
                _ => match &reload {
                    // Full: a reload is already due.
                    Some(causes) => {
                        let _ = causes.try_send(Cause::Signal);
                    }
                    None => info!(
                        "received {name}: ignored (only server and client reload their config)"
                    ),
                },
            }
        }
    })
    .detach();
    Ok(signal)
}

fn signal_name(sig: async_signal::Signal) -> &'static str {
    use async_signal::Signal as Sig;
    match sig {
        Sig::Int => "SIGINT",
        Sig::Term => "SIGTERM",
        Sig::Hup => "SIGHUP",
        Sig::Usr1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Runs `mode` until it ends (after SIGINT/SIGTERM, once drained); any
/// error is a runtime failure.
fn run_until_signal<F, Fut, E>(on_usr1: Option<OnUsr1>, reload: Option<Reload>, mode: F) -> ExitCode
where
    F: FnOnce(Signal) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let causes = reload.as_ref().map(|r| r.causes.0.clone());
    let shutdown = match signals(on_usr1, causes) {
        Ok(s) => s,
        Err(e) => return runtime_error(&e),
    };
    raise_descriptor_limit();
    smol::block_on(async {
        let _reloading = reload.map(Reload::start);
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

fn run_server(args: cli::ServerArgs) -> ExitCode {
    let env_token = std::env::var(cli::TOKEN_ENV).ok();
    let source = cli::token_source(args.token.as_deref(), env_token.as_deref(), &args.config);
    let settings = match cli::server_settings(&args, env_token.clone()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if let Some(source) = source {
        info!("token from {source}");
    }
    porthole::runtime::init(settings.workers);
    let watch = args.config.clone();
    let (tx, requests) = smol::channel::bounded(1);
    let load: reload::Load<_, _> = Arc::new(move || cli::server_settings(&args, env_token.clone()));
    let reload = Reload::new(watch, load, tx);
    run_until_signal(None, Some(reload), |shutdown| async move {
        let listener = server::bind(&settings).await?;
        server::run_reloadable(listener, settings, shutdown, Some(requests)).await
    })
}

fn run_client(args: cli::ClientArgs) -> ExitCode {
    let env_token = std::env::var(cli::TOKEN_ENV).ok();
    let source = cli::token_source(args.token.as_deref(), env_token.as_deref(), &args.config);
    let settings = match cli::client_settings(&args, env_token.clone()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if let Some(source) = source {
        info!("token from {source}");
    }
    porthole::runtime::init(settings.workers);
    let watch = args.config.clone();
    let (tx, requests) = smol::channel::bounded(1);
    let load: reload::Load<_, _> = Arc::new(move || cli::client_settings(&args, env_token.clone()));
    let reload = Reload::new(watch, load, tx);
    run_until_signal(None, Some(reload), |shutdown| {
        client::run_reloadable(settings, shutdown, None, Some(requests))
    })
}

fn run_forward(args: &cli::ForwardArgs) -> ExitCode {
    let settings = match cli::forward_settings(args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    run_until_signal(None, None, |shutdown| async move {
        let forwards = forward::bind(&settings).await?;
        notify_ready();
        forward::run(forwards, settings.connect_timeout, shutdown).await
    })
}

fn run_http_proxy(args: &cli::HttpProxyArgs) -> ExitCode {
    let settings = match cli::http_proxy_settings(args) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    porthole::runtime::init(settings.workers);
    let (interval, proxy) = (settings.stats_interval, settings.proxy.clone());
    let proxy = http_proxy::Proxy::new(proxy);
    let stats = proxy.stats().clone();
    let report: OnUsr1 = Box::new(move || info!("http proxy stats: {}", stats.snapshot()));
    run_until_signal(Some(report), None, |shutdown| async move {
        let listener = http_proxy::bind(&settings).await?;
        notify_ready();
        http_proxy::run(listener, proxy, interval, shutdown).await
    })
}

/// Tells systemd (`Type=notify`) the command is serving; the server and the
/// client say it themselves once their listeners and endpoints are up.
fn notify_ready() {
    if let Some(n) = porthole::notify::notifier() {
        n.ready();
    }
}

/// Every outcome is printed as `error: …`, like any one-shot command's; a
/// mistake in the arguments is a usage error (exit 2).
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
        Err(e) if e.is_usage() => usage_error(&e),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn run_demo(once: bool) -> ExitCode {
    // `--once` ends by itself; without it the demo serves until a signal.
    let shutdown = if once {
        Signal::never()
    } else {
        match signals(None, None) {
            Ok(s) => s,
            Err(e) => return runtime_error(&e),
        }
    };
    smol::block_on(async {
        match demo::run(once, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => runtime_error(&e),
        }
    })
}
