//! The admin endpoint of `porthole forward` and `porthole http-proxy`, against
//! the real binary: known traffic through it, then `/metrics` counts exactly
//! that traffic, `/healthz` says `ok` and `/status` carries the same totals.

use crate::common::admin::{get, value, wait_for_value};
use crate::common::process::{Proc, porthole};
use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use porthole::admin::Status;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Deadline for one expected log line of the child.
const LINE: Duration = Duration::from_secs(10);
/// Bytes each client sends through a connection, then half-closes.
const UP: usize = 100_000;
/// Bytes the service answers once it has read the client's EOF.
const DOWN: usize = 50_000;

/// A config file for one test, removed with its directory when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(test: &str, text: &str) -> ConfigFile {
        let dir =
            std::env::temp_dir().join(format!("porthole-metrics-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.ron");
        std::fs::write(&path, text).expect("write config");
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads the client's bytes to EOF, then answers [`DOWN`] bytes and closes:
/// each direction's byte count is known exactly.
async fn up_down_service() -> Service {
    serve(local_listener().await, |stream| async move {
        let mut reader = stream.clone();
        let mut writer = stream;
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await?;
        assert_eq!(got.len(), UP, "service read");
        writer.write_all(&payload(2, DOWN)).await?;
        writer.close().await
    })
}

/// Sends [`UP`] bytes on `stream`, half-closes, and checks [`DOWN`] come back.
async fn up_down(stream: TcpStream) {
    let got = exchange_on(stream, &payload(1, UP))
        .await
        .expect("exchange");
    assert_eq!(got.len(), DOWN, "bytes back");
}

/// `/healthz` is `200 ok`; `/status` parses as JSON.
async fn health_and_status(admin: SocketAddr) -> Status {
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_owned()));
    let (code, body) = get(admin, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let v = value(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"));
    v as u64
}

#[test]
fn value_reads_labelled_and_plain_samples() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{listen=\"127.0.0.1:1\"} 3\n\
                a_total{listen=\"127.0.0.1:2\"} 4\nb 1.5\nc{x=\"1\",y=\"2\"} 7\n";
    assert_eq!(
        value(text, "a_total", &[("listen", "127.0.0.1:2")]),
        Some(4.0)
    );
    assert_eq!(value(text, "b", &[]), Some(1.5));
    assert_eq!(value(text, "c", &[("y", "2"), ("x", "1")]), Some(7.0));
    assert_eq!(value(text, "c", &[("x", "1")]), None);
    assert_eq!(value(text, "a", &[]), None);
}

#[test]
fn forward_metrics_count_every_connection_and_byte() {
    const CONNECTIONS: usize = 20;
    run_test(async {
        let service = up_down_service().await;
        let (_bound, down) = refusing_address();
        let config = ConfigFile::new(
            "forward",
            &format!(
                "(forwards: [(listen: \"127.0.0.1:0\", target: \"{}\"), \
                 (listen: \"127.0.0.1:0\", target: \"{down}\")], \
                 connect_timeout: \"5s\", workers: Some(2), admin: Some(\"127.0.0.1:0\"))",
                service.addr
            ),
        );
        let mut proc = Proc::spawn(porthole(&["forward", "-c", config.path()]));
        // Logged in config order, before the endpoint starts.
        // The endpoint logs where it is as it binds, before anything serves.
        let admin = proc.address_after("admin endpoint on http://", LINE);
        let live = proc.address_after("forwarding ", LINE);
        let dead = proc.address_after("forwarding ", LINE);

        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                smol::spawn(async move {
                    up_down(TcpStream::connect(live).await.expect("connect")).await
                })
            })
            .collect();
        for client in clients {
            within(PROMPTLY, "a connection through forward", client).await;
        }
        assert_refused(dead, PROMPTLY, "client of an unreachable target").await;

        let (live_label, dead_label) = (live.to_string(), dead.to_string());
        let live_l = [("listen", live_label.as_str())];
        let dead_l = [("listen", dead_label.as_str())];
        let active = "porthole_forward_connections_active";
        wait_for_value(admin, active, &live_l, 0.0, PROMPTLY);
        let text = wait_for_value(admin, active, &dead_l, 0.0, PROMPTLY);
        let n = CONNECTIONS as u64;
        let c = |name: &str, labels: &[(&str, &str)]| counter(&text, name, labels);
        assert_eq!(c("porthole_forward_connections_total", &live_l), n);
        assert_eq!(
            c("porthole_forward_received_bytes_total", &live_l),
            n * UP as u64
        );
        assert_eq!(
            c("porthole_forward_sent_bytes_total", &live_l),
            n * DOWN as u64
        );
        assert_eq!(c("porthole_forward_connect_failures_total", &live_l), 0);
        assert_eq!(c("porthole_forward_connections_total", &dead_l), 1);
        assert_eq!(c("porthole_forward_connect_failures_total", &dead_l), 1);
        assert_eq!(c("porthole_forward_received_bytes_total", &dead_l), 0);

        let status = health_and_status(admin).await;
        assert_eq!(status.role, "forward");
        assert_eq!(status.listen, Some(format!("{live}, {dead}")));
        assert_eq!(status.upstream, Some(format!("{}, {down}", service.addr)));
        let traffic = status.traffic.expect("forward reports traffic");
        assert_eq!((traffic.total, traffic.active), (n + 1, 0));
        assert_eq!(traffic.received_bytes, n * UP as u64);
        assert_eq!(traffic.sent_bytes, n * DOWN as u64);
        // The unreachable target's connection ended in an error.
        assert_eq!(traffic.failed, 1);
    });
}

/// A CONNECT through the proxy at `proxy` to `target`; the stream once `200`
/// is read.
async fn connect_through(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("CONNECT");
    let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
    let mut head = vec![0u8; established.len()];
    stream.read_exact(&mut head).await.expect("CONNECT answer");
    assert_eq!(head, established, "{}", String::from_utf8_lossy(&head));
    stream
}

/// Request body of each forwarded request, and response body of the origin.
const REQUEST_BODY: usize = 1_000;
const RESPONSE_BODY: usize = 2_000;

/// An origin that reads one request of [`REQUEST_BODY`] bytes and answers
/// [`RESPONSE_BODY`] bytes, then closes (and says so).
async fn origin() -> Service {
    serve(local_listener().await, |mut stream| async move {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let whole = |got: &[u8]| {
            let end = got.windows(4).position(|w| w == b"\r\n\r\n");
            end.is_some_and(|end| got.len() >= end + 4 + REQUEST_BODY)
        };
        while !whole(&got) {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            got.extend_from_slice(&chunk[..n]);
        }
        // Said, so the proxy does not pool a connection this origin closes
        // (a POST on it would not be sent again: 502).
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {RESPONSE_BODY}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&payload(3, RESPONSE_BODY)).await?;
        stream.close().await
    })
}

/// One absolute-form `POST` of [`REQUEST_BODY`] bytes on its own connection;
/// the whole response.
async fn post(proxy: SocketAddr, url: &str) -> String {
    let head = format!(
        "POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: {REQUEST_BODY}\r\nConnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&payload(4, REQUEST_BODY));
    ask(proxy, &request).await
}

/// `request` on a connection of its own; the whole response.
async fn ask(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    stream.write_all(request).await.expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response");
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn http_proxy_metrics_count_tunnels_requests_and_refusals() {
    const TUNNELS: u64 = 5;
    const REQUESTS: u64 = 4;
    run_test(async {
        let service = up_down_service().await;
        let web = origin().await;
        let config = ConfigFile::new(
            "http-proxy",
            "(listen: \"127.0.0.1:0\", deny: [\"denied.invalid\"], workers: Some(2), \
             admin: Some(\"127.0.0.1:0\"))",
        );
        let mut proc = Proc::spawn(porthole(&["http-proxy", "-c", config.path()]));
        let admin = proc.address_after("admin endpoint on http://", LINE);
        let proxy = proc.address_after("http proxy listening on ", LINE);

        // Tunnels first, alone: their bytes are known exactly.
        let tunnels: Vec<_> = (0..TUNNELS)
            .map(|_| {
                smol::spawn(
                    async move { up_down(connect_through(proxy, service.addr).await).await },
                )
            })
            .collect();
        for tunnel in tunnels {
            within(PROMPTLY, "a tunnel through the proxy", tunnel).await;
        }
        let active = "porthole_http_proxy_connections_active";
        let text = wait_for_value(admin, active, &[], 0.0, PROMPTLY);
        let c = |text: &str, name: &str| counter(text, name, &[]);
        assert_eq!(c(&text, "porthole_http_proxy_connects_total"), TUNNELS);
        let received = c(&text, "porthole_http_proxy_received_bytes_total");
        let sent = c(&text, "porthole_http_proxy_sent_bytes_total");
        assert_eq!(
            (received, sent),
            (TUNNELS * UP as u64, TUNNELS * DOWN as u64)
        );

        // Then forwarded requests, and one the rules refuse.
        let url = format!("http://{}/upload", web.addr);
        for _ in 0..REQUESTS {
            let response = post(proxy, &url).await;
            assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        }
        // No body: a refusal closes without reading one.
        let denied = b"GET http://denied.invalid/ HTTP/1.1\r\nHost: denied.invalid\r\n\r\n";
        let refused = ask(proxy, denied).await;
        assert!(refused.starts_with("HTTP/1.1 403 "), "{refused}");

        let text = wait_for_value(admin, active, &[], 0.0, PROMPTLY);
        let connections = TUNNELS + REQUESTS + 1;
        assert_eq!(
            c(&text, "porthole_http_proxy_connections_total"),
            connections
        );
        assert_eq!(c(&text, "porthole_http_proxy_connects_total"), TUNNELS);
        assert_eq!(c(&text, "porthole_http_proxy_requests_total"), REQUESTS);
        let errors = "porthole_http_proxy_errors_total";
        assert_eq!(counter(&text, errors, &[("status", "403")]), 1);
        for status in ["400", "502", "503", "504", "other"] {
            assert_eq!(counter(&text, errors, &[("status", status)]), 0, "{status}");
        }
        // Request heads are rewritten, so only the bodies are known exactly.
        let more_in = c(&text, "porthole_http_proxy_received_bytes_total") - received;
        let more_out = c(&text, "porthole_http_proxy_sent_bytes_total") - sent;
        assert!(more_in > REQUESTS * REQUEST_BODY as u64, "{more_in}");
        assert!(more_out > REQUESTS * RESPONSE_BODY as u64, "{more_out}");

        let status = health_and_status(admin).await;
        assert_eq!(status.role, "http-proxy");
        assert_eq!(status.listen, Some(proxy.to_string()));
        let traffic = status.traffic.expect("the proxy reports traffic");
        assert_eq!((traffic.total, traffic.active), (connections, 0));
        assert_eq!(traffic.received_bytes, received + more_in);
        assert_eq!(traffic.sent_bytes, sent + more_out);
    });
}
