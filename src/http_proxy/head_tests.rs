//! Unit tests of the head codec: forms, bounds, framing, rewriting.

use super::*;
use crate::http_proxy::framing::{Declared, Framing};
use crate::http_proxy::rewrite::{Upstream, client_response, origin_request, proxy_response};

fn request(text: &str) -> Result<Option<(Request, usize)>, HeadError> {
    parse_request(text.as_bytes())
}

fn ok(text: &str) -> Request {
    match request(text) {
        Ok(Some((req, used))) => {
            assert_eq!(used, text.find("\r\n\r\n").expect("blank line") + 4);
            req
        }
        other => panic!("{text:?}: {other:?}"),
    }
}

fn status(text: &str) -> u16 {
    match request(text) {
        Err(e) => e.status(),
        other => panic!("{text:?} should fail: {other:?}"),
    }
}

/// `GET`-style request to `http://h/` with `fields` (each ending in CRLF).
fn with(method: &str, version: &str, fields: &str) -> String {
    format!("{method} http://h/ {version}\r\nHost: h\r\n{fields}\r\n")
}

fn resp(text: &[u8]) -> Result<Response, HeadError> {
    parse_response(text).map(|r| r.expect("complete").0)
}

#[test]
fn connect_and_absolute_forms() {
    let r = ok("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert!(r.is_connect());
    assert_eq!(r.dest.authority(), "example.com:443");
    let r = ok("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n");
    assert_eq!((r.dest.host.as_str(), r.dest.port), ("::1", 8443));
    let r = ok("GET http://Example.COM./a/b?c=d#frag HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.dest.host.as_str(), r.dest.port), ("example.com", 80));
    assert_eq!(r.path, "/a/b?c=d");
    let r = ok("GET HTTP://h:8080?q HTTP/1.0\r\n\r\n");
    assert_eq!((r.dest.port, r.path.as_str()), (8080, "/?q"));
    assert_eq!(r.version, Version::Http10);
    // Leading empty lines are skipped.
    let r = ok("\r\nGET http://h HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.path, "/");
    // HTTP/1.2 is 1.1; unknown methods (WebDAV) are tokens like any other.
    assert_eq!(ok(&with("GET", "HTTP/1.2", "")).version, Version::Http11);
    assert_eq!(ok(&with("PROPFIND", "HTTP/1.1", "")).method, "PROPFIND");
}

#[test]
fn authorities_read_one_way_only() {
    // An IPv6 literal needs its brackets, only `:port` may follow them, and
    // dots alone are no host. A colon outside brackets and a dots-only host
    // broke the `http_request` fuzz target's round trip: `origin_request` wrote
    // back a bracketed or empty host that did not parse to the same destination.
    for bad in [
        "GET http://::1:8080/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://exam:ple.com:8080/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://[::1]evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nHost: ::1\r\n\r\n",
        "CONNECT ::1:443 HTTP/1.1\r\n\r\n",
        // Dots alone leave no host once trailing dots are dropped.
        "GET http://./ HTTP/1.0\r\n\r\n",
        "CONNECT ..:443 HTTP/1.1\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nHost: .\r\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{bad:?}");
    }
    let r = ok("GET http://[::1]:8080/ HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_eq!((r.dest.host.as_str(), r.dest.port), ("::1", 8080));
}

#[test]
fn incomplete_heads_need_more() {
    for partial in [
        "",
        "GET",
        "GET http://h/ HTTP/1.1\r\n",
        "GET http://h/ HTTP/1.1\r\nA: b\r\n\r",
    ] {
        assert_eq!(request(partial), Ok(None), "{partial:?}");
    }
}

#[test]
fn refusals_map_to_statuses() {
    assert_eq!(status("GET /local HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("OPTIONS * HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET https://h/ HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("CONNECT h HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("CONNECT h:0 HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("CONNECT h:+80 HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("CONNECT u@h:1 HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET http://h/ HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status("GET http://h/ HTTP/1\r\n\r\n"), 400);
    assert_eq!(status("GET  http://h/ HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "Bad Name: x\r\n")), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "A : x\r\n")), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "A: x\r\n folded\r\n")), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "NoColon\r\n")), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "A: x\r\r\n")), 400);
    assert_eq!(status(&with("G(T", "HTTP/1.1", "")), 400);
}

#[test]
fn bare_lf_is_refused_as_soon_as_it_arrives() {
    // Not "need more": no CRLFCRLF would ever come.
    assert_eq!(status("GET http://h/ HTTP/1.1\nHost: h\n\n"), 400);
    assert_eq!(status("GET http://h/ HTTP/1.1\r\nHost: h\n"), 400);
    assert_eq!(status("\n"), 400);
}

#[test]
fn host_is_required_once() {
    assert_eq!(status("GET http://h/ HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(&with("GET", "HTTP/1.1", "Host: h\r\n")), 400);
    assert_eq!(status("GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    assert_eq!(
        status("CONNECT h:1 HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n"),
        400
    );
    // HTTP/1.0 and CONNECT may omit it.
    ok("GET http://h/ HTTP/1.0\r\n\r\n");
    ok("CONNECT h:1 HTTP/1.1\r\n\r\n");
}

#[test]
fn framing_fields_are_read_one_way_only() {
    let post = |fields: &str| request(&with("POST", "HTTP/1.1", fields));
    let framing = |fields: &str| match post(fields) {
        Ok(Some((r, _))) => Ok(r.framing),
        Ok(None) => panic!("incomplete"),
        Err(e) => Err(e.status()),
    };
    assert_eq!(framing("Content-Length: 12\r\n"), Ok(Framing::Length(12)));
    assert_eq!(framing("Content-Length: 0\r\n"), Ok(Framing::Length(0)));
    assert_eq!(framing("Content-Length: 5, 5\r\n"), Ok(Framing::Length(5)));
    let twice = "Content-Length: 5\r\nContent-Length: 5\r\n";
    assert_eq!(framing(twice), Ok(Framing::Length(5)));
    assert_eq!(
        framing("Transfer-Encoding: Chunked\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        framing("Transfer-Encoding: ,chunked\t\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(framing(""), Ok(Framing::None));
    for bad in [
        "Content-Length: 3\r\nContent-Length: 4\r\n",
        "Content-Length: 3, 4\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: +1\r\n",
        "Content-Length:\r\n",
        "Content-Length: 5\x0c\r\n",
        "Content-Length: \u{a0}5\r\n",
        "Content-Length: 5\x0b\r\n",
        "Content-Length: 99999999999999999999\r\n",
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\x0c\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Connection: Content-Length\r\nContent-Length: 5\r\n",
        "Connection: keep-alive, transfer-encoding\r\n",
        "Connection: a b\r\n",
    ] {
        assert_eq!(framing(bad), Err(400), "{bad:?}");
    }
    assert_eq!(framing("Transfer-Encoding: gzip\r\n"), Err(501));
    assert_eq!(framing("Transfer-Encoding: gzip, chunked\r\n"), Err(501));
    // HTTP/1.0 has no chunked coding (RFC 9112 §6.1).
    let old = with("POST", "HTTP/1.0", "Transfer-Encoding: chunked\r\n");
    assert_eq!(status(&old), 400);
    // CONNECT carries no body: its bytes after the head are the tunnel's.
    assert_eq!(
        status("CONNECT h:1 HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
        400
    );
}

#[test]
fn obs_text_passes_through_untouched() {
    let text = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9 \xff\r\n\r\n";
    let (r, _) = parse_request(text).expect("valid").expect("complete");
    assert_eq!(r.header("x-name"), Some(&b"caf\xe9 \xff"[..]));
    let sent = origin_request(&r, Upstream::default());
    assert!(sent.windows(14).any(|w| w == b"X-Name: caf\xe9 \xff"));
    let r = resp(b"HTTP/1.1 200 D\xe9j\xe0\r\nContent-Disposition: filename=\"caf\xe9.txt\"\r\nContent-Length: 0\r\n\r\n")
        .expect("valid");
    let out = client_response(&r, Version::Http11, true);
    assert!(out.starts_with(b"HTTP/1.1 200 D\xe9j\xe0\r\n"));
    assert!(out.windows(9).any(|w| w == b"caf\xe9.txt\""));
}

#[test]
fn bounds() {
    let long_line = format!(
        "GET http://h/{} HTTP/1.1\r\n",
        "a".repeat(MAX_REQUEST_LINE_LEN)
    );
    assert_eq!(status(&long_line), 414);
    let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(status(&with("GET", "HTTP/1.1", &many)), 431);
    let big = format!("GET http://h/ HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_LEN));
    assert_eq!(status(&big), 431);
    // Exactly at the bound still parses.
    let head = "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n";
    let fill = "a".repeat(MAX_HEAD_LEN - head.len());
    let r = ok(&format!(
        "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: {fill}\r\n\r\n"
    ));
    assert_eq!(r.header("x").map(<[u8]>::len), Some(fill.len()));
}

#[test]
fn keep_alive_and_response_framing() {
    let r = ok(&with("GET", "HTTP/1.1", ""));
    assert!(r.keep_alive());
    assert!(!ok(&with("GET", "HTTP/1.1", "Connection: Close\r\n")).keep_alive());
    assert!(!ok("GET http://h/ HTTP/1.0\r\n\r\n").keep_alive());
    assert!(ok("GET http://h/ HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n").keep_alive());
    let r = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").expect("valid");
    assert_eq!(r.framing("GET"), Framing::Length(5));
    assert_eq!(r.framing("HEAD"), Framing::None);
    let r = resp(b"HTTP/1.1 204 No Content\r\n\r\n").expect("valid");
    assert_eq!(r.framing("GET"), Framing::None);
    let r = resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").expect("valid");
    assert_eq!(
        (r.framing("GET"), r.declared),
        (Framing::None, Declared::Length(9))
    );
    let r = resp(b"HTTP/1.0 200 OK\r\n\r\n").expect("valid");
    assert_eq!(r.framing("GET"), Framing::UntilClose);
    for bad in [
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\x0c\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\n",
    ] {
        assert!(resp(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn origin_request_is_http11_with_one_canonical_framing_field() {
    let r = ok(
        "POST http://h:8080/p?q HTTP/1.1\r\nHost: wrong\r\nConnection: keep-alive, X-Secret\r\n\
        X-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: x\r\n\
        TE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\nX-Keep: yes\r\n\
        Via: 1.1 other\r\n\r\n",
    );
    let sent = String::from_utf8(origin_request(&r, Upstream::default())).expect("utf-8");
    assert_eq!(
        sent,
        "POST /p?q HTTP/1.1\r\nHost: h:8080\r\nX-Keep: yes\r\nVia: 1.1 other\r\n\
         Transfer-Encoding: chunked\r\nVia: 1.1 porthole\r\n\r\n"
    );
    let r = ok("PUT http://h/ HTTP/1.0\r\nContent-Length: 2, 2\r\nExpect: 100-continue\r\n\r\n");
    let sent = String::from_utf8(origin_request(&r, Upstream::default())).expect("utf-8");
    assert_eq!(
        sent,
        "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nVia: 1.0 porthole\r\n\r\n"
    );
    let r = ok(&with("OPTIONS", "HTTP/1.1", "Max-Forwards: 5\r\n"));
    let up = Upstream {
        max_forwards: Some(4),
        upgrade: None,
    };
    let sent = String::from_utf8(origin_request(&r, up)).expect("utf-8");
    assert!(
        sent.contains("\r\nMax-Forwards: 4\r\n") && !sent.contains("5"),
        "{sent}"
    );
    let r = ok("GET http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    let sent = origin_request(&r, Upstream::default());
    assert!(String::from_utf8_lossy(&sent).contains("Host: [::1]\r\n"));
}

#[test]
fn client_response_is_canonical() {
    let r = resp(
        b"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\nContent-Length: 0, 0\r\n\r\n",
    )
    .expect("valid");
    let out = String::from_utf8(client_response(&r, Version::Http11, true)).expect("utf-8");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 porthole\r\nConnection: keep-alive\r\n\r\n"
    );
    // Chunked goes to an HTTP/1.0 client as its bare data, until close.
    let r = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").expect("valid");
    assert!(crate::http_proxy::rewrite::dechunks(&r, Version::Http10));
    let out = String::from_utf8(client_response(&r, Version::Http10, false)).expect("utf-8");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nVia: 1.1 porthole\r\nConnection: close\r\n\r\n"
    );
    // No framing field on a 204; a HEAD's Content-Length stays.
    let r = resp(b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n").expect("valid");
    let out = String::from_utf8(client_response(&r, Version::Http11, true)).expect("utf-8");
    assert!(!out.contains("Content-Length"), "{out}");
    let out = proxy_response(502, &[], "no", false);
    assert!(out.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
    assert!(out.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\nno\n"));
}
