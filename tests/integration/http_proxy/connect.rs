//! CONNECT: early bytes, a TLS handshake through the tunnel, many tunnels at
//! once, and the real binary.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::sync::Arc;

use super::http::*;
use crate::common::*;

/// Sends CONNECT (plus `early` in the same write) and reads the response head
/// byte by byte, so no tunnel byte is consumed. Returns the raw stream.
async fn connect_through(proxy: SocketAddr, target: SocketAddr, early: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.expect("connect to proxy");
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).await.expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        s.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[test]
fn bytes_sent_right_after_the_connect_head_reach_the_origin() {
    run_test(async {
        let echo = echo_service().await;
        let proxy = start(settings()).await;
        let early = payload(3, 1000);
        let tunnel = connect_through(proxy.addr, echo.addr, &early).await;
        let rest = payload(4, 2 * 1024 * 1024 + 3);
        let mut sent = early.clone();
        sent.extend(&rest);
        let got = exchange_on(tunnel, &rest).await.expect("tunnel round trip");
        assert_eq!(got.len(), sent.len());
        assert_eq!(
            sha256(&got),
            sha256(&sent),
            "early bytes first, then the rest"
        );
        within(PROMPTLY, "tunnel closed", proxy.proxy.stats().wait_idle()).await;
        let stats = proxy.proxy.stats().snapshot();
        assert_eq!(stats.connects, 1);
        assert_eq!(stats.bytes_in, sent.len() as u64, "{stats}");
        assert_eq!(stats.bytes_out, sent.len() as u64, "{stats}");
    });
}

#[test]
fn tls_handshake_through_a_connect_tunnel() {
    run_test(async {
        let validity = porthole::gencert::Validity::days(1);
        let ca = porthole::gencert::Ca::new("test CA", validity).expect("CA");
        let leaf = ca
            .server(&["localhost".to_owned()], validity)
            .expect("leaf");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key");
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let tls_origin = serve(local_listener().await, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                let mut tls = acceptor.accept(stream).await?;
                let mut hello = [0u8; 5];
                tls.read_exact(&mut hello).await?;
                tls.write_all(b"secure ").await?;
                tls.write_all(&hello).await?;
                tls.close().await
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem.cert.as_bytes()).expect("ca cert"))
            .expect("trust the CA");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let proxy = start(settings()).await;
        let tunnel = connect_through(proxy.addr, tls_origin.addr, b"").await;
        let name = ServerName::try_from("localhost").expect("name");
        let connector = TlsConnector::from(Arc::new(client));
        let mut tls = within(PROMPTLY, "TLS handshake", connector.connect(name, tunnel))
            .await
            .expect("TLS handshake through the tunnel");
        tls.write_all(b"hello").await.expect("send");
        let mut got = Vec::new();
        within(PROMPTLY, "TLS reply", tls.read_to_end(&mut got))
            .await
            .expect("read");
        assert_eq!(got, b"secure hello");
    });
}

#[test]
fn two_hundred_concurrent_connect_tunnels_stay_intact() {
    run_test(async {
        let echo = echo_service().await;
        let proxy = start(settings()).await;
        let (proxy_addr, echo_addr) = (proxy.addr, echo.addr);
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                smol::spawn(async move {
                    let early = payload(500 + i, 100);
                    let tunnel = connect_through(proxy_addr, echo_addr, &early).await;
                    let rest = payload(1000 + i, 64 * 1024 + 1);
                    let got = exchange_on(tunnel, &rest).await.expect("round trip");
                    let mut sent = early;
                    sent.extend(&rest);
                    assert_eq!(sha256(&got), sha256(&sent), "tunnel {i}");
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        within(PROMPTLY, "tunnels closed", proxy.proxy.stats().wait_idle()).await;
        let stats = proxy.proxy.stats().snapshot();
        assert_eq!(stats.connects, 200);
        assert!(stats.errors.is_empty(), "{stats}");
    });
}

#[test]
fn binary_serves_connect_and_check_accepts_the_example() {
    run_test(async {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/http-proxy.ron");
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_porthole"))
            .args(["check", "-c", example])
            .output()
            .expect("run porthole check");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(String::from_utf8_lossy(&check.stdout).contains("valid http-proxy config"));

        let echo = echo_service().await;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_porthole"))
            .args(["http-proxy", "--listen", "127.0.0.1:0", "--workers", "1"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start porthole http-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = smol::channel::bounded(1);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send_blocking(rest.trim().to_owned());
                }
            }
        });
        let addr: SocketAddr = within(PROMPTLY, "proxy announces its address", rx.recv())
            .await
            .expect("address line")
            .parse()
            .expect("socket address");
        let tunnel = connect_through(addr, echo.addr, b"early").await;
        let got = exchange_on(tunnel, b" and late").await.expect("round trip");
        assert_eq!(got, b"early and late");
        child.kill().expect("kill the proxy we started");
        child.wait().expect("reap it");
        reader.join().expect("stderr reader");
    });
}
