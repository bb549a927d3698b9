//! Where received bytes land, and the rules that keep a destination safe:
//!
//! * DEST is resolved once, at start-up, into a directory handle, a
//!   (directory handle, file name) pair, or stdout. Names from the wire are
//!   only ever used relative to that handle, and only after
//!   [`Name`](crate::protocol::Name) validated them as single components.
//!   When DEST names a file, the wire name is ignored altogether.
//! * Bytes go to a staged temporary file in the destination directory,
//!   created with O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC at mode 0600.
//! * [`Staged::commit`] applies mode (without setuid, setgid and sticky,
//!   masked by the umask) and mtime, then renames the file onto its final
//!   name; rename replaces a symlink there rather than following it.
//! * A [`Staged`] that is dropped without being committed unlinks itself,
//!   so every error path, panic unwind and interruption removes it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::display;
use crate::protocol::{Mtime, Name};
use crate::sys::{self, FdKind};

/// The resolved DEST argument of `zcp recv`.
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
            return Ok(Destination::Stdout);
        }
        let shown = display::path(arg);
        match std::fs::metadata(arg) {
            Ok(meta) if meta.is_dir() => {
                let dir = open_dir(arg).with_context(|| format!("opening destination directory {shown}"))?;
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
        Ok(Destination::File {
            dir: Arc::new(dir),
            name: name.to_os_string(),
            shown: arg.to_path_buf(),
        })
    }

    /// Creates the staged file for an entry called `wire_name`.
    pub fn stage(&self, wire_name: &Name) -> Result<Staged> {
        let (dir, final_name, shown) = match self {
            Destination::Directory { dir, shown } => {
                let name = wire_name.to_os_string();
                (dir, name.clone(), shown.join(name))
            }
            Destination::File { dir, name, shown } => (dir, name.clone(), shown.clone()),
            Destination::Stdout => bail!("internal error: staging a file for stdout"),
        };
        let mut last_err = None;
        for _ in 0..8 {
            let temp = temp_name()?;
            match sys::create_exclusive_at(dir, &temp, 0o600) {
                Ok(file) => {
                    return Ok(Staged {
                        dir: Arc::clone(dir),
                        temp,
                        final_name,
                        shown,
                        file,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(e).with_context(|| format!("creating a temporary file for {}", display::path(&shown)));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free temporary name")))
            .with_context(|| format!("creating a temporary file for {}", display::path(&shown)))
    }
}

/// `.zcp-<16 random hex digits>.part`: hidden, unique, short enough for
/// any file system, and never derived from the wire name.
fn temp_name() -> io::Result<OsString> {
    let mut r = [0u8; 8];
    sys::random_bytes(&mut r)?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(OsString::from(format!(".zcp-{hex}.part")))
}

/// Metadata applied to a file when it is committed.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    /// Permission bits from the sender (None: 0666 before the umask).
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    pub umask: u32,
    /// fsync the file and its directory before reporting success.
    pub fsync: bool,
}

/// The final permission bits: setuid, setgid and sticky are never applied,
/// and the receiver's umask is honoured, as for any file it creates.
pub fn final_mode(sent: Option<u32>, umask: u32) -> u32 {
    sent.unwrap_or(0o666) & 0o777 & !umask
}

/// A temporary file in the destination directory that becomes the final
/// file only through [`commit`](Staged::commit).
pub struct Staged {
    dir: Arc<File>,
    temp: OsString,
    final_name: OsString,
    shown: PathBuf,
    file: File,
    committed: bool,
}

impl Staged {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The final path, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Applies metadata and atomically renames the file onto its final name.
    pub fn commit(mut self, finish: &Finish) -> Result<()> {
        let shown = display::path(&self.shown);
        sys::set_mode(&self.file, final_mode(finish.mode, finish.umask))
            .with_context(|| format!("setting the mode of {shown}"))?;
        if let Some(t) = finish.mtime {
            sys::set_mtime(&self.file, t.seconds, t.nanos).with_context(|| format!("setting the mtime of {shown}"))?;
        }
        if finish.fsync {
            self.file.sync_all().with_context(|| format!("syncing {shown}"))?;
        }
        sys::rename_at(&self.dir, &self.temp, &self.final_name)
            .with_context(|| format!("renaming the verified file onto {shown}"))?;
        self.committed = true;
        if finish.fsync {
            sys::sync_dir(&self.dir).with_context(|| format!("syncing the directory of {shown}"))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
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

    #[test]
    fn a_dropped_stage_leaves_nothing_and_a_commit_leaves_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::resolve(tmp.path()).unwrap();
        let name = Name::new(b"f").unwrap();
        {
            let s = dest.stage(&name).unwrap();
            std::io::Write::write_all(&mut s.file(), b"x").unwrap();
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let s = dest.stage(&name).unwrap();
        std::io::Write::write_all(&mut s.file(), b"hello").unwrap();
        let finish = Finish {
            mode: Some(0o640),
            mtime: Some(Mtime {
                seconds: 1_000_000_000,
                nanos: 5,
            }),
            umask: 0o022,
            fsync: false,
        };
        s.commit(&finish).unwrap();
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("f")]);
        let meta = std::fs::metadata(tmp.path().join("f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.mtime(), 1_000_000_000);
    }

    #[test]
    fn a_file_destination_ignores_the_wire_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::resolve(&tmp.path().join("out.bin")).unwrap();
        let s = dest.stage(&Name::new(b"evil").unwrap()).unwrap();
        assert_eq!(s.shown(), tmp.path().join("out.bin"));
    }

    #[test]
    fn special_files_and_missing_directories_are_refused() {
        assert!(Destination::resolve(Path::new("/dev/null")).is_err());
        assert!(Destination::resolve(Path::new("/nonexistent-zcp-dir/x")).is_err());
        assert!(Destination::resolve(Path::new("/nonexistent-zcp-dir/")).is_err());
    }
}
