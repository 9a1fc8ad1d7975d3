//! Unit tests of the head codec: forms, bounds, framing, rewriting.

use super::*;

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

#[test]
fn connect_and_absolute_forms() {
    let r = ok("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert!(r.is_connect());
    assert_eq!(r.dest.authority(), "example.com:443");
    let r = ok("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n");
    assert_eq!((r.dest.host.as_str(), r.dest.port), ("::1", 8443));
    let r = ok("GET http://Example.COM./a/b?c=d#frag HTTP/1.1\r\n\r\n");
    assert_eq!((r.dest.host.as_str(), r.dest.port), ("example.com", 80));
    assert_eq!(r.path, "/a/b?c=d");
    let r = ok("GET HTTP://h:8080?q HTTP/1.0\r\n\r\n");
    assert_eq!((r.dest.port, r.path.as_str()), (8080, "/?q"));
    assert_eq!(r.version, Version::Http10);
    // Leading empty lines are skipped.
    let r = ok("\r\nGET http://h HTTP/1.1\r\n\r\n");
    assert_eq!(r.path, "/");
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
    assert_eq!(status("CONNECT u@h:1 HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET http://h/ HTTP/2.0\r\n\r\n"), 400);
    assert_eq!(status("GET  http://h/ HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET http://h/ HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
    assert_eq!(status("GET http://h/ HTTP/1.1\r\nA : x\r\n\r\n"), 400);
    assert_eq!(
        status("GET http://h/ HTTP/1.1\r\nA: x\r\n folded\r\n\r\n"),
        400
    );
    assert_eq!(status("GET http://h/ HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
    assert_eq!(status("TRACE http://h/ HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(status("BREW http://h/ HTTP/1.1\r\n\r\n"), 405);
    let both = "POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(status(both), 400);
    let twice = "POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(status(twice), 400);
    assert_eq!(
        status("POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
        501
    );
}

#[test]
fn bounds() {
    let long_line = format!(
        "GET http://h/{} HTTP/1.1\r\n",
        "a".repeat(MAX_REQUEST_LINE_LEN)
    );
    assert_eq!(status(&long_line), 414);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status(&format!("GET http://h/ HTTP/1.1\r\n{many}\r\n")),
        431
    );
    let big = format!("GET http://h/ HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_LEN));
    assert_eq!(status(&big), 431);
    // Exactly at the bound still parses.
    let head = "GET http://h/ HTTP/1.1\r\nX: \r\n\r\n";
    let fill = "a".repeat(MAX_HEAD_LEN - head.len());
    let r = ok(&format!("GET http://h/ HTTP/1.1\r\nX: {fill}\r\n\r\n"));
    assert_eq!(r.header("x").map(str::len), Some(fill.len()));
}

#[test]
fn framing_and_keep_alive() {
    let r = ok("POST http://h/ HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
    assert_eq!(r.framing(), Ok(Framing::Length(12)));
    let r = ok("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(r.framing(), Ok(Framing::Chunked));
    let r = ok("GET http://h/ HTTP/1.1\r\n\r\n");
    assert_eq!(r.framing(), Ok(Framing::None));
    assert!(r.keep_alive());
    assert!(!ok("GET http://h/ HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive());
    assert!(!ok("GET http://h/ HTTP/1.0\r\n\r\n").keep_alive());
    assert!(ok("GET http://h/ HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n").keep_alive());
    let resp = |text: &str| {
        parse_response(text.as_bytes())
            .expect("valid")
            .expect("complete")
            .0
    };
    let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(r.framing("GET"), Ok(Framing::Length(5)));
    assert_eq!(r.framing("HEAD"), Ok(Framing::None));
    assert_eq!(
        resp("HTTP/1.1 204 No Content\r\n\r\n").framing("GET"),
        Ok(Framing::None)
    );
    assert_eq!(
        resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").framing("GET"),
        Ok(Framing::None)
    );
    assert_eq!(
        resp("HTTP/1.0 200 OK\r\n\r\n").framing("GET"),
        Ok(Framing::UntilClose)
    );
    assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
    assert!(parse_response(b"ICY 200 OK\r\n\r\n").is_err());
}

#[test]
fn origin_request_drops_hop_by_hop_fields() {
    let r = ok(
        "POST http://h:8080/p?q HTTP/1.1\r\nHost: wrong\r\nConnection: keep-alive, X-Secret\r\n\
        X-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: x\r\n\
        TE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\nX-Keep: yes\r\n\r\n",
    );
    let sent = String::from_utf8(origin_request(&r)).expect("utf-8");
    assert_eq!(
        sent,
        "POST /p?q HTTP/1.1\r\nHost: h:8080\r\nTransfer-Encoding: chunked\r\nX-Keep: yes\r\nConnection: close\r\n\r\n"
    );
    let r = ok("GET http://[::1]/ HTTP/1.1\r\n\r\n");
    assert!(String::from_utf8_lossy(&origin_request(&r)).contains("Host: [::1]\r\n"));
}

#[test]
fn client_response_rewrites_connection() {
    let (resp, _) = parse_response(
        b"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("valid")
    .expect("complete");
    let out = String::from_utf8(client_response(&resp, Version::Http11, true)).expect("utf-8");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    let out = proxy_response(502, &[], "no", false);
    assert!(out.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
    assert!(out.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\nno\n"));
}
