//! Request head in, response out: the endpoint's routes, with no I/O.

use std::fmt::Write;

use super::{Health, Probe};
use crate::http_proxy::head::RequestHead;
use crate::metrics::{self, Exposition, Kind};

/// A response, written whole and followed by a close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A `HEAD` request: the headers say what a `GET` would get, no body.
    pub head_only: bool,
    /// `Allow`, for a `405`.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            head_only: false,
            allow: None,
        }
    }

    fn json(body: Vec<u8>) -> Response {
        Response {
            content_type: "application/json",
            body,
            ..Response::text(200, "")
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Answers one request.
pub fn respond(head: &RequestHead, probe: &dyn Probe) -> Response {
    let head_only = head.method == "HEAD";
    if head.method != "GET" && !head_only {
        return Response {
            allow: Some("GET, HEAD"),
            ..Response::text(405, "only GET and HEAD\n")
        };
    }
    // An origin-form target; a query string is ignored.
    let path = head.target.split('?').next().unwrap_or_default();
    let response = match path {
        "/metrics" => Response {
            content_type: metrics::text::CONTENT_TYPE,
            body: scrape(probe).into_bytes(),
            ..Response::text(200, "")
        },
        "/healthz" => match probe.health() {
            Health::Serving => Response::text(200, "ok\n"),
            Health::Unavailable(why) => Response::text(503, &format!("{why}\n")),
        },
        "/status" => match serde_json::to_vec_pretty(&probe.status()) {
            Ok(body) => Response::json(body),
            Err(e) => Response::text(500, &format!("status: {e}\n")),
        },
        _ => Response::text(404, "not found: try /metrics, /healthz or /status\n"),
    };
    Response {
        head_only,
        ..response
    }
}

/// The whole `/metrics` page: the role's families, then the process's.
pub fn scrape(probe: &dyn Probe) -> String {
    let mut out = Exposition::new();
    probe.metrics(&mut out);
    out.family(
        "porthole_build_info",
        Kind::Gauge,
        "Always 1; the labels say which porthole this is.",
    )
    .sample(
        "porthole_build_info",
        &[("version", crate::VERSION), ("commit", crate::GIT_COMMIT)],
        1,
    );
    metrics::process::write(&mut out);
    out.finish()
}
