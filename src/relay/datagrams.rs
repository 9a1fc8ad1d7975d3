//! Datagrams over a byte stream (a UDP flow's data link or mux stream), in
//! the records of [`crate::protocol::datagram`]: one record per datagram,
//! never split or merged.
//!
//! Both halves are polled by the one task that owns a flow's link (at the
//! client, next to the flow's UDP socket), and neither ever waits on the
//! other: [`Outbox`] queues records for
//! the link up to [`MAX_QUEUED_LEN`] and refuses (the caller drops and counts)
//! past it; [`Inbox`] hands each whole record to a callback that sends it
//! without waiting. So a slow link or socket loses datagrams, as UDP may,
//! and stalls nothing else.
//!
//! Memory: reads go through one scratch buffer per thread, so an idle flow
//! holds no buffer at all; only a record cut by a read, or records queued
//! for a full link, are kept per flow, and both are freed once drained.

use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::protocol::datagram::{self, HEADER_LEN, MAX_DATAGRAM_LEN};

/// Records queued for one link; past this a datagram is dropped. 64 KiB is
/// 46 datagrams of 1,400 bytes (one largest datagram fits): more than a
/// link that keeps up holds between two turns of its task, and small
/// enough that a flow cannot hoard memory: a flooded flow holds at most
/// twice this (one queue being written, one filling), so 4,096 flows of a
/// service whose link stalls hold at most 512 MiB, and only while it stalls.
/// A power of two (see [`Outbox::push`]).
pub const MAX_QUEUED_LEN: usize = 64 * 1024;
/// The per-thread read buffer: one record of the largest size whole, and
/// many small ones per read; one byte more than that, so a received
/// datagram too long to carry (IPv6 allows 65,527 bytes) shows as such
/// instead of arriving cut.
pub const SCRATCH_LEN: usize = HEADER_LEN + MAX_DATAGRAM_LEN + 1;
/// How long the end of a flow may take to tell its link (FIN, TLS
/// close_notify, mux `Fin`); then the link is dropped instead.
pub const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Reads of one link per poll before other tasks of the thread get a turn.
const READS_PER_POLL: usize = 8;
/// The smallest buffer an outbox allocates.
const MIN_CAPACITY: usize = 256;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer ([`SCRATCH_LEN`] bytes).
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SCRATCH_LEN {
            s.resize(SCRATCH_LEN, 0);
        }
        f(&mut s)
    })
}

/// Records waiting for a link: appended whole, written in as few writes as
/// the link takes.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Written, but the link's flush is still pending (a TLS link keeps
    /// what the socket did not take in its own buffer).
    unflushed: bool,
}

impl Outbox {
    pub const fn new() -> Outbox {
        Outbox {
            buf: Vec::new(),
            sent: 0,
            unflushed: false,
        }
    }

    /// Queues one datagram; `false` (the caller counts it dropped) when it
    /// would pass [`MAX_QUEUED_LEN`], or is longer than a UDP datagram over
    /// IPv4 (only IPv6 carries longer ones).
    pub fn push(&mut self, payload: &[u8]) -> bool {
        let need = self.buf.len() + HEADER_LEN + payload.len();
        if need > MAX_QUEUED_LEN || payload.len() > MAX_DATAGRAM_LEN {
            return false;
        }
        if need > self.buf.capacity() {
            // Doubling, but never past the bound (a power of two), so a
            // full queue holds at most MAX_QUEUED_LEN bytes of memory.
            let cap = need.next_power_of_two().clamp(MIN_CAPACITY, MAX_QUEUED_LEN);
            self.buf.reserve_exact(cap - self.buf.len());
        }
        datagram::encode(payload, &mut self.buf).is_ok()
    }

    /// Whether [`Outbox::poll_send`] has anything to do: bytes to write, or
    /// a flush to finish.
    pub fn wants_send(&self) -> bool {
        !self.is_empty() || self.unflushed
    }

    /// Queues the records `other` has not written yet.
    pub fn extend_from(&mut self, other: &Outbox) {
        self.buf.extend_from_slice(&other.buf[other.sent..]);
    }

    /// Appends the records not written yet to `out`.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.sent..]);
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes what is queued and flushes the link: `Ready(Ok(n))` when it
    /// wrote `n` bytes (`n` > 0; call again while [`Outbox::wants_send`]),
    /// `Pending` when the link took nothing more (its waker is set).
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        link: &mut W,
    ) -> Poll<io::Result<usize>> {
        let mut wrote = 0;
        while self.sent < self.buf.len() {
            match Pin::new(&mut *link).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.sent += n;
                    wrote += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote > 0 => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.sent == self.buf.len() {
            // Freed, not kept: an idle flow holds no buffer (the next burst
            // allocates one, a cost far below its system calls').
            self.buf = Vec::new();
            self.sent = 0;
        }
        match Pin::new(&mut *link).poll_flush(cx) {
            Poll::Ready(Ok(())) => self.unflushed = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => self.unflushed = true,
        }
        match wrote {
            0 if self.unflushed => Poll::Pending,
            n => Poll::Ready(Ok(n)),
        }
    }
}

/// How a read of the link ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Some bytes arrived (`n` of them); call again.
    Bytes(usize),
    /// The link ended cleanly, between two records.
    Eof,
}

/// Records from a link, cut wherever reads cut them.
#[derive(Debug, Default)]
pub struct Inbox {
    /// The start of a record a read cut.
    partial: Vec<u8>,
}

impl Inbox {
    pub const fn new() -> Inbox {
        Inbox {
            partial: Vec::new(),
        }
    }

    /// Reads from `link` (a few reads at most) and hands each whole record's
    /// payload to `deliver`. An over-long record header or a link that ends
    /// inside a record is an `InvalidData` error.
    pub fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        link: &mut R,
        mut deliver: impl FnMut(&[u8]),
    ) -> Poll<io::Result<Read>> {
        let mut total = 0;
        for _ in 0..READS_PER_POLL {
            let read = with_scratch(|buf| {
                let n = match Pin::new(&mut *link).poll_read(cx, buf) {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                if n > 0 {
                    self.take(&buf[..n], &mut deliver)?;
                }
                Poll::Ready(Ok(n))
            });
            match read {
                Poll::Ready(Ok(0)) if total > 0 => break,
                Poll::Ready(Ok(0)) if self.partial.is_empty() => return Poll::Ready(Ok(Read::Eof)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(cut())),
                Poll::Ready(Ok(n)) => total += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if total > 0 => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(Read::Bytes(total)))
    }

    /// Splits one read into records: first the end of a cut one, then whole
    /// ones, then keeps the start of the next.
    fn take(&mut self, mut data: &[u8], deliver: &mut impl FnMut(&[u8])) -> io::Result<()> {
        while !self.partial.is_empty() && !data.is_empty() {
            let need = datagram::need(&self.partial).map_err(invalid)?;
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some((payload, _)) = datagram::decode(&self.partial).map_err(invalid)? {
                deliver(&self.partial[payload]);
                // Freed: an idle flow holds no buffer.
                self.partial = Vec::new();
            }
        }
        while let Some((payload, used)) = datagram::decode(data).map_err(invalid)? {
            deliver(&data[payload]);
            data = &data[used..];
        }
        self.partial.extend_from_slice(data);
        // A bad header is refused as soon as both its bytes are here.
        datagram::need(&self.partial).map_err(invalid)?;
        Ok(())
    }
}

fn invalid(e: datagram::DatagramError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "data link ended inside a datagram",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::Cursor;
    use std::task::Waker;

    /// A reader that hands out its bytes `step` at a time.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn read_all(bytes: Vec<u8>, step: usize) -> (Vec<Vec<u8>>, io::Result<Read>) {
        let mut link = Trickle { bytes, at: 0, step };
        let mut inbox = Inbox::new();
        let mut got = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match inbox.poll_read(&mut cx, &mut link, |d| got.push(d.to_vec())) {
                Poll::Ready(Ok(Read::Bytes(_))) => continue,
                Poll::Ready(other) => return (got, other),
                Poll::Pending => unreachable!("a trickle is always ready"),
            }
        }
    }

    #[test]
    fn records_survive_any_cut_and_arrive_one_for_one() {
        let sizes = [0, 1, 1472, 8192, MAX_DATAGRAM_LEN, 0, 3];
        let datagrams: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        let mut outbox = Outbox::new();
        let mut wire = Cursor::new(Vec::new());
        let mut cx = Context::from_waker(Waker::noop());
        for d in &datagrams {
            assert!(outbox.push(d), "{} bytes fit an empty outbox", d.len());
            let sent = outbox.poll_send(&mut cx, &mut wire);
            assert!(matches!(sent, Poll::Ready(Ok(_))));
            assert!(outbox.is_empty());
        }
        let wire = wire.into_inner();
        for step in [1, 2, 3, 1000, 70_000] {
            let (got, end) = read_all(wire.clone(), step);
            assert_eq!(got, datagrams, "cut every {step} bytes");
            assert_eq!(end.expect("clean end"), Read::Eof);
        }
    }

    #[test]
    fn bad_headers_and_cut_records_are_errors() {
        let (got, end) = read_all(vec![0xff, 0xe4, 1, 2], 1);
        assert!(got.is_empty());
        let end = end.expect_err("over the cap");
        assert_eq!(end.kind(), io::ErrorKind::InvalidData);
        let (got, end) = read_all(vec![0, 1, 9, 0, 5, 1], 4);
        assert_eq!(got, vec![vec![9]]);
        assert_eq!(end.expect_err("cut").kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A link like TLS: takes every write, flushes only on the second try.
    #[derive(Default)]
    struct SlowFlush {
        flushes: usize,
    }

    impl AsyncWrite for SlowFlush {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            match self.flushes {
                1 => Poll::Pending,
                _ => Poll::Ready(Ok(())),
            }
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_pending_flush_keeps_the_outbox_asking_to_send() {
        let mut outbox = Outbox::new();
        let mut link = SlowFlush::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(outbox.push(b"reply"));
        let sent = outbox.poll_send(&mut cx, &mut link);
        assert!(matches!(sent, Poll::Ready(Ok(7))), "{sent:?}");
        assert!(
            outbox.is_empty() && outbox.wants_send(),
            "written, not flushed"
        );
        assert!(matches!(
            outbox.poll_send(&mut cx, &mut link),
            Poll::Ready(Ok(0))
        ));
        assert!(!outbox.wants_send());
        assert_eq!(link.flushes, 2);
    }

    #[test]
    fn a_full_outbox_refuses_and_takes_again_once_drained() {
        let mut outbox = Outbox::new();
        let d = vec![7u8; 1400];
        let fits = MAX_QUEUED_LEN / (HEADER_LEN + d.len());
        assert!((0..fits).all(|_| outbox.push(&d)));
        assert!(!outbox.push(&d), "past the bound");
        assert_eq!(outbox.len(), fits * (HEADER_LEN + d.len()));
        let mut wire = Cursor::new(Vec::new());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            outbox.poll_send(&mut cx, &mut wire),
            Poll::Ready(Ok(_))
        ));
        assert!(outbox.push(&d));
        assert!(
            !outbox.push(&vec![0; MAX_DATAGRAM_LEN + 1]),
            "over UDP's cap"
        );
    }
}
