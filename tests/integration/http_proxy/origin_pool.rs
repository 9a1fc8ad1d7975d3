//! Origin keep-alive: idle origin connections are reused only after an exact
//! exchange, never after `Connection: close` or a read-to-close body, and an
//! origin that closed an idle connection does not fail the next request.

use futures_lite::AsyncWriteExt;

use super::http::*;
use crate::common::*;

fn sized(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Waits until every client connection of `proxy` has ended.
async fn settled(proxy: &Running) {
    within(
        PROMPTLY,
        "client connections to end",
        proxy.proxy.stats().wait_idle(),
    )
    .await;
}

#[test]
fn a_thousand_requests_share_one_origin_connection() {
    run_test(async {
        let web = scripted(|_, request| Some(sized(&format!("r{request}")))).await;
        let proxy = start(settings()).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        for i in 0..1000 {
            let request = format!("GET http://{}/{i} HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
            w.write_all(request.as_bytes()).await.expect("send");
            let resp = within(PROMPTLY, "response", read_response(&mut r))
                .await
                .expect("response");
            assert_eq!(resp.body, format!("r{i}").into_bytes());
        }
        assert_eq!(web.accepts(), 1);
        // Once the client is gone its task has put the connection back.
        drop((w, r));
        settled(&proxy).await;
        assert_eq!(proxy.proxy.idle_origins(), 1);
        // A second client is served on the same idle connection.
        let request = format!("GET http://{}/again HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        assert_eq!(ask(proxy.addr, request.as_bytes()).await.body, b"r1000");
        assert_eq!(web.accepts(), 1);
    });
}

#[test]
fn close_and_read_to_close_responses_are_never_reused() {
    run_test(async {
        let closing = scripted(|_, _| {
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nc".to_vec())
        })
        .await;
        let unframed = origin(|_| async { b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec() }).await;
        let proxy = start(settings()).await;
        for _ in 0..3 {
            let request = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", closing.addr);
            assert_eq!(ask(proxy.addr, request.as_bytes()).await.body, b"c");
        }
        assert_eq!(closing.accepts(), 3);
        let request = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", unframed.addr);
        let resp = ask(proxy.addr, request.as_bytes()).await;
        assert_eq!(
            (resp.body.as_slice(), resp.headers["connection"].as_str()),
            (&b"until close"[..], "close")
        );
        assert_eq!(proxy.proxy.idle_origins(), 0);
    });
}

#[test]
fn an_origin_that_closed_an_idle_connection_does_not_fail_the_next_request() {
    run_test(async {
        // Connection 0 answers one request, then reads the next and closes
        // without a word: the race of an origin's idle timeout. Later
        // connections answer everything.
        let web = scripted(|conn, request| match (conn, request) {
            (0, 0) => Some(sized("first")),
            (0, _) => None,
            _ => Some(sized("again")),
        })
        .await;
        let proxy = start(settings()).await;
        let get = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        assert_eq!(ask(proxy.addr, get.as_bytes()).await.body, b"first");
        settled(&proxy).await;
        assert_eq!(proxy.proxy.idle_origins(), 1);
        // Idempotent and body-less: sent again on a new connection.
        assert_eq!(ask(proxy.addr, get.as_bytes()).await.body, b"again");
        assert_eq!(web.accepts(), 2);
    });
}

#[test]
fn a_request_with_a_body_is_not_sent_twice() {
    run_test(async {
        let web = scripted(|conn, request| match (conn, request) {
            (0, 0) => Some(sized("first")),
            (0, _) => None,
            _ => Some(sized("twice")),
        })
        .await;
        let proxy = start(settings()).await;
        let get = format!("GET http://{}/ HTTP/1.1\r\nHost: h\r\n\r\n", web.addr);
        assert_eq!(ask(proxy.addr, get.as_bytes()).await.body, b"first");
        settled(&proxy).await;
        let post = format!(
            "POST http://{}/ HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody",
            web.addr
        );
        let resp = ask(proxy.addr, post.as_bytes()).await;
        assert_eq!(
            resp.status(),
            502,
            "{:?}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(web.accepts(), 1);
    });
}
