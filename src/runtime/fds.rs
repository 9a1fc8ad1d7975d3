//! File descriptors: the process limit, raised once at start, and what an
//! accept loop does when it is reached.
//!
//! Every visitor costs descriptors (at the server its connection and, pooled,
//! its data link; at the client the link and the local connection), and the
//! default soft `RLIMIT_NOFILE` is often 1,024: [`raise_limit`] lifts it to the
//! hard limit. When the limit is reached anyway, `accept` fails with `EMFILE`
//! and the connection stays queued; with edge-triggered readiness the listener
//! would never be reported readable again, and with level-triggered readiness
//! it would spin. So each worker keeps one spare descriptor: on `EMFILE` it
//! closes the spare, accepts the waiting connection and closes it at once (the
//! visitor is refused, not left hanging), and opens the spare again.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft descriptor limit to the hard limit; returns the new soft
/// limit.
pub fn raise_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

thread_local! {
    /// This thread's spare descriptor (`/dev/null`), opened on first use.
    static SPARE: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// Opens this thread's spare descriptor if it is not open; call it where an
/// accept loop starts, while descriptors are still free.
pub fn keep_spare() {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.is_none() {
            *spare = File::open("/dev/null").ok();
        }
    });
}

/// Whether `e` says the process or the system ran out of descriptors.
pub fn exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE)
    )
}

/// Accepts the next queued connection on `listener` and closes it at once,
/// using the spare descriptor; `false` when there was no spare (or no
/// connection). Logs a warning at most every [`WARN_EVERY`].
pub fn refuse_one(listener: &TcpListener) -> bool {
    let Some(spare) = SPARE.with(|s| s.borrow_mut().take()) else {
        return false;
    };
    drop(spare);
    let refused = listener.accept().is_ok();
    keep_spare();
    if refused {
        warn_exhausted();
    }
    refused
}

/// Least time between two "out of descriptors" warnings: a flood must not
/// become a flood of log lines.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

static LAST_WARNING_SECS: AtomicU64 = AtomicU64::new(0);

fn warn_exhausted() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING_SECS.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY.as_secs()
        && LAST_WARNING_SECS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
        tracing::warn!(
            "out of file descriptors (limit {limit}): refusing new connections; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower the load"
        );
    }
}
