//! `porthole http-proxy` on loopback: plain requests (origin form, hop-by-hop
//! removal, keep-alive, Content-Length and chunked bodies), CONNECT (early
//! bytes, TLS through the tunnel, 200 concurrent tunnels), every error status,
//! authentication, destination rules, timeouts, stats and the real binary.
//!
//! Only 127.0.0.1 is ever contacted; names are resolved by an injected
//! resolver or refused locally (`.invalid`), never by a real DNS server.

mod http;

mod connect;
mod errors;
mod framing;
mod nginx;
mod origin_pool;
mod plain;
mod tunnel;
