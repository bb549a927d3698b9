//! The standard descriptors as the process found them. Before `main`,
//! Rust's runtime opens /dev/null on any of fds 0-2 that is closed, so a
//! closed stdin (`zcp send - HOST:PORT <&-`) would read as an empty
//! stream. A constructor in `.init_array`, which the startup code runs
//! before the runtime, records which of them were closed.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bit `fd` is set if fd 0, 1 or 2 was closed when the process started.
static CLOSED: AtomicU8 = AtomicU8::new(0);

extern "C" fn record_closed() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the flags of descriptor `fd`; it
        // takes no pointers and fails with EBADF if `fd` is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED.fetch_or(1 << fd, Ordering::Relaxed);
        }
    }
}

// SAFETY: `.init_array` holds pointers to functions that the startup code
// calls once, before `main` and before Rust's runtime initialisation;
// `record_closed` has the C ABI, ignores the arguments it may be passed,
// and only queries descriptors and stores to an atomic.
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_CLOSED: extern "C" fn() = record_closed;

/// True if stdin was closed when zcp started (it now reads /dev/null).
pub fn stdin_was_closed() -> bool {
    CLOSED.load(Ordering::Relaxed) & 1 != 0
}

/// True if stdout was closed when zcp started (it now writes to /dev/null).
pub fn stdout_was_closed() -> bool {
    CLOSED.load(Ordering::Relaxed) & 2 != 0
}
