//! Receiving one entry: a file into a staged temporary that is committed
//! only after the digests match (or onto stdout), a directory, or a link.
//! Every entry ends with exactly one VERDICT; an error returned from here
//! breaks the connection instead.
//!
//! Small files (up to [`SMALL_FILE`]) arrive mostly in the same read as
//! their header, so they are hashed and written straight from the read
//! buffer: a thread and a pipe per file would cost more than the copy.

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::payload::read_end;
use super::placer::{FileJob, Placing, about_entry};
use super::tree::Parent;
use super::{MAX_LINK_TARGET_BYTES, Outcome, Session};
use crate::checksum::{Digest, FileHasher, Hashed, PipeHasher, digest_of};
use crate::dest::{Destination, Finish, Placed, Staged, final_mode};
use crate::display;
use crate::engine::Report;
use crate::engine::inbound::Target;
use crate::error::protocol_bail;
use crate::frames::READ_BUFFER;
use crate::protocol::{Entry, EntryKind, Payload, RelPath, VerdictStatus};
use crate::sys;
use crate::tally::verified;

/// Largest file received through the read buffer instead of a pipe.
pub const SMALL_FILE: u64 = READ_BUFFER as u64;

/// The verdict text of an entry kept out by --no-clobber.
pub const SKIPPED: &str = "exists on the receiver (--no-clobber)";

/// A regular file small enough for the read buffer and the placer.
fn is_small(entry: &Entry) -> bool {
    entry.kind == EntryKind::File && matches!(entry.payload, Payload::Sized(n) if n <= SMALL_FILE)
}

/// Where an entry goes: a directory and a name in it, or why it cannot.
enum Place {
    At {
        dir: Arc<File>,
        name: Vec<u8>,
        shown: PathBuf,
    },
    Refused(String),
    /// Beneath a directory --no-clobber skipped.
    Skipped(String),
}

impl Session {
    /// Receives one entry, answers it with a verdict, and returns how it
    /// ended (None: a small file being placed, counted when it is). Errors
    /// are fatal to the connection.
    pub fn receive(&mut self, entry: Entry) -> Result<Option<Outcome>> {
        let started = Instant::now();
        if let Payload::Blocks { size, .. } = entry.payload {
            let Some(blocks) = self.blocks else {
                protocol_bail!("a BLOCKED entry, but block mode was not agreed");
            };
            if blocks.count(size) > crate::protocol::blocks::MAX_BLOCKS {
                protocol_bail!(
                    "a BLOCKED entry of {size} bytes has more than {} blocks",
                    crate::protocol::blocks::MAX_BLOCKS
                );
            }
            // Numbered whether or not it is stored: BLOCK frames say which.
            self.blocked += 1;
        }
        let place = self.place(&entry)?;
        if !(entry.kind == EntryKind::Directory || is_small(&entry) && place.is_some()) {
            // Only small files and directories may overlap files being placed.
            self.settle()?;
        }
        self.reporter.current(&entry.path.to_string());
        if let Some(size) = entry.payload.size().filter(|n| *n > 0) {
            self.reporter.grow(size);
        }
        if entry.linked {
            // The receiver remembers these names; a peer must not be able
            // to make that memory grow without bound.
            self.link_target_bytes += entry.path.as_bytes().len() as u64;
            if self.link_target_bytes > MAX_LINK_TARGET_BYTES {
                protocol_bail!(
                    "more than {} MiB of LINKED file names in one transfer",
                    MAX_LINK_TARGET_BYTES >> 20
                );
            }
            // Until it is committed, links to it fail.
            self.link_targets.insert(entry.path.clone(), false);
        }
        let result = match (&entry.kind, place) {
            (_, None) => self.receive_stream(&entry, started),
            (_, Some(Place::Refused(why))) => self.refuse_entry(&entry, &why),
            (_, Some(Place::Skipped(why))) => self.skip_beneath(&entry, &why),
            (EntryKind::File, Some(Place::At { dir, name, shown }))
                if matches!(entry.payload, Payload::Blocks { .. }) =>
            {
                self.receive_blocked(&entry, dir, &name, shown, started)
            }
            (EntryKind::File, Some(Place::At { dir, name, shown })) if is_small(&entry) => {
                return self
                    .receive_small(&entry, dir, &name, shown, started)
                    .map_err(|e| about_entry(e, &entry.path));
            }
            (EntryKind::File, Some(Place::At { dir, name, shown })) => {
                self.receive_file(&entry, dir, &name, shown, started)
            }
            (EntryKind::Directory, Some(Place::At { dir, .. })) => self.receive_dir(&entry, dir),
            (EntryKind::Symlink(text), Some(Place::At { dir, name, shown })) => {
                let (text, link_shown) = (text.as_bytes().to_vec(), shown.clone());
                self.receive_link(&entry, shown, |s| s.stager.symlink(&dir, &name, link_shown, &text))
            }
            (EntryKind::HardLink(target), Some(Place::At { dir, name, shown })) => {
                let (target, link_shown) = (target.clone(), shown.clone());
                match self.link_targets.get(&target) {
                    None => protocol_bail!(
                        "hard link {} names {target}, which is not a LINKED file of this session",
                        entry.path
                    ),
                    Some(false) => {
                        let why = format!("its target {target} was not committed");
                        self.fail(&entry, why);
                        Ok(Outcome::Failed)
                    }
                    Some(true) => self.receive_link(&entry, shown, |s| {
                        let (from_dir, from) = s.tree()?.resolve_file(&target)?;
                        s.stager.hard_link(&from_dir, &from, &dir, &name, link_shown)
                    }),
                }
            }
        };
        result.map(Some).map_err(|e| about_entry(e, &entry.path))
    }

    /// Finds where `entry` lands (None: stdout), closing directories the
    /// walk has left. A single-file or stdout destination takes exactly
    /// one regular file.
    fn place(&mut self, entry: &Entry) -> Result<Option<Place>> {
        let single = match &self.dest {
            Destination::Directory { .. } => None,
            Destination::File { dir, name, shown } => Some(Some(Place::At {
                dir: Arc::clone(dir),
                name: name.as_bytes().to_vec(),
                shown: shown.clone(),
            })),
            Destination::Stdout => Some(None),
        };
        if let Some(place) = single {
            if self.totals.entries > 1 {
                bail!(
                    "the sender sent a second {}, but DEST is a single file or stdout",
                    entry.kind.describe()
                );
            }
            if entry.kind != EntryKind::File {
                bail!(
                    "the sender sent a {}, but DEST is a single file or stdout; give a directory as DEST",
                    entry.kind.describe()
                );
            }
            return Ok(place);
        }
        let mut closed = Vec::new();
        let parent = self.tree_mut()?.parent_of(&entry.path, &mut closed);
        self.close_dirs(closed)?;
        Ok(Some(match parent? {
            Parent::Open(dir) => Place::At {
                dir,
                name: entry.path.file_name().to_vec(),
                shown: self.tree()?.shown(&entry.path),
            },
            Parent::Failed(why) => Place::Refused(why),
            Parent::Skipped(why) => Place::Skipped(why),
        }))
    }

    /// An entry beneath a directory --no-clobber skipped: drained and
    /// skipped too, counted in one line when that directory closes.
    fn skip_beneath(&mut self, entry: &Entry, why: &str) -> Result<Outcome> {
        let tree = self.tree_mut()?;
        tree.note_refused();
        if entry.kind == EntryKind::Directory {
            let _ = tree.open_dir(&Parent::Skipped(why.to_string()), &entry.path, None, None);
        }
        self.discard_payload(entry)?;
        self.reporter
            .detail(format!("skipped {}: {why} (--no-clobber)", entry.path));
        self.verdict(VerdictStatus::Skipped, Digest::None, format!("{why} (--no-clobber)"));
        Ok(Outcome::Skipped)
    }

    /// An entry whose directory could not be made: drained and failed.
    /// Said in one line per failed directory when its subtree closes (see
    /// [`Session::report_refused`]); each entry's own line only with -v.
    fn refuse_entry(&mut self, entry: &Entry, why: &str) -> Result<Outcome> {
        let tree = self.tree_mut()?;
        tree.note_refused();
        if entry.kind == EntryKind::Directory {
            // Its own subtree must exist on the stack for its children.
            let parent = Parent::Failed(why.to_string());
            let _ = tree.open_dir(&parent, &entry.path, None, None);
        }
        self.discard_payload(entry)?;
        self.reporter
            .detail(format!("receiving {} from {}: {why}", entry.path, self.peer));
        self.verdict(VerdictStatus::Failed, Digest::None, why.to_string());
        Ok(Outcome::Failed)
    }

    /// Reports a failed entry on both ends.
    pub(super) fn fail(&mut self, entry: &Entry, why: String) {
        self.reporter
            .error(format!("receiving {} from {}: {why}", entry.path, self.peer));
        self.verdict(VerdictStatus::Failed, Digest::None, why);
    }

    pub(super) fn skip_existing(&mut self, entry: &Entry, shown: &Path) -> Outcome {
        if entry.linked {
            // Its other names link to the file kept there.
            self.link_targets.insert(entry.path.clone(), true);
        }
        self.note_skipped(&entry.path, shown);
        self.verdict(VerdictStatus::Skipped, Digest::None, SKIPPED.into());
        Outcome::Skipped
    }

    pub fn note_skipped(&self, path: &RelPath, shown: &Path) {
        self.reporter.note(format!(
            "skipped {path}: {} exists (--no-clobber)",
            display::path(shown)
        ));
    }

    fn receive_dir(&mut self, entry: &Entry, parent: Arc<File>) -> Result<Outcome> {
        let name = entry.path.file_name();
        let in_the_way = sys::lstat_at(&parent, name).is_ok_and(|m| m.st_mode & libc::S_IFMT != libc::S_IFDIR);
        if self.no_clobber && in_the_way {
            // Kept as it is, and so is everything the subtree would have
            // put beneath it.
            let why = format!("{} exists and is not a directory", entry.path);
            let _ = self
                .tree_mut()?
                .open_dir(&Parent::Skipped(why.clone()), &entry.path, None, None);
            let shown = self.tree()?.shown(&entry.path);
            self.note_skipped(&entry.path, &shown);
            self.verdict(VerdictStatus::Skipped, Digest::None, format!("{why} (--no-clobber)"));
            return Ok(Outcome::Skipped);
        }
        let parent = Parent::Open(parent);
        match self.tree_mut()?.open_dir(&parent, &entry.path, entry.mode, entry.mtime) {
            Ok(()) => {
                self.verdict(VerdictStatus::Committed, Digest::None, String::new());
                self.totals.dirs += 1;
                self.reporter.detail(format_args!("received directory {}", entry.path));
                Ok(Outcome::Committed)
            }
            Err(e) => {
                self.fail(entry, format!("{e:#}"));
                Ok(Outcome::Failed)
            }
        }
    }

    /// Creates a link with `stage`, then commits it like a file.
    fn receive_link(
        &mut self,
        entry: &Entry,
        shown: PathBuf,
        stage: impl FnOnce(&Self) -> Result<Staged>,
    ) -> Result<Outcome> {
        let staged = match stage(self) {
            Ok(s) => s,
            Err(e) => {
                self.fail(entry, format!("{e:#}"));
                return Ok(Outcome::Failed);
            }
        };
        let finish = Finish {
            mode: None,
            mtime: if matches!(entry.kind, EntryKind::Symlink(_)) {
                entry.mtime
            } else {
                None
            },
            ..self.finish_for(entry)
        };
        match staged.commit(&finish) {
            Ok(Placed::Committed) => {
                self.verdict(VerdictStatus::Committed, Digest::None, String::new());
                self.totals.links += 1;
                self.reporter.detail(format_args!(
                    "received {} {}",
                    entry.kind.describe(),
                    display::path(&shown)
                ));
                Ok(Outcome::Committed)
            }
            Ok(Placed::Exists) => Ok(self.skip_existing(entry, &shown)),
            Err(e) => {
                self.fail(entry, format!("{e:#}"));
                Ok(Outcome::Failed)
            }
        }
    }

    pub(super) fn finish_for(&self, entry: &Entry) -> Finish {
        Finish {
            mode: entry.mode,
            mtime: entry.mtime,
            umask: self.umask,
            fsync: self.fsync,
            no_clobber: self.no_clobber,
        }
    }

    fn receive_file(
        &mut self,
        entry: &Entry,
        dir: Arc<File>,
        name: &[u8],
        shown: PathBuf,
        started: Instant,
    ) -> Result<Outcome> {
        if self.no_clobber && sys::lstat_at(&dir, name).is_ok() {
            self.discard_payload(entry)?;
            return Ok(self.skip_existing(entry, &shown));
        }
        let mode = final_mode(entry.mode, self.umask);
        let staged = match self.stager.file(&dir, name, shown.clone(), mode) {
            Ok(s) => s,
            Err(e) => {
                self.discard_payload(entry)?;
                self.fail(entry, format!("{e:#}"));
                return Ok(Outcome::Failed);
            }
        };
        let shown_s = display::path(&shown);
        let Some(file) = staged.file() else {
            bail!("internal error: a staged file without a file");
        };
        self.prepare(file, entry.payload, &shown_s)?;
        let hasher = FileHasher::spawn(file.try_clone()?, self.algorithm, 0)?;
        let target = Target::File { file, offset: 0 };
        let landed = self
            .land_payload(entry, target, &|total| hasher.advance(total))
            .with_context(|| format!("writing {shown_s}"))?;
        self.note_moved(landed.bytes, 0, &landed.report);
        let work = self.local.clone();
        let hashed = work
            .during(|| hasher.finish())
            .with_context(|| format!("hashing {shown_s}"))?;
        let lost = || format!("nothing was written to {shown_s}");
        if let Some(outcome) = self.judge(entry, &landed.end, landed.bytes, &hashed, &lost)? {
            return Ok(outcome);
        }
        match work.during(|| staged.commit(&self.finish_for(entry))) {
            Ok(Placed::Committed) => {}
            Ok(Placed::Exists) => return Ok(self.skip_existing(entry, &shown)),
            Err(e) => {
                self.reporter
                    .error(format!("receiving {} from {}: {e:#}", entry.path, self.peer));
                self.verdict(VerdictStatus::Failed, hashed.digest, format!("{e:#}"));
                return Ok(Outcome::Failed);
            }
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new());
        if entry.linked {
            self.link_targets.insert(entry.path.clone(), true);
        }
        let into = shown.as_os_str().as_bytes();
        self.summarize(&entry.path, landed.bytes, &landed.report, started, &hashed.digest, into);
        Ok(Outcome::Committed)
    }

    /// Reserves space for a file of known size, or sets a sparse file's
    /// length so that its holes stay holes.
    fn prepare(&self, file: &File, payload: Payload, shown: &str) -> Result<()> {
        match payload {
            Payload::Sparse(size) => file
                .set_len(size)
                .with_context(|| format!("setting the length of {shown}")),
            Payload::Sized(size) if size > 0 => match sys::fallocate(file, size) {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                    self.reporter
                        .detail(format!("fallocate is not supported for {shown}; writing without it"));
                    Ok(())
                }
                Err(e) => Err(e).with_context(|| format!("reserving {} for {shown}", display::bytes(size))),
            },
            _ => Ok(()),
        }
    }

    /// A small file: read through the buffer, hashed and checked against
    /// its trailer before anything touches the disk, then handed to the
    /// placer. Its verdict is queued when the placer is done.
    fn receive_small(
        &mut self,
        entry: &Entry,
        dir: Arc<File>,
        name: &[u8],
        shown: PathBuf,
        started: Instant,
    ) -> Result<Option<Outcome>> {
        let n = entry.payload.size().unwrap_or(0);
        self.flush_unless_buffered(n)?;
        if let Err(e) = self.reader.buffer_small(n as usize) {
            // A failed read leaves what did arrive buffered: that is how far it got.
            let got = self.reader.buffered().min(n);
            return Err(super::payload::short_read(e, got, Some(n)));
        }
        let data = self.reader.take_buffered(n).to_vec();
        let digest = digest_of(self.algorithm, &data);
        self.reporter.advance(n);
        let end = read_end(&mut self.reader)?;
        let hashed = Hashed { digest, bytes: n };
        // Formatted only if the file fails: this runs for every small file.
        let lost = || format!("nothing was written to {}", display::path(&shown));
        if let Some(outcome) = self.judge(entry, &end, n, &hashed, &lost)? {
            return Ok(Some(outcome));
        }
        let job = FileJob {
            dir,
            name: name.to_vec(),
            shown: shown.clone(),
            data,
            mode: final_mode(entry.mode, self.umask),
            finish: self.finish_for(entry),
        };
        let placing = Placing {
            path: entry.path.clone(),
            linked: entry.linked,
            shown,
            digest: hashed.digest,
            bytes: n,
            started,
        };
        self.place_file(job, placing)?;
        Ok(None)
    }

    fn receive_stream(&mut self, entry: &Entry, started: Instant) -> Result<Outcome> {
        let stdout = std::io::stdout();
        let out = stdout.as_fd();
        let out_is_pipe = self.lander.ready_stream_out(out);
        // Payload going to the terminal and a bar on it would garble both.
        if stdout.is_terminal() {
            self.reporter.finish();
        }
        let hasher = PipeHasher::spawn(self.algorithm, self.lander.pipe_size())?;
        let target = Target::Stream {
            out,
            out_is_pipe,
            hash: hasher.input(),
        };
        let landed = self.land_payload(entry, target, &|_| {}).context("writing to stdout")?;
        self.note_moved(landed.bytes, 0, &landed.report);
        let hashed = hasher.finish().context("hashing stdout")?;
        let lost = || format!("the {} bytes already written to stdout must be discarded", landed.bytes);
        if let Some(outcome) = self.judge(entry, &landed.end, landed.bytes, &hashed, &lost)? {
            return Ok(outcome);
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new());
        self.summarize(&entry.path, landed.bytes, &landed.report, started, &hashed.digest, b"-");
        Ok(Outcome::Committed)
    }

    /// `-v` details and the per-file summary; `into` is the final path.
    pub fn summarize(
        &mut self,
        path: &RelPath,
        bytes: u64,
        report: &Report,
        started: Instant,
        digest: &Digest,
        into: &[u8],
    ) {
        let seconds = started.elapsed().as_secs_f64();
        self.totals.files += 1;
        self.totals.bytes += bytes;
        self.totals.add_report(report);
        if self.reporter.verbose() {
            self.reporter.detail(format_args!("recv {path}: {}", report.describe()));
            match report.block_size {
                _ if self.algorithm == crate::checksum::Algorithm::None => {}
                Some(size) => self.reporter.detail(display::block_digest_line(digest, into, size)),
                None => self.reporter.detail_raw(&display::checksum_line(&digest.hex(), into)),
            }
        }
        // Only a lone file gets its own closing line.
        if self.totals.files > 1 {
            return;
        }
        self.last_summary = Some(format!(
            "received {path} from {} into {}: {} in {seconds:.2} s ({}), {}, {}",
            self.peer,
            display::escape_bytes(into),
            display::bytes(bytes),
            display::rate(bytes, seconds),
            report.primary().name(),
            verified(self.algorithm)
        ));
    }
}
