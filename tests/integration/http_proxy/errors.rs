//! Error statuses, authentication, destination rules and timeouts.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::*;
use crate::common::*;
use porthole::http_proxy::{Proxy, ProxySettings};

#[test]
fn unreachable_origins_get_502_and_504() {
    run_test(async {
        let mut s = settings();
        s.connect_timeout = Duration::from_millis(300);
        let proxy = start(s).await;
        let (_bound, down) = refusing_address();
        let refused = ask(
            proxy.addr,
            format!("CONNECT {down} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(refused.status(), 502);
        assert!(String::from_utf8_lossy(&refused.body).contains("cannot connect"));
        // Refused locally by the default resolver: no DNS query leaves the host.
        let req = b"GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: h\r\n\r\n";
        let unresolvable = ask(proxy.addr, req).await;
        assert_eq!(unresolvable.status(), 502);
        assert!(String::from_utf8_lossy(&unresolvable.body).contains("cannot resolve"));
        let (full, _fillers, _fd) = full_listener().await;
        let started = Instant::now();
        let timeout = ask(
            proxy.addr,
            format!("CONNECT {full} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(timeout.status(), 504, "{:?}", timeout.body);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let errors = proxy.proxy.stats().snapshot().errors;
        assert_eq!(errors, vec![(502, 2), (504, 1)]);
    });
}

#[test]
fn malformed_oversize_and_unsupported_requests_are_refused() {
    run_test(async {
        let proxy = start(settings()).await;
        let big = format!(
            "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let cases: [(&[u8], u16); 6] = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /origin-form HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"TRACE http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 405),
            (
                b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
            (big.as_bytes(), 431),
        ];
        for (request, status) in cases {
            let m = ask(proxy.addr, request).await;
            assert_eq!(
                m.status(),
                status,
                "{}",
                String::from_utf8_lossy(&request[..20])
            );
            assert_eq!(
                m.headers.get("connection").map(String::as_str),
                Some("close")
            );
            assert!(!m.body.is_empty(), "a short text body");
        }
    });
}

#[test]
fn auth_answers_407_then_lets_the_right_credentials_through() {
    run_test(async {
        let web =
            origin(|_| async { b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec() }).await;
        let mut s = settings();
        s.auth = Some(porthole::http_proxy::auth::Credentials::new(
            "alice", "s3cret",
        ));
        let proxy = start(s).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let bare = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        w.write_all(bare.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "407", read_response(&mut r))
            .await
            .expect("407");
        assert_eq!(m.status(), 407);
        let challenge = m.headers.get("proxy-authenticate").expect("a challenge");
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let wrong = porthole::http_proxy::auth::base64(b"alice:wrong");
        let req = format!(
            "GET http://{}/ HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic {wrong}\r\n\r\n",
            web.addr
        );
        w.write_all(req.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "407 again", read_response(&mut r))
            .await
            .expect("407");
        assert_eq!(m.status(), 407);
        // Same connection, right credentials (never forwarded to the origin).
        let right = porthole::http_proxy::auth::base64(b"alice:s3cret");
        let req = format!(
            "GET http://{}/ HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic {right}\r\n\r\n",
            web.addr
        );
        w.write_all(req.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "200", read_response(&mut r))
            .await
            .expect("200");
        assert_eq!((m.status(), m.body.as_slice()), (200, &b"ok"[..]));
        let echo = echo_service().await;
        let connect = format!(
            "CONNECT {} HTTP/1.1\r\nProxy-Authorization: basic {right}\r\n\r\n",
            echo.addr
        );
        let (mut w, mut r) = dial(proxy.addr).await;
        w.write_all(connect.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "200", read_head(&mut r))
            .await
            .expect("200");
        assert_eq!(m.status(), 200);
    });
}

#[test]
fn deny_rules_and_the_tunnel_default_refuse_destinations() {
    run_test(async {
        let echo = echo_service().await;
        let connect = |to: String| format!("CONNECT {to} HTTP/1.1\r\n\r\n").into_bytes();
        // An explicit deny rule by address and port.
        let s = settings()
            .with_rules(&[], &[format!("127.0.0.1:{}", echo.addr.port())])
            .expect("rules");
        let proxy = start(s).await;
        assert_eq!(
            ask(proxy.addr, &connect(echo.addr.to_string()))
                .await
                .status(),
            403
        );
        // The tunnel default denies loopback, also behind a name that resolves to it.
        let names = HashMap::from([("sneaky.test".to_owned(), echo.addr)]);
        let dns = Arc::new(FakeDns(names));
        let mut tunnel = ProxySettings::for_tunnel();
        tunnel.connect_timeout = PROMPTLY;
        let proxy = start_with(Proxy::with_resolver(tunnel.clone(), dns.clone())).await;
        assert_eq!(
            ask(proxy.addr, &connect(echo.addr.to_string()))
                .await
                .status(),
            403
        );
        let m = ask(
            proxy.addr,
            &connect(format!("sneaky.test:{}", echo.addr.port())),
        )
        .await;
        assert_eq!(m.status(), 403);
        assert!(String::from_utf8_lossy(&m.body).contains("loopback"));
        // Unless allowed by address: then the tunnel works.
        let opened = tunnel
            .with_rules(&[format!("127.0.0.1:{}", echo.addr.port())], &[])
            .expect("rules");
        let proxy = start_with(Proxy::with_resolver(opened, dns)).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        w.write_all(&connect(format!("sneaky.test:{}", echo.addr.port())))
            .await
            .expect("send");
        let m = within(PROMPTLY, "200", read_head(&mut r))
            .await
            .expect("head");
        assert_eq!(m.status(), 200);
        w.write_all(b"ping").await.expect("send");
        let mut pong = [0u8; 4];
        within(PROMPTLY, "echo", r.read_exact(&mut pong))
            .await
            .expect("echo");
        assert_eq!(&pong, b"ping");
    });
}

#[test]
fn head_and_idle_timeouts_close_slow_clients() {
    run_test(async {
        let web =
            origin(|_| async { b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec() }).await;
        let mut s = settings();
        s.head_timeout = Duration::from_millis(200);
        s.idle_timeout = Duration::from_millis(200);
        let proxy = start(s).await;
        // A head that never ends: 408.
        let (mut w, mut r) = dial(proxy.addr).await;
        w.write_all(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: ")
            .await
            .expect("send");
        let m = within(PROMPTLY, "408", read_response(&mut r))
            .await
            .expect("408");
        assert_eq!(m.status(), 408);
        // An idle keep-alive connection is closed after one exchange.
        let (mut w, mut r) = dial(proxy.addr).await;
        let req = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        w.write_all(req.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "200", read_response(&mut r))
            .await
            .expect("200");
        assert_eq!(m.status(), 200);
        let mut rest = Vec::new();
        within(PROMPTLY, "idle close", r.read_to_end(&mut rest))
            .await
            .expect("closed");
        assert!(rest.is_empty());
        within(PROMPTLY, "all closed", proxy.proxy.stats().wait_idle()).await;
        assert_eq!(proxy.proxy.stats().snapshot().active, 0);
    });
}
