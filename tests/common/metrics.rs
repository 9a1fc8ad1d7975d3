//! Reading an admin endpoint from a test: a plain `GET` over TCP, the
//! Prometheus text a scrape returns, and one sample's value out of it.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Pause between two scrapes of [`wait_for_value`]: a poll interval, not
/// synchronisation (the condition itself is what the test waits for).
const POLL_PAUSE: Duration = Duration::from_millis(10);

/// `GET path` on the admin endpoint (one request per connection, as the
/// endpoint serves them): the status code and the body.
pub async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).await.expect("connect to admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send GET");
    let mut response = Vec::new();
    // The endpoint closes after its one response.
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The text of `GET /metrics`, which must answer `200`.
pub async fn scrape(admin: SocketAddr) -> String {
    let (status, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// The value of the sample `name{labels}` in a scrape: every label given must
/// match and the sample must have no others. `None` when there is no such line.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (found, rest) = match series.split_once('{') {
                Some((found, rest)) => (found, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (found == name && same_labels(rest, labels)).then(|| value.parse().ok())?
        })
}

/// Whether `name="value",…` (values without commas or escapes, as ours are)
/// holds exactly `labels`, in any order.
fn same_labels(text: &str, labels: &[(&str, &str)]) -> bool {
    let parsed: Vec<(&str, &str)> = text
        .split(',')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k, v.strip_prefix('"')?.strip_suffix('"')?))
        })
        .collect();
    parsed.len() == labels.len() && labels.iter().all(|l| parsed.contains(l))
}

/// Scrapes until `name{labels}` is `want`, for at most `limit`; returns that
/// scrape. Panics with the last scrape if the value never comes.
pub async fn wait_for_value(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    limit: Duration,
) -> String {
    let started = Instant::now();
    loop {
        let text = scrape(admin).await;
        if value(&text, name, labels) == Some(want) {
            return text;
        }
        if started.elapsed() > limit {
            panic!("{name}{labels:?} never became {want} within {limit:?}; last scrape:\n{text}");
        }
        smol::Timer::after(POLL_PAUSE).await; // ok-sleep: bounded poll interval
    }
}
