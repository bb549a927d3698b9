//! Signal policy: SIGINT and SIGTERM set a process-wide flag and interrupt
//! the blocking syscall in progress (no SA_RESTART), so the data loops can
//! unwind, Drop guards remove staged files, and zcp exits 130. A second
//! signal exits at once. SIGXFSZ is ignored so that exceeding RLIMIT_FSIZE
//! surfaces as an EFBIG error naming the file instead of killing zcp.
//! Worker threads block both signals, so the interruption always lands on
//! the thread doing the transfer.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(130) };
    }
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
