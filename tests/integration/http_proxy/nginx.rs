//! The proxy in front of a real nginx (`.ci/run` installs it; without it these
//! tests fail under `CI=true` and skip with a message elsewhere). nginx gets
//! its listening socket from the test (see `common::peers`).

use futures_lite::AsyncWriteExt;
use std::net::SocketAddr;
use std::path::Path;

use super::http::*;
use crate::common::peers::{self, Nginx};
use crate::common::*;

/// Body of `/small.txt`.
const SMALL: &str = "a small static file\n";

/// nginx serving a few files, or `None` (skipped) when it is not installed.
fn start_nginx(name: &str) -> Option<Nginx> {
    let files = |dir: &Path| {
        std::fs::create_dir_all(dir.join("www/gz")).expect("nginx directory");
        std::fs::write(dir.join("www/small.txt"), SMALL).expect("small file");
        let text: String = (0..2000).map(|i| format!("line {i} of a text\n")).collect();
        std::fs::write(dir.join("www/gz/text.txt"), text).expect("text file");
    };
    peers::nginx(name, files, config)
}

fn config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "{}http {{\n  access_log off;\n  {}\
           keepalive_requests 100000;\n  default_type text/plain;\n\
           server {{\n    listen {addr};\n    root {d}/www;\n\
             location = /stub {{ stub_status; }}\n\
             location = /upload {{ return 200 \"ok\\n\"; }}\n\
             location /gz/ {{ gzip on; gzip_min_length 0; gzip_types text/plain; gzip_http_version 1.0; gzip_proxied any; }}\n\
           }}\n}}\n",
        peers::nginx_preamble(dir),
        peers::nginx_http_paths(dir),
    )
}

/// nginx's count of accepted connections (this request's own included).
async fn accepts(nginx: &Nginx) -> u64 {
    let resp = ask(
        nginx.addr,
        b"GET /stub HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    // "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n..."
    text.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("stub_status: {text:?}"))
}

#[test]
fn nginx_reads_every_forwarded_message_as_the_proxy_framed_it() {
    let Some(nginx) = start_nginx("framing") else {
        return;
    };
    run_test(async {
        let proxy = start(settings()).await;
        let n = nginx.addr;
        // nginx itself refuses a repeated length; the proxy sends one.
        let twice = |target: &str| {
            format!(
                "POST {target} HTTP/1.1\r\nHost: n\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello"
            )
        };
        let direct = raw_exchange(n, twice("/upload").as_bytes()).await;
        assert!(
            direct.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&direct)
        );
        let resp = ask(proxy.addr, twice(&format!("http://{n}/upload")).as_bytes()).await;
        assert_eq!((resp.status(), resp.body.as_slice()), (200, &b"ok\n"[..]));
        // Chunked uploads and keep-alive: two requests on one client connection.
        let (mut w, mut r) = dial(proxy.addr).await;
        let chunked_post = format!(
            "POST http://{n}/upload HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            String::from_utf8_lossy(&chunked(b"some body bytes", 4))
        );
        for _ in 0..2 {
            w.write_all(chunked_post.as_bytes()).await.expect("send");
            let resp = within(PROMPTLY, "response", read_response(&mut r))
                .await
                .expect("response");
            assert_eq!((resp.status(), resp.body.as_slice()), (200, &b"ok\n"[..]));
        }
        // What nginx would answer 501 to is refused before it gets there.
        let before = accepts(&nginx).await;
        let bad = format!(
            "POST http://{n}/upload HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\x0c\r\n\r\n0\r\n\r\n"
        );
        assert_eq!(ask(proxy.addr, bad.as_bytes()).await.status(), 400);
        assert_eq!(
            accepts(&nginx).await,
            before + 1,
            "only the stub request itself"
        );
    });
}

#[test]
fn a_thousand_proxied_requests_cost_nginx_one_connection() {
    let Some(nginx) = start_nginx("keepalive") else {
        return;
    };
    run_test(async {
        let proxy = start(settings()).await;
        let before = accepts(&nginx).await;
        let (mut w, mut r) = dial(proxy.addr).await;
        let get = format!(
            "GET http://{}/small.txt HTTP/1.1\r\nHost: n\r\n\r\n",
            nginx.addr
        );
        for _ in 0..1000 {
            w.write_all(get.as_bytes()).await.expect("send");
            let resp = within(PROMPTLY, "response", read_response(&mut r))
                .await
                .expect("response");
            assert_eq!(resp.body, SMALL.as_bytes());
        }
        // One connection from the proxy, one for this stub request.
        assert_eq!(accepts(&nginx).await, before + 2);
    });
}

#[test]
fn an_http10_client_gets_nginx_chunked_responses_dechunked() {
    let Some(nginx) = start_nginx("http10") else {
        return;
    };
    run_test(async {
        let proxy = start(settings()).await;
        let n = nginx.addr;
        // To HTTP/1.1, gzip makes nginx's response chunked...
        let direct11 = raw_exchange(
            n,
            b"GET /gz/text.txt HTTP/1.1\r\nHost: n\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        )
        .await;
        let head = String::from_utf8_lossy(&direct11[..200]).to_ascii_lowercase();
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        // ...while an HTTP/1.0 client gets the same bytes read to the close.
        let direct10 = raw_exchange(
            n,
            b"GET /gz/text.txt HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
        )
        .await;
        let proxied = raw_exchange(
            proxy.addr,
            format!("GET http://{n}/gz/text.txt HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let body = |raw: &[u8]| {
            let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
            raw[at..].to_vec()
        };
        let text = String::from_utf8_lossy(&proxied[..200]).to_ascii_lowercase();
        assert!(!text.contains("transfer-encoding"), "{text}");
        assert!(body(&direct10).len() > 100);
        let (proxied, direct) = (body(&proxied), body(&direct10));
        // gzip bytes: equal lengths and contents, without printing them.
        assert_eq!(proxied.len(), direct.len());
        assert!(
            proxied == direct,
            "the de-chunked body differs from nginx's own"
        );
    });
}
