//! Absolute-form requests: origin form, hop-by-hop removal, keep-alive with
//! several requests per connection, chunked and Content-Length bodies both ways.

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::http::*;
use crate::common::*;

#[test]
fn get_is_forwarded_in_origin_form_without_hop_by_hop_fields() {
    run_test(async {
        let (seen_tx, seen_rx) = smol::channel::bounded(1);
        let web = origin(move |req: Message| {
            let seen = seen_tx.clone();
            async move {
                let _ = seen.send(req.raw_head).await;
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, X-Origin-Hop\r\nX-Origin-Hop: 1\r\nX-End: 2\r\n\r\nhello".to_vec()
            }
        })
        .await;
        let proxy = start(settings()).await;
        let request = format!(
            "GET http://{}/a/b?c=1 HTTP/1.1\r\nHost: ignored\r\nUser-Agent: t\r\nProxy-Connection: keep-alive\r\n\
             Connection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n",
            web.addr
        );
        let resp = ask(proxy.addr, request.as_bytes()).await;
        assert_eq!((resp.status(), resp.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(resp.headers.get("x-end").map(String::as_str), Some("2"));
        assert!(
            !resp.headers.contains_key("x-origin-hop"),
            "{:?}",
            resp.headers
        );
        assert_eq!(
            resp.headers.get("connection").map(String::as_str),
            Some("keep-alive")
        );
        let head = within(PROMPTLY, "origin saw the request", seen_rx.recv())
            .await
            .expect("head");
        let expected = format!(
            "GET /a/b?c=1 HTTP/1.1\r\nHost: {}\r\nUser-Agent: t\r\nVia: 1.1 porthole\r\n",
            web.addr
        );
        assert_eq!(head, expected);
        within(
            PROMPTLY,
            "connection closed",
            proxy.proxy.stats().wait_idle(),
        )
        .await;
        let stats = proxy.proxy.stats().snapshot();
        assert_eq!((stats.requests, stats.connects), (1, 0));
        assert!(stats.bytes_out > 5 && stats.bytes_in > 0, "{stats}");
    });
}

#[test]
fn keep_alive_carries_several_requests_on_one_connection() {
    run_test(async {
        let web = origin(|req: Message| async move {
            let path = req.first.split(' ').nth(1).unwrap_or_default().to_owned();
            match path.as_str() {
                "/chunked" => {
                    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    out.extend(chunked(b"chunked reply", 4));
                    out
                }
                "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
                "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                _ => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                    path.len()
                )
                .into_bytes(),
            }
        })
        .await;
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        // Two requests written back to back (pipelined), then more one by one.
        let two = format!(
            "GET http://{0}/one HTTP/1.1\r\nHost: h\r\n\r\nGET http://{0}/chunked HTTP/1.1\r\nHost: h\r\n\r\n",
            web.addr
        );
        w.write_all(two.as_bytes()).await.expect("send");
        let one = within(PROMPTLY, "first", read_response(&mut r))
            .await
            .expect("first");
        assert_eq!(one.body, b"/one");
        let second = within(PROMPTLY, "second", read_response(&mut r))
            .await
            .expect("second");
        assert_eq!(second.body, b"chunked reply");
        let head = format!("HEAD http://{}/head HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        w.write_all(head.as_bytes()).await.expect("send HEAD");
        let m = within(PROMPTLY, "HEAD", read_head(&mut r))
            .await
            .expect("HEAD response");
        assert_eq!(
            m.headers.get("content-length").map(String::as_str),
            Some("1000")
        );
        let empty = format!("GET http://{}/empty HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        w.write_all(empty.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "204", read_head(&mut r))
            .await
            .expect("204");
        assert_eq!(m.status(), 204);
        let last = format!(
            "GET http://{}/last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            web.addr
        );
        w.write_all(last.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "last", read_response(&mut r))
            .await
            .expect("last");
        assert_eq!(m.body, b"/last");
        assert_eq!(
            m.headers.get("connection").map(String::as_str),
            Some("close")
        );
        within(
            PROMPTLY,
            "connection closed",
            proxy.proxy.stats().wait_idle(),
        )
        .await;
        assert_eq!(proxy.proxy.stats().snapshot().requests, 5);
    });
}

#[test]
fn chunked_and_sized_bodies_stream_both_ways_intact() {
    run_test(async {
        // The origin answers a chunked request with its body, chunked, and a
        // sized request with the body's hash, sized.
        let web = origin(|req: Message| async move {
            if req
                .headers
                .get("transfer-encoding")
                .is_some_and(|t| t == "chunked")
            {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                out.extend(chunked(&req.body, 70_000));
                out
            } else {
                let hash = sha256(&req.body);
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", hash.len())
                    .into_bytes();
                out.extend(hash);
                out
            }
        })
        .await;
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let body = payload(1, 3 * 1024 * 1024 + 17);
        let mut request = format!(
            "POST http://{}/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            web.addr
        )
        .into_bytes();
        request.extend(chunked(&body, 65_537));
        let send = async { w.write_all(&request).await };
        let (sent, got) = futures_lite::future::zip(send, read_response(&mut r)).await;
        sent.expect("send chunked body");
        let got = got.expect("chunked response");
        assert_eq!(got.body.len(), body.len());
        assert_eq!(sha256(&got.body), sha256(&body), "chunked echo intact");
        // Same connection: a Content-Length body; the first bytes of the body
        // travel in the same write as the head.
        let body = payload(2, 1024 * 1024 + 1);
        let mut request = format!(
            "PUT http://{}/sized HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            web.addr,
            body.len()
        )
        .into_bytes();
        request.extend(&body);
        let send = async { w.write_all(&request).await };
        let (sent, got) = futures_lite::future::zip(send, read_response(&mut r)).await;
        sent.expect("send sized body");
        assert_eq!(got.expect("sized response").body, sha256(&body));
    });
}

#[test]
fn a_response_without_length_is_read_to_close_and_closes_the_client() {
    run_test(async {
        let web = origin(|_| async { b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec() }).await;
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let req = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        w.write_all(req.as_bytes()).await.expect("send");
        let m = within(PROMPTLY, "response", read_response(&mut r))
            .await
            .expect("response");
        assert_eq!(m.body, b"until close");
        assert_eq!(
            m.headers.get("connection").map(String::as_str),
            Some("close")
        );
    });
}

#[test]
fn a_read_to_close_response_cut_by_an_origin_reset_resets_the_client() {
    run_test(async {
        // The origin sends a body without a length, then resets once the
        // client has its first bytes: a FIN here would pass for the whole body.
        let (seen_tx, seen) = smol::channel::bounded::<()>(1);
        let web = serve(
            local_listener().await,
            move |stream: smol::net::TcpStream| {
                let seen = seen.clone();
                async move {
                    let mut w = stream.clone();
                    let mut r = futures_lite::io::BufReader::new(stream);
                    read_head(&mut r).await?;
                    w.write_all(b"HTTP/1.0 200 OK\r\n\r\npartial").await?;
                    let _ = seen.recv().await;
                    reset_on_close(&w);
                    Ok(())
                }
            },
        );
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let req = format!("GET http://{}/ HTTP/1.0\r\n\r\n", web.addr);
        w.write_all(req.as_bytes()).await.expect("send");
        let head = within(PROMPTLY, "response head", read_head(&mut r))
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        let mut first = [0u8; 7];
        within(PROMPTLY, "first body bytes", r.read_exact(&mut first))
            .await
            .expect("the start of the body");
        seen_tx.send(()).await.expect("origin waiting");
        let mut rest = Vec::new();
        let end = within(PROMPTLY, "the cut", r.read_to_end(&mut rest)).await;
        match end {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            Ok(n) => panic!("clean EOF after {n} more bytes where a reset was due"),
        }
    });
}
