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
//! a shared token ([`auth`]), and registers services; the server opens one public
//! port per service. Each visitor of a public port is relayed ([`relay`]) through a
//! pre-opened, separately authenticated data link to the client, which connects
//! to the local service.
//!
//! Module map, dependencies pointing down:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | argh command-line structs, flags folded into configs, `check` of any role |
//! | [`server`], [`client`] | policy: sessions, registry, public listeners, pools, reconnect |
//! | [`forward`] | `porthole forward`: one-hop TCP forwarding on the same relays; owns its settings |
//! | [`http_proxy`] | `porthole http-proxy`: CONNECT and absolute-form HTTP forward proxy; owns its settings and rule syntax |
//! | [`demo`] | the one-process loopback demo |
//! | [`gencert`] | `porthole gen-cert`: a private CA and certificates (rcgen) |
//! | [`config`] | RON format, the one loader every role uses, error positions; the server and client schema |
//! | [`transport`] | the `Transport` trait: TCP, and TLS (rustls) |
//! | [`mux`] | the stream multiplexer: codec, state machine, driver, stream type |
//! | [`relay`] | joining two streams with half-close semantics: splice or copy |
//! | [`wire`] | async frame I/O and deadlines |
//! | [`protocol`] | pure frame codec (fuzzed) |
//! | [`auth`] | HMAC proofs and nonces |
//! | [`runtime`] | the per-worker runtime: one epoll, run queue and timer map per worker thread; sockets registered once |
//! | [`tasks`], [`shutdown`] | owned task sets, the shutdown signal |
//! | [`logfold`] | warnings a stranger can trigger, folded into one line per cause and interval |
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod forward;
pub mod gencert;
pub mod http_proxy;
pub mod logfold;
pub mod mux;
pub mod protocol;
pub mod relay;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod tasks;
pub mod transport;
pub mod wire;
