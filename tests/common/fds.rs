//! The process's descriptor count, for the two test binaries that check for
//! leaks (`relay_fds`, `held_visitors`). Not a module of `common`: a count is
//! only meaningful in a process of its own, so only those binaries include it.

/// Descriptors open in this process right now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}
