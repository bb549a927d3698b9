//! `zcp recv`: resolve DEST, listen, accept one sender, agree on version
//! and checksum, receive its entries (one file, or a whole tree), answer
//! each with a verdict, and exit with the transfer's status.
//!
//! Verdicts are queued and written when the next read would block, so a
//! stream of small files costs one write for many verdicts, never a round
//! trip per file.
//!
//! A failure that breaks the stream (disk full, a lying or vanished peer,
//! a protocol violation, Ctrl-C) is reported to the sender as an ERROR
//! before the connection closes, so both ends print the same reason.

mod entry;
mod payload;
mod placer;
mod tree;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::checksum::{Algorithm, Digest};
use crate::cli::RecvArgs;
use crate::dest::{Destination, Stager};
use crate::display;
use crate::engine::Policy;
use crate::engine::inbound::Lander;
use crate::error::{self, Code};
use crate::frames::{self, FrameReader};
use crate::net;
use crate::progress::Reporter;
use crate::protocol::{Hello, Message, Preamble, RelPath, Role, Verdict, VerdictStatus, WireError};
use crate::sys;
use crate::tally::{Outcome, Totals};
use placer::{Owed, Placer};
use tree::Tree;

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
    /// How long the sender may take to complete the handshake.
    pub handshake_timeout: Duration,
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
}

/// How often a receiver waiting for both the sender and files being placed
/// looks at the placer.
const PLACING_POLL: Duration = Duration::from_millis(1);

pub fn run(args: RecvArgs) -> Result<Code> {
    // umask(2) can only be read by changing it: do it before any thread.
    let umask = sys::read_umask();
    let dest = Destination::resolve(&args.dest)?;
    sys::raise_open_file_limit();
    let listener = net::listen(&args.listen)?;
    let local = listener.local_addr().context("reading the bound address")?;
    eprintln!("zcp: listening on {}", net::show_addr(local));

    let (sock, peer_addr) = net::accept(&listener).context("waiting for a sender")?;
    drop(listener);
    let peer = net::show_addr(peer_addr);
    let reporter = Reporter::new(args.common.verbosity());
    reporter.detail(format!("connection from {peer}"));
    let tree = match &dest {
        Destination::Directory { dir, shown } => Some(Tree::new(dir.clone(), shown.clone(), umask)),
        _ => None,
    };
    let mut session = Session {
        reader: FrameReader::new(sock.try_clone().context("duplicating the socket")?),
        sock,
        dest,
        tree,
        stager: Stager::new().context("seeding temporary names")?,
        lander: Lander::new(Policy::new(!args.common.no_zerocopy)),
        reporter,
        algorithm: args.common.checksum,
        umask,
        fsync: args.fsync,
        no_clobber: args.no_clobber,
        handshake_timeout: args.common.handshake_timeout(),
        peer: peer.clone(),
        queued: Vec::new(),
        placer: None,
        owed: VecDeque::new(),
        totals: Totals::default(),
        last_summary: None,
        link_targets: HashMap::new(),
    };
    if let Destination::Directory { dir, .. } | Destination::File { dir, .. } = &session.dest {
        let staging = session.stager.staging(dir);
        session
            .reporter
            .detail(format_args!("staging files as {}", staging.describe()));
    }
    if session.tree.is_some() {
        let resolving = format!("resolving paths in DEST {}", sys::Resolver::get().describe());
        session.reporter.detail(resolving);
    }
    let started = Instant::now();
    sys::signals::wake_on_interrupt(session.sock.as_fd());
    let served = session.serve();
    sys::signals::wake_nothing();
    match served {
        Ok(code) => {
            session.summarize_session(started);
            Ok(code)
        }
        Err(err) => {
            session.reporter.finish();
            session.refuse(&err);
            session.close_after_failure();
            Err(err.context(format!("receiving from {peer}")))
        }
    }
}

/// The sender's ERROR, as this end's error.
pub fn sender_error(e: &WireError) -> anyhow::Error {
    error::coded(
        Code::from_peer_error(e.code),
        format!("sender: {}", display::peer_text(&e.message)),
    )
}

impl Session {
    /// Runs the handshake and the entry loop; returns the exit status.
    fn serve(&mut self) -> Result<Code> {
        self.handshake()?;
        self.reporter.start("recv", None);
        loop {
            if !self.reader.has_frame() {
                self.flush_before_read()?;
            }
            match self.reader.expect()? {
                Message::Entry(e) => {
                    self.totals.entries += 1;
                    if let Some(outcome) = self.receive(e)? {
                        self.totals.count(outcome);
                    }
                }
                Message::Done => break,
                Message::Error(e) => return Err(sender_error(&e)),
                other => bail!("protocol error: unexpected {:?} between entries", other.frame_type()),
            }
        }
        let mut closed = Vec::new();
        if let Some(tree) = self.tree.as_mut() {
            tree.close_all(&mut closed);
        }
        self.close_dirs(closed)?;
        self.settle()?;
        Message::Done.encode(&mut self.queued);
        self.flush()?;
        self.reporter.finish();
        if self.totals.entries == 0 {
            bail!("the sender ended the session without sending a file");
        }
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

    /// Queues the verdict on the current entry.
    pub fn verdict(&mut self, status: VerdictStatus, digest: Digest, message: String) {
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
        Message::Verdict(verdict).encode(&mut self.queued);
        if self.queued.len() >= frames::READ_BUFFER {
            // A long run of entries without a pause: do not hoard. A failed
            // write shows again at the next flush.
            let _ = self.write_queued();
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
            self.reporter.note(line);
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
            t.measures(seconds, self.algorithm)
        );
        self.reporter.detail(format!("recv: {}", t.report.describe_totals()));
        self.reporter.note(line);
    }

    fn handshake(&mut self) -> Result<()> {
        self.sock.set_read_timeout(Some(self.handshake_timeout))?;
        frames::send_preamble(&self.sock)?;
        let theirs = self.reader.read_preamble()?;
        Preamble::ours().negotiate(&theirs)?;
        let hello = match self.reader.expect()? {
            Message::Hello(h) => h,
            other => bail!("protocol error: expected HELLO, got {:?}", other.frame_type()),
        };
        if hello.role != Role::Sender {
            bail!("the peer is not a zcp sender");
        }
        if hello.no_clobber && !self.no_clobber {
            self.no_clobber = true;
            self.reporter.detail("the sender asked for --no-clobber");
        }
        if hello.checksum != self.algorithm {
            bail!(
                "the sender uses --checksum {} but this receiver uses --checksum {}; use the same on both ends",
                hello.checksum.name(),
                self.algorithm.name()
            );
        }
        self.reporter.detail(format!(
            "peer {} ({}), protocol {}",
            self.peer,
            display::escape_text(&hello.software),
            crate::protocol::VERSION
        ));
        frames::send(
            &self.sock,
            &Message::Hello(Hello {
                role: Role::Receiver,
                checksum: self.algorithm,
                software: format!("zcp {}", env!("CARGO_PKG_VERSION")),
                // Tells the sender that status 3 (skipped) may come.
                no_clobber: self.no_clobber,
            }),
        )?;
        self.sock.set_read_timeout(None)?;
        Ok(())
    }

    /// Tells the sender why we are giving up, then closes gently: our FIN
    /// goes out after the ERROR, and we drain what is in flight for a
    /// moment so that closing does not reset the connection before the
    /// sender has read the reason.
    fn refuse(&mut self, err: &anyhow::Error) {
        // Verdicts already decided go out before the reason.
        let _ = self.flush();
        let code = match error::exit_code(err) {
            Code::Integrity => Code::Integrity,
            _ => Code::Failure,
        };
        let message = if sys::signals::interrupted() {
            "the receiver was interrupted".to_string()
        } else {
            format!("{err:#}")
        };
        let _ = frames::send(
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
