//! The admin endpoint from a test: plain blocking HTTP/1.1 requests with
//! deadlines, Prometheus samples by name and labels, and a bounded poll for
//! values that settle after the event a test can see (a scrape has no change
//! notification to wait on).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Deadline of one request.
const REQUEST: Duration = Duration::from_secs(10);

/// `GET path`: the status code and the body.
pub fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let raw = request(
        admin,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    );
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// Sends `bytes` and reads the whole answer (the endpoint closes after it).
pub fn request(admin: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&admin, REQUEST).expect("connect to admin");
    stream
        .set_read_timeout(Some(REQUEST))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(REQUEST))
        .expect("write timeout");
    stream.write_all(bytes).expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    answer
}

/// `/metrics`, asserting a 200.
pub fn scrape(admin: SocketAddr) -> String {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
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

/// [`value`] that must be there.
pub fn must(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
}

/// Calls `check` until it returns `Ok`, for at most `limit`; panics with the
/// last `Err`.
pub fn until<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if started.elapsed() >= limit => {
                panic!("not within {limit:?}: {last}")
            }
            // A short pause between scrapes, not a synchronisation: the loop
            // ends on the condition, and the deadline bounds it.
            Err(_) => std::thread::sleep(Duration::from_millis(10)), // ok-sleep: poll interval
        }
    }
}

/// Scrapes until `name{labels}` is `want`, for at most `limit`; returns that
/// scrape.
pub fn wait_for_value(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    limit: Duration,
) -> String {
    until(limit, || {
        let text = scrape(admin);
        match value(&text, name, labels) {
            Some(v) if v == want => Ok(text),
            got => Err(format!(
                "{name}{labels:?} is {got:?}, not {want}; last scrape:\n{text}"
            )),
        }
    })
}
