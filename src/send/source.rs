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

use crate::checksum::{Algorithm, digest_of};
use crate::display;
use crate::error;
use crate::protocol::blocks::SOURCE_ID_LEN;
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
    /// Size, mtime and ctime at open time, to notice a file changing under
    /// us.
    pub fingerprint: Option<Fingerprint>,
}

/// Size, mtime and ctime of a file when it was opened or walked: a file
/// whose fingerprint differs after its bytes were sent changed under us and
/// must not be vouched for. The ctime catches what size and mtime miss: a
/// rewrite that put the old mtime back (`touch -d`, `cp -p`), which the
/// writer cannot fake. All three are compared to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How a source changed while it was being sent, for its one error line:
/// `SHOWN changed while being sent (size 10 → 20 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    shown: String,
    what: String,
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changed while being sent ({})", self.shown, self.what)
    }
}

impl Changed {
    /// A change told by other means than the fingerprint (`what` is shown
    /// in parentheses).
    pub fn because(shown: &str, what: impl std::fmt::Display) -> Changed {
        Changed {
            shown: shown.to_string(),
            what: what.to_string(),
        }
    }
}

impl Fingerprint {
    pub fn of(meta: &Metadata) -> Fingerprint {
        Fingerprint {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The identity of this version of `file` for block mode: a digest of
    /// its device, inode, size, mtime and ctime. A receiver resumes a
    /// partial only for the same identity, so an edited or replaced source
    /// starts afresh.
    pub fn identity(&self, file: &File) -> Result<[u8; SOURCE_ID_LEN]> {
        let meta = file.metadata().context("inspecting the source")?;
        let mut bytes = b"zcp source".to_vec();
        for n in [meta.dev(), meta.ino(), self.len] {
            bytes.extend_from_slice(&n.to_be_bytes());
        }
        for n in [self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1] {
            bytes.extend_from_slice(&n.to_be_bytes());
        }
        let digest = digest_of(Algorithm::Sha256, &bytes);
        let mut id = [0u8; SOURCE_ID_LEN];
        id.copy_from_slice(&digest.as_bytes()[..SOURCE_ID_LEN]);
        Ok(id)
    }

    /// Why `file` ended after `at` of the `len` bytes announced: the change
    /// its fingerprint shows (it shrank), or the early end itself.
    pub fn ended(&self, file: &File, shown: &str, at: u64, len: u64) -> Changed {
        let changed = self.check(file, shown).ok().flatten();
        changed.unwrap_or_else(|| Changed::because(shown, format!("it ended after {at} of {len} bytes")))
    }

    /// What changed in `file` since this fingerprint was taken, if
    /// anything; an error if it cannot be inspected.
    pub fn check(&self, file: &File, shown: &str) -> Result<Option<Changed>> {
        let now = file.metadata().with_context(|| format!("inspecting {shown}"))?;
        Ok(self.compare(&Fingerprint::of(&now), shown))
    }

    fn compare(&self, after: &Fingerprint, shown: &str) -> Option<Changed> {
        let what = if after.len != self.len {
            format!("size {} → {} bytes", self.len, after.len)
        } else if after.mtime != self.mtime {
            format!("modified in place, still {} bytes", self.len)
        } else if after.ctime != self.ctime {
            format!("its ctime changed, size and mtime kept at {} bytes", self.len)
        } else {
            return None;
        };
        Some(Changed {
            shown: shown.to_string(),
            what,
        })
    }
}

/// Whether `path` is one of the names of this process's stdin, which
/// would read the /dev/null put in place of a closed one.
fn names_stdin(path: &Path) -> bool {
    let fd0 = [
        Path::new("/dev/stdin"),
        Path::new("/dev/fd/0"),
        Path::new("/proc/self/fd/0"),
    ];
    fd0.contains(&path) || std::fs::read_link(path).is_ok_and(|target| fd0.contains(&target.as_path()))
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
            if sys::stdin_was_closed() && names_stdin(path) {
                bail!("reading {shown}: standard input is closed");
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(len: u64, mtime: i64, ctime: i64) -> Fingerprint {
        Fingerprint {
            len,
            mtime: (mtime, 5),
            ctime: (ctime, 7),
        }
    }

    #[test]
    fn any_of_size_mtime_and_ctime_is_a_change() {
        let before = fp(10, 100, 100);
        assert_eq!(before.compare(&before, "f"), None);
        let said = |after: Fingerprint| before.compare(&after, "f").map(|c| c.to_string());
        assert_eq!(
            said(fp(20, 101, 101)).as_deref(),
            Some("f changed while being sent (size 10 → 20 bytes)")
        );
        assert_eq!(
            said(fp(10, 101, 101)).as_deref(),
            Some("f changed while being sent (modified in place, still 10 bytes)")
        );
        assert_eq!(
            said(fp(10, 100, 101)).as_deref(),
            Some("f changed while being sent (its ctime changed, size and mtime kept at 10 bytes)")
        );
        let nanos = Fingerprint {
            ctime: (100, 8),
            ..before
        };
        assert!(before.compare(&nanos, "f").is_some(), "a nanosecond counts");
    }
}
