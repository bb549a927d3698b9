//! What `zcp send` reads: the SOURCE argument opened and classified before
//! any connection is made, so a missing or unreadable file fails fast.
//!
//! * A regular file (or stdin redirected from one) has a known size and is
//!   sent with sendfile from its current offset.
//! * A pipe (stdin from a pipeline, a fifo, `<(...)`) is a stream of unknown
//!   length, spliced.
//! * Anything else readable (a terminal, a socket, a character device) is a
//!   stream moved with read/write.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::display;
use crate::error;
use crate::protocol::{Mtime, Name};
use crate::sys::{self, FdKind};

/// The opened SOURCE.
pub struct Source {
    /// How to show it in messages.
    pub shown: String,
    /// Its raw path (`-` for stdin), for the sha256sum-style `-v` line.
    pub path: Vec<u8>,
    pub file: File,
    pub kind: FdKind,
    /// Known-size payload: `(start offset, length)`.
    pub range: Option<(u64, u64)>,
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    /// The name the receiver will use.
    pub name: Name,
    /// Size and mtime at open time, to notice a file changing under us.
    pub fingerprint: Option<Fingerprint>,
}

/// Size and mtime of a file when it was opened: a file whose fingerprint
/// differs after sending changed under us and must not be vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    mtime: (i64, i64),
}

impl Fingerprint {
    pub fn of(meta: &Metadata) -> Fingerprint {
        Fingerprint {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// Fails if `file` no longer matches this fingerprint.
    pub fn check(&self, file: &File, shown: &str) -> Result<()> {
        let now = file.metadata().with_context(|| format!("inspecting {shown}"))?;
        let after = Fingerprint::of(&now);
        if after != *self {
            bail!(
                "{shown} changed while being sent (size {} -> {}, mtime changed: {})",
                self.len,
                after.len,
                self.mtime != after.mtime
            );
        }
        Ok(())
    }
}

impl Source {
    /// Opens `path` (`-` is stdin) and chooses the entry name.
    pub fn open(path: &Path, name: Option<&OsString>) -> Result<Source> {
        let is_stdin = path.as_os_str() == "-";
        let (file, shown) = if is_stdin {
            if sys::stdin_was_closed() {
                bail!("reading stdin: standard input is closed");
            }
            let stdin = sys::dup_file(std::io::stdin().as_fd()).context("duplicating stdin")?;
            (stdin, "stdin".to_string())
        } else {
            let shown = display::path(path);
            let file = File::open(path).with_context(|| format!("opening {shown}"))?;
            (file, shown)
        };
        let meta = file.metadata().with_context(|| format!("inspecting {shown}"))?;
        let kind = FdKind::of(&meta);
        if kind == FdKind::Directory {
            bail!("{shown} is a directory; zcp sends a single file or stdin");
        }

        let name_bytes = match (name, is_stdin) {
            (Some(n), _) => n.as_bytes().to_vec(),
            (None, true) => b"stdin".to_vec(),
            (None, false) => match path.file_name() {
                Some(n) => n.as_bytes().to_vec(),
                None => bail!("{shown} has no file name to send it under; use --name"),
            },
        };
        let name = Name::new(&name_bytes).map_err(|e| error::usage(format!("--name: {}", e.0)))?;

        let mut source = Source {
            shown,
            path: path.as_os_str().as_bytes().to_vec(),
            file,
            kind,
            range: None,
            mode: None,
            mtime: None,
            name,
            fingerprint: None,
        };
        if kind == FdKind::Regular {
            // Stdin redirected from a file may already be partly read.
            let start = if is_stdin {
                sys::current_offset(source.file.as_fd()).unwrap_or(0)
            } else {
                0
            };
            source.range = Some((start, meta.len().saturating_sub(start)));
            source.fingerprint = Some(Fingerprint::of(&meta));
            if !is_stdin {
                source.mode = Some(meta.mode() & 0o7777);
                source.mtime = Some(Mtime {
                    seconds: meta.mtime(),
                    nanos: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                });
            }
        }
        Ok(source)
    }
}
