//! Where received bytes land, and the rules that keep a destination safe:
//!
//! * DEST is resolved once, at start-up, into a directory handle, a
//!   (directory handle, file name) pair, or stdout. Names from the wire are
//!   only ever used relative to that handle, and only after
//!   [`Name`](crate::protocol::Name) validated them as single components.
//!   When DEST names a file, the wire name is ignored altogether.
//! * Bytes go to a staged file in the destination directory: an unnamed
//!   file (O_TMPFILE) where the file system and kernel allow it, which no
//!   one can see or open and which vanishes even if the receiver is killed;
//!   otherwise a hidden temporary created with
//!   O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC at mode 0600.
//! * Only a complete, verified file is ever readable by others. An unnamed
//!   file may take its final mode at once: until it is linked (verified)
//!   only the receiver's descriptor reaches it, and /proc/PID/fd is closed
//!   to other users. A named temporary can be opened by anyone who can
//!   search its directory, so it stays 0600 until [`Staged::commit`] gives
//!   it its mode, right before the rename.
//! * [`Staged::commit`] applies mode (without setuid, setgid and sticky,
//!   masked by the umask) and mtime, then links the unnamed file, or
//!   renames the temporary, onto its final name; an existing entry there is
//!   replaced by rename, never followed or written through.
//! * A [`Staged`] that is dropped without being committed removes itself,
//!   so every error path, panic unwind and interruption leaves nothing.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::display;
use crate::protocol::Mtime;
use crate::sys::{self, FdKind};

/// The resolved DEST argument of `zcp recv`.
#[derive(Clone)]
pub enum Destination {
    /// Files land inside this directory under their wire names.
    Directory { dir: Arc<File>, shown: PathBuf },
    /// The one file lands under this name in `dir`; wire names are ignored.
    File {
        dir: Arc<File>,
        name: OsString,
        shown: PathBuf,
    },
    /// The payload is written to stdout.
    Stdout,
}

fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

impl Destination {
    /// Resolves DEST (`-` for stdout). Fails early, before listening, when
    /// it cannot possibly work.
    pub fn resolve(arg: &Path) -> Result<Destination> {
        if arg.as_os_str() == "-" {
            if sys::stdout_was_closed() {
                bail!("destination -: standard output is closed");
            }
            return Ok(Destination::Stdout);
        }
        let shown = display::path(arg);
        match std::fs::metadata(arg) {
            Ok(meta) if meta.is_dir() => {
                let dir = open_dir(arg).with_context(|| format!("opening destination directory {shown}"))?;
                sys::check_writable_dir(arg)
                    .with_context(|| format!("destination directory {shown} is not writable"))?;
                return Ok(Destination::Directory {
                    dir: Arc::new(dir),
                    shown: arg.to_path_buf(),
                });
            }
            Ok(meta) if !meta.is_file() => {
                bail!(
                    "destination {shown} is {}; zcp writes into a directory or a regular file \
                     (use `zcp recv - > {shown}` to write into it)",
                    FdKind::of(&meta).describe()
                );
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if arg.as_os_str().as_bytes().ends_with(b"/") {
                    bail!("destination directory {shown} does not exist");
                }
            }
            Err(e) => return Err(e).with_context(|| format!("checking destination {shown}")),
        }
        let Some(name) = arg.file_name() else {
            bail!("destination {shown} has no file name");
        };
        let parent = match arg.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = open_dir(parent).with_context(|| {
            format!(
                "opening the directory of destination {shown} ({})",
                display::path(parent)
            )
        })?;
        sys::check_writable_dir(parent).with_context(|| {
            format!(
                "the directory of destination {shown} ({}) is not writable",
                display::path(parent)
            )
        })?;
        Ok(Destination::File {
            dir: Arc::new(dir),
            name: name.to_os_string(),
            shown: arg.to_path_buf(),
        })
    }
}

/// How regular files are staged, decided once per session by a probe in
/// the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// Unnamed files (O_TMPFILE), linked into place.
    Unnamed(sys::LinkUnnamed),
    /// Hidden temporary names, renamed into place.
    Named,
}

impl Staging {
    /// For `-v`.
    pub fn describe(self) -> &'static str {
        match self {
            Staging::Unnamed(sys::LinkUnnamed::EmptyPath) => {
                "unnamed files (O_TMPFILE), linked into place with linkat(AT_EMPTY_PATH)"
            }
            Staging::Unnamed(sys::LinkUnnamed::ProcFd) => {
                "unnamed files (O_TMPFILE), linked into place through /proc/self/fd"
            }
            Staging::Named => "hidden .zcp-*.part files, renamed into place",
        }
    }
}

/// Errors that mean "no O_TMPFILE here" rather than a real failure: the
/// file system lacks it (EOPNOTSUPP), or the kernel predates it and takes
/// the flag for O_DIRECTORY (EISDIR) or rejects it (EINVAL).
fn no_unnamed_files(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOSYS)
    )
}

/// Names staged entries `.zcp-<8 random hex><8 hex counter>.part`: hidden,
/// unique per session without a syscall per file, short enough for any file
/// system, and never derived from a wire name. Also decides, on first use,
/// whether regular files can be staged unnamed.
pub struct Stager {
    prefix: String,
    counter: Cell<u32>,
    staging: Cell<Option<Staging>>,
}

impl Stager {
    pub fn new() -> io::Result<Stager> {
        let mut r = [0u8; 4];
        sys::random_bytes(&mut r)?;
        Ok(Stager {
            prefix: r.iter().map(|b| format!("{b:02x}")).collect(),
            counter: Cell::new(0),
            staging: Cell::new(None),
        })
    }

    /// A stager for another thread: its own names, the same staging.
    pub fn sibling(&self) -> io::Result<Stager> {
        let stager = Stager::new()?;
        stager.staging.set(self.staging.get());
        Ok(stager)
    }

    fn next_name(&self) -> OsString {
        let n = self.counter.get();
        self.counter.set(n.wrapping_add(1));
        OsString::from(format!(".zcp-{}{n:08x}.part", self.prefix))
    }

    /// How files are staged in `dir` (probed on the first call): an unnamed
    /// file is created, linked under a temporary name and removed again,
    /// trying each way of linking it.
    pub fn staging(&self, dir: &File) -> Staging {
        if let Some(staging) = self.staging.get() {
            return staging;
        }
        let staging = self.probe(dir);
        self.staging.set(Some(staging));
        staging
    }

    fn probe(&self, dir: &File) -> Staging {
        let Ok(file) = sys::create_unnamed_in(dir, 0o600) else {
            return Staging::Named;
        };
        for how in [sys::LinkUnnamed::EmptyPath, sys::LinkUnnamed::ProcFd] {
            let temp = self.next_name();
            if sys::link_unnamed_at(&file, how, dir, &temp).is_ok() {
                let _ = sys::unlink_at(dir, &temp);
                return Staging::Unnamed(how);
            }
        }
        Staging::Named
    }

    /// Runs `create` with fresh temporary names until one is free.
    fn stage(
        &self,
        dir: &Arc<File>,
        final_name: &[u8],
        shown: PathBuf,
        mut create: impl FnMut(&OsStr) -> io::Result<Option<File>>,
    ) -> Result<Staged> {
        let mut last_err = None;
        for _ in 0..8 {
            let temp = self.next_name();
            match create(&temp) {
                Ok(file) => return Ok(Staged::named(dir, temp, final_name, shown, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err
            .unwrap_or_else(|| io::Error::other("no free temporary name"))
            .into())
    }

    /// A staged regular file, empty, for `final_name` in `dir`. An unnamed
    /// one gets its final permission bits `mode` at once (it has no name,
    /// so no one else can open it); a named one is created 0600 and gets
    /// them at commit.
    pub fn file(&self, dir: &Arc<File>, final_name: &[u8], shown: PathBuf, mode: u32) -> Result<Staged> {
        if let Staging::Unnamed(how) = self.staging(dir) {
            match sys::create_unnamed_in(dir, mode) {
                Ok(file) => {
                    return Ok(Staged {
                        dir: Arc::clone(dir),
                        temp: self.next_name(),
                        temp_exists: false,
                        unnamed: Some(how),
                        final_name: OsStr::from_bytes(final_name).to_os_string(),
                        shown,
                        file: Some(file),
                    });
                }
                // Another file system below DEST: a named temporary there.
                Err(e) if no_unnamed_files(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating a staged file for {}", display::path(&shown)));
                }
            }
        }
        self.stage(dir, final_name, shown.clone(), |temp| {
            sys::create_exclusive_at(dir, temp, 0o600).map(Some)
        })
        .with_context(|| format!("creating a temporary file for {}", display::path(&shown)))
    }

    /// Takes over `file`, already complete under the hidden name `temp` in
    /// `dir` (a partial that arrived in blocks), to commit it like any
    /// named staged file.
    pub fn adopt(dir: &Arc<File>, temp: OsString, final_name: &[u8], shown: PathBuf, file: File) -> Staged {
        Staged::named(dir, temp, final_name, shown, Some(file))
    }

    /// A staged symbolic link with the text `target`.
    pub fn symlink(&self, dir: &Arc<File>, final_name: &[u8], shown: PathBuf, target: &[u8]) -> Result<Staged> {
        self.stage(dir, final_name, shown.clone(), |temp| {
            sys::symlink_at(target, dir, temp).map(|()| None)
        })
        .with_context(|| format!("creating the symbolic link {}", display::path(&shown)))
    }

    /// A staged hard link to `from` in `from_dir`.
    pub fn hard_link(
        &self,
        from_dir: &File,
        from: &[u8],
        dir: &Arc<File>,
        final_name: &[u8],
        shown: PathBuf,
    ) -> Result<Staged> {
        self.stage(dir, final_name, shown.clone(), |temp| {
            sys::hard_link_at(from_dir, from, dir, temp).map(|()| None)
        })
        .with_context(|| format!("creating the hard link {}", display::path(&shown)))
    }
}

/// Metadata applied to an entry when it is committed.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    /// Permission bits from the sender (None: 0666 before the umask).
    /// Ignored for links.
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    pub umask: u32,
    /// fsync the file and its directory before reporting success.
    pub fsync: bool,
    /// Never replace what exists under the final name.
    pub no_clobber: bool,
}

/// The final permission bits: setuid, setgid and sticky are never applied,
/// and the receiver's umask is honoured, as for any file it creates.
pub fn final_mode(sent: Option<u32>, umask: u32) -> u32 {
    sent.unwrap_or(0o666) & 0o777 & !umask
}

/// How a commit ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Under its final name.
    Committed,
    /// Something exists under the final name and `no_clobber` was set.
    Exists,
}

/// A temporary file or link in the destination that becomes the final
/// entry only through [`commit`](Staged::commit).
pub struct Staged {
    dir: Arc<File>,
    /// The temporary name: where a named entry is, or where an unnamed file
    /// goes on its way to replacing an existing entry.
    temp: OsString,
    /// Whether `temp` exists in `dir` (and must be removed unless committed).
    temp_exists: bool,
    /// Set for an unnamed file: how it gets a name.
    unnamed: Option<sys::LinkUnnamed>,
    final_name: OsString,
    shown: PathBuf,
    /// The open file, for regular files.
    file: Option<File>,
}

impl Staged {
    /// An entry that exists under the hidden name `temp` in `dir`.
    fn named(dir: &Arc<File>, temp: OsString, final_name: &[u8], shown: PathBuf, file: Option<File>) -> Staged {
        Staged {
            dir: Arc::clone(dir),
            temp,
            temp_exists: true,
            unnamed: None,
            final_name: OsStr::from_bytes(final_name).to_os_string(),
            shown,
            file,
        }
    }

    /// The open staged file; None for links.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Applies metadata and atomically puts the entry under its final name
    /// (or, with `no_clobber`, only if that name is free).
    pub fn commit(mut self, finish: &Finish) -> Result<Placed> {
        let shown = display::path(&self.shown);
        match &self.file {
            Some(file) => {
                if self.unnamed.is_none() {
                    sys::set_mode(file, final_mode(finish.mode, finish.umask))
                        .with_context(|| format!("setting the mode of {shown}"))?;
                }
                if let Some(t) = finish.mtime {
                    sys::set_mtime(file, t.seconds, t.nanos)
                        .with_context(|| format!("setting the mtime of {shown}"))?;
                }
                if finish.fsync {
                    file.sync_all().with_context(|| format!("syncing {shown}"))?;
                }
            }
            None => {
                if let Some(t) = finish.mtime {
                    sys::set_link_mtime_at(&self.dir, &self.temp, t.seconds, t.nanos)
                        .with_context(|| format!("setting the mtime of {shown}"))?;
                }
            }
        }
        let placed = match (&self.file, self.unnamed) {
            (Some(file), Some(how)) => self.link_unnamed(file, how, finish.no_clobber),
            _ => self.rename_temp(finish.no_clobber),
        };
        match placed {
            Ok(()) => {}
            Err(e) if finish.no_clobber && e.kind() == io::ErrorKind::AlreadyExists => return Ok(Placed::Exists),
            Err(e) => {
                let what = if self.file.is_some() {
                    "the verified file"
                } else {
                    "the new link"
                };
                return Err(e).with_context(|| format!("putting {what} in place as {shown}"));
            }
        }
        self.temp_exists = false;
        if finish.fsync {
            sys::sync_dir(&self.dir).with_context(|| format!("syncing the directory of {shown}"))?;
        }
        Ok(Placed::Committed)
    }

    /// Links an unnamed file onto a free final name; an existing entry is
    /// replaced through a temporary name and rename.
    fn link_unnamed(&self, file: &File, how: sys::LinkUnnamed, no_clobber: bool) -> io::Result<()> {
        match sys::link_unnamed_at(file, how, &self.dir, &self.final_name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !no_clobber => {
                sys::link_unnamed_at(file, how, &self.dir, &self.temp)?;
                let renamed = self.rename_temp(false);
                if renamed.is_err() {
                    let _ = sys::unlink_at(&self.dir, &self.temp);
                }
                renamed
            }
            linked => linked,
        }
    }

    fn rename_temp(&self, no_clobber: bool) -> io::Result<()> {
        if no_clobber {
            sys::rename_noreplace_at(&self.dir, &self.temp, &self.final_name)
        } else {
            sys::rename_at(&self.dir, &self.temp, &self.final_name)
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.temp_exists {
            let _ = sys::unlink_at(&self.dir, &self.temp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_lose_special_bits_and_honour_the_umask() {
        assert_eq!(final_mode(Some(0o4755), 0o022), 0o755);
        assert_eq!(final_mode(Some(0o7777), 0), 0o777);
        assert_eq!(final_mode(Some(0o666), 0o077), 0o600);
        assert_eq!(final_mode(None, 0o022), 0o644);
    }

    fn dir_of(dest: &Destination) -> Arc<File> {
        match dest {
            Destination::Directory { dir, .. } => Arc::clone(dir),
            _ => panic!("not a directory destination"),
        }
    }

    fn finish(no_clobber: bool) -> Finish {
        Finish {
            mode: Some(0o640),
            mtime: Some(Mtime {
                seconds: 1_000_000_000,
                nanos: 5,
            }),
            umask: 0o022,
            fsync: false,
            no_clobber,
        }
    }

    fn names(dir: &Path) -> Vec<OsString> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }

    /// Every way of staging a file this machine supports.
    fn stagings(dir: &File) -> Vec<Staging> {
        let mut all = vec![Staging::Named];
        if let Staging::Unnamed(_) = Stager::new().unwrap().staging(dir) {
            all.push(Staging::Unnamed(sys::LinkUnnamed::EmptyPath));
            all.push(Staging::Unnamed(sys::LinkUnnamed::ProcFd));
        }
        all
    }

    fn stager(staging: Staging) -> Stager {
        let stager = Stager::new().unwrap();
        stager.staging.set(Some(staging));
        stager
    }

    #[test]
    fn a_dropped_stage_leaves_nothing_and_a_commit_leaves_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_of(&Destination::resolve(tmp.path()).unwrap());
        for staging in stagings(&dir) {
            let stager = stager(staging);
            {
                let s = stager.file(&dir, b"f", tmp.path().join("f"), 0o640).unwrap();
                std::io::Write::write_all(&mut s.file().unwrap(), b"x").unwrap();
            }
            assert!(names(tmp.path()).is_empty(), "{staging:?}");
            let s = stager.file(&dir, b"f", tmp.path().join("f"), 0o640).unwrap();
            std::io::Write::write_all(&mut s.file().unwrap(), b"hello").unwrap();
            assert_eq!(s.commit(&finish(false)).unwrap(), Placed::Committed);
            assert_eq!(names(tmp.path()), vec![OsString::from("f")], "{staging:?}");
            let meta = std::fs::metadata(tmp.path().join("f")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(meta.mode() & 0o7777, 0o640, "{staging:?}");
            assert_eq!(meta.mtime(), 1_000_000_000);
            std::fs::remove_file(tmp.path().join("f")).unwrap();
        }
    }

    #[test]
    fn a_committed_file_replaces_what_was_there_or_keeps_it_with_no_clobber() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_of(&Destination::resolve(tmp.path()).unwrap());
        let f = tmp.path().join("f");
        for staging in stagings(&dir) {
            let stager = stager(staging);
            std::fs::write(&f, b"old").unwrap();
            let s = stager.file(&dir, b"f", f.clone(), 0o600).unwrap();
            std::io::Write::write_all(&mut s.file().unwrap(), b"new").unwrap();
            assert_eq!(s.commit(&finish(true)).unwrap(), Placed::Exists);
            assert_eq!(std::fs::read(&f).unwrap(), b"old", "{staging:?}");
            let s = stager.file(&dir, b"f", f.clone(), 0o600).unwrap();
            std::io::Write::write_all(&mut s.file().unwrap(), b"new").unwrap();
            assert_eq!(s.commit(&finish(false)).unwrap(), Placed::Committed);
            assert_eq!(std::fs::read(&f).unwrap(), b"new", "{staging:?}");
            assert_eq!(names(tmp.path()), vec![OsString::from("f")], "{staging:?}");
        }
    }

    #[test]
    fn no_clobber_keeps_what_exists_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"old").unwrap();
        let dir = dir_of(&Destination::resolve(tmp.path()).unwrap());
        let stager = Stager::new().unwrap();
        let s = stager
            .symlink(&dir, b"f", tmp.path().join("f"), b"/etc/passwd")
            .unwrap();
        assert_eq!(s.commit(&finish(true)).unwrap(), Placed::Exists);
        assert_eq!(names(tmp.path()), vec![OsString::from("f")]);
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"old");
    }

    #[test]
    fn special_files_and_missing_directories_are_refused() {
        assert!(Destination::resolve(Path::new("/dev/null")).is_err());
        assert!(Destination::resolve(Path::new("/nonexistent-zcp-dir/x")).is_err());
        assert!(Destination::resolve(Path::new("/nonexistent-zcp-dir/")).is_err());
    }
}
