//! Timers and deadlines on the worker's timer map: no `timerfd`, no syscall.
//!
//! A [`Sleep`] first polled on a worker lives in that worker's ordered map until
//! it fires or is dropped; arming and cancelling cost a map insert and remove, so
//! a deadline that rarely fires (a handshake, a connect) costs nothing more. The
//! worker's `epoll_wait` timeout is the nearest deadline, rounded up to the
//! millisecond, so a timer never fires early. Off the workers (the control
//! plane) the same future falls back to async-io's timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::reactor;

/// Completes at `deadline` (see the module docs).
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Not polled yet.
    New,
    /// In worker `worker`'s timer map under `id`.
    Worker {
        worker: usize,
        id: u64,
    },
    /// Polled off the workers.
    Reactor(async_io::Timer),
    Done,
}

/// Longest sleep: a longer one (a setting of `"99999999999s"`, say) is this
/// long, which is "never" for a process, instead of an `Instant` overflow.
const MAX_SLEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Sleeps for `duration` (at most [`MAX_SLEEP`]).
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration.min(MAX_SLEEP))
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        state: State::New,
    }
}

/// Runs `fut` for at most `limit`; a `TimedOut` error after that.
pub async fn timeout<F, T>(limit: Duration, fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    futures_lite::future::or(fut, async {
        sleep(limit).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if let State::Reactor(timer) = &mut self.state {
            return match Pin::new(timer).poll(cx) {
                Poll::Ready(_) => {
                    self.state = State::Done;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            };
        }
        if Instant::now() >= deadline {
            self.cancel();
            self.state = State::Done;
            return Poll::Ready(());
        }
        match self.state {
            State::New => {
                self.state = match super::current_loop() {
                    Some(worker) => State::Worker {
                        worker,
                        id: reactor::add_timer(deadline, cx.waker()),
                    },
                    None => {
                        let mut timer = async_io::Timer::at(deadline);
                        let _ = Pin::new(&mut timer).poll(cx);
                        State::Reactor(timer)
                    }
                };
            }
            State::Worker { worker, id } if super::current_loop() == Some(worker) => {
                reactor::update_timer(deadline, id, cx.waker());
            }
            State::Worker { .. } => {
                // Polled on another loop than before (tasks never move, but
                // a future might): arm here; the old entry fires unheard.
                self.state = State::New;
                return self.as_mut().poll(cx);
            }
            State::Reactor(_) | State::Done => {}
        }
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let State::Worker { worker, id } = self.state {
            // Tasks never leave their worker, so this runs there; elsewhere
            // the entry simply fires once, waking a waker nobody waits on.
            if super::current_loop() == Some(worker) {
                reactor::remove_timer(self.deadline, id);
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}
