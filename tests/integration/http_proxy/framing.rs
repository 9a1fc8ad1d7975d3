//! RFC 9110/9112 conformance where a proxy and an origin could disagree about
//! where a message ends: every refused framing is asserted by status *and* by
//! what a recording origin received (nothing, or exactly the intended bytes).

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::time::{Duration, Instant};

use super::http::*;
use crate::common::*;

/// A reply that lets the proxy go at once.
const CLOSE_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
/// Far beyond any test's deadline: a refusal that came from a timeout fails.
const SLOW: Duration = Duration::from_secs(60);
/// What a prompt refusal must beat.
const AT_ONCE: Duration = Duration::from_secs(2);

fn slow_settings() -> porthole::http_proxy::ProxySettings {
    let mut s = settings();
    s.head_timeout = SLOW;
    s.idle_timeout = SLOW;
    s
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn refused_framing_never_reaches_the_origin() {
    run_test(async {
        let web = recorder(CLOSE_OK).await;
        let proxy = start(slow_settings()).await;
        let o = web.addr;
        let smuggled = format!("GET http://{o}/smuggled HTTP/1.1\r\nHost: h\r\n\r\n");
        let post =
            |fields: &str| format!("POST http://{o}/ HTTP/1.1\r\nHost: h\r\n{fields}\r\nhello");
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (post("Connection: Content-Length\r\nContent-Length: 5\r\n").into(), 400),
            (post("Connection: x, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n").into(), 400),
            (post("Transfer-Encoding: chunked\x0c\r\n").into(), 400),
            (post("Content-Length: 5\x0c\r\n").into(), 400),
            (post("Content-Length: \u{a0}5\r\n").into(), 400),
            ([&b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: \xa05\r\n\r\n"[..]].concat(), 400),
            (post("Content-Length: 5\r\nContent-Length: 6\r\n").into(), 400),
            (post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").into(), 400),
            (format!("POST http://{o}/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into(), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\n\r\n").into(), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").into(), 400),
            (format!("GET http://{o}/ HTTP/1.1\nHost: h\n\n").into(), 400),
            (format!("GET http://{o}/ HTTP/3.0\r\nHost: h\r\n\r\n").into(), 505),
        ];
        for (mut request, status) in cases {
            request.extend_from_slice(smuggled.as_bytes());
            let started = Instant::now();
            let answer = raw_exchange(proxy.addr, &request).await;
            let text = String::from_utf8_lossy(&answer);
            let what = String::from_utf8_lossy(&request);
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} ")),
                "{what:?} → {text:?}"
            );
            // One answer, then the close: the smuggled request is never read.
            assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what:?} → {text:?}");
            assert!(
                started.elapsed() < AT_ONCE,
                "{what:?} took {:?}",
                started.elapsed()
            );
        }
        assert_eq!(web.accepts(), 0, "a refused request reached the origin");
    });
}

#[test]
fn repeated_content_length_is_forwarded_as_one() {
    run_test(async {
        let web = recorder(CLOSE_OK).await;
        let proxy = start(settings()).await;
        let request = format!(
            "POST http://{}/up HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello",
            web.addr
        );
        let resp = ask(proxy.addr, request.as_bytes()).await;
        assert_eq!((resp.status(), resp.body.as_slice()), (200, &b"ok"[..]));
        let seen = web.next().await;
        let expected = format!(
            "POST /up HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nVia: 1.1 porthole\r\n\r\nhello",
            web.addr
        );
        assert_eq!(String::from_utf8_lossy(&seen), expected);
    });
}

#[test]
fn malformed_chunked_upload_is_refused_at_once_and_counted() {
    run_test(async {
        // Answers nothing: only the proxy can end this exchange.
        let web = recorder(b"").await;
        let proxy = start(slow_settings()).await;
        let request = format!(
            "POST http://{0}/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n\
             GET http://{0}/smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
            web.addr
        );
        let started = Instant::now();
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert!(text.contains("malformed chunked body"), "{text}");
        assert!(started.elapsed() < AT_ONCE, "took {:?}", started.elapsed());
        let seen = web.next().await;
        assert!(
            !contains(&seen, b"hello") && !contains(&seen, b"smuggled"),
            "{seen:?}"
        );
        assert!(contains(&seen, b"Transfer-Encoding: chunked\r\n"));
        let errors = proxy.proxy.stats().snapshot().errors;
        assert_eq!(errors, vec![(400, 1)]);
    });
}

#[test]
fn unframed_or_unreadable_responses_are_502() {
    run_test(async {
        let proxy = start(settings()).await;
        for (reply, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n"[..],
                "Connection names a framing field",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\x0c\r\n\r\n",
                "Transfer-Encoding",
            ),
            (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
            (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF"),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
        ] {
            let web = recorder(reply).await;
            let request = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
            let resp = ask(proxy.addr, request.as_bytes()).await;
            let body = String::from_utf8_lossy(&resp.body);
            assert_eq!(resp.status(), 502, "{why}: {body}");
            assert!(body.starts_with("bad response from the origin"), "{body}");
            assert!(body.contains(why), "{why}: {body}");
        }
    });
}

#[test]
fn obs_text_passes_both_ways_byte_for_byte() {
    run_test(async {
        let reply = b"HTTP/1.1 200 D\xe9j\xe0 vu\r\nContent-Disposition: attachment; filename=\"caf\xe9.txt\"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let web = recorder(reply).await;
        let proxy = start(settings()).await;
        let request = [
            format!(
                "GET http://{}/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n",
                web.addr
            )
            .as_bytes(),
            b"X-Name: caf\xe9 \xff\r\n\r\n",
        ]
        .concat();
        let answer = raw_exchange(proxy.addr, &request).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200 D\xe9j\xe0 vu\r\n"),
            "{answer:?}"
        );
        assert!(contains(&answer, b"filename=\"caf\xe9.txt\"\r\n"));
        assert!(answer.ends_with(b"\r\n\r\nok"));
        assert!(contains(&web.next().await, b"\r\nX-Name: caf\xe9 \xff\r\n"));
    });
}

#[test]
fn max_forwards_zero_is_answered_here_and_trace_never_forwarded() {
    run_test(async {
        let web = recorder(CLOSE_OK).await;
        let proxy = start(settings()).await;
        let o = web.addr;
        let req = format!("OPTIONS http://{o}/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n");
        let resp = ask(proxy.addr, req.as_bytes()).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers["allow"].contains("OPTIONS"),
            "{:?}",
            resp.headers
        );
        let req = format!(
            "TRACE http://{o}/t HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nX-Probe: 1\r\nCookie: secret\r\n\r\n"
        );
        let resp = ask(proxy.addr, req.as_bytes()).await;
        let body = String::from_utf8_lossy(&resp.body);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers["content-type"], "message/http");
        assert!(
            body.starts_with("TRACE http://") && body.contains("X-Probe: 1"),
            "{body}"
        );
        assert!(!body.contains("secret"), "{body}");
        let req = format!("TRACE http://{o}/ HTTP/1.1\r\nHost: h\r\n\r\n");
        let resp = ask(proxy.addr, req.as_bytes()).await;
        assert_eq!(resp.status(), 405);
        assert!(resp.headers.contains_key("allow"));
        assert_eq!(web.accepts(), 0);
        let req = format!("OPTIONS http://{o}/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 3\r\n\r\n");
        assert_eq!(ask(proxy.addr, req.as_bytes()).await.status(), 200);
        let seen = String::from_utf8_lossy(&web.next().await).into_owned();
        assert!(
            seen.contains("\r\nMax-Forwards: 2\r\n") && !seen.contains(": 3"),
            "{seen}"
        );
    });
}

#[test]
fn an_http10_client_gets_no_interim_and_no_chunks() {
    run_test(async {
        let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let web = recorder(reply).await;
        let proxy = start(settings()).await;
        let request = format!("GET http://{}/ HTTP/1.0\r\n\r\n", web.addr);
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            !text.contains("100") && !text.contains("Transfer-Encoding"),
            "{text}"
        );
        assert!(
            text.contains("\r\nConnection: close\r\n") && text.ends_with("\r\n\r\nhello world"),
            "{text}"
        );
        let seen = String::from_utf8_lossy(&web.next().await).into_owned();
        assert!(
            seen.starts_with("GET / HTTP/1.1\r\n") && seen.contains("\r\nVia: 1.0 porthole\r\n"),
            "{seen}"
        );
    });
}

#[test]
fn any_method_token_and_minor_version_is_forwarded_with_via() {
    run_test(async {
        let web = recorder(b"HTTP/1.1 207 Multi-Status\r\nVia: 1.1 cache\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        let proxy = start(settings()).await;
        let request = format!(
            "PROPFIND http://{}/d HTTP/1.2\r\nHost: h\r\nDepth: 1\r\n\r\n",
            web.addr
        );
        let resp = ask(proxy.addr, request.as_bytes()).await;
        assert_eq!(resp.status(), 207);
        assert!(
            resp.raw_head
                .contains("\r\nVia: 1.1 cache\r\nContent-Length: 0\r\nVia: 1.1 porthole\r\n"),
            "{}",
            resp.raw_head
        );
        let seen = String::from_utf8_lossy(&web.next().await).into_owned();
        assert!(
            seen.starts_with("PROPFIND /d HTTP/1.1\r\n") && seen.contains("\r\nDepth: 1\r\n"),
            "{seen}"
        );
    });
}

#[test]
fn an_upgrade_the_origin_accepts_becomes_a_tunnel() {
    run_test(async {
        let web = serve(
            local_listener().await,
            |stream: smol::net::TcpStream| async move {
                let mut w = stream.clone();
                let mut r = futures_lite::io::BufReader::new(stream);
                let head = read_head(&mut r).await?;
                let asked = head.headers.get("upgrade").map(String::as_str) == Some("websocket")
                    && head.headers.get("connection").map(String::as_str) == Some("upgrade");
                let reply: &[u8] = if asked {
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nhi"
                } else {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                };
                w.write_all(reply).await?;
                futures_lite::io::copy(r, &mut w).await?;
                Ok(())
            },
        );
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let request = format!(
            "GET http://{}/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\nearly",
            web.addr
        );
        w.write_all(request.as_bytes()).await.expect("send");
        let head = within(PROMPTLY, "101", read_head(&mut r))
            .await
            .expect("head");
        assert_eq!(head.status(), 101, "{}", head.raw_head);
        assert_eq!(head.headers["upgrade"], "websocket");
        assert_eq!(head.headers["sec-websocket-accept"], "x");
        let mut got = [0u8; 7];
        within(
            PROMPTLY,
            "origin's first bytes and the echo",
            r.read_exact(&mut got),
        )
        .await
        .expect("bytes");
        assert_eq!(&got, b"hiearly");
        w.write_all(b"ping").await.expect("ping");
        let mut pong = [0u8; 4];
        within(PROMPTLY, "echo", r.read_exact(&mut pong))
            .await
            .expect("echo");
        assert_eq!(&pong, b"ping");
    });
}
