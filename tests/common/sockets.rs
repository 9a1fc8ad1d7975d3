//! Raw loopback sockets for the relay and multiplexer tests: connected pairs
//! (optionally with a small receive buffer), the four sockets around one relay,
//! and a reset instead of a FIN on close.

use smol::net::TcpStream;

use super::services::local_listener;

/// Two connected loopback sockets: `(connecting side, accepted side)`. When
/// `accepted_rcvbuf` is set, SO_RCVBUF is set on the listener before the accept, so
/// the accepted socket inherits it and its window scale is chosen for it.
pub async fn tcp_pair_with(accepted_rcvbuf: Option<usize>) -> (TcpStream, TcpStream) {
    let listener = local_listener().await;
    if let Some(size) = accepted_rcvbuf {
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &size)
            .expect("set SO_RCVBUF on the listener");
    }
    let addr = listener.local_addr().expect("listener address");
    let (connected, (accepted, _)) =
        futures_lite::future::try_zip(TcpStream::connect(addr), listener.accept())
            .await
            .expect("loopback pair");
    (connected, accepted)
}

/// [`tcp_pair_with`] with default buffers.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    tcp_pair_with(None).await
}

/// The four sockets around one relay: `visitor ↔ [near | far] ↔ service`. The
/// relay is given `near` (its `a`) and `far` (its `b`), so `Moved::a_to_b` counts
/// visitor → service bytes.
pub struct RelaySockets {
    pub visitor: TcpStream,
    pub near: TcpStream,
    pub far: TcpStream,
    pub service: TcpStream,
}

/// Builds [`RelaySockets`]; `service_rcvbuf` shrinks the service's receive buffer.
pub async fn relay_sockets(service_rcvbuf: Option<usize>) -> RelaySockets {
    let (visitor, near) = tcp_pair().await;
    let (far, service) = tcp_pair_with(service_rcvbuf).await;
    RelaySockets {
        visitor,
        near,
        far,
        service,
    }
}

/// SO_LINGER {on, 0}: closing the last handle of `stream` sends RST instead of FIN.
pub fn reset_on_close(stream: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger)
        .expect("set SO_LINGER 0");
}

/// Moves a smol stream onto porthole's runtime, registered where this runs.
pub fn on_runtime(stream: TcpStream) -> porthole::runtime::TcpStream {
    porthole::runtime::TcpStream::from_smol(stream).expect("stream is not shared")
}
