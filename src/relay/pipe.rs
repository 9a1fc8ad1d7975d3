//! Kernel pipes for the splice engine, pooled per thread.
//!
//! A relay direction takes a pipe only while bytes are in flight and gives it back
//! empty, so an idle connection holds no pipe. Pipes are grown to
//! [`PIPE_SIZES`]`[0]` where the kernel allows; a non-root user has a budget of
//! pipe pages (about 64 pipes of 1 MiB), past which `F_SETPIPE_SZ` fails and we
//! fall back to smaller sizes, down to the kernel default (64 KiB).

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;
use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;

/// Sizes tried in order when a pipe is created, in bytes.
pub const PIPE_SIZES: [i32; 3] = [1 << 20, 256 << 10, 64 << 10];
/// Empty pipes kept per thread for reuse; more are closed. Bounds the descriptors
/// (2 per pipe) and kernel memory an idle process holds.
pub const POOL_CAP: usize = 64;

/// One pipe: bytes are spliced into `write` and out of `read`.
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Capacity in bytes, as granted by the kernel.
    pub size: usize,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    /// Takes a pooled pipe or creates one.
    pub fn take() -> io::Result<Pipe> {
        if let Some(pipe) = POOL.with(|p| p.borrow_mut().pop()) {
            return Ok(pipe);
        }
        Pipe::create()
    }

    fn create() -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let mut size = fcntl(&read, FcntlArg::F_GETPIPE_SZ).unwrap_or(PIPE_SIZES[2]);
        for want in PIPE_SIZES {
            if want <= size {
                break;
            }
            if let Ok(got) = fcntl(&read, FcntlArg::F_SETPIPE_SZ(want)) {
                size = got;
                break;
            }
        }
        Ok(Pipe {
            read,
            write,
            size: usize::try_from(size).unwrap_or(64 << 10),
        })
    }

    /// Returns an *empty* pipe to this thread's pool (a pipe that still holds
    /// bytes must be dropped instead; the caller knows).
    pub fn give_back(self) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_CAP {
                pool.push(self);
            }
        });
    }
}

/// Pipes pooled on the calling thread (for tests and stats).
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}
