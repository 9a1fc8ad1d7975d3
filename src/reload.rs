//! Reloading a running server or client: what asks for it (`SIGHUP`, or a
//! change of the config file), loading the file again, and handing the new
//! settings to the running mode, which applies what can change live.
//!
//! - [`Watcher`] follows the config file's *directory* with inotify, because
//!   editors and config managers replace a file (write a temporary, rename it
//!   over) rather than write it in place, and Kubernetes swaps a `..data`
//!   symlink. Bursts of events are debounced into one reload.
//! - [`drive`] loads the file again for every request. A file that does not
//!   load changes nothing: the error, with its file, line and column, is
//!   logged and the running settings stay. Otherwise the mode gets a
//!   [`Request`] and says when it has applied it (dropping the request);
//!   systemd hears `RELOADING=1` before and `READY=1` after.

use smol::channel::{Receiver, Sender};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::{debug, error, info};

use futures_lite::FutureExt;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Quiet time after a change before the file is read: an editor's save is
/// several events (write, rename, attributes) within a few milliseconds, and
/// a config manager may write a file in pieces.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `SIGHUP` (`systemctl reload`).
    Signal,
    /// The config file changed.
    FileChanged,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Signal => "SIGHUP",
            Cause::FileChanged => "the config file changed",
        })
    }
}

/// New settings for the running mode; dropping the request says they are
/// applied.
#[derive(Debug)]
pub struct Request<S> {
    pub settings: S,
    _done: Sender<()>,
}

impl<S> Request<S> {
    /// A request, and what completes once it is dropped.
    pub fn new(settings: S) -> (Self, Receiver<()>) {
        let (done, applied) = smol::channel::bounded(1);
        let request = Request {
            settings,
            _done: done,
        };
        (request, applied)
    }
}

/// What a mode receives its reloads on.
pub type Requests<S> = Receiver<Request<S>>;

/// Loads the config again: the same file and the same command-line flags as
/// at start.
pub type Load<S, E> = Arc<dyn Fn() -> Result<S, E> + Send + Sync>;

/// Reloads of this process, for the admin endpoint: one config per
/// process, so the counts are process-wide.
static APPLIED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
/// Whether the last reload loaded (1) or not (0); 1 before any.
static LAST_OK: AtomicU64 = AtomicU64::new(1);
/// When the config last loaded, in whole seconds since the epoch; 0: at start.
static LAST_OK_AT: AtomicU64 = AtomicU64::new(0);

/// Writes the reload families (named like Prometheus's own
/// `prometheus_config_*`, so the same alert rules fit).
pub fn write_metrics(out: &mut crate::metrics::Exposition) {
    use crate::metrics::Kind;
    let results = ["applied", "failed"];
    let counts = [
        APPLIED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    ];
    let family = (
        "porthole_config_reloads_total",
        Kind::Counter,
        "Config reloads (SIGHUP or a change of the file), by result; a failed one changed nothing.",
    );
    out.indexed(family, "result", &results, |i| counts[i]);
    out.single(
        "porthole_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last reload loaded the config (or there was none yet), 0 if it failed.",
        LAST_OK.load(Ordering::Relaxed),
    );
    let at = match LAST_OK_AT.load(Ordering::Relaxed) {
        0 => crate::metrics::process::start_time(),
        at => at as f64,
    };
    out.single(
        "porthole_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "When the config in force was loaded (the process start if never reloaded).",
        at,
    );
}

fn record(ok: bool) {
    let (count, last) = if ok { (&APPLIED, 1) } else { (&FAILED, 0) };
    count.fetch_add(1, Ordering::Relaxed);
    LAST_OK.store(last, Ordering::Relaxed);
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        LAST_OK_AT.store(now, Ordering::Relaxed);
    }
}

/// Reloads for every cause until `causes` closes or the mode stops taking
/// requests.
pub async fn drive<S, E>(causes: Receiver<Cause>, load: Load<S, E>, mode: Sender<Request<S>>)
where
    S: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let notifier = crate::notify::notifier();
    while let Ok(cause) = causes.recv().await {
        if let Some(n) = notifier {
            n.reloading();
        }
        info!("reloading the config ({cause})");
        // Off the executor: loading reads files and resolves addresses.
        let load = load.clone();
        match smol::unblock(move || load()).await {
            Err(e) => {
                record(false);
                error!("config not reloaded, nothing changed: {e}");
            }
            Ok(settings) => {
                record(true);
                let (request, applied) = Request::new(settings);
                if mode.send(request).await.is_err() {
                    return;
                }
                // Completes (closed) once the mode dropped the request.
                let _ = applied.recv().await;
            }
        }
        if let Some(n) = notifier {
            n.ready();
        }
    }
}

/// A watch on the config file (see the module docs).
pub struct Watcher {
    inotify: async_io::Async<Inotify>,
    name: OsString,
}

impl Watcher {
    /// Watches `path`'s directory for changes to it; set up before this
    /// returns, so no change made after it is missed.
    pub fn new(path: &Path) -> io::Result<Watcher> {
        let (dir, name) = split(path)?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_ATTRIB;
        inotify.add_watch(&dir, flags).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot watch {}: {e}", dir.display()),
            )
        })?;
        debug!("watching {} for changes", path.display());
        Ok(Watcher {
            inotify: async_io::Async::new(inotify)?,
            name,
        })
    }

    /// Sends [`Cause::FileChanged`] on `changed` whenever the file is
    /// written, replaced or (through a `..data` symlink swap) switched,
    /// debounced by [`DEBOUNCE`]. Runs until `changed` closes.
    pub async fn run(self, changed: Sender<Cause>) -> io::Result<()> {
        loop {
            self.wait_for_change().await?;
            // Debounce: until the directory was quiet for DEBOUNCE.
            loop {
                let more = async { self.wait_for_change().await.map(|()| true) };
                let settled = async {
                    smol::Timer::after(DEBOUNCE).await;
                    Ok(false)
                };
                if !more.or(settled).await? {
                    break;
                }
            }
            // Full: a reload is already due, and it reads this change too.
            if changed.try_send(Cause::FileChanged).is_err() && changed.is_closed() {
                return Ok(());
            }
        }
    }

    /// Waits for an event that concerns the file (or a `..data` swap).
    async fn wait_for_change(&self) -> io::Result<()> {
        loop {
            self.inotify.readable().await?;
            let events = match self.inotify.get_ref().read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EAGAIN) => continue,
                Err(e) => return Err(e.into()),
            };
            let ours = events.iter().any(|e| {
                e.name
                    .as_ref()
                    .is_some_and(|n| *n == self.name || n.as_encoded_bytes().starts_with(b".."))
            });
            if ours {
                return Ok(());
            }
        }
    }
}

/// The directory to watch and the file's name in it.
fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file to watch", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "porthole-reload-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Waits for the next cause, failing after 5 s.
    async fn next(rx: &Receiver<Cause>) -> Option<Cause> {
        futures_lite::future::or(async { rx.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(5)).await;
            None
        })
        .await
    }

    #[test]
    fn a_rename_over_the_file_is_one_change_and_other_files_are_none() {
        let scratch = Scratch::new("rename");
        let file = scratch.0.join("server.ron");
        std::fs::write(&file, "(a)").expect("write");
        let watcher = Watcher::new(&file).expect("watch");
        let (tx, rx) = smol::channel::bounded(4);
        smol::block_on(async {
            let _watching = smol::spawn(watcher.run(tx));
            std::fs::write(scratch.0.join("other.ron"), "(c)").expect("write other");
            // An editor's save: a temporary written, then renamed over.
            let temp = scratch.0.join(".server.ron.swp");
            std::fs::write(&temp, "(b)").expect("write temp");
            std::fs::rename(&temp, &file).expect("rename");
            assert_eq!(next(&rx).await, Some(Cause::FileChanged));
            // One burst, one change: nothing else follows once it settled.
            smol::Timer::after(DEBOUNCE * 2).await; // ok-sleep: asserting that no second change comes
            assert!(rx.try_recv().is_err(), "one reload per burst");
            // Written in place, later: a change again.
            std::fs::write(&file, "(d)").expect("write in place");
            assert_eq!(next(&rx).await, Some(Cause::FileChanged));
        });
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = Watcher::new(Path::new("/")).err().expect("no file name");
        assert!(err.to_string().contains("names no file"), "{err}");
    }
}
