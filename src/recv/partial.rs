//! A file arriving in blocks, kept under a hidden name beside its final
//! name (`.NAME.zcp-partial`, mode 0600) until it is verified and
//! committed. Past the file's last byte the partial holds a record: a
//! header naming the file (size, block size, the sender's source
//! identity, the checksum) and one entry per verified block (index and
//! digest), appended as blocks verify.
//!
//! With resume on, a session that breaks leaves the partial in place, and
//! a later session for the same source picks up its record: the blocks in
//! it are neither sent nor hashed again. A record entry is written only
//! after the block's data is on stable storage (fdatasync), and a torn
//! last entry is ignored, so neither a killed process nor a crash makes
//! the record claim bytes that are not there. Without resume the partial
//! is removed on any failure, like any staged file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::checksum::{Algorithm, Digest};
use crate::protocol::Blocks;
use crate::protocol::blocks::SOURCE_ID_LEN;
use crate::sys;

/// Opens the record; names the format and its version.
const MAGIC: &[u8; 8] = b"zcpPART1";
/// magic, size, block size, source identity, algorithm, 3 zero bytes.
const HEADER_LEN: u64 = 8 + 8 + 4 + SOURCE_ID_LEN as u64 + 1 + 3;
/// Verified blocks are recorded together, after one fdatasync of their
/// data, once this many are waiting or the last batch is this old.
const SYNC_EVERY: usize = 8;
const SYNC_AFTER: Duration = Duration::from_millis(500);

/// The hidden name of the partial for `final_name`: `.NAME.zcp-partial`,
/// or, when that would pass NAME_MAX, `.zcp-partial.` and a digest of the
/// name.
pub fn partial_name(final_name: &[u8]) -> OsString {
    let mut name = Vec::with_capacity(final_name.len() + 14);
    name.push(b'.');
    name.extend_from_slice(final_name);
    name.extend_from_slice(b".zcp-partial");
    if name.len() > crate::protocol::MAX_NAME_LEN {
        let digest = crate::checksum::digest_of(Algorithm::Sha256, final_name).hex();
        name = format!(".zcp-partial.{}", &digest[..32]).into_bytes();
    }
    OsString::from_vec(name)
}

/// What identifies the file a partial holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub size: u64,
    pub block_size: u32,
    pub source: [u8; SOURCE_ID_LEN],
    pub algorithm: Algorithm,
}

impl Identity {
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&self.size.to_be_bytes());
        h.extend_from_slice(&self.block_size.to_be_bytes());
        h.extend_from_slice(&self.source);
        h.push(self.algorithm.wire_id());
        h.extend_from_slice(&[0; 3]);
        h
    }

    fn entry_len(&self) -> u64 {
        4 + self.algorithm.digest_len() as u64
    }

    fn blocks(&self) -> u64 {
        Blocks {
            size: self.block_size,
            resume: false,
            retry: false,
            streams: 1,
        }
        .count(self.size)
    }
}

/// Verified blocks not yet in the record, and where the next entry goes.
struct Record {
    end: u64,
    unsynced: Vec<(u32, Digest)>,
    synced_at: Instant,
}

/// An open partial file.
pub struct Partial {
    dir: Arc<File>,
    name: OsString,
    file: File,
    id: Identity,
    /// Keep the partial and its record when dropped (resume).
    keep: bool,
    record: Mutex<Record>,
    /// Renamed into place or removed.
    gone: AtomicBool,
}

impl Partial {
    /// Opens the partial for `final_name` in `dir`, returning the blocks
    /// its record holds verified (by index). A partial made for another
    /// file, or without a readable record, is started afresh; so is
    /// anything that is not a plain file of ours.
    pub fn open(
        dir: &Arc<File>,
        final_name: &[u8],
        id: Identity,
        keep: bool,
    ) -> io::Result<(Partial, BTreeMap<u32, Digest>)> {
        let name = partial_name(final_name);
        let file = match sys::open_or_create_at(dir, &name, 0o600) {
            Ok(f) if plain(&f)? => f,
            // A directory, fifo, device or extra hard link under our name:
            // never written into; replaced by a fresh file of our own.
            Ok(_) | Err(_) => {
                let _ = sys::unlink_at(dir, &name);
                sys::create_exclusive_at(dir, &name, 0o600)?
            }
        };
        let mut partial = Partial {
            dir: Arc::clone(dir),
            name,
            file,
            id,
            keep,
            record: Mutex::new(Record {
                end: id.size + HEADER_LEN,
                unsynced: Vec::new(),
                synced_at: Instant::now(),
            }),
            gone: AtomicBool::new(false),
        };
        let held = match partial.read_record()? {
            Some(held) => held,
            None => {
                partial.start_afresh()?;
                BTreeMap::new()
            }
        };
        Ok((partial, held))
    }

    /// The file the blocks land in.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The verified blocks of a record made for this very file, or None.
    fn read_record(&mut self) -> io::Result<Option<BTreeMap<u32, Digest>>> {
        let len = self.file.metadata()?.len();
        let start = self.id.size;
        if len < start + HEADER_LEN {
            return Ok(None);
        }
        let mut header = vec![0u8; HEADER_LEN as usize];
        self.file.read_exact_at(&mut header, start)?;
        if header != self.id.header() {
            return Ok(None);
        }
        let entry = self.id.entry_len();
        let whole = (len - start - HEADER_LEN) / entry;
        // No more entries than blocks can be legitimate: bound the read.
        let whole = whole.min(self.id.blocks() * 2);
        let mut entries = vec![0u8; (whole * entry) as usize];
        self.file.read_exact_at(&mut entries, start + HEADER_LEN)?;
        let mut held = BTreeMap::new();
        for e in entries.chunks_exact(entry as usize) {
            let index = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let Some(digest) = Digest::from_parts(self.id.algorithm, &e[4..]) else {
                return Ok(None);
            };
            if u64::from(index) < self.id.blocks() {
                held.insert(index, digest);
            }
        }
        // A torn last entry is overwritten by the next one.
        self.lock().end = start + HEADER_LEN + whole * entry;
        Ok(Some(held))
    }

    /// Empties the partial, reserves the file's size and writes a fresh
    /// record header past it.
    fn start_afresh(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        match sys::fallocate(&self.file, self.id.size) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {}
            Err(e) => return Err(e),
        }
        self.file.set_len(self.id.size)?;
        if self.keep {
            self.file.write_all_at(&self.id.header(), self.id.size)?;
        }
        self.lock().end = self.id.size + HEADER_LEN;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes block `index` as verified with `digest`; with resume on, it
    /// reaches the record with the next batch.
    pub fn verified(&self, index: u32, digest: Digest) -> io::Result<()> {
        if !self.keep {
            return Ok(());
        }
        let full = {
            let mut r = self.lock();
            r.unsynced.push((index, digest));
            r.unsynced.len() >= SYNC_EVERY || r.synced_at.elapsed() >= SYNC_AFTER
        };
        if full { self.sync() } else { Ok(()) }
    }

    /// Puts the verified blocks noted so far on stable storage, then
    /// appends them to the record.
    pub fn sync(&self) -> io::Result<()> {
        let mut r = self.lock();
        if r.unsynced.is_empty() {
            return Ok(());
        }
        self.file.sync_data()?;
        let mut out = Vec::with_capacity(r.unsynced.len() * self.id.entry_len() as usize);
        for (index, digest) in &r.unsynced {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(digest.as_bytes());
        }
        self.file.write_all_at(&out, r.end)?;
        r.end += out.len() as u64;
        r.unsynced.clear();
        r.synced_at = Instant::now();
        Ok(())
    }

    /// Removes the partial: its source changed, so nothing in it can be
    /// used again.
    pub fn discard(&self) {
        let _ = sys::unlink_at(&self.dir, &self.name);
        self.gone.store(true, Ordering::SeqCst);
    }

    /// Drops the record, leaving exactly the file's bytes, for commit;
    /// from here the caller owns the name.
    pub fn complete(&self) -> io::Result<(File, OsString)> {
        self.file.set_len(self.id.size)?;
        let file = self.file.try_clone()?;
        self.gone.store(true, Ordering::SeqCst);
        Ok((file, self.name.clone()))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.gone.load(Ordering::SeqCst) {
            return;
        }
        if self.keep {
            // What verified before the failure is kept for next time.
            let _ = self.sync();
        } else {
            let _ = sys::unlink_at(&self.dir, &self.name);
        }
    }
}

/// A regular file with one name: the only thing a partial may be.
fn plain(file: &File) -> io::Result<bool> {
    let meta = file.metadata()?;
    Ok(meta.file_type().is_file() && meta.nlink() == 1)
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partial({})", crate::display::escape_bytes(self.name.as_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checksum::digest_of;

    fn id(source: u8) -> Identity {
        Identity {
            size: 5 << 20,
            block_size: 1 << 20,
            source: [source; SOURCE_ID_LEN],
            algorithm: Algorithm::Sha256,
        }
    }

    fn dir() -> (tempfile::TempDir, Arc<File>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(File::open(tmp.path()).unwrap());
        (tmp, dir)
    }

    #[test]
    fn a_kept_record_is_found_again_and_a_torn_entry_is_ignored() {
        let (tmp, dir) = dir();
        let d = |i: u8| digest_of(Algorithm::Sha256, &[i]);
        {
            let (p, held) = Partial::open(&dir, b"f", id(1), true).unwrap();
            assert!(held.is_empty());
            p.verified(0, d(0)).unwrap();
            p.verified(3, d(3)).unwrap();
        }
        let path = tmp.path().join(".f.zcp-partial");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // A torn entry at the end, as a kill in the middle of a write leaves.
        let f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &f, &[0, 0, 0, 4, 1, 2]).unwrap();
        let (p, held) = Partial::open(&dir, b"f", id(1), true).unwrap();
        assert_eq!(held.keys().copied().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(held[&3], d(3));
        p.verified(4, d(4)).unwrap();
        drop(p);
        let (_, held) = Partial::open(&dir, b"f", id(1), true).unwrap();
        assert_eq!(held.keys().copied().collect::<Vec<_>>(), vec![0, 3, 4]);
    }

    #[test]
    fn another_source_starts_afresh_and_no_resume_leaves_nothing() {
        let (tmp, dir) = dir();
        {
            let (p, _) = Partial::open(&dir, b"f", id(1), true).unwrap();
            p.verified(1, digest_of(Algorithm::Sha256, b"x")).unwrap();
        }
        let (p, held) = Partial::open(&dir, b"f", id(2), false).unwrap();
        assert!(held.is_empty());
        drop(p);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn completing_leaves_exactly_the_file_bytes() {
        let (_tmp, dir) = dir();
        let (p, _) = Partial::open(&dir, b"f", id(1), true).unwrap();
        p.file().write_all_at(b"abc", 0).unwrap();
        p.verified(0, digest_of(Algorithm::Sha256, b"abc")).unwrap();
        p.sync().unwrap();
        let (file, name) = p.complete().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 5 << 20);
        assert_eq!(name, OsString::from(".f.zcp-partial"));
    }

    #[test]
    fn long_names_get_a_short_partial_name() {
        let long = vec![b'a'; 250];
        let name = partial_name(&long);
        assert!(name.len() <= 255);
        assert!(name.as_bytes().starts_with(b".zcp-partial."));
        assert_eq!(partial_name(b"x"), OsString::from(".x.zcp-partial"));
    }
}
