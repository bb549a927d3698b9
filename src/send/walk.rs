//! Walking the SOURCE operands into a stream of entries, on a thread of
//! its own so that reading directories, opening files and hashing small
//! ones overlaps with sending.
//!
//! * Order is depth-first pre-order, children sorted by name: a directory
//!   comes before its contents, as the protocol requires.
//! * Links inside a tree are sent as links, never followed, unless `-L`
//!   (then a link that leads back into its own ancestry is refused).
//!   Every open is relative to the parent's handle, with O_NOFOLLOW when
//!   not following, so a link swapped in during the walk is not followed
//!   either.
//! * A file with several names is sent once; later names become hard
//!   links. Devices, fifos and sockets inside a tree are skipped with a
//!   warning. A file that vanishes or cannot be read is reported and
//!   skipped; the others still go.
//! * Files up to [`SMALL_FILE`] are read and hashed here, so the sender can
//!   batch many of them into one write. Larger files go by sendfile, and
//!   files with holes (fewer blocks than bytes) as sparse entries.
//! * After a reconnect (`--retries`), files and links the receiver already
//!   confirmed are passed over unread. Directories come again, so the
//!   order stays depth-first, and so do files with several names and
//!   their links: a hard link may only name a file of its own session.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::entry::Abort;
use super::source::{Fingerprint, Source};
use crate::checksum::{Algorithm, Digest, digest_of};
use crate::display;
use crate::protocol::{Entry, EntryKind, LinkText, Mtime, Name, Payload, RelPath};
use crate::sys::{self, ChildType, signals};

/// Largest file read and hashed in one piece by the walker.
pub const SMALL_FILE: u64 = 64 * 1024;

/// Walked entries travel to the sender in batches of up to this many
/// (fewer thread wake-ups per file), or of this many small-file bytes.
const BATCH_ITEMS: usize = 64;
const BATCH_BYTES: u64 = 1 << 20;
/// How many batches may wait for the sender (bounds memory to a few MiB).
const QUEUE: usize = 4;

/// A batch of walked entries, in order.
pub type Batch = Vec<Walked>;

/// What the sender moves for one entry.
pub enum Body {
    /// Directories and links.
    None,
    /// A small file, read and hashed.
    Small(Vec<u8>, Digest),
    /// A regular file of this length, moved with sendfile.
    File(File, u64, Fingerprint),
    /// A regular file with holes, of this length.
    Sparse(File, u64, Fingerprint),
    /// Stdin or another unsized input.
    Stream(Source),
}

/// One entry ready to send.
pub struct Item {
    pub entry: Entry,
    pub body: Body,
    /// The local path as the user would write it, escaped for display.
    pub shown: String,
    /// The raw local path (`-` for stdin), for sha256sum-style lines.
    pub raw: Vec<u8>,
}

/// What the walk produced.
pub enum Walked {
    Item(Box<Item>),
    /// Skipped on purpose (a device, a fifo): a warning, not a failure.
    Skipped(String),
    /// A directory that could not be read: an error, and the transfer is
    /// partial.
    Failed(String),
    /// A file that could not be read, or changed while it was read: the
    /// sender announces it and aborts it at once, so the receiver fails it
    /// too and both ends agree.
    Aborted(RelPath, Abort),
    /// Confirmed by the receiver in an earlier attempt: not sent again.
    Confirmed,
}

/// A SOURCE operand, classified before connecting.
pub enum Operand {
    /// Stdin or a special file: one stream.
    Stream(Source, Name),
    /// A regular file under this name.
    File(PathBuf, Name),
    /// A directory sent as a tree under this name, or (None) its
    /// contents at the top of DEST.
    Dir(PathBuf, Option<Name>),
}

impl Operand {
    /// The local path, for operands that are files or directories.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Operand::Stream(..) => None,
            Operand::File(p, _) | Operand::Dir(p, _) => Some(p),
        }
    }
}

/// Walks `operands` on a new thread, passing over the files and links
/// whose wire paths are `confirmed`.
pub fn spawn(
    operands: Vec<Operand>,
    follow: bool,
    algorithm: Algorithm,
    confirmed: Arc<HashSet<String>>,
) -> io::Result<Receiver<Batch>> {
    let (tx, rx) = sync_channel(QUEUE);
    signals::spawn_worker("zcp-walk", move || {
        let mut walker = Walker {
            tx,
            follow,
            algorithm,
            confirmed,
            seen: HashMap::new(),
            ancestors: Vec::new(),
            batch: Vec::with_capacity(BATCH_ITEMS),
            batch_bytes: 0,
        };
        for op in operands {
            if walker.operand(op).is_err() {
                return; // the sender stopped listening
            }
        }
        let _ = walker.send_batch();
    })?;
    Ok(rx)
}

/// The sender hung up on the walk.
struct Gone;

struct Walker {
    tx: SyncSender<Batch>,
    /// Entries walked but not yet handed over.
    batch: Batch,
    batch_bytes: u64,
    follow: bool,
    algorithm: Algorithm,
    /// (device, inode) of files with several names, and the path they
    /// were first sent under.
    seen: HashMap<(u64, u64), RelPath>,
    /// (device, inode) of the directories being walked, for -L loops.
    ancestors: Vec<(u64, u64)>,
    /// Wire paths the receiver confirmed in an earlier attempt.
    confirmed: Arc<HashSet<String>>,
}

fn mtime_of(m: &std::fs::Metadata) -> Mtime {
    Mtime {
        seconds: m.mtime(),
        nanos: u32::try_from(m.mtime_nsec()).unwrap_or(0),
    }
}

fn shown_join(base: &Path, name: &[u8]) -> PathBuf {
    base.join(std::ffi::OsStr::from_bytes(name))
}

impl Walker {
    /// Whether the receiver confirmed `rel` in an earlier attempt.
    fn was_confirmed(&self, rel: &RelPath) -> bool {
        !self.confirmed.is_empty() && self.confirmed.contains(&rel.to_string())
    }

    /// Queues `w`; hands the batch over when it is full, or at once when
    /// `w` is a large file the sender can start on while we walk on.
    fn emit(&mut self, w: Walked) -> Result<(), Gone> {
        let urgent = match &w {
            Walked::Item(item) => match &item.body {
                Body::Small(data, _) => {
                    self.batch_bytes += data.len() as u64;
                    false
                }
                Body::None => false,
                _ => true,
            },
            _ => false,
        };
        self.batch.push(w);
        if urgent || self.batch.len() >= BATCH_ITEMS || self.batch_bytes >= BATCH_BYTES {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<(), Gone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ITEMS));
        self.batch_bytes = 0;
        self.tx.send(batch).map_err(|_| Gone)
    }

    fn unreadable(&mut self, rel: RelPath, shown: &Path, what: &str, e: impl std::fmt::Display) -> Result<(), Gone> {
        let why = format!("{what} {}: {e}", display::path(shown));
        self.emit(Walked::Aborted(rel, Abort::Failed(why)))
    }

    /// A failure at `rel`: announced to the receiver when it has a path
    /// there, so that both ends count it; only reported here otherwise.
    fn fail_at(
        &mut self,
        rel: Option<&RelPath>,
        shown: &Path,
        what: &str,
        e: impl std::fmt::Display,
    ) -> Result<(), Gone> {
        match rel {
            Some(rel) => self.unreadable(rel.clone(), shown, what, e),
            None => self.fail(shown, what, e),
        }
    }

    fn fail(&mut self, shown: &Path, what: &str, e: impl std::fmt::Display) -> Result<(), Gone> {
        self.emit(Walked::Failed(format!("{what} {}: {e}", display::path(shown))))
    }

    fn operand(&mut self, op: Operand) -> Result<(), Gone> {
        match op {
            Operand::Stream(source, name) => {
                let item = stream_item(source, name);
                self.emit(Walked::Item(Box::new(item)))
            }
            Operand::File(path, name) => match File::open(&path) {
                Ok(file) => self.file(file, RelPath::from_name(&name), &path),
                Err(e) => self.unreadable(RelPath::from_name(&name), &path, "opening", e),
            },
            Operand::Dir(path, name) => {
                let dir = match File::open(&path) {
                    Ok(d) => d,
                    Err(e) => {
                        let rel = name.as_ref().map(RelPath::from_name);
                        return self.fail_at(rel.as_ref(), &path, "opening directory", e);
                    }
                };
                let rel = match name {
                    None => None,
                    Some(name) => {
                        let rel = RelPath::from_name(&name);
                        match dir.metadata() {
                            Ok(meta) => self.emit(Walked::Item(Box::new(dir_item(rel.clone(), &meta, &path))))?,
                            Err(e) => return self.unreadable(rel, &path, "inspecting", e),
                        }
                        Some(rel)
                    }
                };
                self.dir(&dir, rel.as_ref(), &path)
            }
        }
    }

    /// Sends the contents of the open directory `dir`, whose entries go
    /// under `rel` (None: the top of DEST).
    fn dir(&mut self, dir: &File, rel: Option<&RelPath>, shown: &Path) -> Result<(), Gone> {
        if signals::interrupted() {
            return Err(Gone);
        }
        let id = dir.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0));
        self.ancestors.push(id);
        let result = self.children(dir, rel, shown);
        self.ancestors.pop();
        result
    }

    fn children(&mut self, dir: &File, rel: Option<&RelPath>, shown: &Path) -> Result<(), Gone> {
        let mut children = match sys::list_dir(dir) {
            Ok(c) => c,
            Err(e) => return self.fail_at(rel, shown, "reading directory", e),
        };
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name_bytes, kind) in children {
            let child_shown = shown_join(shown, &name_bytes);
            let child_rel = match Name::new(&name_bytes).and_then(|n| RelPath::join(rel, &n)) {
                Ok(r) => r,
                Err(e) => {
                    self.fail(&child_shown, "cannot send", e.0)?;
                    continue;
                }
            };
            let kind = match (kind, self.follow) {
                (Some(ChildType::Symlink), true) | (None, _) => {
                    let stat = if self.follow {
                        sys::stat_at(dir, &name_bytes)
                    } else {
                        sys::lstat_at(dir, &name_bytes)
                    };
                    match stat {
                        Ok(st) => match st.st_mode & libc::S_IFMT {
                            libc::S_IFDIR => ChildType::Directory,
                            libc::S_IFREG => ChildType::File,
                            libc::S_IFLNK => ChildType::Symlink,
                            _ => ChildType::Other,
                        },
                        Err(e) => {
                            self.unreadable(child_rel, &child_shown, "inspecting", e)?;
                            continue;
                        }
                    }
                }
                (Some(k), _) => k,
            };
            match kind {
                ChildType::Directory => self.subdir(dir, &name_bytes, child_rel, &child_shown)?,
                ChildType::File => match sys::open_read_at(dir, &name_bytes, self.follow) {
                    Ok(file) => self.file(file, child_rel, &child_shown)?,
                    Err(e) => self.unreadable(child_rel, &child_shown, "opening", e)?,
                },
                ChildType::Symlink => self.symlink(dir, &name_bytes, child_rel, &child_shown)?,
                ChildType::Other => self.emit(Walked::Skipped(format!(
                    "skipping {}: not a regular file, directory or link",
                    display::path(&child_shown)
                )))?,
            }
        }
        Ok(())
    }

    fn subdir(&mut self, parent: &File, name: &[u8], rel: RelPath, shown: &Path) -> Result<(), Gone> {
        let dir = match sys::open_dir_at(parent, name, self.follow) {
            Ok(d) => d,
            Err(e) => return self.unreadable(rel, shown, "opening directory", e),
        };
        let meta = match dir.metadata() {
            Ok(m) => m,
            Err(e) => return self.unreadable(rel, shown, "inspecting", e),
        };
        if self.ancestors.contains(&(meta.dev(), meta.ino())) {
            return self.unreadable(
                rel,
                shown,
                "not following",
                "the link leads back into its own parent directories",
            );
        }
        self.emit(Walked::Item(Box::new(dir_item(rel.clone(), &meta, shown))))?;
        self.dir(&dir, Some(&rel), shown)
    }

    fn symlink(&mut self, parent: &File, name: &[u8], rel: RelPath, shown: &Path) -> Result<(), Gone> {
        if self.was_confirmed(&rel) {
            return self.emit(Walked::Confirmed);
        }
        let text = match sys::read_link_at(parent, name).map(|t| LinkText::new(&t)) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return self.unreadable(rel, shown, "cannot send link", e.0),
            Err(e) => return self.unreadable(rel, shown, "reading link", e),
        };
        let mtime = sys::lstat_at(parent, name).ok().map(|st| Mtime {
            seconds: st.st_mtime,
            nanos: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        });
        let entry = Entry {
            kind: EntryKind::Symlink(text),
            path: rel,
            payload: Payload::None,
            mode: None,
            mtime,
            linked: false,
        };
        self.emit(Walked::Item(Box::new(item(entry, Body::None, shown))))
    }

    /// A regular file (or what an operand path opened) sent under `rel`.
    fn file(&mut self, file: File, rel: RelPath, shown: &Path) -> Result<(), Gone> {
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return self.unreadable(rel, shown, "inspecting", e),
        };
        if !meta.is_file() {
            return self.emit(Walked::Skipped(format!(
                "skipping {}: it is no longer a regular file",
                display::path(shown)
            )));
        }
        let mut entry = Entry {
            kind: EntryKind::File,
            path: rel,
            payload: Payload::Sized(meta.len()),
            mode: Some(meta.mode() & 0o7777),
            mtime: Some(mtime_of(&meta)),
            linked: false,
        };
        if meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = self.seen.get(&id) {
                entry.kind = EntryKind::HardLink(first.clone());
                entry.payload = Payload::None;
                entry.mode = None;
                entry.mtime = None;
                return self.emit(Walked::Item(Box::new(item(entry, Body::None, shown))));
            }
            self.seen.insert(id, entry.path.clone());
            entry.linked = true;
        } else if self.was_confirmed(&entry.path) {
            return self.emit(Walked::Confirmed);
        }
        let len = meta.len();
        let fingerprint = Fingerprint::of(&meta);
        let body = if len <= SMALL_FILE {
            match small_body(&file, len, &fingerprint, shown, self.algorithm) {
                Ok(body) => body,
                Err(why) => return self.emit(Walked::Aborted(entry.path, why)),
            }
        } else if meta.blocks().saturating_mul(512) < len {
            entry.payload = Payload::Sparse(len);
            Body::Sparse(file, len, fingerprint)
        } else {
            Body::File(file, len, fingerprint)
        };
        self.emit(Walked::Item(Box::new(item(entry, body, shown))))
    }
}

fn item(entry: Entry, body: Body, shown: &Path) -> Item {
    Item {
        entry,
        body,
        shown: display::path(shown),
        raw: shown.as_os_str().as_bytes().to_vec(),
    }
}

fn dir_item(rel: RelPath, meta: &std::fs::Metadata, shown: &Path) -> Item {
    let entry = Entry {
        kind: EntryKind::Directory,
        path: rel,
        payload: Payload::None,
        mode: Some(meta.mode() & 0o7777),
        mtime: Some(mtime_of(meta)),
        linked: false,
    };
    item(entry, Body::None, shown)
}

fn stream_item(source: Source, name: Name) -> Item {
    let path = RelPath::from_name(&name);
    let (shown, raw) = (source.shown.clone(), source.path.clone());
    let entry = Entry {
        kind: EntryKind::File,
        path,
        payload: match source.range {
            Some((_, len)) => Payload::Sized(len),
            None => Payload::Stream,
        },
        mode: source.mode,
        mtime: source.mtime,
        linked: false,
    };
    Item {
        entry,
        body: Body::Stream(source),
        shown,
        raw,
    }
}

/// Reads and hashes a small file of `len` bytes, or says why it cannot be
/// sent: it could not be read, or it is not what was announced (it was
/// rewritten, grew or shrank meanwhile: aborted, not sent torn).
fn small_body(
    file: &File,
    len: u64,
    fingerprint: &Fingerprint,
    shown: &Path,
    algorithm: Algorithm,
) -> Result<Body, Abort> {
    let shown = display::path(shown);
    let data = read_small(file, len).map_err(|e| Abort::Failed(format!("reading {shown}: {e}")))?;
    let changed = if (data.len() as u64) < len {
        Some(fingerprint.ended(file, &shown, data.len() as u64, len))
    } else {
        fingerprint
            .check(file, &shown)
            .map_err(|e| Abort::Failed(format!("{e:#}")))?
    };
    match changed {
        Some(changed) => Err(Abort::Changed(changed)),
        None => {
            let digest = digest_of(algorithm, &data);
            Ok(Body::Small(data, digest))
        }
    }
}

/// Reads a small file whole: `len` bytes, fewer if it ended early (it
/// shrank under us).
fn read_small(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; len as usize];
    let mut got = 0;
    while got < data.len() {
        match file.read_at(&mut data[got..], got as u64) {
            Ok(0) => {
                data.truncate(got);
                break;
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !signals::interrupted() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}
