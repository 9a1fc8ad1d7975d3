//! A mux session over one link: the [`Session`] handle opens and accepts
//! streams; the driver future (returned by [`Session::new`], spawned by the
//! owner) reads frames, writes batches and pings.

use futures_lite::io::{BufReader, split};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use smol::channel::{Receiver, bounded};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use super::error::Error;
use super::frame::{HEADER_LEN, Header, MAX_DATA_LEN, MAX_OPEN_LEN};
use super::shared::Shared;
use super::state::{Config, Side, State};
use super::stream::Stream;

/// Read buffer of the driver: several frames per read syscall.
const READ_BUF_LEN: usize = 64 * 1024;

/// A handle to a mux session; clones share it.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Wraps `io`; the returned driver must be polled (spawned) for anything
    /// to move. It ends when the link fails, a ping goes unanswered, the peer
    /// breaks the protocol, or a going-away session has drained. Its error
    /// wraps an [`Error`] (`downcast_ref` it) of the same kind.
    pub fn new<S>(
        io: S,
        side: Side,
        config: Config,
    ) -> (
        Session,
        impl Future<Output = io::Result<()>> + Send + 'static,
    )
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (wake_tx, wake_rx) = bounded(1);
        let shared = Arc::new(Shared::new(State::new(side, config), wake_tx));
        let driver = drive(io, shared.clone(), wake_rx);
        (Session { shared }, driver)
    }

    /// Opens a stream whose `Open` frame carries `payload` (≤ 2 KiB). A
    /// refusal is `ConnectionRefused` with an [`Error::Refused`] inside.
    pub fn open(&self, payload: Vec<u8>) -> io::Result<Stream> {
        let id = self
            .shared
            .lock()
            .open(payload)
            .map_err(|r| io::Error::from(Error::Refused(r)))?;
        self.shared.wake_writer();
        Ok(Stream::new(self.shared.clone(), id))
    }

    /// The next stream the peer opened, with its `Open` payload; `None` once
    /// the session has ended.
    pub async fn accept(&self) -> Option<(Stream, Vec<u8>)> {
        futures_lite::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some((id, payload)) = st.accepted.pop_front() {
                drop(st);
                return Poll::Ready(Some((Stream::new(self.shared.clone(), id), payload)));
            }
            if st.closed.is_some() {
                return Poll::Ready(None);
            }
            st.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Stops new streams both ways; open ones run to their end, then the
    /// driver closes the link.
    pub fn go_away(&self) {
        self.shared.lock().go_away();
        self.shared.wake_writer();
    }

    /// Why the session ended, if it has.
    pub fn closed(&self) -> Option<Error> {
        self.shared.lock().closed.clone()
    }

    /// Streams in its table.
    pub fn stream_count(&self) -> usize {
        self.shared.lock().stream_count()
    }
}

async fn drive<S>(io: S, shared: Arc<Shared>, wake_rx: Receiver<()>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _ends = EndsSession(&shared);
    let (reader, writer) = split(io);
    let result = read_loop(reader, &shared)
        .or(write_loop(writer, &shared, &wake_rx))
        .or(ping_loop(&shared))
        .await;
    let why = match &result {
        Ok(()) => Error::LinkClosed,
        Err(e) => e.clone(),
    };
    shared.lock().close(why);
    result.map_err(io::Error::from)
}

/// Ends the session when the driver is dropped before it finished (its owner
/// cancelled it): the link goes with the driver, so every stream must fail
/// (`ConnectionAborted`) rather than wait for frames nobody will read.
struct EndsSession<'a>(&'a Shared);

impl Drop for EndsSession<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        if st.closed.is_none() {
            st.close(Error::LinkDropped);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(reader: R, shared: &Shared) -> Result<(), Error> {
    let mut reader = BufReader::with_capacity(READ_BUF_LEN, reader);
    let mut payload = vec![0u8; MAX_DATA_LEN.max(MAX_OPEN_LEN) as usize];
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head).await {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let header = Header::decode(&head)?;
        // Capped by `Header::decode`: at most MAX_DATA_LEN.
        let body = &mut payload[..header.payload_len()];
        reader.read_exact(body).await?;
        let wake = {
            let mut st = shared.lock();
            st.on_frame(header, body)?;
            st.wants_write()
        };
        if wake {
            shared.wake_writer();
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    shared: &Shared,
    wake_rx: &Receiver<()>,
) -> Result<(), Error> {
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let drained = {
            let mut st = shared.lock();
            st.fill(&mut batch);
            st.drained()
        };
        if !batch.is_empty() {
            writer.write_all(&batch).await?;
            writer.flush().await?;
            continue;
        }
        if drained {
            writer.close().await?;
            return Ok(());
        }
        if wake_rx.recv().await.is_err() {
            return Ok(());
        }
    }
}

async fn ping_loop(shared: &Shared) -> Result<(), Error> {
    let interval = shared.lock().config().ping_interval;
    // The first ping goes at once: its answer is the RTT that window
    // auto-tuning needs from the start of a bulk transfer.
    let mut first = true;
    loop {
        if !first {
            crate::runtime::sleep(interval).await;
        }
        first = false;
        shared.lock().ping(Instant::now())?;
        shared.wake_writer();
    }
}
