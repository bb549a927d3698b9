//! The copy engine: moves payload bytes between files, pipes and sockets
//! with the kernel's zero-copy calls, and falls back to read/write only
//! when the kernel says a call is not supported for these descriptors.
//!
//! * [`outbound`]: file → socket (`sendfile`), pipe → socket (`tee` for
//!   the hash, then `splice`), anything else → socket (read/write).
//! * [`inbound`]: socket → pipe → file at explicit offsets (`splice`),
//!   socket → stdout (directly when stdout is a pipe and nothing needs a
//!   copy of the stream), read/write otherwise.
//!
//! Fallback policy (as in std's `kernel_copy`): only EINVAL, ENOSYS,
//! EOPNOTSUPP and EPERM count as "not supported", and only before the
//! mechanism moved its first byte of the entry; any other error, or any
//! error after that, is an error. ENOSYS and EPERM (seccomp) switch the
//! call off for the rest of the process. Every fallback is recorded with
//! its reason in a [`Report`], which `-v` prints.
//!
//! Nothing in here wraps the data in a Read/Write adapter: progress and
//! hashing are fed from the byte counts the syscalls return.

pub mod inbound;
pub mod outbound;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use crate::error::interrupted_io;
use crate::sys::{self, signals};

/// Size of the scratch buffer of the read/write paths.
pub const RW_BUFFER: usize = 1 << 20;

/// Largest single `sendfile` call: big enough that the syscall count is
/// negligible (128 per GiB), small enough for a responsive progress bar,
/// hash frontier and Ctrl-C.
pub const SENDFILE_CHUNK: usize = 8 << 20;

/// The mechanism that moved bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Sendfile,
    Splice,
    ReadWrite,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sendfile => "sendfile",
            Mechanism::Splice => "splice",
            Mechanism::ReadWrite => "read/write",
        }
    }
}

/// What the user allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// False with `--no-zerocopy`: always read/write.
    pub zerocopy: bool,
    /// Capacity to ask for the splice pipes (pipe-max-size).
    pub pipe_size: usize,
}

impl Policy {
    pub fn new(zerocopy: bool) -> Policy {
        Policy {
            zerocopy,
            pipe_size: sys::pipe_max_size(),
        }
    }
}

/// How one entry's bytes moved, for `-v` and the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub by_sendfile: u64,
    pub by_splice: u64,
    pub by_read_write: u64,
    /// Receiver only: payload bytes that arrived in the same read as the
    /// control frame before them and were written from that buffer.
    pub from_buffer: u64,
    /// The route the zero-copy path takes, e.g. "socket → pipe → file".
    pub route: &'static str,
    /// Why read/write was used, if it was.
    pub fallback: Option<String>,
    /// Set when the file moved in blocks of this size: its digest is the
    /// file digest over block digests, not the SHA-256 of its bytes.
    pub block_size: Option<u32>,
}

impl Report {
    /// The mechanism that moved most of the bytes (zero-copy wins ties).
    pub fn primary(&self) -> Mechanism {
        let mut best = (self.by_sendfile, Mechanism::Sendfile);
        for c in [
            (self.by_splice, Mechanism::Splice),
            (self.by_read_write, Mechanism::ReadWrite),
        ] {
            if c.0 > best.0 {
                best = c;
            }
        }
        if best.0 == 0 {
            // Nothing moved (empty entry): name the path that would have.
            return match (&self.fallback, self.route) {
                (Some(_), _) => Mechanism::ReadWrite,
                (None, r) if r.contains("buffer") => Mechanism::ReadWrite,
                (None, r) if r.starts_with("file") => Mechanism::Sendfile,
                (None, _) => Mechanism::Splice,
            };
        }
        best.1
    }

    /// The byte split of a whole session, for `-v`.
    pub fn describe_totals(&self) -> String {
        let parts = self.split();
        if parts.is_empty() {
            return "no payload bytes".into();
        }
        parts.join(", ")
    }

    fn split(&self) -> Vec<String> {
        let mut parts = Vec::new();
        for (n, m) in [
            (self.by_sendfile, Mechanism::Sendfile),
            (self.by_splice, Mechanism::Splice),
            (self.by_read_write, Mechanism::ReadWrite),
        ] {
            if n > 0 {
                parts.push(format!("{} {n} bytes", m.name()));
            }
        }
        parts
    }

    /// One line for `-v`: the mechanism, the route and the byte split.
    pub fn describe(&self) -> String {
        let mut parts = self.split();
        if self.from_buffer > 0 {
            parts.push(format!("{} bytes written from the control buffer", self.from_buffer));
        }
        if parts.is_empty() {
            parts.push("no payload bytes".into());
        }
        let mut line = format!("{} ({}): {}", self.primary().name(), self.route, parts.join(", "));
        if let Some(why) = &self.fallback {
            line.push_str(&format!("; read/write because {why}"));
        }
        line
    }
}

/// Process-wide switches for calls the kernel refused with ENOSYS/EPERM.
static SENDFILE_OFF: AtomicBool = AtomicBool::new(false);
static SPLICE_OFF: AtomicBool = AtomicBool::new(false);

fn switch(call: &str) -> Option<&'static AtomicBool> {
    match call {
        "sendfile" => Some(&SENDFILE_OFF),
        "splice" | "tee" => Some(&SPLICE_OFF),
        _ => None,
    }
}

/// Whether `call` was switched off for this process.
fn disabled(call: &str) -> bool {
    switch(call).is_some_and(|s| s.load(Ordering::Relaxed))
}

/// If `err` means "`call` is not supported for these fds", records that
/// (process-wide for ENOSYS/EPERM) and returns the reason to report.
fn unsupported(call: &str, err: &io::Error, what: &str) -> Option<String> {
    let errno = sys::errno_of(err)?;
    if !matches!(errno, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EPERM) {
        return None;
    }
    if matches!(errno, Errno::ENOSYS | Errno::EPERM) {
        if let Some(s) = switch(call) {
            s.store(true, Ordering::Relaxed);
        }
    }
    Some(format!("{call} is not supported for {what} ({errno})"))
}

/// Maps EINTR to "try again" unless we are being interrupted, and a socket
/// timeout to TimedOut. Returns Ok(None) when the step should be retried.
fn settle<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            if signals::interrupted() {
                Err(interrupted_io())
            } else {
                Ok(None)
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out waiting for the peer",
        )),
        Err(e) => Err(e),
    }
}

/// The error for a peer that closed the connection inside a payload.
pub fn peer_closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the peer")
}

fn clamp(n: u64, max: usize) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_mechanism_is_the_one_that_moved_most() {
        let r = Report {
            by_splice: 10,
            from_buffer: 3,
            route: "socket → pipe → file",
            ..Report::default()
        };
        assert_eq!(r.primary(), Mechanism::Splice);
        assert!(
            r.describe()
                .starts_with("splice (socket → pipe → file): splice 10 bytes")
        );
        let r = Report {
            route: "file → socket",
            fallback: Some("--no-zerocopy".into()),
            ..Report::default()
        };
        assert_eq!(r.primary(), Mechanism::ReadWrite);
    }

    #[test]
    fn only_not_supported_errnos_allow_a_fallback() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(unsupported("x", &e(libc::EINVAL), "a").is_some());
        assert!(unsupported("x", &e(libc::EOPNOTSUPP), "a").is_some());
        assert!(unsupported("x", &e(libc::EIO), "a").is_none());
        assert!(unsupported("x", &e(libc::ENOSPC), "a").is_none());
    }
}
