//! Sending a file in blocks (block mode, docs/PROTOCOL.md): a BLOCKED
//! ENTRY, the receiver's PLAN of the blocks it already holds, then every
//! other block as a BLOCK frame and its bytes by `sendfile` at the
//! block's offset, and a TRAILER with the file digest over all block
//! digests.
//!
//! Blocks are hashed ahead of sending by a pool of threads (one per core,
//! reading the page cache with pread, which also warms it for sendfile),
//! never more than a few blocks ahead. Streams take whichever block is
//! hashed next, so a slow stream never holds up the others.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::entry::{Abort, Link, Outbox, Sent, merge, pad, reading_failed, to_receiver};
use super::replies::Reply;
use super::source::Fingerprint;
use super::walk::{Body, Item};
use super::{Pending, Session};
use crate::blockhash::{self, file_digest, hash_range};
use crate::checksum::{Algorithm, Digest};
use crate::display;
use crate::engine::{Policy, Report, outbound};
use crate::error::protocol_bail;
use crate::progress::Reporter;
use crate::protocol::blocks::MAX_BLOCKS;
use crate::protocol::{Block, Blocks, Message, Payload, Verdict, VerdictStatus};
use crate::sys::{IoBuf, signals};

/// A file to send in blocks, after the receiver's PLAN.
pub struct Blocked<'a> {
    pub file: &'a File,
    pub size: u64,
    pub blocks: Blocks,
    /// The entry's number among the session's BLOCKED entries.
    pub number: u32,
    /// Blocks the receiver holds, with their digests.
    pub held: BTreeMap<u32, Digest>,
    pub fingerprint: &'a Fingerprint,
    pub shown: &'a str,
}

/// Why sending blocks stopped before the last one.
enum Stopped {
    /// The file ended early: it shrank while being sent.
    Shrank(u64),
    /// Reading it failed (EIO).
    Unreadable(io::Error),
}

/// What the hashing pool shares.
struct Pool<'a> {
    job: &'a Blocked<'a>,
    algorithm: Algorithm,
    /// Indices of the blocks to send, in order.
    todo: Vec<u32>,
    /// Next position in `todo` to hash.
    next: AtomicUsize,
    /// Set to stop hashing early.
    stop: AtomicBool,
    /// Digests of all blocks: held ones from the start, the rest as hashed.
    digests: Mutex<Vec<Option<Digest>>>,
    problem: Mutex<Option<Stopped>>,
}

impl Pool<'_> {
    fn fail(&self, why: Stopped) {
        self.stop.store(true, Ordering::SeqCst);
        let mut p = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        p.get_or_insert(why);
    }

    /// Hashes blocks in order and hands them to the streams.
    fn hash(&self, ready: SyncSender<(u32, Digest)>) {
        signals::block_in_this_thread();
        let mut buf = IoBuf::new(0);
        while !self.stop.load(Ordering::SeqCst) {
            let at = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(&index) = self.todo.get(at) else {
                return;
            };
            let Some((offset, len)) = self.job.blocks.span(self.job.size, index) else {
                return;
            };
            match hash_range(self.job.file, offset, len, self.algorithm, &mut buf) {
                Ok(d) => {
                    self.digests.lock().unwrap_or_else(PoisonError::into_inner)[index as usize] = Some(d.clone());
                    if ready.send((index, d)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.fail(Stopped::Shrank(offset)),
                // Ctrl-C: the session ends, it is not the file's fault.
                Err(_) if signals::interrupted() => {
                    self.stop.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => return self.fail(Stopped::Unreadable(e)),
            }
        }
    }
}

impl Link<'_> {
    /// Sends the blocks the receiver does not hold, then the TRAILER (or
    /// ABORT if the file changed or could not be read).
    pub fn blocks(&mut self, job: &Blocked<'_>) -> Result<Sent> {
        let count = job.blocks.count(job.size) as usize;
        let mut digests = vec![None; count];
        for (index, d) in &job.held {
            if let Some(slot) = digests.get_mut(*index as usize) {
                *slot = Some(d.clone());
            }
        }
        let pool = Pool {
            job,
            algorithm: self.algorithm,
            todo: (0..count as u32).filter(|i| !job.held.contains_key(i)).collect(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            digests: Mutex::new(digests),
            problem: Mutex::new(None),
        };
        let threads = if self.algorithm == Algorithm::None {
            1
        } else {
            blockhash::hashing_threads()
        };
        let (ready, next) = mpsc::sync_channel::<(u32, Digest)>(threads + 2 * (1 + self.streams.len()));
        let next = Mutex::new(next);
        let mut report = Report {
            route: "file → socket, in blocks",
            block_size: Some(job.blocks.size),
            ..Report::default()
        };
        let (policy, reporter, wait) = (
            self.policy,
            self.reporter,
            self.ping_every.unwrap_or(Duration::from_secs(10)),
        );
        let sent = std::thread::scope(|scope| {
            for _ in 0..threads {
                let ready = ready.clone();
                scope.spawn(|| pool.hash(ready));
            }
            drop(ready);
            let (pool, next) = (&pool, &next);
            let others: Vec<_> = self
                .streams
                .iter_mut()
                .map(|stream| {
                    scope.spawn(move || {
                        signals::block_in_this_thread();
                        let mut report = Report::default();
                        let sock = stream.sock.try_clone()?;
                        let sent = run(
                            &sock,
                            &mut |m| stream.send(m),
                            pool,
                            next,
                            policy,
                            reporter,
                            wait,
                            &mut report,
                        );
                        if sent.is_err() {
                            pool.stop.store(true, Ordering::SeqCst);
                        }
                        sent.map(|()| report)
                    })
                })
                .collect();
            let (sock, outbox) = (self.sock, &mut *self.outbox);
            let mut sent = run(
                sock,
                &mut |m| outbox.send(sock, m),
                pool,
                next,
                policy,
                reporter,
                wait,
                &mut report,
            );
            // Whatever happened, let the pool finish: stop it and take
            // what it still hands over.
            pool.stop.store(true, Ordering::SeqCst);
            while next.lock().unwrap_or_else(PoisonError::into_inner).recv().is_ok() {}
            for other in others {
                match other.join() {
                    Ok(Ok(part)) => merge(&mut report, &part),
                    Ok(Err(e)) if sent.is_ok() => sent = Err(e.context("on a further stream")),
                    Ok(Err(_)) => {}
                    Err(_) => sent = Err(anyhow::anyhow!("a stream thread panicked")),
                }
            }
            sent
        });
        sent?;
        if signals::interrupted() {
            return Err(crate::error::interrupted_io().into());
        }
        let (digests, problem) = (
            pool.digests.into_inner().unwrap_or_else(PoisonError::into_inner),
            pool.problem.into_inner().unwrap_or_else(PoisonError::into_inner),
        );
        let abort = match problem {
            Some(Stopped::Shrank(at)) => Some(Abort::Changed(job.fingerprint.ended(job.file, job.shown, at, job.size))),
            Some(Stopped::Unreadable(e)) => Some(Abort::Failed(format!("reading {}: {e}", job.shown))),
            None => match job.fingerprint.check(job.file, job.shown) {
                Ok(None) => None,
                Ok(Some(changed)) => Some(Abort::Changed(changed)),
                Err(e) => Some(Abort::Failed(format!("{e:#}"))),
            },
        };
        if abort.is_some() {
            return self.end(job.size, Digest::None, Report::default(), abort);
        }
        let all: Vec<Digest> = digests.into_iter().map(|d| d.unwrap_or(Digest::None)).collect();
        let digest = file_digest(self.algorithm, job.size, job.blocks.size, &all);
        self.end(job.size, digest, report, None)
    }
}

/// Sends hashed blocks on one connection (`frame` writes its frames)
/// until there are no more, pinging the receiver while the hashing is
/// behind.
#[allow(clippy::too_many_arguments)]
fn run(
    sock: &TcpStream,
    frame: &mut dyn FnMut(&Message) -> Result<()>,
    pool: &Pool<'_>,
    next: &Mutex<Receiver<(u32, Digest)>>,
    policy: Policy,
    reporter: &Reporter,
    wait: Duration,
    report: &mut Report,
) -> Result<()> {
    let job = pool.job;
    loop {
        if signals::interrupted() {
            return Err(crate::error::interrupted_io().into());
        }
        if pool.stop.load(Ordering::SeqCst) && pool.problem.lock().unwrap_or_else(PoisonError::into_inner).is_some() {
            return Ok(());
        }
        let taken = next.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(wait);
        let (index, digest) = match taken {
            Ok(block) => block,
            Err(RecvTimeoutError::Timeout) => {
                frame(&Message::Ping)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let Some((offset, len)) = job.blocks.span(job.size, index) else {
            return Ok(());
        };
        frame(&Message::Block(Block {
            entry: job.number,
            index,
            len: u32::try_from(len)?,
            digest,
        }))?;
        let mut done = 0u64;
        let part = outbound::send_file(sock, job.file, offset, len, policy, &mut |n| {
            done += n;
            reporter.advance(n);
        });
        match part {
            Ok(part) => merge(report, &part),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // Pad to the end of the block, then abort the entry.
                pad(sock, len - done).map_err(to_receiver)?;
                pool.fail(Stopped::Shrank(offset + done));
                return Ok(());
            }
            Err(e) if reading_failed(&e) => {
                pad(sock, len - done).map_err(|_| to_receiver(io::Error::other(e.to_string())))?;
                pool.fail(Stopped::Unreadable(e));
                return Ok(());
            }
            Err(e) => return Err(to_receiver(e)),
        }
    }
}

/// How the receiver answered a BLOCKED entry.
enum Answer {
    /// The blocks it holds: send the others.
    Plan(BTreeMap<u32, Digest>),
    /// This entry's verdict: it will not store it.
    Verdict(Verdict),
}

impl Session<'_> {
    /// The agreed block mode, if `item` goes in blocks: a regular file of
    /// known size without holes, larger than one block.
    fn blocks_for(&self, item: &Item) -> Option<Blocks> {
        let blocks = self.blocks?;
        match &item.body {
            Body::File(_, len, _) if *len > u64::from(blocks.size) && blocks.count(*len) <= MAX_BLOCKS => Some(blocks),
            _ => None,
        }
    }

    /// Sends `item` in blocks if it goes that way; gives it back if not.
    pub(super) fn send_in_blocks(
        &mut self,
        sock: &TcpStream,
        outbox: &mut Outbox,
        policy: Policy,
        mut item: Item,
        again: bool,
    ) -> Result<Option<Item>> {
        let Some(blocks) = self.blocks_for(&item) else {
            return Ok(Some(item));
        };
        let Body::File(file, size, fingerprint) = &item.body else {
            return Ok(Some(item));
        };
        let path = item.entry.path.to_string();
        let peer = self.peer.clone();
        let about = || format!("sending {path} to {peer}");
        item.entry.payload = Payload::Blocks {
            size: *size,
            source: fingerprint.identity(file).with_context(about)?,
        };
        let started = Instant::now();
        outbox.push(&Message::Entry(item.entry.clone()));
        outbox.flush(sock).with_context(about)?;
        let number = self.blocked;
        self.blocked += 1;
        let pending = |sent| Pending {
            path: path.clone(),
            name: item.entry.path.as_bytes().to_vec(),
            kind: item.entry.kind.clone(),
            stdin: false,
            raw: item.raw.clone(),
            sent,
            started,
            again,
        };
        let held = match self.await_plan(blocks, *size).with_context(about)? {
            Answer::Plan(held) => held,
            Answer::Verdict(v) => {
                self.pending.push_back(pending(Sent::nothing()));
                self.reply(Reply::Verdict(v))?;
                return Ok(None);
            }
        };
        let kept: u64 = held
            .keys()
            .filter_map(|i| blocks.span(*size, *i))
            .map(|(_, len)| len)
            .sum();
        if kept > 0 {
            self.reporter.note(format!(
                "resuming {path}: the receiver holds {} of {}{}; sending the rest",
                display::bytes(kept),
                display::bytes(*size),
                if self.algorithm == Algorithm::None {
                    ""
                } else {
                    ", verified"
                }
            ));
            self.reporter.advance(kept);
        }
        let mut link = self.link(sock, outbox, policy);
        let job = Blocked {
            file,
            size: *size,
            blocks,
            number,
            held,
            fingerprint,
            shown: &item.shown,
        };
        let mut sent = link.blocks(&job).with_context(about)?;
        sent.resumed = kept;
        if let Some(why) = &sent.aborted {
            self.report_abort(&path, why);
        }
        self.pending.push_back(pending(sent));
        Ok(None)
    }

    /// Waits for the receiver's PLAN for the BLOCKED entry just sent,
    /// handling the verdicts on earlier entries that come first.
    fn await_plan(&mut self, blocks: Blocks, size: u64) -> Result<Answer> {
        let mut held = BTreeMap::new();
        loop {
            let reply = match self.replies.next(None) {
                Some(r) => r,
                None => return Err(crate::error::interrupted_io().into()),
            };
            match reply {
                Reply::Plan(_) if !self.pending.is_empty() => {
                    protocol_bail!("the receiver sent a PLAN before its verdicts on earlier entries")
                }
                Reply::Plan(plan) => {
                    for (index, digest) in plan.held {
                        if blocks.span(size, index).is_none() || digest.algorithm() != self.algorithm {
                            protocol_bail!("the receiver's PLAN lists block {index}, which does not fit this file");
                        }
                        if held.insert(index, digest).is_some() {
                            protocol_bail!("the receiver's PLAN lists block {index} twice");
                        }
                    }
                    if !plan.more {
                        return Ok(Answer::Plan(held));
                    }
                }
                Reply::Verdict(v) if self.pending.is_empty() => {
                    if v.status == VerdictStatus::Committed {
                        protocol_bail!("the receiver committed a file sent in blocks before any block");
                    }
                    return Ok(Answer::Verdict(v));
                }
                other => self.reply(other)?,
            }
        }
    }
}
