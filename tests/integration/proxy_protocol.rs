//! PROXY protocol headers both ways: the client writes one to a local service
//! that asks (`proxy_protocol`), over pooled, multiplexed and TLS links, for
//! IPv4 and IPv6 visitors; the server reads one from the balancers it trusts
//! (`accept_proxy_protocol`) and from nobody else. The expected headers are
//! written out here byte by byte from the spec, not by porthole's encoder.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::channel::{Receiver, unbounded};
use smol::net::TcpStream;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::time::Duration;

use crate::common::peers;
use crate::common::*;
use porthole::cidr::Cidr;
use porthole::config::{ProxyProtocol, ProxyTrust};

/// What each visitor sends before it half-closes.
const PAYLOAD: &[u8] = b"the visitor's own bytes\n";
/// The v2 signature (haproxy's proxy-protocol.txt, section 2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A service that records all each connection sends until EOF, then closes.
async fn recording_service() -> (Service, Receiver<Vec<u8>>) {
    let (tx, rx) = unbounded();
    let service = serve(local_listener().await, move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await?;
            let _ = tx.send(got).await;
            stream.close().await
        }
    });
    (service, rx)
}

/// Connects to `public`, sends `bytes` and the payload, half-closes, and
/// waits for the close; returns the visitor's own address.
async fn visit(public: SocketAddr, bytes: &[u8]) -> SocketAddr {
    within(PROMPTLY, "a visit", async {
        let mut stream = TcpStream::connect(public).await.expect("connect");
        let me = stream.local_addr().expect("visitor address");
        stream.write_all(bytes).await.expect("write");
        stream.write_all(PAYLOAD).await.expect("write");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        me
    })
    .await
}

async fn recorded(rx: &Receiver<Vec<u8>>) -> Vec<u8> {
    within(PROMPTLY, "the service's record", rx.recv())
        .await
        .expect("service alive")
}

/// The header the spec gives for a TCP connection from `src` to `dst`.
fn expected(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let v6 = src.is_ipv6();
    match version {
        ProxyProtocol::V1 => format!(
            "PROXY {} {} {} {} {}\r\n",
            if v6 { "TCP6" } else { "TCP4" },
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        )
        .into_bytes(),
        ProxyProtocol::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            h.push(0x21); // version 2, PROXY
            let octets = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.octets().to_vec(),
                IpAddr::V6(ip) => ip.octets().to_vec(),
            };
            let (family, len): (u8, u16) = if v6 { (0x21, 36) } else { (0x11, 12) };
            h.push(family);
            h.extend_from_slice(&len.to_be_bytes());
            h.extend(octets(src));
            h.extend(octets(dst));
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h
        }
    }
}

fn with_payload(mut header: Vec<u8>) -> Vec<u8> {
    header.extend_from_slice(PAYLOAD);
    header
}

/// Three services behind one tunnel, `public_bind` on `ip`: `v1` and `v2`
/// with headers, `off` without; each gets exactly the header the spec says
/// for the visitor's and the public address, then the visitor's bytes.
async fn headers_reach_services(make: fn() -> TunnelBuilder, ip: IpAddr) {
    let (v1, v1_rx) = recording_service().await;
    let (v2, v2_rx) = recording_service().await;
    let (off, off_rx) = recording_service().await;
    let tunnel = make()
        .server(|s| s.public_bind = ip)
        .service("v1", v1.addr)
        .service("v2", v2.addr)
        .service("off", off.addr)
        .client(|c| {
            for s in &mut c.services {
                s.proxy_protocol = match s.name.as_str() {
                    "v1" => Some(ProxyProtocol::V1),
                    "v2" => Some(ProxyProtocol::V2),
                    _ => None,
                };
            }
        })
        .start()
        .await;
    let public = |name: &str| SocketAddr::new(ip, tunnel.publics[name].port());
    for (name, rx, version) in [
        ("v1", &v1_rx, ProxyProtocol::V1),
        ("v2", &v2_rx, ProxyProtocol::V2),
    ] {
        // Twice: a pooled link's second visitor gets its own header.
        for _ in 0..2 {
            let me = visit(public(name), b"").await;
            let want = with_payload(expected(version, me, public(name)));
            assert_eq!(recorded(rx).await, want, "{name} over {ip}");
        }
    }
    visit(public("off"), b"").await;
    assert_eq!(recorded(&off_rx).await, PAYLOAD, "no header when off");
    tunnel.stop().await;
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn pooled() -> TunnelBuilder {
    TunnelBuilder::new().pooled(2)
}

fn multiplexed() -> TunnelBuilder {
    TunnelBuilder::new().multiplexed(1)
}

fn tls() -> TunnelBuilder {
    TunnelBuilder::new().tls()
}

#[test]
fn services_get_the_visitors_address_over_pooled_links() {
    run_test(async {
        headers_reach_services(pooled, V4).await;
        headers_reach_services(pooled, V6).await;
    });
}

#[test]
fn services_get_the_visitors_address_over_multiplexed_links() {
    run_test(async {
        headers_reach_services(multiplexed, V4).await;
        headers_reach_services(multiplexed, V6).await;
    });
}

#[test]
fn services_get_the_visitors_address_over_tls_links() {
    run_test(async {
        headers_reach_services(tls, V4).await;
        headers_reach_services(tls, V6).await;
    });
}

/// A server that trusts `from` for PROXY headers, and one service `v1`
/// (writing v1 headers) in front of a recorder; a scratch `plain` service
/// without headers in front of another.
struct Balanced {
    tunnel: Tunnel,
    v1_rx: Receiver<Vec<u8>>,
    plain_rx: Receiver<Vec<u8>>,
    _services: [Service; 2],
}

async fn balanced(from: &str) -> Balanced {
    let (v1, v1_rx) = recording_service().await;
    let (plain, plain_rx) = recording_service().await;
    let trust = ProxyTrust {
        from: vec![Cidr::parse(from).expect("cidr")],
        timeout: Duration::from_millis(500),
        max_header_len: 1024,
    };
    let tunnel = TunnelBuilder::new()
        .server(move |s| s.accept_proxy_protocol = Some(trust))
        .service("v1", v1.addr)
        .service("plain", plain.addr)
        .client(|c| c.services[0].proxy_protocol = Some(ProxyProtocol::V1))
        .start()
        .await;
    Balanced {
        tunnel,
        v1_rx,
        plain_rx,
        _services: [v1, plain],
    }
}

/// A v2 header for a TCP4 connection from `src` to `dst`, plus a TLV the
/// reader must skip.
fn balancer_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    balancer_v2_tlv(src, dst, b"abcd")
}

/// [`balancer_v2`] with a unique-id TLV (type 0x05) of `value`.
fn balancer_v2_tlv(src: SocketAddr, dst: SocketAddr, value: &[u8]) -> Vec<u8> {
    let mut h = expected(ProxyProtocol::V2, src, dst);
    let tlv_len = u16::try_from(value.len()).expect("short TLV");
    h[14..16].copy_from_slice(&(12 + 3 + tlv_len).to_be_bytes());
    h.push(0x05);
    h.extend_from_slice(&tlv_len.to_be_bytes());
    h.extend_from_slice(value);
    h
}

#[test]
fn a_trusted_balancers_header_names_the_visitor_end_to_end() {
    run_test(async {
        let b = balanced("127.0.0.0/8").await;
        let src: SocketAddr = "192.0.2.10:4321".parse().expect("literal");
        let dst: SocketAddr = "198.51.100.1:443".parse().expect("literal");
        let public = b.tunnel.publics["v1"];
        visit(public, &balancer_v2(src, dst)).await;
        let want = with_payload(expected(ProxyProtocol::V1, src, dst));
        assert_eq!(recorded(&b.v1_rx).await, want);
        // A header longer than the first peek (a 600-byte TLV; the cap is
        // 1024) is read whole, and not a byte more.
        visit(public, &balancer_v2_tlv(src, dst, &[b'x'; 600])).await;
        assert_eq!(recorded(&b.v1_rx).await, want);
        // A v1 header from the balancer works as well, on the other port,
        // and the service without headers gets only the visitor's bytes.
        let v1 = b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 80\r\n";
        visit(b.tunnel.publics["plain"], v1).await;
        assert_eq!(recorded(&b.plain_rx).await, PAYLOAD);
        b.tunnel.stop().await;
    });
}

#[test]
fn a_bad_or_missing_header_from_a_trusted_source_closes_only_that_connection() {
    run_test(async {
        let b = balanced("127.0.0.0/8").await;
        let public = b.tunnel.publics["v1"];
        // Not a header at all.
        let mut bad = TcpStream::connect(public).await.expect("connect");
        bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        assert_closed_within(&mut bad, PROMPTLY, "a connection without a header").await;
        // A header that never finishes: closed at the 500 ms deadline.
        let mut slow = TcpStream::connect(public).await.expect("connect");
        slow.write_all(&V2_SIGNATURE[..8]).await.expect("write");
        assert_closed_within(&mut slow, PROMPTLY, "a header that never ends").await;
        // Silence: the same deadline, not sooner.
        let mut silent = TcpStream::connect(public).await.expect("connect");
        let (waited, _) = assert_closed_within(&mut silent, PROMPTLY, "a silent connection").await;
        assert!(
            waited >= Duration::from_millis(400),
            "closed after {waited:?}"
        );
        // The port still serves a good one, and the service saw nothing else.
        let src: SocketAddr = "192.0.2.11:1".parse().expect("literal");
        visit(public, &balancer_v2(src, public)).await;
        let want = with_payload(expected(ProxyProtocol::V1, src, public));
        assert_eq!(recorded(&b.v1_rx).await, want);
        assert!(
            b.v1_rx.is_empty(),
            "bad connections never reached the service"
        );
        b.tunnel.stop().await;
    });
}

#[test]
fn from_an_untrusted_source_a_header_is_just_the_visitors_bytes() {
    run_test(async {
        // Trusts a documentation block: 127.0.0.1 is a stranger.
        let b = balanced("192.0.2.0/24").await;
        let forged = b"PROXY TCP4 192.0.2.66 192.0.2.1 1 2\r\n";
        let me = visit(b.tunnel.publics["plain"], forged).await;
        let mut want = forged.to_vec();
        want.extend_from_slice(PAYLOAD);
        assert_eq!(
            recorded(&b.plain_rx).await,
            want,
            "passed through untouched"
        );
        // The service with headers names the real visitor, and the forged
        // header follows as the visitor's bytes.
        let public = b.tunnel.publics["v1"];
        let me2 = visit(public, forged).await;
        let mut want = expected(ProxyProtocol::V1, me2, public);
        want.extend_from_slice(forged);
        want.extend_from_slice(PAYLOAD);
        assert_eq!(recorded(&b.v1_rx).await, want);
        assert_ne!(me, me2);
        b.tunnel.stop().await;
    });
}

/// nginx with `listen … proxy_protocol` behind the tunnel: it answers and
/// logs the visitor's address as its PROXY header gave it.
#[test]
fn nginx_behind_the_tunnel_sees_the_visitors_address() {
    let test = "proxy_protocol";
    let config = |dir: &std::path::Path, addr: SocketAddr| {
        let d = dir.display();
        format!(
            "{}http {{\n  {}\
               log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr';\n\
               access_log {d}/access.log pp;\n\
               server {{\n    listen {addr} proxy_protocol;\n\
                 location / {{ return 200 \"$proxy_protocol_addr $proxy_protocol_port\\n\"; }}\n\
               }}\n}}\n",
            peers::nginx_preamble(dir),
            peers::nginx_http_paths(dir),
        )
    };
    let Some(nginx) = peers::nginx(test, |_| {}, config) else {
        return;
    };
    let mut visitor = None;
    run_test(async {
        let addr = nginx.addr;
        let tunnel = TunnelBuilder::new()
            .service("web", addr)
            .client(|c| c.services[0].proxy_protocol = Some(ProxyProtocol::V2))
            .start()
            .await;
        let (me, answer) = within(PROMPTLY, "a request through the tunnel", async {
            let mut stream = TcpStream::connect(tunnel.public).await.expect("connect");
            let me = stream.local_addr().expect("address");
            let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            stream.write_all(request).await.expect("write");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.expect("read");
            (me, answer)
        })
        .await;
        let line = format!("{} {}\n", me.ip(), me.port());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&line), "nginx saw {line:?}: {answer}");
        visitor = Some(me);
        tunnel.stop().await;
    });
    // nginx writes the line before it closes the connection, which the
    // visitor read to its end.
    let me = visitor.expect("the request ran");
    let log = std::fs::read_to_string(nginx.dir.path().join("access.log")).expect("access log");
    let line = format!("{}:{} 127.0.0.1", me.ip(), me.port());
    assert!(log.lines().any(|l| l == line), "{line:?} in {log:?}");
}

/// The real binaries: a reload turns `proxy_protocol` on for a registered
/// service; its public port stays, and the next visitor comes with a header.
#[test]
fn a_reload_turns_headers_on_and_the_port_stays() {
    use crate::common::process::{Proc, porthole as args};
    use crate::common::tls::Pki;
    const LINE: Duration = Duration::from_secs(10);
    let (service, rx) = smol::block_on(recording_service());
    let mut server = Proc::spawn(args(&[
        "server",
        "--bind",
        "127.0.0.1:0",
        "--token",
        "reload-pp",
    ]));
    let control = server.address_after("listening for clients on ", LINE);
    let pki = Pki::new("pp-reload");
    let text = |extra: &str| {
        format!(
            r#"(server: "{control}", token: "reload-pp", services: [(name: "web", local: "{}"{extra})])"#,
            service.addr
        )
    };
    let config = pki.write("client.ron", &text(""));
    let mut client = Proc::spawn(args(&["client", "-c", &config.to_string_lossy()]));
    let public = client.address_after("service web is public at ", LINE);
    run_test(async {
        visit(public, b"").await;
        assert_eq!(recorded(&rx).await, PAYLOAD, "no header yet");
    });
    pki.write("client.ron", &text(", proxy_protocol: V1"));
    client.signal(nix::sys::signal::Signal::SIGHUP);
    client.wait_for(
        "service web: proxy_protocol off -> V1 (for new visitors)",
        LINE,
    );
    let again = client.address_after("service web is public at ", LINE);
    assert_eq!(again, public, "the port stays");
    run_test(async {
        let me = visit(public, b"").await;
        let want = with_payload(expected(ProxyProtocol::V1, me, public));
        assert_eq!(recorded(&rx).await, want);
    });
    drop(server);
}
