//! The syscall boundary: every raw system call zcp makes goes through a thin,
//! documented wrapper here, and this is the only module allowed to contain
//! `unsafe` (in `signals`, `stdio` and `pacing`, and for `getrandom`).
//!
//! Wrappers return `io::Result` so callers can add context with anyhow, and
//! classify errors with [`errno_of`]. The data-path wrappers (`sendfile`,
//! `splice`, `tee`, `fallocate`) first consult the fault injector in
//! [`fault`], which lets the test suite make any of them fail with a chosen
//! errno on a chosen call, or stop the process just before it.
#![allow(unsafe_code)]

pub mod fault;
mod fs;
mod iobuf;
mod pacing;
pub mod signals;
mod stdio;

pub use fs::*;
pub use iobuf::IoBuf;
pub use pacing::{max_pacing_rate, set_max_pacing_rate};
pub use stdio::{stdin_was_closed, stdout_was_closed};

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::stat::Mode;

/// Largest byte count one `sendfile`/`splice` call may be asked to move
/// (sendfile(2): "will transfer at most 0x7ffff000 bytes").
pub const MAX_SYSCALL_CHUNK: usize = 0x7fff_f000;

fn nix_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))
}

/// The errno behind an I/O error, if it came from the kernel.
pub fn errno_of(err: &io::Error) -> Option<Errno> {
    err.raw_os_error().map(Errno::from_raw)
}

/// sendfile(2): copy up to `count` bytes from `file` at `*offset` to `out`
/// inside the kernel, advancing `*offset`. `file` must support mmap-like
/// reads (a regular file); `out` may be any fd, here a TCP socket.
/// Returns 0 only at end of file.
pub fn sendfile(out: impl AsFd, file: impl AsFd, offset: &mut u64, count: usize) -> io::Result<usize> {
    if let fault::Injected::EndOfFile = fault::check_or_eof("sendfile")? {
        return Ok(0);
    }
    let mut off = to_off(*offset)?;
    let n = nix::sys::sendfile::sendfile64(out, file, Some(&mut off), count.min(MAX_SYSCALL_CHUNK)).map_err(nix_err)?;
    *offset = u64::try_from(off).unwrap_or(*offset);
    Ok(n)
}

/// splice(2): move up to `len` bytes between two fds of which at least one
/// is a pipe, without copying through user space. An offset given for a
/// non-pipe side is used and advanced instead of the file position.
/// With `nonblock` (SPLICE_F_NONBLOCK) the pipe side never blocks and
/// EAGAIN says there was nothing to move.
pub fn splice(
    from: impl AsFd,
    from_offset: Option<&mut u64>,
    to: impl AsFd,
    to_offset: Option<&mut u64>,
    len: usize,
    nonblock: bool,
) -> io::Result<usize> {
    fault::check("splice")?;
    let mut flags = SpliceFFlags::SPLICE_F_MOVE;
    if nonblock {
        flags |= SpliceFFlags::SPLICE_F_NONBLOCK;
    }
    let mut from_off = from_offset.as_deref().map(|o| to_off(*o)).transpose()?;
    let mut to_off_v = to_offset.as_deref().map(|o| to_off(*o)).transpose()?;
    let n = nix::fcntl::splice(
        from,
        from_off.as_mut(),
        to,
        to_off_v.as_mut(),
        len.min(MAX_SYSCALL_CHUNK),
        flags,
    )
    .map_err(nix_err)?;
    if let (Some(slot), Some(v)) = (from_offset, from_off) {
        *slot = u64::try_from(v).unwrap_or(*slot);
    }
    if let (Some(slot), Some(v)) = (to_offset, to_off_v) {
        *slot = u64::try_from(v).unwrap_or(*slot);
    }
    Ok(n)
}

/// tee(2): duplicate up to `len` bytes from the pipe `from` into the pipe
/// `to` without consuming them from `from`. Blocks until `from` has data and
/// `to` has room (unless `nonblock`: then EAGAIN); returns 0 when `from`
/// is at end of file.
pub fn tee(from: impl AsFd, to: impl AsFd, len: usize, nonblock: bool) -> io::Result<usize> {
    fault::check("tee")?;
    let flags = if nonblock {
        SpliceFFlags::SPLICE_F_NONBLOCK
    } else {
        SpliceFFlags::empty()
    };
    nix::fcntl::tee(from, to, len.min(MAX_SYSCALL_CHUNK), flags).map_err(nix_err)
}

/// A pipe used as the in-kernel buffer of a splice path. Both ends are
/// close-on-exec; `capacity` is the size the kernel actually granted.
#[derive(Debug)]
pub struct Pipe {
    pub read: File,
    pub write: File,
    pub capacity: usize,
}

impl Pipe {
    /// Creates a pipe and grows it towards `want` bytes (see [`grow_pipe`]).
    pub fn new(want: usize) -> io::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(nix_err)?;
        let capacity = grow_pipe(&w, want);
        Ok(Pipe {
            read: File::from(r),
            write: File::from(w),
            capacity,
        })
    }
}

/// Grows the pipe behind `fd` to `want` bytes with F_SETPIPE_SZ, halving the
/// request while the kernel refuses (an unprivileged user may be over
/// `pipe-user-pages-soft`). Returns the capacity in effect afterwards.
pub fn grow_pipe(fd: impl AsFd, want: usize) -> usize {
    let fd = fd.as_fd();
    let current = pipe_capacity(fd).unwrap_or(64 * 1024);
    let mut ask = want;
    while ask > current {
        let Ok(ask_c) = i32::try_from(ask) else {
            ask /= 2;
            continue;
        };
        if let Ok(granted) = nix::fcntl::fcntl(fd, FcntlArg::F_SETPIPE_SZ(ask_c)) {
            return usize::try_from(granted).unwrap_or(ask);
        }
        ask /= 2;
    }
    current
}

/// F_GETPIPE_SZ: the capacity of the pipe behind `fd`; fails with EBADF
/// (or EINVAL) when `fd` is not a pipe.
pub fn pipe_capacity(fd: impl AsFd) -> io::Result<usize> {
    let n = nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_GETPIPE_SZ).map_err(nix_err)?;
    usize::try_from(n).map_err(|_| io::Error::other("negative pipe size"))
}

/// The largest pipe an unprivileged process may ask for
/// (`/proc/sys/fs/pipe-max-size`), or 1 MiB when it cannot be read.
pub fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// fallocate(2) mode 0: reserve `len` bytes of disk for `file` and set its
/// size, so a full disk is reported before the payload arrives and ext4
/// can lay the file out in large extents.
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    fault::check("fallocate")?;
    nix::fcntl::fallocate(file, FallocateFlags::empty(), 0, to_off(len)?).map_err(nix_err)
}

/// Waits until `input` is readable or `sock`'s peer has hung up (closed or
/// shut down its sending side); returns true in the second case. Without
/// `sock`, waits for `input` alone. EINTR is returned to the caller, and so
/// is TimedOut once `timeout` passes. Calls libc directly because nix's
/// `PollFlags` has no POLLRDHUP and treats the bit as unknown.
pub fn wait_input_or_hangup(
    input: BorrowedFd<'_>,
    sock: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: input.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            // poll(2) ignores an entry with a negative fd.
            fd: sock.map_or(-1, |s| s.as_raw_fd()),
            events: libc::POLLRDHUP,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX));
    // SAFETY: `fds` is a valid array of two initialised pollfd structs for
    // the duration of the call, and the descriptors in it are borrowed
    // (open) or -1, which poll skips.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "the input is idle"));
    }
    Ok(fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
}

/// Waits up to `timeout` for `fd` to be readable (or at end of file, or
/// in error: anything a read would return at once). EINTR counts as "not
/// yet", so the caller's loop can look at the interruption flag.
pub fn readable_within(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(nix_err(e)),
    }
}

/// Looks at the first `buf.len()` bytes waiting on `sock` without taking
/// them (recv with MSG_PEEK | MSG_WAITALL): blocks until that many have
/// arrived, the peer ended the stream, or the socket's read timeout passed
/// with some bytes in (fewer are returned then; with none, WouldBlock).
/// EINTR is returned to the caller.
pub fn peek_first(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv};
    recv(sock.as_raw_fd(), buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_WAITALL).map_err(nix_err)
}

/// Waits until `fd` is writable.
pub fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::NONE).map_err(nix_err)?;
    Ok(())
}

/// The process umask. umask(2) can only be read by setting it, so this
/// sets it back at once; call it before any thread is started.
pub fn read_umask() -> u32 {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

/// Fills `buf` from the kernel's CSPRNG (getrandom(2)).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes
        // for the duration of the call, and getrandom writes at most that.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// How much a TCP socket has taken in: the bytes the kernel received on
/// it so far (TCP_INFO `tcpi_bytes_received`) and how many of them are
/// still unread. Either changing, or bytes waiting, means the peer is not
/// silent. The count is None on kernels too old to report it (before 4.1).
pub fn tcp_intake(sock: BorrowedFd<'_>) -> io::Result<(Option<u64>, usize)> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a zeroed tcp_info of `len` bytes that outlives the
    // call; the kernel writes at most `len` bytes into it and updates len.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: tcp_info is plain integers, so the zeroed value is valid and
    // stays valid with whatever prefix the kernel filled in.
    let info = unsafe { info.assume_init() };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + std::mem::size_of::<u64>();
    let received = (len as usize >= needed).then_some(info.tcpi_bytes_received);
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // to a live local.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut unread) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((received, usize::try_from(unread).unwrap_or(0)))
}

/// Bytes written to a TCP socket that its peer has not acknowledged yet:
/// those in flight and those not sent (SIOCOUTQ, which Linux defines as
/// TIOCOUTQ; see tcp(7)). After shutdown(SHUT_WR) the FIN counts as one
/// byte until the peer acknowledges it, so 0 means the peer's TCP has
/// everything.
pub fn unacknowledged(sock: BorrowedFd<'_>) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which points
    // to a live local.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// User plus system CPU time consumed by all children that have been
/// waited for (getrusage(RUSAGE_CHILDREN)).
pub fn children_cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Maximum resident set size of the waited-for children, in KiB.
pub fn children_max_rss_kib() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0))
        .unwrap_or(0)
}

/// Which kind of object an fd refers to, from fstat(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    Regular,
    Directory,
    Pipe,
    Socket,
    CharDevice,
    BlockDevice,
    Symlink,
    Unknown,
}

impl FdKind {
    pub fn of(meta: &std::fs::Metadata) -> FdKind {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_file() {
            FdKind::Regular
        } else if t.is_dir() {
            FdKind::Directory
        } else if t.is_fifo() {
            FdKind::Pipe
        } else if t.is_socket() {
            FdKind::Socket
        } else if t.is_char_device() {
            FdKind::CharDevice
        } else if t.is_block_device() {
            FdKind::BlockDevice
        } else if t.is_symlink() {
            FdKind::Symlink
        } else {
            FdKind::Unknown
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FdKind::Regular => "a regular file",
            FdKind::Directory => "a directory",
            FdKind::Pipe => "a pipe or fifo",
            FdKind::Socket => "a socket",
            FdKind::CharDevice => "a character device",
            FdKind::BlockDevice => "a block device",
            FdKind::Symlink => "a symbolic link",
            FdKind::Unknown => "an unknown kind of file",
        }
    }
}

/// The path an open descriptor refers to, e.g. `/dev/null` or
/// `/dev/pts/3` (readlink of /proc/self/fd/N); None without /proc.
pub fn fd_path(fd: BorrowedFd<'_>) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
}

/// Duplicates a borrowed fd into an owned `File` (F_DUPFD_CLOEXEC).
pub fn dup_file(fd: BorrowedFd<'_>) -> io::Result<File> {
    let owned: OwnedFd = fd.try_clone_to_owned()?;
    Ok(File::from(owned))
}

/// Current file offset of `fd` (lseek(fd, 0, SEEK_CUR)); fails with ESPIPE
/// on pipes and sockets.
pub fn current_offset(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let off = nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekCur).map_err(nix_err)?;
    u64::try_from(off).map_err(|_| io::Error::other("negative file offset"))
}

/// Reads into `buf` from the current position of `fd` (read(2)); EINTR is
/// returned to the caller so it can notice an interrupt.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    fault::check("read")?;
    nix::unistd::read(fd, buf).map_err(nix_err)
}

/// Writes from `buf` at the current position of `fd` (write(2)).
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    fault::check("write")?;
    nix::unistd::write(fd, buf).map_err(nix_err)
}
