//! A file arriving in blocks, kept under a hidden name beside its final
//! name (`.NAME.zcp-partial`, mode 0600) until it is verified and
//! committed. Past the file's last byte the partial holds a record: a
//! header naming the file (size, block size, the sender's source
//! identity, the checksum), one entry per verified block (index, digest
//! and a check of both), and a footer that points back to the header, so
//! a partial made for another version of the file is known as zcp's. A
//! file under that name that is not zcp's partial is never touched.
//! Each partial is held with an exclusive flock while a session writes
//! it, so two sessions never land blocks in the same one.
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

use anyhow::{Context, Result, bail};

use crate::checksum::{Algorithm, Digest};
use crate::display;
use crate::protocol::blocks::{SOURCE_ID_LEN, block_count};
use crate::sys;

/// Opens the record; names the format and its version.
const MAGIC: &[u8; 8] = b"zcpPART1";
/// magic, size, block size, source identity, algorithm, 3 zero bytes.
const HEADER_LEN: u64 = 8 + 8 + 4 + SOURCE_ID_LEN as u64 + 1 + 3;
/// Ends the record: the header's offset, then this.
const FOOTER_MAGIC: &[u8; 8] = b"zcpPEND1";
const FOOTER_LEN: u64 = 16;
/// Bytes of the check that ends each record entry.
const CHECK_LEN: usize = 4;
/// Verified blocks are recorded together, after one fdatasync of their
/// data, once this many are waiting or the last batch is this old.
const SYNC_EVERY: usize = 8;
pub const SYNC_AFTER: Duration = Duration::from_millis(500);

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
        (4 + self.algorithm.digest_len() + CHECK_LEN) as u64
    }

    fn blocks(&self) -> u64 {
        block_count(self.size, self.block_size)
    }
}

/// Verified blocks not yet in the record, and where the next entry goes.
struct Pending {
    end: u64,
    unsynced: Vec<(u32, Digest)>,
    synced_at: Instant,
}

/// What an existing file under the partial's name holds.
enum Record {
    /// A partial of this very file: these blocks are verified.
    Same(BTreeMap<u32, Digest>),
    /// A partial zcp made for another version of the file.
    Other,
    /// Not a partial of zcp's.
    None,
}

/// An open partial file.
pub struct Partial {
    dir: Arc<File>,
    name: OsString,
    file: sys::Locked,
    id: Identity,
    /// Keep the partial and its record when dropped (resume).
    keep: bool,
    record: Mutex<Pending>,
    /// Renamed into place or removed (or never ours to remove).
    gone: AtomicBool,
}

impl Partial {
    /// Opens the partial for `final_name` in `dir`, returning the blocks
    /// its record holds verified (by index). A partial zcp made for
    /// another version of the file is started afresh; a file under that
    /// name that is not a zcp partial is left alone (an error); a symbolic
    /// link, fifo or device there is replaced by a file of our own.
    pub fn open(
        dir: &Arc<File>,
        final_name: &[u8],
        id: Identity,
        keep: bool,
    ) -> Result<(Partial, BTreeMap<u32, Digest>)> {
        let name = partial_name(final_name);
        let shown = display::escape_bytes(name.as_bytes());
        for _ in 0..4 {
            let (file, created) = match sys::create_exclusive_at(dir, &name, 0o600) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match sys::open_or_create_at(dir, &name, 0o600) {
                    Ok(f) if plain(&f)? => (f, false),
                    // A link (ELOOP), fifo or device under our name.
                    _ => {
                        sys::unlink_at(dir, &name).with_context(|| format!("{shown} is in the way"))?;
                        continue;
                    }
                },
                Err(e) => return Err(e).with_context(|| format!("creating {shown}")),
            };
            let Some(file) = sys::try_lock(file).with_context(|| format!("locking {shown}"))? else {
                bail!("another transfer is receiving this file right now ({shown} is in use)");
            };
            // The name may have moved on (committed by the session that
            // held it) between opening and locking: then open it again.
            if !same_file(dir, &name, &file)? {
                continue;
            }
            let mut partial = Partial {
                dir: Arc::clone(dir),
                name: name.clone(),
                file,
                id,
                keep,
                record: Mutex::new(Pending {
                    end: id.size + HEADER_LEN,
                    unsynced: Vec::new(),
                    synced_at: Instant::now(),
                }),
                gone: AtomicBool::new(!created),
            };
            let held = if created {
                None
            } else {
                match partial.read_record()? {
                    Record::Same(held) => Some(held),
                    Record::Other => None,
                    Record::None => {
                        partial.gone.store(true, Ordering::SeqCst);
                        bail!("{shown} exists and is not a partial file of zcp's: remove or rename it, and send again");
                    }
                }
            };
            // From here the file is ours to keep or remove.
            partial.gone.store(false, Ordering::SeqCst);
            let held = match held {
                Some(held) => held,
                None => {
                    if let Err(e) = partial.start_afresh() {
                        // Nothing in it is worth keeping.
                        partial.keep = false;
                        return Err(e).with_context(|| format!("preparing {shown}"));
                    }
                    BTreeMap::new()
                }
            };
            return Ok((partial, held));
        }
        bail!("{shown} keeps changing under this receiver")
    }

    /// The file the blocks land in.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// What the record says about this partial.
    fn read_record(&mut self) -> io::Result<Record> {
        let len = self.file.metadata()?.len();
        let start = self.id.size;
        let mut header = vec![0u8; HEADER_LEN as usize];
        if len >= start + HEADER_LEN {
            self.file.read_exact_at(&mut header, start)?;
        }
        if len < start + HEADER_LEN || header != self.id.header() {
            return Ok(if self.footer_points_to_a_header(len)? {
                Record::Other
            } else {
                Record::None
            });
        }
        let entry = self.id.entry_len();
        // No more entries than twice the blocks can be legitimate: bound
        // the read.
        let whole = ((len - start - HEADER_LEN) / entry).min(self.id.blocks() * 2);
        let mut entries = vec![0u8; (whole * entry) as usize];
        self.file.read_exact_at(&mut entries, start + HEADER_LEN)?;
        let mut held = BTreeMap::new();
        let mut valid = 0;
        for e in entries.chunks_exact(entry as usize) {
            // The first entry that fails its check (the footer, a torn
            // write) ends the record.
            let (body, check) = e.split_at(e.len() - CHECK_LEN);
            if entry_check(body) != check {
                break;
            }
            let index = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let Some(digest) = Digest::from_parts(self.id.algorithm, &body[4..]) else {
                break;
            };
            if u64::from(index) < self.id.blocks() {
                held.insert(index, digest);
            }
            valid += 1;
        }
        self.lock().end = start + HEADER_LEN + valid * entry;
        Ok(Record::Same(held))
    }

    /// Whether the footer at the end of the file points to a zcp record
    /// header: a partial made for another version of the file.
    fn footer_points_to_a_header(&self, len: u64) -> io::Result<bool> {
        if len < HEADER_LEN + FOOTER_LEN {
            return Ok(false);
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        self.file.read_exact_at(&mut footer, len - FOOTER_LEN)?;
        let (at, magic) = footer.split_at(8);
        let at = u64::from_be_bytes(at.try_into().unwrap_or_default());
        if magic != FOOTER_MAGIC || at.checked_add(HEADER_LEN + FOOTER_LEN).is_none_or(|end| end > len) {
            return Ok(false);
        }
        let mut magic = [0u8; 8];
        self.file.read_exact_at(&mut magic, at)?;
        Ok(&magic == MAGIC)
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
            let mut record = self.id.header();
            record.extend_from_slice(&self.footer());
            self.file.write_all_at(&record, self.id.size)?;
        }
        self.lock().end = self.id.size + HEADER_LEN;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn footer(&self) -> [u8; FOOTER_LEN as usize] {
        let mut f = [0u8; FOOTER_LEN as usize];
        f[..8].copy_from_slice(&self.id.size.to_be_bytes());
        f[8..].copy_from_slice(FOOTER_MAGIC);
        f
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
        let mut out = Vec::with_capacity(r.unsynced.len() * self.id.entry_len() as usize + FOOTER_LEN as usize);
        for (index, digest) in &r.unsynced {
            let start = out.len();
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(digest.as_bytes());
            let check = entry_check(&out[start..]);
            out.extend_from_slice(&check);
        }
        let entries = out.len() as u64;
        out.extend_from_slice(&self.footer());
        self.file.write_all_at(&out, r.end)?;
        r.end += entries;
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
        let file = File::try_clone(&self.file)?;
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

/// The check that ends a record entry: the first bytes of the SHA-256 of
/// its index and digest, so a torn write or stray bytes never read as a
/// verified block.
fn entry_check(body: &[u8]) -> [u8; CHECK_LEN] {
    let d = crate::checksum::digest_of(Algorithm::Sha256, body);
    let mut c = [0u8; CHECK_LEN];
    c.copy_from_slice(&d.as_bytes()[..CHECK_LEN]);
    c
}

/// Whether `name` in `dir` is still the file open as `file`.
fn same_file(dir: &File, name: &OsString, file: &File) -> io::Result<bool> {
    let meta = file.metadata()?;
    Ok(sys::lstat_at(dir, name.as_bytes()).is_ok_and(|st| st.st_dev == meta.dev() && st.st_ino == meta.ino()))
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
    fn a_file_that_is_not_a_partial_is_never_touched() {
        let (tmp, dir) = dir();
        let path = tmp.path().join(".f.zcp-partial");
        std::fs::write(&path, b"notes").unwrap();
        let err = Partial::open(&dir, b"f", id(1), true).unwrap_err();
        assert!(format!("{err:#}").contains("not a partial file of zcp's"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"notes");
    }

    #[test]
    fn a_partial_in_use_is_refused_and_one_of_another_version_starts_afresh() {
        let (tmp, dir) = dir();
        let (held, _) = Partial::open(&dir, b"f", id(1), true).unwrap();
        let err = Partial::open(&dir, b"f", id(1), true).unwrap_err();
        assert!(format!("{err:#}").contains("another transfer"), "{err:#}");
        held.verified(2, digest_of(Algorithm::Sha256, b"x")).unwrap();
        drop(held);
        // Another size: the record is elsewhere, the footer finds it.
        let other = Identity { size: 3 << 20, ..id(2) };
        let (p, held) = Partial::open(&dir, b"f", other, true).unwrap();
        assert!(held.is_empty());
        drop(p);
        let len = std::fs::metadata(tmp.path().join(".f.zcp-partial")).unwrap().len();
        assert_eq!(len, (3 << 20) + HEADER_LEN + FOOTER_LEN);
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
