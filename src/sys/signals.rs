//! Signal policy: SIGINT and SIGTERM set a process-wide flag and interrupt
//! the blocking syscall in progress (no SA_RESTART), so the data loops can
//! unwind, Drop guards remove staged files, and zcp exits 130. A second
//! signal exits at once. SIGXFSZ is ignored so that exceeding RLIMIT_FSIZE
//! surfaces as an EFBIG error naming the file instead of killing zcp.
//! Worker threads block both signals, so the interruption always lands on
//! the thread doing the transfer. A signal that lands just before a
//! blocking read would not interrupt it, so the handler also shuts down
//! the read side of the connection registered with [`wake_on_interrupt`]:
//! that read then returns at once.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The socket whose reads an interruption ends (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_terminate(_signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(130) };
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown is async-signal-safe and takes no pointers; at
        // worst the descriptor is no longer a socket and it fails.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
}

/// Makes SIGINT/SIGTERM end any read on `sock` (it reads end of file), so
/// a blocking read cannot miss the interruption. `sock` must stay open
/// until [`wake_nothing`] is called.
pub fn wake_on_interrupt(sock: BorrowedFd<'_>) {
    WAKE_FD.store(sock.as_raw_fd(), Ordering::SeqCst);
    if interrupted() {
        // SAFETY: as in the handler; the descriptor is borrowed, so open.
        unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RD) };
    }
}

/// Forgets the socket given to [`wake_on_interrupt`].
pub fn wake_nothing() {
    WAKE_FD.store(-1, Ordering::SeqCst);
}

/// Installs the handlers described in the module doc. Call once, early in
/// `main`, before any thread starts.
pub fn install() -> std::io::Result<()> {
    let terminate = SigAction::new(SigHandler::Handler(on_terminate), SaFlags::empty(), SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for (signal, action) in [
        (Signal::SIGINT, &terminate),
        (Signal::SIGTERM, &terminate),
        (Signal::SIGXFSZ, &ignore),
    ] {
        // SAFETY: the handler only touches an atomic and calls _exit, both
        // async-signal-safe; SIG_IGN has no handler code at all.
        unsafe { sigaction(signal, action) }.map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Blocks SIGINT and SIGTERM in the calling thread; every worker thread
/// calls this first so the signal interrupts the transferring thread.
pub fn block_in_this_thread() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Failure leaves the mask unchanged, which only makes Ctrl-C slower.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

/// Spawns a named worker thread with termination signals blocked.
pub fn spawn_worker<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name.to_string()).spawn(move || {
        block_in_this_thread();
        f()
    })
}
