//! The tree a receiver builds under a destination directory.
//!
//! Entries arrive depth-first (docs/PROTOCOL.md), so the directories that
//! may still receive entries form a stack: the destination at the bottom,
//! the most recent directory entry on top. Each level holds an open
//! directory handle, and every entry is created relative to the handle of
//! its parent with *at() calls. A path is never resolved from the root, so
//! no symbolic link, whether it was already there or arrived earlier in the
//! session, can steer an entry outside the destination; an entry whose
//! parent is not on the stack is a protocol error.
//!
//! Directories are entered, and hard-link targets found, with
//! [`sys::open_dir_beneath`]: where the kernel has openat2(2), it refuses
//! by itself to resolve `..` out of the handle or any symbolic link, so
//! even a path that slipped past the protocol's checks could not lead
//! outside. Each directory handle is opened beneath its parent's, the
//! destination's at the bottom, so every handle on the stack is inside the
//! destination. Nothing else resolves a path: every other entry is made
//! under a single name in its parent (mkdirat, linkat, symlinkat,
//! renameat), where the kernel itself refuses `.` and `..`.
//!
//! When a directory's subtree closes (an entry outside it arrives, or the
//! session ends), its mode and mtime are due ([`ClosedDir`]); they are
//! applied after its contents, so that neither writing the contents nor a
//! read-only mode gets in the way.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use crate::dest::final_mode;
use crate::display;
use crate::error::protocol_bail;
use crate::protocol::{Mtime, RelPath};
use crate::sys;

/// One level of the stack.
struct OpenDir {
    /// Relative path; empty for the destination itself.
    path: Vec<u8>,
    /// None when the directory could not be made: entries under it fail.
    dir: Option<Arc<File>>,
    /// Entries refused beneath it, when it is the outermost directory
    /// that could not be made (reported together when it closes).
    refused: u64,
    /// It was not made because --no-clobber keeps what is in the way.
    skipped: bool,
    /// Why it could not be made.
    failure: String,
    /// Mode and mtime to apply when the subtree closes.
    mode: Option<u32>,
    mtime: Option<Mtime>,
}

/// A directory whose subtree is complete, with the metadata it gets now.
pub struct ClosedDir {
    dir: Arc<File>,
    shown: PathBuf,
    mode: Option<u32>,
    mtime: Option<Mtime>,
}

impl ClosedDir {
    /// Applies mode and mtime; returns what failed, for the session to report.
    pub fn apply(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let shown = || display::path(&self.shown);
        if let Some(mode) = self.mode
            && let Err(e) = sys::set_mode(&self.dir, mode)
        {
            problems.push(format!("setting the mode of directory {}: {e}", shown()));
        }
        if let Some(t) = self.mtime
            && let Err(e) = sys::set_mtime(&self.dir, t.seconds, t.nanos)
        {
            problems.push(format!("setting the mtime of directory {}: {e}", shown()));
        }
        problems
    }
}

/// Where an entry lands: its parent directory, or why it cannot.
pub enum Parent {
    Open(Arc<File>),
    Failed(String),
    /// Under --no-clobber something other than a directory is in the way:
    /// the subtree is skipped, not failed.
    Skipped(String),
}

pub struct Tree {
    shown: PathBuf,
    stack: Vec<OpenDir>,
    umask: u32,
    /// Directories that could not be made and closed since the last
    /// [`Tree::take_refused`], with how many entries beneath them failed.
    refused: Vec<(String, u64, bool)>,
}

impl Tree {
    pub fn new(root: Arc<File>, shown: PathBuf, umask: u32) -> Tree {
        Tree {
            shown,
            stack: vec![OpenDir {
                path: Vec::new(),
                dir: Some(root),
                refused: 0,
                skipped: false,
                failure: String::new(),
                mode: None,
                mtime: None,
            }],
            umask,
            refused: Vec::new(),
        }
    }

    /// Counts an entry refused because its directory could not be made,
    /// against the outermost such directory.
    pub fn note_refused(&mut self) {
        if let Some(level) = self.stack.iter_mut().find(|l| l.dir.is_none()) {
            level.refused += 1;
        }
    }

    /// The directories that could not be made whose subtrees have closed,
    /// with how many entries beneath each failed with it.
    pub fn take_refused(&mut self) -> Vec<(String, u64, bool)> {
        std::mem::take(&mut self.refused)
    }

    /// The destination path of `path`, for messages.
    pub fn shown(&self, path: &RelPath) -> PathBuf {
        self.shown.join(Path::new(std::ffi::OsStr::from_bytes(path.as_bytes())))
    }

    /// Closes directories until `path`'s parent is on top and returns it.
    /// The directories closed go to `closed`: their metadata is still to
    /// be applied. A parent that is not open is a protocol violation.
    pub fn parent_of(&mut self, path: &RelPath, closed: &mut Vec<ClosedDir>) -> Result<Parent> {
        let parent = path.parent();
        while self.stack.len() > 1 && self.top().path != parent {
            closed.extend(self.close_top());
        }
        let top = self.top();
        if top.path != parent {
            protocol_bail!(
                "{path} arrives outside the directory walk: its directory {} was not sent \
                 before it, or its subtree was already closed",
                display::escape_bytes(parent)
            );
        }
        Ok(match &top.dir {
            Some(dir) => Parent::Open(Arc::clone(dir)),
            None if top.skipped => Parent::Skipped(top.failure.clone()),
            None => Parent::Failed(top.failure.clone()),
        })
    }

    fn top(&self) -> &OpenDir {
        // The destination level is never popped.
        &self.stack[self.stack.len() - 1]
    }

    fn close_top(&mut self) -> Option<ClosedDir> {
        let level = self.stack.pop()?;
        if level.dir.is_none() && level.refused > 0 {
            let path = crate::display::escape_bytes(&level.path);
            self.refused.push((path, level.refused, level.skipped));
        }
        let dir = level.dir?;
        Some(ClosedDir {
            dir,
            shown: self.shown.join(Path::new(std::ffi::OsStr::from_bytes(&level.path))),
            mode: level.mode.map(|m| final_mode(Some(m), self.umask)),
            mtime: level.mtime,
        })
    }

    /// Closes every directory but the destination (end of session).
    pub fn close_all(&mut self, closed: &mut Vec<ClosedDir>) {
        while self.stack.len() > 1 {
            closed.extend(self.close_top());
        }
    }

    /// Makes (or enters an existing) directory `path` inside `parent` and
    /// opens its subtree. On failure the subtree is still opened, marked
    /// failed, so the entries under it are refused one by one.
    pub fn open_dir(&mut self, parent: &Parent, path: &RelPath, mode: Option<u32>, mtime: Option<Mtime>) -> Result<()> {
        let made = match parent {
            Parent::Open(dir) => make_dir(dir, path.file_name(), self.umask)
                .with_context(|| format!("creating directory {}", display::path(&self.shown(path)))),
            Parent::Failed(why) | Parent::Skipped(why) => Err(anyhow!("{why}")),
        };
        let skipped = matches!(parent, Parent::Skipped(_));
        let (dir, failure, result) = match made {
            Ok(dir) => (Some(Arc::new(dir)), String::new(), Ok(())),
            Err(e) if skipped => (None, format!("its directory {path} was skipped"), Err(e)),
            Err(e) => (None, format!("its directory {path} could not be made"), Err(e)),
        };
        self.stack.push(OpenDir {
            path: path.as_bytes().to_vec(),
            dir,
            refused: 0,
            skipped,
            failure,
            mode,
            mtime,
        });
        result
    }

    /// The directory and name of an earlier regular file `path`, resolved
    /// beneath the destination without following any symbolic link (hard
    /// link targets): one openat2, or a walk of its components.
    pub fn resolve_file(&self, path: &RelPath) -> Result<(File, Vec<u8>)> {
        let root = self.stack[0]
            .dir
            .as_ref()
            .ok_or_else(|| anyhow!("the destination is not open"))?;
        let parent = path.parent();
        let dir = if parent.is_empty() {
            root.try_clone()?
        } else {
            sys::open_dir_beneath(root, parent).map_err(|e| not_through_links(e, path))?
        };
        let name = path.file_name().to_vec();
        let meta = sys::lstat_at(&dir, &name).map_err(|e| anyhow!("{path}: {e}"))?;
        if meta.st_mode & libc::S_IFMT != libc::S_IFREG {
            bail!("{path} is not a regular file in the destination");
        }
        Ok((dir, name))
    }
}

fn not_through_links(e: io::Error, path: &RelPath) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => {
            anyhow!("{path} is not inside a directory of the destination (zcp never follows links there)")
        }
        _ => anyhow!("{path}: {e}"),
    }
}

/// mkdir, or open the directory that is already there; never through a
/// symbolic link, never outside `parent`.
fn make_dir(parent: &File, name: &[u8], umask: u32) -> Result<File> {
    let created = match sys::mkdir_at(parent, name, 0o700) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e.into()),
    };
    let dir = match sys::open_dir_beneath(parent, name) {
        Ok(dir) => dir,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let what = match sys::lstat_at(parent, name) {
                Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFLNK => "a symbolic link (never followed)",
                _ => "not a directory",
            };
            bail!("it exists and is {what}");
        }
        Err(e) => return Err(e.into()),
    };
    if created && umask & 0o700 != 0 {
        // The umask must not lock us out of our own new directory.
        sys::set_mode(&dir, 0o700)?;
    }
    Ok(dir)
}
