//! Helpers shared by the integration tests, one file per concern:
//!
//! | file | what |
//! |---|---|
//! | `deadline.rs` | [`run_test`] and [`within`]: a deadline on every wait |
//! | `harness.rs` | in-process server and client, and [`TunnelBuilder`] |
//! | `multi.rs` | one client with several servers, on listeners the test keeps |
//! | `services.rs` | backends on `127.0.0.1:0` (echo, tagged echo, any handler) |
//! | `admin.rs` | the admin endpoint: requests, samples, polling a value |
//! | `assertions.rs` | payloads, round trips and the checks made on connections |
//! | `sockets.rs` | loopback socket pairs, relay sockets, resets |
//! | `raw.rs` | the client side of the wire protocol driven by hand |
//! | `tls.rs` | TLS material generated at test time |
//! | `udp.rs` | UDP responders (echo, DNS), visitors, resends, flow sockets |
//! | `proxy.rs` | a proxy between client and server that hands out its links |
//! | `process.rs` | the real `porthole` binary as a child process |
//! | `peers.rs` | real programs as peers (nginx, haproxy) on inherited listeners |
//! | `fixtures.rs` | config fixtures and the error each names |
//! | `fds.rs` | the process's descriptor count (not a module here, see there) |
//!
//! `tests/integration/main.rs` includes every file here as a private module, so
//! the compiler reports any helper that no test uses. The binaries that need a
//! process of their own (descriptor counts, `RLIMIT_NOFILE`, a global log
//! subscriber, every worker pinned) declare `pub mod common` instead: they use a
//! few helpers each, and a helper they do not use is not dead for that.

pub mod admin;
pub mod assertions;
pub mod deadline;
pub mod fixtures;
pub mod harness;
pub mod multi;
pub mod peers;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod services;
pub mod sockets;
pub mod tls;
pub mod udp;

pub use assertions::*;
pub use deadline::*;
pub use harness::*;
pub use multi::*;
pub use raw::*;
pub use services::*;
pub use sockets::*;
