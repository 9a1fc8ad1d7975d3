//! Idle origin connections kept for the next request to the same origin.
//!
//! Per worker (a connection stays on the worker whose poller it is registered
//! with, like everything else on the data path), keyed by destination
//! (host and port as the client named them, after the rules passed). A
//! connection is put back only after an exchange that ended exactly: both
//! sides allowed keep-alive, the request and the response were delimited and
//! read to their last byte, and nothing followed the response. It is taken
//! only while its origin has been silent: any byte or EOF since means it is
//! out of step or closing, and it is dropped instead. Idle connections expire
//! after `origin_idle_timeout` (swept by [`Origins::sweep`]); the most
//! recently used one is taken first, as it is the least likely to have been
//! closed by its origin.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::head::Destination;
use crate::runtime::{self, SharedTcpStream as TcpStream};
use crate::tasks::lock;

/// Most idle connections to one origin, per worker: enough for a browser's
/// six parallel connections times a few clients, small enough that a single
/// origin cannot fill the pool.
pub const MAX_IDLE_PER_ORIGIN: usize = 32;
/// Most idle connections per worker: each is a descriptor and a socket's
/// kernel buffers (no proxy buffer is kept with it).
pub const MAX_IDLE_PER_WORKER: usize = 256;

struct Idle {
    dest: Destination,
    stream: TcpStream,
    since: Instant,
}

/// See the module docs.
pub struct Origins {
    shards: Vec<Mutex<Vec<Idle>>>,
    idle_timeout: Duration,
}

impl Origins {
    /// A pool for `workers` workers; a zero `idle_timeout` keeps nothing.
    pub fn new(workers: usize, idle_timeout: Duration) -> Origins {
        Origins {
            shards: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            idle_timeout,
        }
    }

    fn shard(&self) -> Option<&Mutex<Vec<Idle>>> {
        self.shards.get(runtime::current_worker()?)
    }

    /// An idle connection to `dest` that is still quiet, if any.
    pub fn take(&self, dest: &Destination) -> Option<TcpStream> {
        let mut idle = lock(self.shard()?);
        while let Some(i) = idle.iter().rposition(|c| &c.dest == dest) {
            let conn = idle.remove(i);
            let fresh = conn.since.elapsed() < self.idle_timeout;
            if fresh && crate::transport::socket_is_quiet(conn.stream.get_ref()) {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request to `dest`, within the bounds
    /// (the oldest connection makes room).
    pub fn put(&self, dest: &Destination, stream: TcpStream) {
        let Some(shard) = self.shard().filter(|_| !self.idle_timeout.is_zero()) else {
            return;
        };
        let mut idle = lock(shard);
        let same = idle.iter().filter(|c| &c.dest == dest).count();
        if same >= MAX_IDLE_PER_ORIGIN {
            if let Some(i) = idle.iter().position(|c| &c.dest == dest) {
                idle.remove(i);
            }
        } else if idle.len() >= MAX_IDLE_PER_WORKER {
            idle.remove(0);
        }
        idle.push(Idle {
            dest: dest.clone(),
            stream,
            since: Instant::now(),
        });
    }

    /// Closes connections idle for longer than the timeout.
    pub fn sweep(&self) {
        for shard in &self.shards {
            lock(shard).retain(|c| c.since.elapsed() < self.idle_timeout);
        }
    }

    /// Idle connections held now.
    pub fn idle(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// How often [`Origins::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout / 2).max(Duration::from_millis(100))
    }
}
