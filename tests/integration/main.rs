//! Every loopback integration test that can share a process, as one test binary
//! (one link, and the compiler sees every helper in `tests/common/` used): the
//! tunnel end to end, registration, misbehaving peers, liveness, pooled and
//! multiplexed links, TLS, aborts, the relay engines, one client with several
//! servers, `porthole forward`, the
//! HTTP proxy, the admin endpoint of every role, the real binary with its
//! config messages, `porthole status` and JSON logs, where links dial and
//! public ports bind, and UDP services.
//!
//! Tests that need a process of their own stay in their own binaries:
//! `relay_fds` and `held_visitors` count this process's descriptors,
//! `held_visitors`, `flood` and `tunnel_load` raise `RLIMIT_NOFILE` and open
//! thousands of sockets, `flood` installs the global log subscriber, and
//! `saturation` pins every worker of the process-wide runtime.

#[path = "../common/mod.rs"]
mod common;

mod aborts;
mod balancer;
mod check;
mod cli;
mod completions;
mod credentials;
mod dead_links;
mod dial;
mod fd_exhaustion;
mod first_hour;
mod forward;
mod hostile;
mod http_proxy;
mod link_reuse;
mod live;
mod liveness;
mod log_format;
mod metrics;
mod metrics_modes;
mod mux;
mod pool;
mod proxy_protocol;
mod registration;
mod relay;
mod several_servers;
mod status_cmd;
mod tls;
mod tunnel;
mod udp;
