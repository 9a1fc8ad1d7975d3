//! CPU pinning for the `--pin` latency phase: every thread of the mode's
//! processes and of the bench itself (load generator and in-process echo) on
//! one CPU, so the number measures the path's work and wake-ups rather than
//! cross-CPU scheduling. The guard puts each thread's old mask back.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::procstat;

/// Saved masks of pinned threads, restored on drop.
pub struct Pinned {
    saved: Vec<(Pid, CpuSet)>,
    pub cpu: usize,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (tid, mask) in &self.saved {
            // A thread that exited since (ESRCH) needs nothing.
            let _ = sched_setaffinity(*tid, mask);
        }
    }
}

/// The lowest CPU the bench may run on (CPU 0 unless a cpuset says otherwise).
fn first_cpu() -> Result<usize, String> {
    let mask = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("getaffinity: {e}"))?;
    (0..CpuSet::count())
        .find(|&c| mask.is_set(c).unwrap_or(false))
        .ok_or_else(|| "empty CPU mask".to_owned())
}

/// Pins every thread of the process trees under `roots`, and of this process,
/// to one CPU (like `taskset -a -p -c 0 PID`).
pub fn pin_all(roots: &[u32]) -> Result<Pinned, String> {
    let cpu = first_cpu()?;
    let mut one = CpuSet::new();
    one.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
    let mut pinned = Pinned {
        saved: Vec::new(),
        cpu,
    };
    let mut pids = procstat::tree(roots);
    pids.push(std::process::id());
    for pid in pids {
        for tid in procstat::threads(pid) {
            let Ok(raw) = i32::try_from(tid) else {
                continue;
            };
            let tid = Pid::from_raw(raw);
            // Threads may exit between the listing and here; skip them.
            let Ok(old) = sched_getaffinity(tid) else {
                continue;
            };
            match sched_setaffinity(tid, &one) {
                Ok(()) => pinned.saved.push((tid, old)),
                Err(nix::errno::Errno::ESRCH) => {}
                // `pinned` drops here and unpins what it already pinned.
                Err(e) => return Err(format!("setaffinity {tid}: {e}")),
            }
        }
    }
    Ok(pinned)
}
