//! The built-in proxy as a tunnel service (`local: "http-proxy"`): a visitor at
//! the server's public port browses through the client's network, over pooled
//! and multiplexed data links, and the tunnel default refuses the client
//! machine's loopback unless the client config allows it.

use futures_lite::AsyncWriteExt;

use super::http::ask;
use crate::common::*;
use porthole::config::{DataLinks, HTTP_PROXY_LOCAL};

/// A server, and a client exposing its built-in proxy as `proxy`.
async fn proxy_tunnel(data_links: DataLinks, allow: &[&str]) -> Tunnel {
    // Any valid address: `local` is replaced by the proxy's own.
    let placeholder: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    TunnelBuilder::new()
        .service("proxy", placeholder)
        .client(move |settings| {
            settings.services[0].local = HTTP_PROXY_LOCAL.to_owned();
            settings.data_links = data_links;
            settings.http_proxy.allow = allow;
        })
        .start()
        .await
}

#[test]
fn a_visitor_browses_through_the_clients_proxy_and_loopback_is_refused_by_default() {
    run_test(async {
        let origin = echo_service().await;
        for data_links in [
            DataLinks::Pooled { size: 2 },
            DataLinks::Multiplexed { links: 1 },
        ] {
            // Default: the client's loopback is off limits.
            let t = proxy_tunnel(data_links.clone(), &[]).await;
            let req = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
            let refused = ask(t.public, req.as_bytes()).await;
            assert_eq!(
                refused.status(),
                403,
                "{data_links:?}: {}",
                refused.raw_head
            );
            t.stop().await;

            // Allowed explicitly: CONNECT through the tunnel reaches the origin.
            let t = proxy_tunnel(data_links.clone(), &["127.0.0.1/32"]).await;
            let mut stream = smol::net::TcpStream::connect(t.public)
                .await
                .expect("connect");
            stream.write_all(req.as_bytes()).await.expect("CONNECT");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
                futures_lite::AsyncReadExt::read_exact(&mut stream, &mut byte)
                    .await
                    .expect("response head");
                head.push(byte[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            let data = payload(11, 300_000);
            let got = within(PROMPTLY, "echo through proxy", exchange_on(stream, &data))
                .await
                .expect("echo");
            assert_eq!(sha256(&got), sha256(&data), "{data_links:?}");
            t.stop().await;
        }
    });
}
