//! One forwarded request and its response, over a pooled or a new origin
//! connection.
//!
//! The request body upload and the response download run concurrently, so an
//! origin that answers while still reading (or echoes as it reads) cannot
//! deadlock the exchange; a chunked request body that breaks its framing ends
//! both at once (`400` if the client has had nothing yet, else a reset). A
//! response cut after its first bytes reached the client (the origin reset,
//! timed out or broke the framing) resets the client rather than closing it.
//!
//! The origin connection goes back to [`super::pool`] only after an exchange
//! that ended exactly; a request that fails on a reused connection before any
//! response byte (the origin closed it while idle) is sent again on a new one
//! when it is idempotent and has no body.

use crate::runtime::SharedTcpStream as TcpStream;
use futures_lite::AsyncWriteExt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
use tracing::debug;

use super::Proxy;
use super::body::{BodyError, Buffered, HeadFailure, copy_body};
use super::chunked::ChunkError;
use super::framing::Framing;
use super::head::{Request, Response, parse_response};
use super::refuse::{Refuse, respond};
use super::rewrite::{self, Upstream, dechunks};
use crate::wire::with_timeout;

/// Most interim (1xx) responses before the final one: an origin sending them
/// for ever would hold the exchange without a deadline ever passing.
const MAX_INTERIM: usize = 16;
/// Methods whose request can be sent twice (RFC 9110 §9.2.2).
const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// How a connection goes on after one exchange.
pub(super) enum Next {
    KeepAlive,
    Close,
    /// Close with a reset: the response was cut after some of it reached the
    /// client, which must not take it for complete.
    Abort,
    /// The origin switched protocols (`101`): relay bytes from now on.
    Switch(Buffered<TcpStream>),
}

/// How the download ended.
enum Answered {
    /// Complete; the origin connection, when it may be used again.
    Done {
        keep_client: bool,
        reusable: Option<TcpStream>,
    },
    Switched(Buffered<TcpStream>),
}

/// Why the download failed.
enum Failure {
    /// A reused connection closed before any response byte: send again.
    Retry,
    /// Anything else; a `502` went out if the client had nothing yet.
    Failed(String),
}

/// A forwarded request with the client connection it came on.
pub(super) struct Exchange<'a> {
    pub(super) proxy: &'a Proxy,
    pub(super) client: &'a mut Buffered<TcpStream>,
    pub(super) writer: &'a mut TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) req: &'a Request,
    pub(super) up: Upstream<'a>,
}

impl Exchange<'_> {
    /// Forwards the request and its body, and the response back.
    pub(super) async fn forward(mut self) -> Next {
        let (proxy, req) = (self.proxy, self.req);
        let idempotent = IDEMPOTENT.contains(&req.method.as_str()) && req.framing == Framing::None;
        let mut pooled = if self.up.upgrade.is_none() {
            proxy.origins.take(&req.dest)
        } else {
            None
        };
        loop {
            let retry = pooled.is_some() && idempotent;
            let origin = match pooled.take() {
                Some(origin) => origin,
                None => match proxy.connect(&req.dest).await {
                    Ok(origin) => origin,
                    Err(refuse) => {
                        let (peer, dest) = (self.peer, req.dest.authority());
                        debug!("{peer}: {} {dest}: {}", req.method, refuse.text);
                        respond(proxy, self.writer, refuse, false).await;
                        return Next::Close;
                    }
                },
            };
            match self.attempt(origin, retry).await {
                Some(next) => return next,
                None => debug!(
                    "{}: {}: idle origin connection closed; again",
                    self.peer,
                    req.dest.authority()
                ),
            }
        }
    }

    /// One try on `origin`; `None` when it should be tried again on a new one.
    async fn attempt(&mut self, origin: TcpStream, retry: bool) -> Option<Next> {
        // Apart, so the upload and the download borrow the client's halves at once.
        let Exchange {
            proxy,
            client,
            writer,
            peer,
            req,
            up,
        } = self;
        let (proxy, req, peer, up) = (*proxy, *req, *peer, *up);
        let (client, writer) = (&mut **client, &mut **writer);
        let idle = proxy.settings.idle_timeout;
        let mut origin_writer = origin.clone();
        let head = rewrite::origin_request(req, up);
        let upload = async {
            with_timeout(
                idle,
                "sending a request head",
                origin_writer.write_all(&head),
            )
            .await?;
            let body = copy_body(client, &mut origin_writer, req.framing, idle, false).await?;
            Ok::<u64, BodyError>(head.len() as u64 + body)
        };
        let mut sent = 0;
        let answer = up.upgrade.is_some();
        let download = download(proxy, origin, writer, req, &mut sent, retry, answer);
        let (up_result, down_result) = both(upload, download).await;
        let uploaded = *up_result.as_ref().unwrap_or(&0);
        proxy.stats.bytes(uploaded, sent);
        let ended = Ended {
            proxy,
            req,
            peer,
            sent,
            origin: origin_writer,
        };
        ended.settle(writer, up_result, down_result).await
    }
}

/// An attempt whose upload and download both ended (or were cut short).
struct Ended<'a> {
    proxy: &'a Proxy,
    req: &'a Request,
    peer: SocketAddr,
    /// Response bytes that reached the client.
    sent: u64,
    /// The attempt's handle on the origin connection.
    origin: TcpStream,
}

impl Ended<'_> {
    /// What the client's connection does next; `None`: try again on a new
    /// origin connection.
    async fn settle(
        self,
        writer: &mut TcpStream,
        up: Result<u64, BodyError>,
        down: Option<Result<Answered, Failure>>,
    ) -> Option<Next> {
        // Cut the client only if the response failed once bytes of it were out:
        // before that it got a 502, and an upload that failed after a complete
        // response (an origin that answered early and closed) leaves that intact.
        let cut = !matches!(down, Some(Ok(_))) && self.sent > 0;
        let failure = match (up, down) {
            (_, Some(Err(Failure::Retry))) => {
                self.reset_origin();
                return None;
            }
            (Ok(_), Some(Ok(answered))) => return Some(self.answered(answered)),
            (Err(BodyError::Framing(e)), _) => return Some(self.bad_upload(writer, e).await),
            (up, Some(Err(Failure::Failed(why)))) => Some(up.err().map_or(why, |e| e.to_string())),
            (Err(e), _) => Some(e.to_string()),
            (Ok(_), None) => None,
        };
        self.proxy.stats.request();
        if let Some(why) = failure {
            let req = self.req;
            debug!(
                "{}: {} {}: {why}",
                self.peer,
                req.method,
                req.dest.authority()
            );
        }
        // The origin's exchange failed either way: reset, not closed.
        self.reset_origin();
        Some(if cut { Next::Abort } else { Next::Close })
    }

    /// A complete exchange: the origin connection back to the pool when it
    /// can be used again.
    fn answered(self, answered: Answered) -> Next {
        self.proxy.stats.request();
        // The attempt's handle goes first: a pooled connection is held once.
        drop(self.origin);
        match answered {
            Answered::Done {
                keep_client,
                reusable,
            } => {
                if let Some(origin) = reusable {
                    self.proxy.origins.put(&self.req.dest, origin);
                }
                if keep_client {
                    Next::KeepAlive
                } else {
                    Next::Close
                }
            }
            Answered::Switched(origin) => Next::Switch(origin),
        }
    }

    /// The client broke its chunked request body: `400` if it has had
    /// nothing yet, else a reset; the origin is reset either way.
    async fn bad_upload(self, writer: &mut TcpStream, e: ChunkError) -> Next {
        let req = self.req;
        debug!(
            "{}: {} {}: {e}",
            self.peer,
            req.method,
            req.dest.authority()
        );
        self.reset_origin();
        if self.sent > 0 {
            self.proxy.stats.error(400);
            return Next::Abort;
        }
        let refuse = Refuse::new(400, format!("bad request: {e}"));
        respond(self.proxy, writer, refuse, false).await;
        Next::Close
    }

    fn reset_origin(&self) {
        let _ = self.origin.get_ref().reset_on_close();
    }
}

/// Runs the upload and the download together until both end, except that a
/// framing error in the upload ends the download at once (`None`): the
/// origin cannot answer a request that never ends.
async fn both<U, D>(upload: U, download: D) -> (Result<u64, BodyError>, Option<D::Output>)
where
    U: Future<Output = Result<u64, BodyError>>,
    D: Future,
{
    let (mut upload, mut download) = (pin!(upload), pin!(download));
    let (mut up, mut down) = (None, None);
    std::future::poll_fn(|cx| {
        if up.is_none() {
            if let Poll::Ready(result) = upload.as_mut().poll(cx) {
                up = Some(result);
            }
        }
        if matches!(up, Some(Err(BodyError::Framing(_)))) {
            return Poll::Ready(());
        }
        if down.is_none() {
            if let Poll::Ready(result) = download.as_mut().poll(cx) {
                down = Some(result);
            }
        }
        if up.is_some() && down.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    let up = up.unwrap_or_else(|| Err(BodyError::Io(io::Error::other("upload unfinished"))));
    (up, down)
}

/// Reads the origin's response (passing interim 1xx heads to an HTTP/1.1
/// client) and streams it to the client, counting the bytes written in
/// `sent`. A failure before any byte reached the client becomes a `502`,
/// unless `retry` allows sending the request again.
async fn download(
    proxy: &Proxy,
    origin: TcpStream,
    writer: &mut TcpStream,
    req: &Request,
    sent: &mut u64,
    retry: bool,
    upgrading: bool,
) -> Result<Answered, Failure> {
    let idle = proxy.settings.idle_timeout;
    let mut origin = Buffered::new(origin);
    let failed = |why: String| Failure::Failed(why);
    for _ in 0..=MAX_INTERIM {
        let response = match response_head(&mut origin, idle).await {
            Ok(response) => response,
            Err(None) if retry => return Err(Failure::Retry),
            Err(why) => {
                let why = why.unwrap_or_else(|| "closed without a response".to_owned());
                if *sent == 0 {
                    let text = format!("bad response from the origin: {why}");
                    respond(proxy, writer, Refuse::new(502, text), false).await;
                }
                return Err(failed(why));
            }
        };
        if response.status == 101 && !upgrading {
            let text = "bad response from the origin: 101 without an Upgrade request";
            respond(proxy, writer, Refuse::new(502, text), false).await;
            return Err(failed(text.to_owned()));
        }
        let interim = (100..200).contains(&response.status) && response.status != 101;
        if interim && req.version == super::head::Version::Http10 {
            continue;
        }
        let framing = response.framing(&req.method);
        let dechunk = dechunks(&response, req.version);
        let keep_client = req.keep_alive() && framing != Framing::UntilClose && !dechunk;
        let head = rewrite::client_response(&response, req.version, keep_client);
        let written = with_timeout(idle, "writing the response head", writer.write_all(&head));
        written.await.map_err(|e| failed(e.to_string()))?;
        *sent += head.len() as u64;
        if response.status == 101 {
            with_timeout(idle, "flushing the response", writer.flush())
                .await
                .map_err(|e| failed(e.to_string()))?;
            return Ok(Answered::Switched(origin));
        }
        if interim {
            continue;
        }
        *sent += copy_body(&mut origin, writer, framing, idle, dechunk)
            .await
            .map_err(|e| failed(format!("response body: {e}")))?;
        with_timeout(idle, "flushing the response", writer.flush())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let exact = framing != Framing::UntilClose && origin.data().is_empty();
        let reusable =
            (exact && response.keep_alive() && !upgrading).then(|| origin.into_parts().0);
        return Ok(Answered::Done {
            keep_client,
            reusable,
        });
    }
    let text = format!("bad response from the origin: more than {MAX_INTERIM} interim responses");
    if *sent == 0 {
        respond(proxy, writer, Refuse::new(502, text.clone()), false).await;
    }
    Err(failed(text))
}

/// One response head from the origin, or why not: `None` when the origin
/// closed or reset before sending a byte of it.
async fn response_head(
    origin: &mut Buffered<TcpStream>,
    idle: Duration,
) -> Result<Response, Option<String>> {
    let read = with_timeout(idle, "reading the response head", async {
        Ok(origin.read_head(parse_response).await)
    });
    match read.await {
        Ok(Ok(Some(response))) => Ok(response),
        Ok(Ok(None)) => Err(None),
        Ok(Err(HeadFailure::Io(e))) if origin.data().is_empty() && closed(&e) => Err(None),
        Ok(Err(HeadFailure::Io(e))) | Err(e) => Err(Some(e.to_string())),
        Ok(Err(HeadFailure::Invalid(e))) => Err(Some(e.to_string())),
    }
}

fn closed(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}
