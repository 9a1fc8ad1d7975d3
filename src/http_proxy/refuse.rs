//! The responses the proxy makes itself (`400`, `403`, `407`, `502`, …): what
//! they say and how they are written. Every one is counted as an error.

use crate::runtime::SharedTcpStream as TcpStream;
use futures_lite::AsyncWriteExt;

use super::Proxy;
use super::rewrite;
use super::syntax::{ALLOWED_METHODS, HeadError};
use crate::wire::with_timeout;

/// A response the proxy generates itself.
pub(super) struct Refuse {
    pub(super) status: u16,
    pub(super) text: String,
    pub(super) extra: Vec<(&'static str, String)>,
}

impl Refuse {
    pub(super) fn new(status: u16, text: impl Into<String>) -> Self {
        Refuse {
            status,
            text: text.into(),
            extra: Vec::new(),
        }
    }

    pub(super) fn from_head(e: &HeadError) -> Self {
        let mut refuse = Refuse::new(e.status(), format!("bad request: {e}"));
        if e.status() == 405 {
            refuse.extra.push(("Allow", ALLOWED_METHODS.to_owned()));
        }
        refuse
    }
}

/// Writes a generated response; counts it as an error.
pub(super) async fn respond(
    proxy: &Proxy,
    writer: &mut TcpStream,
    refuse: Refuse,
    keep_alive: bool,
) {
    proxy.stats.error(refuse.status);
    let extra: Vec<(&str, &str)> = refuse.extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let bytes = rewrite::proxy_response(refuse.status, &extra, &refuse.text, keep_alive);
    let limit = proxy.settings.head_timeout;
    let _ = with_timeout(limit, "writing a response", async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    })
    .await;
}
