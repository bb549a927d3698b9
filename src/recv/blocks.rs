//! Receiving a file in blocks (block mode, docs/PROTOCOL.md): the partial
//! it lands in, the PLAN that tells the sender which blocks are already
//! here, and the landing of BLOCK frames at their offsets with `splice`,
//! each block hashed by a pool of threads (one per core) from the page
//! cache and checked against the sender's digest before it counts.
//!
//! The file commits only when every block is verified and the file digest
//! over all block digests matches the sender's TRAILER.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::partial::{self, Identity, Partial};
use super::streams::Current;
use super::{Outcome, Session, sender_error};
use crate::blockhash::{self, file_digest};
use crate::checksum::{Algorithm, Digest};
use crate::dest::{Placed, Stager};
use crate::display;
use crate::engine::Report;
use crate::engine::inbound::{Lander, Target};
use crate::error::protocol_bail;
use crate::frames::FrameReader;
use crate::progress::Reporter;
use crate::protocol::{Aborted, Block, Blocks, Entry, Message, Payload, Plan, Trailer, VerdictStatus};
use crate::sys::{self, IoBuf, signals};

/// How the sender ended a BLOCKED entry.
enum Ended {
    Trailer(Trailer),
    Aborted(Aborted),
}

/// One block to hash once it has landed.
struct Job {
    index: u32,
    offset: u64,
    len: u64,
    expected: Digest,
}

/// The BLOCKED entry being received: which blocks have arrived and
/// verified. Shared by every stream that lands blocks and by the hashing
/// threads.
pub struct Landing {
    /// The entry's number among the session's BLOCKED entries.
    pub number: u32,
    size: u64,
    blocks: Blocks,
    algorithm: Algorithm,
    partial: Partial,
    state: Mutex<State>,
    changed: Condvar,
    /// Where landed blocks go to be hashed; closed once the entry ends.
    jobs: Mutex<Option<Sender<Job>>>,
    /// How the bytes moved, over every stream.
    report: Mutex<Report>,
}

#[derive(Default)]
struct State {
    /// Blocks held from an earlier session or arrived in this one.
    seen: Vec<bool>,
    /// Digests of verified blocks.
    digests: Vec<Option<Digest>>,
    /// Blocks that have not arrived yet.
    missing: u64,
    /// Blocks landed whose hash is not done yet.
    hashing: usize,
    /// The first block whose digest differed: index, ours, the sender's.
    differs: Option<(u32, Digest, Digest)>,
    /// Hashing failed (a read error on the partial).
    failed: Option<String>,
}

impl Landing {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a BLOCK against the entry and takes its place: where its
    /// bytes land. Anything out of place is a protocol error.
    pub fn claim(&self, b: &Block) -> Result<u64> {
        if b.entry != self.number {
            protocol_bail!(
                "a block of BLOCKED entry {} arrived while entry {} is open",
                b.entry,
                self.number
            );
        }
        let Some((offset, len)) = self.blocks.span(self.size, b.index) else {
            protocol_bail!("block {} is beyond the end of the file", b.index);
        };
        if u64::from(b.len) != len {
            protocol_bail!("block {} is {} bytes long, not {len}", b.index, b.len);
        }
        if b.digest.algorithm() != self.algorithm {
            protocol_bail!("block {} carries a {} digest", b.index, b.digest.algorithm().name());
        }
        let mut s = self.lock();
        let seen = &mut s.seen[b.index as usize];
        if *seen {
            protocol_bail!("block {} was sent twice", b.index);
        }
        *seen = true;
        s.missing -= 1;
        s.hashing += 1;
        Ok(offset)
    }

    /// Lands one block that arrived on `reader` (its BLOCK frame already
    /// read) at its offset and queues it for hashing.
    pub fn land(
        &self,
        reader: &mut FrameReader,
        lander: &mut Lander,
        block: &Block,
        reporter: &Reporter,
    ) -> Result<()> {
        let offset = self.claim(block)?;
        let len = u64::from(block.len);
        let mut target = Target::File {
            file: self.partial.file(),
            offset,
        };
        let mut report = lander.start_report(&target);
        let landed = lander.land(reader, &mut target, len, &mut report, &mut |n| reporter.advance(n));
        let job = Job {
            index: block.index,
            offset,
            len,
            expected: block.digest.clone(),
        };
        if let Err(e) = landed {
            // Claimed but never landed: not waited for.
            let _ = job;
            self.forget();
            return Err(anyhow::Error::new(e).context(format!("landing block {}", block.index)));
        }
        self.merge(&report);
        let queued = match &*self.jobs.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = queued {
            self.hashed(
                &job,
                Err(std::io::Error::other("the entry ended before this block was hashed")),
            );
        }
        Ok(())
    }

    fn merge(&self, part: &Report) {
        let mut r = self.report.lock().unwrap_or_else(PoisonError::into_inner);
        r.by_splice += part.by_splice;
        r.by_read_write += part.by_read_write;
        r.from_buffer += part.from_buffer;
        if r.fallback.is_none() {
            r.fallback.clone_from(&part.fallback);
        }
    }

    fn hashed(&self, job: &Job, result: std::io::Result<Digest>) {
        let verified = match result {
            Ok(d) if d == job.expected => {
                self.lock().digests[job.index as usize] = Some(d.clone());
                // Recording may fdatasync: not under the lock the landing
                // streams take.
                self.partial
                    .verified(job.index, d)
                    .err()
                    .map(|e| format!("recording verified blocks: {e}"))
            }
            Ok(d) => {
                self.lock().differs.get_or_insert((job.index, d, job.expected.clone()));
                None
            }
            Err(e) => Some(format!("hashing block {}: {e}", job.index)),
        };
        let mut s = self.lock();
        s.hashing -= 1;
        if let Some(why) = verified {
            s.failed.get_or_insert(why);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// A claimed block that will not be hashed (it failed to land, or its
    /// entry ended first): no longer waited for.
    fn forget(&self) {
        self.lock().hashing -= 1;
        self.changed.notify_all();
    }

    /// Waits until every block has arrived and been hashed, calling
    /// `waiting` now and then (it fails when the session must end).
    pub fn wait_for_all(&self, mut waiting: impl FnMut() -> Result<()>) -> Result<()> {
        let mut s = self.lock();
        while s.missing > 0 || s.hashing > 0 {
            drop(s);
            waiting()?;
            s = self.lock();
            if s.missing > 0 || s.hashing > 0 {
                s = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        Ok(())
    }

    /// The first block that has not arrived.
    fn first_missing(&self) -> Option<u32> {
        self.lock().seen.iter().position(|seen| !seen).map(|i| i as u32)
    }

    /// Bytes of the blocks still missing.
    fn missing_bytes(&self) -> u64 {
        let s = self.lock();
        s.seen
            .iter()
            .enumerate()
            .filter(|(_, seen)| !**seen)
            .filter_map(|(i, _)| self.blocks.span(self.size, i as u32))
            .map(|(_, len)| len)
            .sum()
    }
}

/// Hashes landed blocks until the job channel closes.
fn hash_worker(landing: &Landing, jobs: &Mutex<Receiver<Job>>) {
    signals::block_in_this_thread();
    let mut buf = IoBuf::new(0);
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv_timeout(partial::SYNC_AFTER),
            Err(_) => return,
        };
        let job = match job {
            Ok(job) => job,
            // Idle (the sender is slow or stopped): record what verified,
            // so a receiver killed meanwhile loses nothing it checked.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = landing.partial.sync() {
                    landing
                        .lock()
                        .failed
                        .get_or_insert_with(|| format!("recording verified blocks: {e}"));
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let result = blockhash::hash_range(landing.partial.file(), job.offset, job.len, landing.algorithm, &mut buf);
        landing.hashed(&job, result);
    }
}

impl Session {
    /// Receives a BLOCKED entry into the partial beside its final name.
    pub fn receive_blocked(
        &mut self,
        entry: &Entry,
        dir: Arc<File>,
        name: &[u8],
        shown: PathBuf,
        started: Instant,
    ) -> Result<Outcome> {
        let Payload::Blocks { size, source } = entry.payload else {
            bail!("internal error: not a BLOCKED entry");
        };
        let Some(blocks) = self.blocks else {
            bail!("internal error: a BLOCKED entry outside block mode");
        };
        let number = self.blocked - 1;
        if self.no_clobber && sys::lstat_at(&dir, name).is_ok() {
            return Ok(self.skip_existing(entry, &shown));
        }
        let shown_s = display::path(&shown);
        let id = Identity {
            size,
            block_size: blocks.size,
            source,
            algorithm: self.algorithm,
        };
        let opened = self
            .local
            .during(|| Partial::open(&dir, name, id, blocks.resume))
            .with_context(|| format!("opening the partial file for {shown_s}"));
        let (partial, held) = match opened {
            Ok(p) => p,
            Err(e) => {
                self.fail(entry, format!("{e:#}"));
                return Ok(Outcome::Failed);
            }
        };
        let landing = self.open_landing(number, size, blocks, partial, &held);
        let kept = size - landing.missing_bytes();
        if kept > 0 {
            self.reporter.note(format!(
                "resuming {}: {} of {} already here{}",
                entry.path,
                display::bytes(kept),
                display::bytes(size),
                if self.algorithm == Algorithm::None {
                    " (unverified: --checksum none)"
                } else {
                    " and verified"
                }
            ));
            self.reporter.advance(kept);
        }
        self.send_plan(&held)?;
        let landing = Arc::new(landing);
        let end = self.land_blocks(&landing)?;
        self.judge_blocks(entry, &landing, end, kept, &dir, name, shown, started)
    }

    fn open_landing(
        &self,
        number: u32,
        size: u64,
        blocks: Blocks,
        partial: Partial,
        held: &BTreeMap<u32, Digest>,
    ) -> Landing {
        let count = blocks.count(size) as usize;
        let mut state = State {
            seen: vec![false; count],
            digests: vec![None; count],
            missing: count as u64,
            ..State::default()
        };
        for (index, digest) in held {
            state.seen[*index as usize] = true;
            state.digests[*index as usize] = Some(digest.clone());
            state.missing -= 1;
        }
        let report = Report {
            route: "socket → pipe → file, in blocks",
            block_size: Some(blocks.size),
            ..self.lander.start_report(&Target::File {
                file: partial.file(),
                offset: 0,
            })
        };
        Landing {
            number,
            size,
            blocks,
            algorithm: self.algorithm,
            partial,
            state: Mutex::new(state),
            changed: Condvar::new(),
            jobs: Mutex::new(None),
            report: Mutex::new(report),
        }
    }

    /// Tells the sender which blocks are here, in as many PLAN frames as
    /// it takes (at least one).
    fn send_plan(&mut self, held: &BTreeMap<u32, Digest>) -> Result<()> {
        let held: Vec<(u32, Digest)> = held.iter().map(|(i, d)| (*i, d.clone())).collect();
        let per_frame = Plan::capacity(self.algorithm);
        let mut chunks = held.chunks(per_frame).peekable();
        if chunks.peek().is_none() {
            self.queue(&Message::Plan(Plan {
                more: false,
                held: Vec::new(),
            }));
        }
        while let Some(chunk) = chunks.next() {
            let more = chunks.peek().is_some();
            self.queue(&Message::Plan(Plan {
                more,
                held: chunk.to_vec(),
            }));
        }
        self.flush()
    }

    /// Lands the blocks of `landing` that come on this connection (and,
    /// through the streams, on the others) until the sender ends the entry
    /// and, after a TRAILER, every block has arrived and been hashed. A
    /// pool of threads hashes them meanwhile.
    fn land_blocks(&mut self, landing: &Arc<Landing>) -> Result<Ended> {
        let (jobs, rx) = mpsc::channel::<Job>();
        *landing.jobs.lock().unwrap_or_else(PoisonError::into_inner) = Some(jobs);
        let rx = Mutex::new(rx);
        let current = self.streams.as_ref().map(|s| Arc::clone(&s.current));
        if let Some(current) = &current {
            current.open(Arc::clone(landing));
        }
        let end = std::thread::scope(|scope| {
            for _ in 0..blockhash::hashing_threads() {
                scope.spawn(|| hash_worker(landing, &rx));
            }
            let end = match self.read_blocks(landing) {
                Ok(Ended::Trailer(t)) => self
                    .wait_for_blocks(landing, current.as_deref())
                    .map(|()| Ended::Trailer(t)),
                other => other,
            };
            // No more blocks of this entry land; the pool ends once it has
            // hashed what is queued.
            if let Some(current) = &current {
                current.close();
            }
            *landing.jobs.lock().unwrap_or_else(PoisonError::into_inner) = None;
            end
        });
        match (end, current.and_then(|c| c.failure())) {
            // A failed stream shut the main connection down: its reason is
            // the one to tell.
            (Err(_), Some(why)) => Err(why.error()),
            (end, _) => end,
        }
    }

    fn read_blocks(&mut self, landing: &Landing) -> Result<Ended> {
        self.flush()?;
        loop {
            let block = match self.reader.expect_exact()? {
                Message::Block(b) => b,
                Message::Ping => continue,
                Message::Trailer(t) => return Ok(Ended::Trailer(t)),
                Message::Abort(a) => return Ok(Ended::Aborted(a)),
                Message::Error(e) => return Err(sender_error(&e)),
                other => protocol_bail!("unexpected {:?} among blocks", other.frame_type()),
            };
            landing.land(&mut self.reader, &mut self.lander, &block, &self.reporter)?;
        }
    }

    /// After the TRAILER: waits for the blocks still on their way on other
    /// streams, and for their hashes. With no other stream every block
    /// must be here already; with others, one must arrive at least once
    /// per idle timeout.
    fn wait_for_blocks(&self, landing: &Landing, current: Option<&Current>) -> Result<()> {
        let missing = |l: &Landing| l.lock().missing;
        if current.is_none()
            && let Some(index) = landing.first_missing()
        {
            protocol_bail!(
                "the sender ended the file before sending block {index} ({} blocks missing)",
                missing(landing)
            );
        }
        let (mut last, mut since) = (missing(landing), Instant::now());
        self.local.during(|| {
            landing.wait_for_all(|| {
                if signals::interrupted() {
                    return Err(crate::error::interrupted_io().into());
                }
                if let Some(why) = current.and_then(Current::failure) {
                    return Err(why.error());
                }
                let now = missing(landing);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if now > 0 && since.elapsed() >= self.idle_timeout {
                    // The streams went silent: a connection that timed out.
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "block {} never arrived: no block came on any stream for {} s (--idle-timeout)",
                            landing.first_missing().unwrap_or(0),
                            self.idle_timeout.as_secs()
                        ),
                    )
                    .into());
                }
                Ok(())
            })
        })
    }

    /// Decides a BLOCKED entry once the sender ended it.
    #[allow(clippy::too_many_arguments)]
    fn judge_blocks(
        &mut self,
        entry: &Entry,
        landing: &Landing,
        end: Ended,
        kept: u64,
        dir: &Arc<File>,
        name: &[u8],
        shown: PathBuf,
        started: Instant,
    ) -> Result<Outcome> {
        let trailer = match end {
            Ended::Aborted(a) => {
                let why = display::peer_text(&a.text);
                // A changed source makes the partial useless; after a read
                // error it holds verified blocks of the same file.
                let kept = if a.changed || !landing.blocks.resume {
                    landing.partial.discard();
                    ""
                } else {
                    "; its verified blocks are kept for a resume"
                };
                self.reporter.error(format!(
                    "receiving {} from {}: the sender aborted it: {why}; nothing was committed{kept}",
                    entry.path, self.peer
                ));
                self.verdict(
                    VerdictStatus::Failed,
                    Digest::None,
                    format!("aborted by the sender: {why}"),
                );
                return Ok(Outcome::Failed);
            }
            Ended::Trailer(t) => t,
        };
        if trailer.bytes != landing.size {
            protocol_bail!(
                "the sender says it sent {} bytes of a {}-byte file",
                trailer.bytes,
                landing.size
            );
        }
        let work = self.local.clone();
        let shown_s = display::path(&shown);
        let report = landing.report.lock().unwrap_or_else(PoisonError::into_inner).clone();
        self.note_moved(landing.size, kept, &report);
        let state = std::mem::take(&mut *landing.lock());
        if let Some(why) = state.failed {
            bail!("{shown_s}: {why}");
        }
        if let Some((index, ours, theirs)) = state.differs {
            self.reporter.error(format!(
                "receiving {} from {}: integrity check failed: block {index} (at byte {}) has {} {}, the sender's is {}; nothing was committed{}",
                entry.path,
                self.peer,
                u64::from(index) * u64::from(landing.blocks.size),
                self.algorithm.name(),
                ours.hex(),
                theirs.hex(),
                if landing.blocks.resume { " (its verified blocks are kept for a resume)" } else { "" }
            ));
            self.verdict(VerdictStatus::Mismatch, Digest::None, format!("block {index} differs"));
            return Ok(Outcome::Mismatch);
        }
        let digests: Vec<Digest> = state.digests.into_iter().map(|d| d.unwrap_or(Digest::None)).collect();
        let digest = file_digest(self.algorithm, landing.size, landing.blocks.size, &digests);
        if self.algorithm != Algorithm::None && trailer.digest != digest {
            self.reporter.error(format!(
                "receiving {} from {}: integrity check failed: the file digest over its blocks is {}, the sender's is {}; nothing was committed",
                entry.path,
                self.peer,
                digest.hex(),
                trailer.digest.hex()
            ));
            self.verdict(VerdictStatus::Mismatch, digest, "digest mismatch".into());
            return Ok(Outcome::Mismatch);
        }
        let size = landing.size;
        let (file, temp) = landing
            .partial
            .complete()
            .with_context(|| format!("completing {shown_s}"))?;
        let staged = Stager::adopt(dir, temp, name, shown.clone(), file);
        match work.during(|| staged.commit(&self.finish_for(entry))) {
            Ok(Placed::Committed) => {}
            Ok(Placed::Exists) => return Ok(self.skip_existing(entry, &shown)),
            Err(e) => {
                self.reporter
                    .error(format!("receiving {} from {}: {e:#}", entry.path, self.peer));
                self.verdict(VerdictStatus::Failed, digest, format!("{e:#}"));
                return Ok(Outcome::Failed);
            }
        }
        self.verdict(VerdictStatus::Committed, digest.clone(), String::new());
        if entry.linked {
            self.link_targets.insert(entry.path.clone(), true);
        }
        let into = std::os::unix::ffi::OsStrExt::as_bytes(shown.as_os_str()).to_vec();
        self.summarize(&entry.path, size - kept, &report, started, &digest, &into);
        Ok(Outcome::Committed)
    }
}
