//! ENTRY: what one entry of a tree is (file, directory, symbolic or hard
//! link), where it goes, and its metadata; with the checks that make a
//! decoded entry consistent (flags that fit the kind, a target only where
//! one belongs).

use super::blocks::SOURCE_ID_LEN;
use super::cursor::Reader;
use super::path::{LinkText, RelPath};
use super::{MAX_LINK_LEN, MAX_PATH_LEN, ProtocolError, bad};

/// What an entry is. Numbers are part of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    /// A symbolic link with this text.
    Symlink(LinkText),
    /// A second name for the regular file sent earlier under this path.
    HardLink(RelPath),
}

impl EntryKind {
    fn wire_id(&self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Directory => 2,
            EntryKind::Symlink(_) => 3,
            EntryKind::HardLink(_) => 4,
        }
    }

    /// "file", "directory", ... for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink(_) => "symbolic link",
            EntryKind::HardLink(_) => "hard link",
        }
    }

    fn target(&self) -> &[u8] {
        match self {
            EntryKind::File | EntryKind::Directory => &[],
            EntryKind::Symlink(t) => t.as_bytes(),
            EntryKind::HardLink(p) => p.as_bytes(),
        }
    }
}

mod flag {
    pub const SIZE_KNOWN: u8 = 1;
    pub const HAS_MODE: u8 = 2;
    pub const HAS_MTIME: u8 = 4;
    pub const SPARSE: u8 = 8;
    pub const LINKED: u8 = 16;
    pub const BLOCKED: u8 = 32;
    pub const ALL: u8 = SIZE_KNOWN | HAS_MODE | HAS_MTIME | SPARSE | LINKED | BLOCKED;
}

/// A modification time: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtime {
    pub seconds: i64,
    pub nanos: u32,
}

/// How a regular file's payload travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Directories and links have none.
    None,
    /// Exactly this many raw bytes follow the ENTRY.
    Sized(u64),
    /// DATA frames of unknown total, until the TRAILER.
    Stream,
    /// DATA and HOLE frames adding up to exactly this many bytes.
    Sparse(u64),
    /// This many bytes in blocks (BLOCK frames, on any stream of the
    /// session), after the receiver's PLAN. `source` is the sender's
    /// identity of the file's contents: a partial kept from an earlier
    /// session is resumed only if it was made from the same source.
    Blocks { size: u64, source: [u8; SOURCE_ID_LEN] },
}

impl Payload {
    /// The total length, when known up front.
    pub fn size(self) -> Option<u64> {
        match self {
            Payload::Sized(n) | Payload::Sparse(n) | Payload::Blocks { size: n, .. } => Some(n),
            Payload::None => Some(0),
            Payload::Stream => None,
        }
    }
}

/// Announces one entry. A file's payload follows it (see [`Payload`]),
/// ended by a TRAILER or ABORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub path: RelPath,
    pub payload: Payload,
    /// Permission bits as sent (the receiver strips setuid/setgid/sticky).
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    /// A regular file with other names: later hard-link entries may name
    /// it as their target.
    pub linked: bool,
}

pub fn encode(e: &Entry, out: &mut Vec<u8>) {
    let (mut flags, size) = match e.payload {
        Payload::None | Payload::Stream => (0, 0),
        Payload::Sized(n) => (flag::SIZE_KNOWN, n),
        Payload::Sparse(n) => (flag::SIZE_KNOWN | flag::SPARSE, n),
        Payload::Blocks { size, .. } => (flag::SIZE_KNOWN | flag::BLOCKED, size),
    };
    if e.mode.is_some() {
        flags |= flag::HAS_MODE;
    }
    if e.mtime.is_some() {
        flags |= flag::HAS_MTIME;
    }
    if e.linked {
        flags |= flag::LINKED;
    }
    let mtime = e.mtime.unwrap_or(Mtime { seconds: 0, nanos: 0 });
    out.push(e.kind.wire_id());
    out.push(flags);
    out.extend_from_slice(&e.mode.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&mtime.seconds.to_be_bytes());
    out.extend_from_slice(&mtime.nanos.to_be_bytes());
    for field in [e.path.as_bytes(), e.kind.target()] {
        out.extend_from_slice(&u16::try_from(field.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(field);
    }
    if let Payload::Blocks { source, .. } = &e.payload {
        out.extend_from_slice(source);
    }
}

pub fn decode(r: &mut Reader<'_>) -> Result<Entry, ProtocolError> {
    let kind_id = r.u8("entry kind")?;
    if !(1..=4).contains(&kind_id) {
        return bad(format!("unsupported entry kind {kind_id}"));
    }
    let flags = r.u8("entry flags")?;
    if flags & !flag::ALL != 0 {
        return bad(format!("unknown entry flags {flags:#04x}"));
    }
    let has = |f: u8| flags & f != 0;
    let mode = r.u32("mode")?;
    let size = r.u64("size")?;
    let seconds = r.i64("mtime seconds")?;
    let nanos = r.u32("mtime nanoseconds")?;
    // Fields whose flag is clear are ignored, so only flagged ones are checked.
    if has(flag::HAS_MTIME) && nanos >= 1_000_000_000 {
        return bad(format!("mtime nanoseconds {nanos} out of range"));
    }
    if has(flag::SIZE_KNOWN) && size > i64::MAX as u64 {
        return bad(format!("file size {size} is larger than any file can be"));
    }
    let path_len = usize::from(r.u16("path length")?);
    if path_len > MAX_PATH_LEN {
        return bad(format!("path of {path_len} bytes exceeds {MAX_PATH_LEN}"));
    }
    let path = RelPath::new(r.bytes(path_len, "path")?)?;
    let target_len = usize::from(r.u16("target length")?);
    if target_len > MAX_LINK_LEN.max(MAX_PATH_LEN) {
        return bad(format!("link target of {target_len} bytes is too long"));
    }
    let target = r.bytes(target_len, "target")?;
    let source = if has(flag::BLOCKED) {
        let mut id = [0u8; SOURCE_ID_LEN];
        id.copy_from_slice(r.bytes(SOURCE_ID_LEN, "source identity")?);
        Some(id)
    } else {
        None
    };
    // Bytes after these are reserved for extensions and ignored.
    let kind = match kind_id {
        1 | 2 if !target.is_empty() => return bad(format!("{path}: only links carry a target")),
        1 => EntryKind::File,
        2 => EntryKind::Directory,
        3 => EntryKind::Symlink(LinkText::new(target)?),
        _ => {
            EntryKind::HardLink(RelPath::new(target).map_err(|e| ProtocolError(format!("hard link target: {}", e.0)))?)
        }
    };
    let payload = match (&kind, has(flag::SIZE_KNOWN), has(flag::SPARSE), source) {
        (EntryKind::File, true, false, Some(source)) => Payload::Blocks { size, source },
        (EntryKind::File, _, _, Some(_)) => {
            return bad(format!("{path}: BLOCKED needs SIZE_KNOWN and excludes SPARSE"));
        }
        (EntryKind::File, true, false, None) => Payload::Sized(size),
        (EntryKind::File, true, true, None) => Payload::Sparse(size),
        (EntryKind::File, false, false, None) => Payload::Stream,
        (EntryKind::File, false, true, None) => return bad(format!("{path}: SPARSE without SIZE_KNOWN")),
        (_, false, false, None) => Payload::None,
        (k, _, _, _) => {
            return bad(format!(
                "{path}: a {} has no payload (SIZE_KNOWN, SPARSE or BLOCKED set)",
                k.describe()
            ));
        }
    };
    if has(flag::LINKED) && kind != EntryKind::File {
        return bad(format!("{path}: only a regular file can be LINKED"));
    }
    Ok(Entry {
        linked: has(flag::LINKED),
        kind,
        path,
        payload,
        mode: has(flag::HAS_MODE).then_some(mode & 0o7777),
        mtime: has(flag::HAS_MTIME).then_some(Mtime { seconds, nanos }),
    })
}
