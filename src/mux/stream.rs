//! One mux stream as an `AsyncRead + AsyncWrite` byte stream.
//!
//! Reading takes bytes the peer sent within the credit this stream granted (and
//! grants more as they are consumed); writing queues at most a small buffer and
//! waits for the driver to send it within the peer's credit. `close` half-closes
//! (a `Fin` after the queued bytes); dropping the stream before a clean close
//! both ways resets it.
//!
//! Only the peer's `Fin` reads as EOF. A cut stream fails instead, so a relay
//! passes the abort on: `ConnectionReset` when the peer reset it
//! ([`Error::StreamReset`] inside), `ConnectionAborted` when the session ended
//! (link lost, driver dropped; the session's [`Error`] inside, whatever its
//! own kind).

use futures_lite::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::error::Error;
use super::shared::Shared;

pub struct Stream {
    shared: Arc<Shared>,
    id: u32,
}

impl Stream {
    pub(super) fn new(shared: Arc<Shared>, id: u32) -> Self {
        Stream { shared, id }
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn gone(why: Option<&Error>) -> io::Error {
    match why {
        Some(why) => io::Error::new(io::ErrorKind::ConnectionAborted, why.clone()),
        None => Error::StreamReset.into(),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        let closed = st.closed.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(gone(closed.as_ref())));
        };
        if !s.recv.is_empty() {
            let n = st.read(self.id, buf);
            let wake = st.wants_write();
            drop(st);
            if wake {
                self.shared.wake_writer();
            }
            return Poll::Ready(Ok(n));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(0));
        }
        if s.reset || closed.is_some() {
            return Poll::Ready(Err(gone(closed.as_ref())));
        }
        store(&mut s.read_waker, cx);
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        let closed = st.closed.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(gone(closed.as_ref())));
        };
        if s.reset || closed.is_some() {
            return Poll::Ready(Err(gone(closed.as_ref())));
        }
        if s.fin_requested {
            return Poll::Ready(Err(Error::WriteClosed.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = st.queue(self.id, buf);
        if n == 0 {
            if let Some(s) = st.streams.get_mut(&self.id) {
                store(&mut s.write_waker, cx);
            }
            return Poll::Pending;
        }
        drop(st);
        self.shared.wake_writer();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued bytes belong to the session now; it sends them in order.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.lock().finish(self.id);
        self.shared.wake_writer();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.lock().release(self.id);
        self.shared.wake_writer();
    }
}
