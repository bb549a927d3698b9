//! File-system calls relative to directory handles: the *at() family that
//! lets the receiver place every entry inside its destination without ever
//! resolving a path through a symbolic link, and the sender walk a tree
//! without following links it was not asked to follow.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::Whence;

use super::{errno_of, fault, nix_err, to_off};

fn c_bytes(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    c_bytes(name.as_bytes())
}

/// Creates `name` inside the directory `dir` for reading and writing with
/// O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and the given permission bits: it
/// never opens an existing file and never follows a symlink planted there.
pub fn create_exclusive_at(dir: &File, name: &OsStr, mode: u32) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd =
        nix::fcntl::openat(dir, c_name(name)?.as_c_str(), flags, Mode::from_bits_truncate(mode)).map_err(nix_err)?;
    Ok(File::from(fd))
}

/// Opens `name` inside `dir` for reading and writing, creating it with
/// the given permission bits if it is missing (O_CREAT|O_NOFOLLOW|
/// O_NONBLOCK|O_CLOEXEC): a symbolic link planted there fails with ELOOP,
/// and a fifo does not block. The caller checks with fstat what it opened.
pub fn open_or_create_at(dir: &File, name: &OsStr, mode: u32) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd =
        nix::fcntl::openat(dir, c_name(name)?.as_c_str(), flags, Mode::from_bits_truncate(mode)).map_err(nix_err)?;
    Ok(File::from(fd))
}

/// A file held with an exclusive advisory lock (flock), released when
/// it is dropped.
pub type Locked = nix::fcntl::Flock<File>;

/// Takes an exclusive flock on `file` without waiting: Ok(None) when
/// another open file description holds one.
pub fn try_lock(file: File) -> io::Result<Option<Locked>> {
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(nix_err(e)),
    }
}

/// Opens an unnamed regular file for reading and writing in the file
/// system of `dir` (O_TMPFILE) with the given permission bits: it has no
/// name until [`link_unnamed_at`] gives it one, and it vanishes with the
/// last descriptor if that never happens, even if the process is killed.
pub fn create_unnamed_in(dir: &File, mode: u32) -> io::Result<File> {
    fault::check("tmpfile")?;
    let flags = OFlag::O_RDWR | OFlag::O_TMPFILE | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, c".", flags, Mode::from_bits_truncate(mode)).map_err(nix_err)?;
    Ok(File::from(fd))
}

/// How [`link_unnamed_at`] names an unnamed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkUnnamed {
    /// linkat(fd, "", ..., AT_EMPTY_PATH): needs CAP_DAC_READ_SEARCH on
    /// kernels before 6.10 (older kernels answer ENOENT without it).
    EmptyPath,
    /// linkat of /proc/self/fd/N with AT_SYMLINK_FOLLOW: any user, if /proc
    /// is mounted.
    ProcFd,
}

/// Gives the unnamed `file` (from [`create_unnamed_in`]) the name `name` in
/// `dir`. Fails with EEXIST instead of replacing anything there.
pub fn link_unnamed_at(file: &File, how: LinkUnnamed, dir: &File, name: &OsStr) -> io::Result<()> {
    fault::check("link")?;
    let name = c_name(name)?;
    match how {
        LinkUnnamed::EmptyPath => nix::unistd::linkat(file, c"", dir, name.as_c_str(), AtFlags::AT_EMPTY_PATH),
        LinkUnnamed::ProcFd => {
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                dir,
                name.as_c_str(),
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        }
    }
    .map_err(nix_err)
}

/// Opens the directory `name` inside `dir`. With `follow` false a symbolic
/// link there fails (ELOOP or ENOTDIR) instead of being followed.
pub fn open_dir_at(dir: &File, name: &[u8], follow: bool) -> io::Result<File> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::openat(dir, c_bytes(name)?.as_c_str(), flags, Mode::empty()).map_err(nix_err)?;
    Ok(File::from(fd))
}

/// How [`open_dir_beneath`] resolves paths: decided once per process by a
/// probe, since a kernel or seccomp filter that refuses openat2 refuses it
/// for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
    /// RESOLVE_NO_MAGICLINKS: the kernel itself refuses to leave the
    /// directory (`..`, an absolute path) or to follow any link.
    Openat2,
    /// openat(2) one component at a time with O_NOFOLLOW|O_DIRECTORY, for
    /// kernels before 5.6 or a seccomp filter that blocks openat2; the
    /// errno the probe got says why.
    Walk(Errno),
}

static RESOLVER: OnceLock<Resolver> = OnceLock::new();

impl Resolver {
    /// The resolver of this process (the first call probes).
    pub fn get() -> Resolver {
        *RESOLVER.get_or_init(Resolver::probe)
    }

    /// openat2 of `/` with the resolve flags zcp uses: ENOSYS (a kernel
    /// before 5.6), EPERM (a seccomp filter), E2BIG (an `open_how` larger
    /// than the kernel knows) or any other refusal means the walk, which
    /// is slower but just as strict.
    fn probe() -> Resolver {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let resolve = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        match openat2(nix::fcntl::AT_FDCWD, c"/", flags, resolve) {
            Ok(_) => Resolver::Openat2,
            Err(e) => Resolver::Walk(errno_of(&e).unwrap_or(Errno::ENOSYS)),
        }
    }

    /// For `-v`: "resolving paths ..." and this.
    pub fn describe(self) -> String {
        match self {
            Resolver::Openat2 => {
                "with openat2 (RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS)".to_string()
            }
            Resolver::Walk(e) => {
                format!("one component at a time with openat(O_NOFOLLOW): openat2 is not available ({e})")
            }
        }
    }
}

/// openat2(2), which the fault injector can refuse (`ZCP_FAULT=openat2=ENOSYS`
/// makes the probe fail, so the process uses the walk).
fn openat2(dir: impl AsFd, path: &CStr, flags: OFlag, resolve: ResolveFlag) -> io::Result<OwnedFd> {
    fault::check("openat2")?;
    let how = OpenHow::new().flags(flags).resolve(resolve);
    nix::fcntl::openat2(dir, path, how).map_err(nix_err)
}

/// Why `path` is not a plain descent below a directory, if it is not:
/// EXDEV for an absolute path or a `..` component (it would climb out, as
/// RESOLVE_BENEATH says), EINVAL for an empty path, an empty or `.`
/// component, or a NUL byte (nothing zcp ever asks for).
fn not_beneath(path: &[u8]) -> Option<io::Error> {
    let errno = if path.first() == Some(&b'/') {
        libc::EXDEV
    } else if path.is_empty() || path.contains(&0) {
        libc::EINVAL
    } else {
        match path.split(|b| *b == b'/').find(|c| matches!(*c, b"" | b"." | b"..")) {
            None => return None,
            Some(b"..") => libc::EXDEV,
            Some(_) => libc::EINVAL,
        }
    };
    Some(io::Error::from_raw_os_error(errno))
}

/// Opens the directory `path` (one or more components separated by `/`)
/// below `dir` for reading, without ever leaving `dir` or following a
/// symbolic link, whichever [`Resolver`] this process has. The errors are
/// the same either way: EXDEV for an absolute path or a `..`, EINVAL for
/// an empty or `.` component, ELOOP for a symbolic link anywhere on the
/// path, ENOTDIR for another non-directory, and what the kernel says
/// otherwise (ENOENT, EACCES).
pub fn open_dir_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    open_dir_beneath_with(Resolver::get(), dir, path)
}

fn open_dir_beneath_with(resolver: Resolver, dir: &File, path: &[u8]) -> io::Result<File> {
    match resolver {
        Resolver::Openat2 => match not_beneath(path) {
            Some(e) => Err(e),
            None => openat2_beneath(dir, path),
        },
        Resolver::Walk(_) => walk_beneath(dir, path),
    }
}

/// One openat2 call: the kernel enforces what [`not_beneath`] checked, so
/// a path that slipped past it still cannot leave `dir`. No O_NOFOLLOW:
/// RESOLVE_NO_SYMLINKS already refuses a final link, with ELOOP.
fn openat2_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    openat2(dir, c_bytes(path)?.as_c_str(), flags, resolve).map(File::from)
}

/// The fallback: openat of one checked component at a time with
/// O_NOFOLLOW|O_DIRECTORY, the ones on the way as O_PATH (like openat2,
/// they need search permission only). Refuses on its own what
/// [`not_beneath`] refuses, and reports a link as ELOOP however the kernel
/// put it.
fn walk_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    if let Some(e) = not_beneath(path) {
        return Err(e);
    }
    let mut components = path.split(|b| *b == b'/').peekable();
    let mut here: Option<OwnedFd> = None;
    while let Some(name) = components.next() {
        let access = if components.peek().is_some() {
            OFlag::O_PATH
        } else {
            OFlag::O_RDONLY
        };
        let flags = access | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let at = here.as_ref().map_or(dir.as_fd(), AsFd::as_fd);
        let c_name = c_bytes(name)?;
        here = Some(match nix::fcntl::openat(at, c_name.as_c_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR | Errno::ELOOP)
                if nix::sys::stat::fstatat(at, c_name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) =>
            {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            Err(e) => return Err(nix_err(e)),
        });
    }
    here.map(File::from)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens `name` inside `dir` for reading, never blocking on a fifo or
/// becoming a controlling terminal. With `follow` false a symbolic link
/// fails with ELOOP. The caller checks with fstat what it opened.
pub fn open_read_at(dir: &File, name: &[u8], follow: bool) -> io::Result<File> {
    fault::check("open")?;
    let mut flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::openat(dir, c_bytes(name)?.as_c_str(), flags, Mode::empty()).map_err(nix_err)?;
    Ok(File::from(fd))
}

/// Whether this process may create entries in the directory `path`
/// (faccessat(2) with W_OK|X_OK and the effective ids; EROFS for a
/// read-only mount).
pub fn check_writable_dir(path: &std::path::Path) -> io::Result<()> {
    nix::unistd::faccessat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        AtFlags::AT_EACCESS,
    )
    .map_err(nix_err)
}

/// mkdirat(2).
pub fn mkdir_at(dir: &File, name: &[u8], mode: u32) -> io::Result<()> {
    nix::sys::stat::mkdirat(dir, c_bytes(name)?.as_c_str(), Mode::from_bits_truncate(mode)).map_err(nix_err)
}

/// symlinkat(2): creates `name` in `dir` as a link whose text is `target`.
pub fn symlink_at(target: &[u8], dir: &File, name: &OsStr) -> io::Result<()> {
    nix::unistd::symlinkat(c_bytes(target)?.as_c_str(), dir, c_name(name)?.as_c_str()).map_err(nix_err)
}

/// linkat(2) without AT_SYMLINK_FOLLOW: a new name for the inode `from`
/// names in `from_dir`, never for what a link there points to.
pub fn hard_link_at(from_dir: &File, from: &[u8], to_dir: &File, to: &OsStr) -> io::Result<()> {
    nix::unistd::linkat(
        from_dir,
        c_bytes(from)?.as_c_str(),
        to_dir,
        c_name(to)?.as_c_str(),
        AtFlags::empty(),
    )
    .map_err(nix_err)
}

/// fstatat(2) with AT_SYMLINK_NOFOLLOW (lstat relative to `dir`).
pub fn lstat_at(dir: &File, name: &[u8]) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, c_bytes(name)?.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_err)
}

/// fstatat(2) following a final symbolic link (stat relative to `dir`).
pub fn stat_at(dir: &File, name: &[u8]) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, c_bytes(name)?.as_c_str(), AtFlags::empty()).map_err(nix_err)
}

/// readlinkat(2): the text of the symbolic link `name` in `dir`.
pub fn read_link_at(dir: &File, name: &[u8]) -> io::Result<Vec<u8>> {
    let text = nix::fcntl::readlinkat(dir, c_bytes(name)?.as_c_str()).map_err(nix_err)?;
    Ok(text.into_vec())
}

/// utimensat(2) with AT_SYMLINK_NOFOLLOW: the mtime of `name` itself, even
/// when it is a symbolic link.
pub fn set_link_mtime_at(dir: &File, name: &OsStr, seconds: i64, nanos: u32) -> io::Result<()> {
    let mtime = TimeSpec::new(seconds, i64::from(nanos));
    nix::sys::stat::utimensat(
        dir,
        c_name(name)?.as_c_str(),
        &TimeSpec::UTIME_OMIT,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_err)
}

/// renameat(2) within one directory: atomically replaces `to` with `from`.
pub fn rename_at(dir: &File, from: &OsStr, to: &OsStr) -> io::Result<()> {
    fault::check("rename")?;
    nix::fcntl::renameat(dir, c_name(from)?.as_c_str(), dir, c_name(to)?.as_c_str()).map_err(nix_err)
}

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of
/// replacing anything under `to`.
pub fn rename_noreplace_at(dir: &File, from: &OsStr, to: &OsStr) -> io::Result<()> {
    fault::check("rename")?;
    nix::fcntl::renameat2(
        dir,
        c_name(from)?.as_c_str(),
        dir,
        c_name(to)?.as_c_str(),
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(nix_err)
}

/// unlinkat(2) of a non-directory entry in `dir`.
pub fn unlink_at(dir: &File, name: &OsStr) -> io::Result<()> {
    nix::unistd::unlinkat(dir, c_name(name)?.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(nix_err)
}

/// fchmod(2) (files and directories).
pub fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmod(file, Mode::from_bits_truncate(mode)).map_err(nix_err)
}

/// futimens(2): sets the modification time, leaves the access time alone.
pub fn set_mtime(file: &File, seconds: i64, nanos: u32) -> io::Result<()> {
    let mtime = TimeSpec::new(seconds, i64::from(nanos));
    nix::sys::stat::futimens(file, &TimeSpec::UTIME_OMIT, &mtime).map_err(nix_err)
}

/// fsync(2) of an open directory, so a rename inside it is durable.
pub fn sync_dir(dir: &File) -> io::Result<()> {
    dir.sync_all()
}

/// What a directory listing says about one child (d_type; `None` when the
/// file system does not say and the caller must lstat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildType {
    Directory,
    File,
    Symlink,
    Other,
}

/// The children of the open directory `dir` (without `.` and `..`), in the
/// order the file system returns them.
pub fn list_dir(dir: &File) -> io::Result<Vec<(Vec<u8>, Option<ChildType>)>> {
    let fd: OwnedFd = dir.try_clone()?.into();
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(nix_err)?;
    let mut out = Vec::new();
    for item in listing.iter() {
        let item = item.map_err(nix_err)?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        use nix::dir::Type;
        let kind = item.file_type().map(|t| match t {
            Type::Directory => ChildType::Directory,
            Type::File => ChildType::File,
            Type::Symlink => ChildType::Symlink,
            _ => ChildType::Other,
        });
        out.push((name.to_vec(), kind));
    }
    Ok(out)
}

/// The next data region at or after `offset` (SEEK_DATA), or None when
/// only a hole is left. File systems without hole support report the
/// whole file as data.
pub fn next_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    match nix::unistd::lseek(file, to_off(offset)?, Whence::SeekData) {
        Ok(at) => Ok(Some(at as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(nix_err(e)),
    }
}

/// The end of the data region containing `offset` (SEEK_HOLE), or None
/// when `offset` is at or past the end of the file (it shrank).
pub fn next_hole(file: &File, offset: u64) -> io::Result<Option<u64>> {
    match nix::unistd::lseek(file, to_off(offset)?, Whence::SeekHole) {
        Ok(at) => Ok(Some(at as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(nix_err(e)),
    }
}

/// Raises the soft limit on open files to the hard limit, so that deep
/// trees (one open directory per level) do not run out of descriptors.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::path::Path;

    use super::*;

    /// t/a/b/c, t/a/file, t/a/link -> b, t/up -> .., t/root -> /, and an
    /// open handle on t.
    fn fixture() -> (tempfile::TempDir, File) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        std::fs::write(t.path().join("a/file"), b"f").unwrap();
        symlink("b", t.path().join("a/link")).unwrap();
        symlink("..", t.path().join("up")).unwrap();
        symlink("/", t.path().join("root")).unwrap();
        let dir = File::open(t.path()).unwrap();
        (t, dir)
    }

    /// The walk, and openat2 where this kernel lets the process use it.
    fn resolvers() -> Vec<Resolver> {
        let mut all = vec![Resolver::Walk(Errno::ENOSYS)];
        match Resolver::probe() {
            Resolver::Openat2 => all.push(Resolver::Openat2),
            Resolver::Walk(e) => eprintln!("SKIPPED the openat2 cases: openat2 is not available ({e})"),
        }
        all
    }

    fn errno(opened: io::Result<File>) -> Option<i32> {
        opened.err().and_then(|e| e.raw_os_error())
    }

    fn same_dir(opened: &File, expected: &Path) -> bool {
        let (a, b) = (opened.metadata().unwrap(), std::fs::metadata(expected).unwrap());
        a.is_dir() && (a.dev(), a.ino()) == (b.dev(), b.ino())
    }

    #[test]
    fn a_plain_descent_resolves_with_either_resolver() {
        let (t, dir) = fixture();
        for resolver in resolvers() {
            for path in ["a", "a/b", "a/b/c"] {
                let opened = open_dir_beneath_with(resolver, &dir, path.as_bytes()).unwrap();
                assert!(same_dir(&opened, &t.path().join(path)), "{resolver:?} {path}");
            }
            // The handle is good for what the receiver does with it.
            let b = open_dir_beneath_with(resolver, &dir, b"a/b").unwrap();
            mkdir_at(&b, b"new", 0o700).unwrap();
            set_mode(&b, 0o755).unwrap();
            std::fs::remove_dir(t.path().join("a/b/new")).unwrap();
        }
    }

    #[test]
    fn climbing_out_absolute_paths_and_links_are_refused_alike() {
        let (_t, dir) = fixture();
        let cases: &[(&[u8], i32)] = &[
            (b"../x", libc::EXDEV),
            (b"..", libc::EXDEV),
            (b"/etc", libc::EXDEV),
            (b"/", libc::EXDEV),
            (b"a/../b", libc::EXDEV),
            (b"a/..", libc::EXDEV),
            (b"a/link", libc::ELOOP),
            (b"a/link/c", libc::ELOOP),
            (b"up", libc::ELOOP),
            (b"up/a", libc::ELOOP),
            (b"root/etc", libc::ELOOP),
            (b"a/file", libc::ENOTDIR),
            (b"a/file/x", libc::ENOTDIR),
            (b"a/nothere", libc::ENOENT),
            (b"", libc::EINVAL),
            (b".", libc::EINVAL),
            (b"a/./b", libc::EINVAL),
            (b"a//b", libc::EINVAL),
            (b"a/", libc::EINVAL),
            (b"a\0b", libc::EINVAL),
        ];
        for resolver in resolvers() {
            for (path, want) in cases {
                let got = errno(open_dir_beneath_with(resolver, &dir, path));
                assert_eq!(got, Some(*want), "{resolver:?} {:?}", String::from_utf8_lossy(path));
            }
        }
    }

    #[test]
    fn the_kernel_alone_keeps_openat2_beneath_and_off_links() {
        // Without the lexical check in front: RESOLVE_BENEATH and
        // RESOLVE_NO_SYMLINKS by themselves.
        if Resolver::probe() != Resolver::Openat2 {
            eprintln!("SKIPPED: openat2 is not available");
            return;
        }
        let (t, dir) = fixture();
        for (path, want) in [
            ("../x", libc::EXDEV),
            ("/etc", libc::EXDEV),
            ("a/../../x", libc::EXDEV),
            ("a/link", libc::ELOOP),
            ("up/a", libc::ELOOP),
            ("root", libc::ELOOP),
        ] {
            assert_eq!(errno(openat2_beneath(&dir, path.as_bytes())), Some(want), "{path}");
        }
        // Staying below is all RESOLVE_BENEATH asks.
        let b = openat2_beneath(&dir, b"a/../a/b").unwrap();
        assert!(same_dir(&b, &t.path().join("a/b")));
    }

    #[test]
    fn magic_links_are_refused_alike() {
        let Ok(proc_self) = File::open("/proc/self") else {
            eprintln!("SKIPPED: no /proc");
            return;
        };
        for resolver in resolvers() {
            for path in ["cwd", "root", "cwd/x"] {
                let got = errno(open_dir_beneath_with(resolver, &proc_self, path.as_bytes()));
                assert_eq!(got, Some(libc::ELOOP), "{resolver:?} {path}");
            }
        }
    }
}
