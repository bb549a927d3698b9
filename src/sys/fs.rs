//! File-system calls relative to directory handles: the *at() family that
//! lets the receiver place every entry inside its destination without ever
//! resolving a path through a symbolic link, and the sender walk a tree
//! without following links it was not asked to follow.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::Whence;

use super::{fault, nix_err, to_off};

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
