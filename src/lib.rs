//! porthole: a reverse tunnel for TCP services behind NAT or a firewall.
//!
//! ```text
//! visitor ──TCP──▶ public listener ┐                      ┌──▶ local service
//!                                  │ data links (pooled   │
//!                                  │   or multiplexed)    │
//!                          server ─┤══════════════════════╪═ client
//!                                  └─ control link ◀══════┘   (dials out)
//! ```
//!
//! A client dials the server, authenticates with an HMAC challenge–response over
//! a shared token ([`auth`], [`handshake`]), and registers services; the server
//! opens one public port per service. Each visitor of a public port is relayed
//! ([`relay`]) through a pre-opened, separately authenticated data link to the
//! client, which connects to the local service. `PROTOCOL.md` is the wire
//! specification; `../shared/DESIGN.md` in the team's tree the target design.
//!
//! # Architecture (read this first)
//!
//! ## Module map
//!
//! Dependencies point down the table: a module imports only from modules
//! below it (`protocol`, `mux`, `relay`, `transport` and `config` import
//! nothing from `server`, `client`, `http_proxy` or `cli`).
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | argh command-line structs, flags folded into configs, `check` of any role |
//! | [`reload`] | reloads: the config file's watch (inotify, debounced), loading it again, handing it to the running mode |
//! | [`demo`] | the one-process loopback demo |
//! | [`server`], [`client`] | policy: sessions, registry, public listeners, pools, reconnect |
//! | [`forward`] | `porthole forward`: one-hop TCP forwarding on the same relays; owns its settings |
//! | [`http_proxy`] | `porthole http-proxy`: CONNECT and absolute-form HTTP forward proxy; owns its settings and rule syntax |
//! | [`gencert`] | `porthole gen-cert`: a private CA and certificates (rcgen) |
//! | [`config`] | RON format, the one loader every role uses, error positions; the server and client schema |
//! | [`handshake`] | I/O-free client and server handshake machines (fuzzed), thin async drivers |
//! | [`transport`] | the `Transport` trait: TCP, and TLS (rustls) |
//! | [`mux`] | the stream multiplexer: codec, state machine, driver, stream type |
//! | [`relay`] | joining two streams with half-close semantics: splice, chunked or copy |
//! | [`wire`] | async frame I/O and deadlines |
//! | [`protocol`] | pure frame and chunk codecs, and PROXY protocol headers (fuzzed) |
//! | [`cidr`] | IP blocks: the HTTP proxy's rules and the server's trusted balancers |
//! | [`auth`] | HMAC proofs and nonces |
//! | [`runtime`] | the per-worker runtime: one epoll, run queue and timer map per worker thread; sockets registered once |
//! | [`tasks`], [`shutdown`], [`logfold`], [`logging`] | owned task sets, the shutdown signal, folded warnings, log output (level, colour) |
//! | [`notify`] | systemd's readiness protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`) without libsystemd |
//!
//! What a reload may change lives apart from what is fixed at start: the
//! server's settings are swapped whole (`server/live.rs` keeps what needs a
//! restart), the client's services in `client/live.rs`.
//!
//! `server/` and `client/` mirror each other: a long-lived part (`server::Shared`,
//! `client/context.rs`), the handshake (`server/handshake.rs`,
//! `client/dialer.rs`, both over [`handshake`]), one session per control link
//! (`session.rs`), pooled links (`pool.rs`) and multiplexed links (`muxed.rs`).
//!
//! ## The flow of one visitor
//!
//! 1. The client's session (`client/session.rs`) has authenticated its control
//!    link, registered its services and filled its pool: each pooled link is
//!    dialled and authenticated (`client/dialer.rs`) and waits idle for a
//!    `Start` (`client/pool.rs`).
//! 2. At the server the link joined its session's pool, in the shard of the
//!    worker its socket is registered with (`server/handshake.rs` →
//!    `server/pool.rs`).
//! 3. A visitor connects to a public port. Every worker has its own listener on
//!    it (`SO_REUSEPORT`, `server/registry.rs`). One from a trusted balancer
//!    first gives its PROXY header, whose source is the visitor from then on
//!    (`server/proxied.rs`). The accepting worker takes an
//!    idle link from its own shard (stealing only when it is empty) and writes
//!    `Start` (`server/visitor.rs`, `server/dispatch.rs`). With multiplexed
//!    links the visitor becomes a stream instead (`server/muxed.rs`, [`mux`]).
//! 4. The client reads `Start`, answers `Accept`, connects to the local service
//!    (writing a PROXY header first when the service asks, `client/dialer.rs`)
//!    and relays (`client/pool.rs` → [`relay`]); the server relays the visitor,
//!    keeping a bounded copy of its first bytes until `Accept` so that a dead
//!    link costs nothing but a retry on another link.
//! 5. When both directions end cleanly the client says `Idle` and the link
//!    goes back to the pool; an error resets both ends and retires the link.
//!
//! A visitor's sockets, its link, its relay and its pipe all live on one
//! worker thread from accept to close ([`runtime`]).
//!
//! A client with several servers runs all of this once per server
//! (`client/upstream.rs`, `client/reconnect.rs`): the servers share nothing.
//!
//! ## Who owns which task
//!
//! Every task is owned by a [`tasks::TaskSet`] (or a `Task` handle) whose
//! owner's drop cancels it; `.detach()` is for `main.rs` only.
//!
//! | owner | tasks |
//! |---|---|
//! | `server::run` | the control-port accept loop (control loop), one task per connection in its handshake or session (a session ends after its visitors drained), the log tickers, the reload task |
//! | a server `Session` | its control writer and heartbeat, its visitors (each on its worker), its mux drivers |
//! | the registry | the public listeners of every service (one per worker), the reapers of lingering ports |
//! | `client::run` | the built-in HTTP proxy, the log ticker, the reload task, the current session, and the links of sessions whose server drains (until their visitors end) |
//! | a client session | its control writer and heartbeat; through its `Links`, every pooled link (one task per link, dial to close) and the mux keepers, whose streams live in the mux link's own set |
//! | `forward::run`, `http_proxy::run` | one accept loop per worker, one task per connection on the accepting worker |
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod forward;
pub mod gencert;
pub mod handshake;
pub mod http_proxy;
pub mod logfold;
pub mod logging;
pub mod metrics;
pub mod mux;
pub mod notify;
pub mod protocol;
pub mod relay;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod tasks;
pub mod transport;
pub mod wire;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this binary was built from (12 hex digits), or empty when
/// it was not built from a checkout.
pub const GIT_COMMIT: &str = env!("PORTHOLE_GIT_COMMIT");
/// The target triple this binary was built for.
pub const TARGET: &str = env!("PORTHOLE_TARGET");
