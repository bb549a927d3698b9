//! `zcp recv`: one session with one sender (start.rs sets the receiver
//! up, listen.rs accepts the sender, connection.rs runs the connection
//! and handshake.rs authenticates it): receive its entries (one file, or a
//! whole tree), answer each with a verdict, and return the transfer's
//! status. `--raw` takes a plain byte stream instead (raw.rs).
//!
//! Verdicts are queued and written when the next read would block, so a
//! stream of small files costs one write for many verdicts, never a round
//! trip per file.
//!
//! A failure that breaks the stream (disk full, a lying or vanished peer,
//! a protocol violation, Ctrl-C) is reported to the sender as an ERROR
//! before the connection closes, so both ends print the same reason.

mod blocks;
mod connection;
mod entry;
mod handshake;
mod listen;
mod partial;
mod payload;
mod placer;
mod raw;
mod start;
mod streams;
mod tree;
mod watchdog;

pub use start::run;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::checksum::{Algorithm, Digest};
use crate::dest::{Destination, Stager};
use crate::display;
use crate::engine::Report;
use crate::engine::inbound::Lander;
use crate::error::{self, Code, protocol_bail};
use crate::frames::{self, Encoder, FrameReader};
use crate::progress::Reporter;
use crate::protocol::blocks::TOKEN_LEN;
use crate::protocol::{Blocks, Message, RelPath, Verdict, VerdictStatus, WireError};
use crate::report::{Facts, Kind, Record, Role};
use crate::sys;
use crate::tally::{Outcome, Totals};
use placer::{Owed, Placer};
use start::Setup;
use tree::Tree;
use watchdog::{LocalWork, Watchdog};

/// Everything one connection needs.
pub struct Session {
    pub sock: TcpStream,
    pub reader: FrameReader,
    pub dest: Destination,
    /// The tree being built, for a directory destination.
    pub tree: Option<Tree>,
    pub stager: Stager,
    pub lander: Lander,
    pub reporter: Reporter,
    pub algorithm: Algorithm,
    pub umask: u32,
    pub fsync: bool,
    pub no_clobber: bool,
    /// The longest silence tolerated from the sender (told in HELLO).
    pub idle_timeout: Duration,
    /// Encodes (and, once authenticated, seals) what we write.
    pub encoder: Encoder,
    /// The sender's address, for messages.
    pub peer: String,
    /// Encoded verdicts not yet written.
    pub queued: Vec<u8>,
    /// Small files being put in place on another thread, once started.
    pub placer: Option<Placer>,
    /// Verdicts that must wait for a file the placer has not finished:
    /// empty, or starting with that file.
    pub owed: VecDeque<Owed>,
    pub totals: Totals,
    /// The per-file summary of the last file, printed when it was the only
    /// entry.
    pub last_summary: Option<String>,
    /// Files sent as LINKED in this session, and whether each was
    /// committed: the only files a hard-link entry may name.
    pub link_targets: HashMap<RelPath, bool>,
    /// A write to the sender failed: nothing more is written.
    pub write_failed: bool,
    /// The receiver's own long operations, which the watchdog's idle
    /// timeout waits out.
    pub local: LocalWork,
    /// Bytes of the names in `link_targets`, bounded by
    /// [`MAX_LINK_TARGET_BYTES`].
    pub link_target_bytes: u64,
    /// Block mode, as agreed in the handshake.
    pub blocks: Option<Blocks>,
    /// The token further streams join this session by.
    pub token: Option<[u8; TOKEN_LEN]>,
    /// BLOCKED entries received so far (BLOCK frames name them by number).
    pub blocked: u32,
    /// The sessions that take further streams (shared by the receiver).
    pub joins: Arc<streams::Joins>,
    /// Set when this connection's HELLO joins another session as a further
    /// stream (a session with this token).
    pub joining: Option<streams::Token>,
    /// The further streams of this session, while they run.
    pub streams: Option<streams::Streams>,
    /// A receiver serving one session was already serving it when this
    /// connection came: only a further stream of it is taken.
    pub busy: bool,
    /// The JSON report's record of the entry being received, while it is
    /// (only when records are kept).
    pub record: Option<Record>,
}

/// The most bytes of LINKED file names one session may make the receiver
/// remember (a million files with 64-byte paths fit).
pub const MAX_LINK_TARGET_BYTES: u64 = 64 << 20;

/// How often a receiver waiting for both the sender and files being placed
/// looks at the placer.
const PLACING_POLL: Duration = Duration::from_millis(1);

/// The sender's ERROR, as this end's error.
pub fn sender_error(e: &WireError) -> anyhow::Error {
    error::coded(
        Code::from_peer_error(e.code),
        format!("sender: {}", display::peer_text(&e.message)),
    )
}

impl Session {
    /// A session on an accepted connection, before its handshake.
    fn new(setup: &Setup, sock: TcpStream, peer: String) -> Result<Session> {
        let tree = match &setup.dest {
            Destination::Directory { dir, shown } => Some(Tree::new(dir.clone(), shown.clone(), setup.umask)),
            _ => None,
        };
        let reporter = if setup.bars {
            Reporter::new(setup.verbosity)
        } else {
            Reporter::without_bar(setup.verbosity)
        }
        .for_json(setup.json);
        let session = Session {
            reader: FrameReader::new(sock.try_clone().context("duplicating the socket")?),
            sock,
            dest: setup.dest.clone(),
            tree,
            stager: Stager::new().context("seeding temporary names")?,
            lander: Lander::new(setup.policy),
            reporter,
            algorithm: setup.algorithm,
            umask: setup.umask,
            fsync: setup.fsync,
            no_clobber: setup.no_clobber,
            idle_timeout: setup.idle_timeout,
            encoder: Encoder::default(),
            peer,
            queued: Vec::new(),
            placer: None,
            owed: VecDeque::new(),
            totals: Totals::keeping(setup.records),
            last_summary: None,
            link_targets: HashMap::new(),
            link_target_bytes: 0,
            local: LocalWork::default(),
            write_failed: false,
            blocks: None,
            token: None,
            blocked: 0,
            joins: Arc::clone(&setup.joins),
            joining: None,
            streams: None,
            busy: setup.serving.load(std::sync::atomic::Ordering::SeqCst),
            record: None,
        };
        Ok(session)
    }

    /// Says (with -v) how files will be staged and paths resolved; the
    /// staging is probed here, once the session has started.
    fn describe_landing(&self) {
        if let Destination::Directory { dir, .. } | Destination::File { dir, .. } = &self.dest {
            let staging = self.stager.staging(dir);
            self.reporter
                .detail(format_args!("staging files as {}", staging.describe()));
        }
        if self.tree.is_some() {
            let resolving = format!("resolving paths in DEST {}", sys::Resolver::get().describe());
            self.reporter.detail(resolving);
        }
    }

    /// Counts the entry that `err` ended the session in as failed, and
    /// keeps its record with the reason for the JSON report.
    fn failed_on(&mut self, err: &anyhow::Error) {
        self.totals.count(Outcome::Failed);
        if let Some(mut record) = self.record.take() {
            record.error = Some(error::message(err));
            self.totals.record(|| record);
        }
    }

    /// Runs the entry loop after the handshake; returns the exit status.
    fn serve(&mut self, watchdog: &Watchdog) -> Result<Code> {
        self.describe_landing();
        self.reporter.start("recv", None);
        loop {
            if !self.reader.has_frame() {
                self.flush_before_read()?;
            }
            match self.reader.expect()? {
                Message::Entry(e) => {
                    self.totals.entries += 1;
                    if self.totals.records.is_some() {
                        let kind = Kind::of(&e.kind);
                        self.record = Some(Record::new(e.path.as_bytes(), kind, Outcome::Failed));
                    }
                    let outcome = match self.receive(e) {
                        Ok(outcome) => outcome,
                        Err(err) => {
                            self.failed_on(&err);
                            return Err(err);
                        }
                    };
                    let record = self.record.take();
                    // None: a small file being placed, counted when it is.
                    if let Some(outcome) = outcome {
                        self.totals.count(outcome);
                        if let Some(mut record) = record {
                            record.outcome = outcome;
                            self.totals.record(|| record);
                        }
                    }
                }
                Message::Done => break,
                Message::Ping => {}
                Message::Error(e) => return Err(sender_error(&e)),
                other => protocol_bail!("unexpected {:?} between entries", other.frame_type()),
            }
        }
        watchdog.stand_down();
        let mut closed = Vec::new();
        if let Some(tree) = self.tree.as_mut() {
            tree.close_all(&mut closed);
        }
        self.close_dirs(closed)?;
        self.settle()?;
        if self.totals.entries == 0 {
            bail!("the sender ended the session without sending a file");
        }
        self.queue(&Message::Done);
        self.flush()?;
        self.reporter.finish();
        Ok(self.totals.code())
    }

    pub fn tree(&self) -> Result<&Tree> {
        self.tree
            .as_ref()
            .context("internal error: no tree for this destination")
    }

    pub fn tree_mut(&mut self) -> Result<&mut Tree> {
        self.tree
            .as_mut()
            .context("internal error: no tree for this destination")
    }

    /// After a fatal error: stops the placer (what it had not started is
    /// discarded) and gives the directories made so far their modes and
    /// mtimes, so a partial tree is not left at 0700. What fails here was
    /// already overtaken by the error being reported.
    fn close_after_failure(&mut self) {
        self.placer = None;
        let mut closed = Vec::new();
        if let Some(tree) = self.tree.as_mut() {
            tree.close_all(&mut closed);
        }
        self.report_refused();
        for dir in closed {
            let _ = dir.apply();
        }
    }

    /// Problems that fail no single entry (a directory's metadata): each
    /// is reported and makes the transfer partial.
    pub fn report_problems(&mut self, problems: Vec<String>) {
        for p in problems {
            self.reporter.error(format!("receiving from {}: {p}", self.peer));
            self.totals.failed += 1;
        }
    }

    /// Queues a frame to go out with the next flush.
    pub fn queue(&mut self, msg: &Message) {
        self.encoder.push(msg, &mut self.queued);
    }

    /// Queues the verdict on the current entry.
    pub fn verdict(&mut self, status: VerdictStatus, digest: Digest, message: String) {
        if let Some(record) = &mut self.record {
            record.digest = digest.clone();
            if matches!(status, VerdictStatus::Failed | VerdictStatus::Mismatch) {
                record.error = Some(message.clone());
            }
        }
        let verdict = Verdict {
            status,
            digest,
            message,
        };
        if !self.owed.is_empty() {
            // Behind a file still being placed.
            self.owed.push_back(Owed::Ready(verdict));
            return;
        }
        self.queue(&Message::Verdict(verdict));
        if self.queued.len() >= frames::READ_BUFFER {
            // A long run of entries without a pause: do not hoard. A failed
            // write shows again at the next flush.
            let _ = self.write_queued();
        }
    }

    /// Notes for the current entry's record how its payload moved:
    /// `bytes` in all, `resumed` of them already here (see [`Record`]).
    pub fn note_moved(&mut self, bytes: u64, resumed: u64, report: &Report) {
        if let Some(record) = &mut self.record {
            record.moved(bytes, resumed, report);
        }
    }

    /// Writes the queued verdicts, with those of files placed meanwhile.
    pub fn flush(&mut self) -> Result<()> {
        self.take_placed(false)?;
        self.write_queued()
    }

    fn write_queued(&mut self) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let result = frames::write_all(self.sock.as_fd(), &self.queued).context("sending verdicts");
        self.queued.clear();
        // Part of a sealed frame may have gone out: anything written after
        // it would be out of step, so nothing more is.
        self.write_failed |= result.is_err();
        result
    }

    /// Flushes unless the next `n` payload bytes are already buffered.
    pub fn flush_unless_buffered(&mut self, n: u64) -> Result<()> {
        if self.reader.buffered() < n {
            self.flush_before_read()?;
        }
        Ok(())
    }

    /// Before a read that may block: writes the verdicts queued and, while
    /// files are still being placed, waits for them unless the sender is
    /// sending more. A sender may wait for a verdict before it goes on, so
    /// the receiver must not sit in a read while that verdict is pending.
    fn flush_before_read(&mut self) -> Result<()> {
        loop {
            self.flush()?;
            if self.placer.as_ref().is_none_or(Placer::idle)
                || sys::readable_within(self.sock.as_fd(), PLACING_POLL).context("waiting for the sender")?
            {
                return Ok(());
            }
            if sys::signals::interrupted() {
                return Err(error::interrupted_io().into());
            }
        }
    }

    /// The closing line: the file's own summary for a single file, else
    /// the totals of the tree.
    fn summarize_session(&mut self, started: Instant) {
        let t = &self.totals;
        if t.entries == 1
            && let Some(line) = self.last_summary.take()
        {
            self.reporter.summary(line);
            return;
        }
        let seconds = started.elapsed().as_secs_f64();
        let into = match &self.dest {
            Destination::Directory { shown, .. } => display::path(shown),
            _ => "-".into(),
        };
        let line = format!(
            "received {} from {} into {into}: {}",
            t.counts(),
            self.peer,
            t.measures(seconds, self.algorithm, None)
        );
        self.reporter.detail(format!("recv: {}", t.report.describe_totals()));
        self.reporter.summary(line);
    }

    /// The JSON report's facts of this session, which started at
    /// `started`; its totals move there.
    fn facts(&mut self, started: Instant) -> Facts {
        let streams = self.blocks.map_or(1, |b| b.streams);
        let mut facts = Facts::new(Role::Recv, self.algorithm, streams);
        facts.peer = Some(self.peer.clone());
        facts.started = Some(started);
        facts.seconds = started.elapsed().as_secs_f64();
        facts.totals = std::mem::take(&mut self.totals);
        facts
    }

    /// Tells the sender why we are giving up, then closes gently: our FIN
    /// goes out after the ERROR, and we drain what is in flight for a
    /// moment so that closing does not reset the connection before the
    /// sender has read the reason.
    fn refuse(&mut self, err: &anyhow::Error) {
        // Verdicts already decided go out before the reason, also when
        // taking the placer's results fails: each queued frame is sealed
        // with its place in the sequence, so none may be left out.
        let _ = self.take_placed(false);
        let _ = self.write_queued();
        if self.write_failed {
            return;
        }
        let code = Code::for_peer(err);
        let message = if sys::signals::interrupted() {
            "the receiver was interrupted".to_string()
        } else {
            format!("{err:#}")
        };
        let _ = self.encoder.send(
            &self.sock,
            &Message::Error(WireError {
                code: code as u8,
                message,
            }),
        );
        let _ = self.sock.shutdown(Shutdown::Write);
        if sys::signals::interrupted() {
            return;
        }
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(250)));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            match (&self.sock).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
