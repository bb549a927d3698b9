//! A worker thread that puts small, already verified files in place while
//! the session reads, hashes and checks the next ones.
//!
//! Creating, writing, timestamping and linking a 4 KiB file costs several
//! times what reading and hashing it does, so for a tree of small files the
//! receiver's one thread was the bottleneck of the whole transfer. The
//! session hands each verified small file over here, with the directory
//! metadata due when a subtree closes, and the worker does them strictly in
//! order. Results come back in the same order; the session turns each into
//! the entry's verdict, so verdicts still follow entry order. Anything
//! else (large files, streams, links) waits until the worker is idle
//! ([`Session::settle`]), so it cannot overtake a file. Directory entries
//! do not wait: a sender that sends a file and then a directory under the
//! same name gets one of the two, depending on timing, and the other fails
//! with its reason; either way nothing lands outside the destination.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Result, bail};

use super::entry::SKIPPED;
use super::tree::ClosedDir;
use super::{Outcome, Session};
use crate::checksum::Digest;
use crate::dest::{Finish, Placed, Stager};
use crate::display;
use crate::engine::Report;
use crate::protocol::{Message, RelPath, Verdict, VerdictStatus};
use crate::report::{Kind, Record};
use crate::sys::signals;

/// Jobs queued at most: bounds memory to this many small files.
const QUEUE: usize = 128;

/// A verified small file to put in place.
pub struct FileJob {
    pub dir: Arc<File>,
    pub name: Vec<u8>,
    pub shown: PathBuf,
    pub data: Vec<u8>,
    /// Final permission bits for the staged file.
    pub mode: u32,
    pub finish: Finish,
}

enum Job {
    File(FileJob),
    Dir(ClosedDir),
}

/// How a job ended, in job order.
pub enum Done {
    /// A file: committed, or kept out by --no-clobber.
    Placed(Placed),
    /// A file that failed on its own; the session goes on.
    Failed(String),
    /// A file whose bytes could not be written (disk full, I/O error):
    /// fatal to the session, as it is for files received directly.
    Broken(String),
    /// A directory's metadata, with what could not be applied.
    Dir(Vec<String>),
}

pub struct Placer {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    in_flight: usize,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl Placer {
    /// Starts the worker with its own `stager`.
    pub fn spawn(stager: Stager) -> io::Result<Placer> {
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let (outbox, done) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let worker = signals::spawn_worker("zcp-place", move || {
            for job in inbox {
                let result = match job {
                    _ if stopped.load(Ordering::Relaxed) => Done::Failed("interrupted".into()),
                    Job::File(file) => place(&stager, file),
                    Job::Dir(dir) => Done::Dir(dir.apply()),
                };
                if outbox.send(result).is_err() {
                    break;
                }
            }
        })?;
        Ok(Placer {
            jobs: Some(jobs),
            done,
            in_flight: 0,
            stop,
            worker: Some(worker),
        })
    }

    pub fn file(&mut self, job: FileJob) -> io::Result<()> {
        self.send(Job::File(job))
    }

    pub fn dir(&mut self, closed: ClosedDir) -> io::Result<()> {
        self.send(Job::Dir(closed))
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(io::Error::other("the file placing thread has stopped"));
        }
        self.in_flight += 1;
        Ok(())
    }

    /// True when every job handed over has its result taken.
    pub fn idle(&self) -> bool {
        self.in_flight == 0
    }

    /// The next result: waiting for it with `wait`, else only if it is
    /// ready. None when nothing is in flight (or, without `wait`, ready).
    pub fn next(&mut self, wait: bool) -> Option<Done> {
        if self.in_flight == 0 {
            return None;
        }
        let done = if wait {
            self.done.recv().ok()
        } else {
            match self.done.try_recv() {
                Ok(done) => Some(done),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        self.in_flight -= 1;
        // A worker that died owes results it will never send.
        Some(done.unwrap_or_else(|| Done::Broken("the file placing thread has stopped".into())))
    }
}

impl Drop for Placer {
    /// Discards the jobs not started yet (their staged files vanish) and
    /// waits for the one under way.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Stages, writes and commits one verified file.
fn place(stager: &Stager, job: FileJob) -> Done {
    let staged = match stager.file(&job.dir, &job.name, job.shown.clone(), job.mode) {
        Ok(staged) => staged,
        Err(e) => return Done::Failed(format!("{e:#}")),
    };
    let Some(file) = staged.file() else {
        return Done::Broken("internal error: a staged file without a file".into());
    };
    if let Err(e) = file.write_all_at(&job.data, 0) {
        return Done::Broken(format!("writing {}: {e}", display::path(&job.shown)));
    }
    match staged.commit(&job.finish) {
        Ok(placed) => Done::Placed(placed),
        Err(e) => Done::Failed(format!("{e:#}")),
    }
}

/// A placed file broke the session (its bytes could not be written). The
/// error names that file, not the entry being received when it surfaced.
#[derive(Debug)]
pub struct PlacingFailed(String);

impl std::fmt::Display for PlacingFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlacingFailed {}

/// Adds "receiving PATH" to an error unless it is about another file.
pub fn about_entry(e: anyhow::Error, path: &RelPath) -> anyhow::Error {
    if e.is::<PlacingFailed>() {
        e
    } else {
        e.context(format!("receiving {path}"))
    }
}

/// A verdict owed to the sender, in entry order.
pub enum Owed {
    Ready(Verdict),
    /// A file handed to the placer: its verdict waits for the result.
    Placing(Placing),
}

/// What the session keeps of a file handed to the placer.
pub struct Placing {
    pub path: RelPath,
    pub linked: bool,
    pub shown: PathBuf,
    pub digest: Digest,
    pub bytes: u64,
    pub started: Instant,
}

impl Session {
    /// Hands a verified small file to the placer (started on first use).
    pub fn place_file(&mut self, job: FileJob, placing: Placing) -> Result<()> {
        let placer = match &mut self.placer {
            Some(placer) => placer,
            empty => empty.insert(Placer::spawn(self.stager.sibling()?)?),
        };
        placer.file(job)?;
        self.owed.push_back(Owed::Placing(placing));
        Ok(())
    }

    /// Applies the metadata of closed directories: through the placer when
    /// it runs, so that it comes after the files placed in them.
    pub fn close_dirs(&mut self, closed: Vec<ClosedDir>) -> Result<()> {
        self.report_refused();
        for dir in closed {
            match &mut self.placer {
                Some(placer) => placer.dir(dir)?,
                None => {
                    let problems = dir.apply();
                    self.report_problems(problems);
                }
            }
        }
        Ok(())
    }

    /// One line for each directory that could not be made whose subtree
    /// has closed: how many entries beneath it failed with it.
    pub fn report_refused(&mut self) {
        let Some(tree) = self.tree.as_mut() else {
            return;
        };
        for (dir, n, skipped) in tree.take_refused() {
            let entries = if n == 1 { "entry" } else { "entries" };
            if skipped {
                self.reporter.note(format!(
                    "skipped {dir}/...: {n} {entries} beneath {dir} with it (--no-clobber; -v lists them)"
                ));
            } else {
                self.reporter.error(format!(
                    "receiving {dir}/... from {}: {n} {entries} beneath {dir} failed with it (-v lists them)",
                    self.peer
                ));
            }
        }
    }

    /// Waits until everything handed to the placer is done and its
    /// verdicts are queued: before any entry the placer does not handle.
    pub fn settle(&mut self) -> Result<()> {
        let work = self.local.clone();
        work.during(|| self.take_placed(true))
    }

    /// Takes the placer's results (all of them with `wait`, else those
    /// ready) and queues the verdicts they complete, in entry order.
    pub fn take_placed(&mut self, wait: bool) -> Result<()> {
        while let Some(done) = self.placer.as_mut().and_then(|p| p.next(wait)) {
            if let Done::Dir(problems) = done {
                self.report_problems(problems);
                continue;
            }
            let Some(Owed::Placing(placing)) = self.owed.pop_front() else {
                bail!("internal error: a placed file nobody was waiting for");
            };
            let verdict = self.placed(placing, done)?;
            self.queue(&Message::Verdict(verdict));
            while let Some(Owed::Ready(_)) = self.owed.front() {
                if let Some(Owed::Ready(verdict)) = self.owed.pop_front() {
                    self.queue(&Message::Verdict(verdict));
                }
            }
        }
        Ok(())
    }

    /// Reports a placed file and makes its verdict.
    fn placed(&mut self, p: Placing, done: Done) -> Result<Verdict> {
        let report = Report {
            by_read_write: p.bytes,
            route: "socket → buffer → file (small file)",
            ..Report::default()
        };
        let (status, message, outcome) = match done {
            Done::Placed(Placed::Committed) => {
                if p.linked {
                    self.link_targets.insert(p.path.clone(), true);
                }
                self.summarize(
                    &p.path,
                    p.bytes,
                    &report,
                    p.started,
                    &p.digest,
                    p.shown.as_os_str().as_bytes(),
                );
                (VerdictStatus::Committed, String::new(), Outcome::Committed)
            }
            Done::Placed(Placed::Exists) => {
                if p.linked {
                    // Its other names link to the file kept there.
                    self.link_targets.insert(p.path.clone(), true);
                }
                self.note_skipped(&p.path, &p.shown);
                (VerdictStatus::Skipped, SKIPPED.to_string(), Outcome::Skipped)
            }
            Done::Failed(why) => {
                self.reporter
                    .error(format!("receiving {} from {}: {why}", p.path, self.peer));
                (VerdictStatus::Failed, why, Outcome::Failed)
            }
            Done::Broken(why) => return Err(PlacingFailed(format!("receiving {}: {why}", p.path)).into()),
            Done::Dir(_) => bail!("internal error: directory metadata where a file was due"),
        };
        self.totals.count(outcome);
        self.totals.record(|| {
            let mut record = Record::new(p.path.as_bytes(), Kind::File, outcome);
            if outcome != Outcome::Skipped {
                record.moved(p.bytes, 0, &report);
                record.digest = p.digest.clone();
            }
            if status == VerdictStatus::Failed {
                record.error = Some(message.clone());
            }
            record
        });
        Ok(Verdict {
            status,
            digest: p.digest,
            message,
        })
    }
}
