//! `zcp send`: classify the operands, meet the receiver (connect to it,
//! or with --listen let it connect), agree on version and checksum and
//! authenticate, stream every entry the walk produces without waiting for the
//! receiver, match the verdicts that flow back to the entries in order,
//! and exit with the outcome: 0 only once the receiver holds every entry,
//! verified, under its final name.

mod census;
mod entry;
mod handshake;
mod meet;
mod operands;
mod pace;
mod replies;
mod source;
mod verdicts;
mod walk;

use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::checksum::Algorithm;
use crate::cli::SendArgs;
use crate::display;
use crate::engine::Policy;
use crate::error::{self, Code};
use crate::progress::Reporter;
use crate::protocol::{EntryKind, Message, RelPath};
use crate::tally::Totals;
use census::Census;
use entry::{Abort, Link, Outbox, Sent};
use meet::Met;
use replies::{Replies, Reply};
use verdicts::Gone;
use walk::{Batch, Item, Walked};

/// How long to wait for the receiver's reason after our side failed.
const REASON_GRACE: Duration = Duration::from_secs(3);

/// An entry sent and waiting for its verdict.
struct Pending {
    /// The path on the wire, escaped.
    path: String,
    kind: EntryKind,
    /// The local path, raw, for the sha256sum-style line.
    raw: Vec<u8>,
    sent: Sent,
    started: Instant,
}

/// The sending side of one session.
struct Session {
    peer: String,
    algorithm: Algorithm,
    reporter: Reporter,
    replies: Replies,
    pending: VecDeque<Pending>,
    totals: Totals,
    /// The per-file summary of the last file, printed when it was the only
    /// entry.
    last_summary: Option<String>,
    /// We asked the receiver not to replace anything (status 3 is fine).
    no_clobber: bool,
    /// The entry being sent, for messages.
    current: Option<String>,
    /// Totals counted ahead of the walk, when a bar is drawn.
    census: Option<Arc<Census>>,
    /// Bytes of the entries walked so far.
    walked: u64,
    /// A third of the receiver's idle timeout: the longest we stay silent.
    ping_every: Option<Duration>,
    /// The directory the receiver could not make, whose subtree the
    /// verdicts are in, and how many entries beneath it failed with it:
    /// they are reported in one line, not one each.
    failed_dir: Option<(String, u64, Gone)>,
    /// The `--limit` the kernel paces us at, for the summary.
    limit: Option<u64>,
}

pub fn run(args: SendArgs) -> Result<Code> {
    let mut reporter = Reporter::new(args.common.verbosity());
    let policy = Policy::new(!args.common.no_zerocopy);
    let algorithm = args.common.checksum;
    let operands = operands::classify(&args)?;
    let Met { sock, peer, agreed } = match (&args.listen, &args.target) {
        (Some(spec), _) => meet::listen(&args, spec, &reporter)?,
        (None, Some(target)) => meet::connect(&args, target, &reporter)?,
        (None, None) => return Err(error::usage("no HOST:PORT to send to, and no --listen")),
    };
    let limit = args.limit.and_then(|rate| pace::pace(&sock, rate, &mut reporter));
    let roots = operands
        .iter()
        .filter_map(|op| op.path().map(|p| p.to_path_buf()))
        .collect();
    let walk = walk::spawn(operands, args.dereference, algorithm)?;
    reporter.start("send", None);
    let census = reporter.has_bar().then(|| census::spawn(roots, args.dereference));

    let mut session = Session {
        peer,
        algorithm,
        reporter,
        replies: agreed.replies,
        pending: VecDeque::new(),
        totals: Totals::default(),
        last_summary: None,
        no_clobber: agreed.no_clobber,
        current: None,
        census,
        walked: 0,
        ping_every: agreed.idle_timeout.map(|t| (t / 3).max(Duration::from_millis(500))),
        failed_dir: None,
        limit,
    };
    let started = Instant::now();
    let mut outbox = Outbox::new(agreed.encoder);
    if let Err(local) = session.stream(&sock, &walk, &mut outbox, policy) {
        session.reporter.finish();
        let what = session.sending();
        // The receiver's reason (disk full, ...) beats our broken pipe; it
        // comes after the verdicts on the entries before, so the first entry
        // still without one is the entry it is about.
        let deadline = Instant::now() + REASON_GRACE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match session.replies.next(Some(left)) {
                Some(Reply::Verdict(v)) if !left.is_zero() => {
                    if let Some(p) = session.pending.pop_front() {
                        let outcome = session.judge(&p, &v);
                        session.totals.count(outcome);
                    }
                }
                Some(Reply::Error(e)) => {
                    let reason = error::coded(Code::from_peer_error(e.code), receiver_said(&e.message));
                    let about = match session.pending.front() {
                        Some(p) => format!("sending {} to {}", p.path, session.peer),
                        None => what,
                    };
                    return Err(reason.context(about));
                }
                // A forged frame is why the connection was shut down.
                Some(Reply::Broken(e)) if replies::forged(&e) => return Err(e.context(what)),
                _ => return Err(local),
            }
        }
    }
    session.collect()?;
    session.reporter.finish();
    session.summarize(started);
    Ok(session.totals.code())
}

impl Session {
    /// Sends every walked entry, then DONE, reading verdicts as they come.
    fn stream(&mut self, sock: &TcpStream, walk: &Receiver<Batch>, outbox: &mut Outbox, policy: Policy) -> Result<()> {
        loop {
            let batch = match walk.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty) => {
                    // The walk is behind: send what is batched meanwhile.
                    outbox.flush(sock).with_context(|| self.sending())?;
                    match self.wait_for_walk(sock, walk, outbox)? {
                        Some(b) => b,
                        None => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            for walked in batch {
                if crate::sys::signals::interrupted() {
                    return Err(error::interrupted_io().into());
                }
                match walked {
                    Walked::Item(item) => self.send_item(sock, outbox, policy, *item)?,
                    Walked::Skipped(why) => self.reporter.warn(why),
                    Walked::Failed(why) => {
                        self.reporter.error(why);
                        self.totals.failed += 1;
                    }
                    Walked::Aborted(path, why) => self.send_aborted(outbox, path, why),
                }
            }
            while let Some(reply) = self.replies.try_next() {
                self.reply(reply)?;
            }
        }
        outbox.push_done();
        outbox.flush(sock).with_context(|| self.sending())
    }

    /// The next batch from a walk that is behind (None when it is over),
    /// pinging the receiver while we wait.
    fn wait_for_walk(&self, sock: &TcpStream, walk: &Receiver<Batch>, outbox: &mut Outbox) -> Result<Option<Batch>> {
        let Some(every) = self.ping_every else {
            return Ok(walk.recv().ok());
        };
        loop {
            match walk.recv_timeout(every) {
                Ok(b) => return Ok(Some(b)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                // The walk is slow; the session is alive.
                Err(RecvTimeoutError::Timeout) => outbox.send(sock, &Message::Ping).with_context(|| self.sending())?,
            }
        }
    }

    /// What we were doing, for messages: `sending PATH to PEER` with the
    /// entry being sent, if any.
    fn sending(&self) -> String {
        match &self.current {
            Some(path) => format!("sending {path} to {}", self.peer),
            None => format!("sending to {}", self.peer),
        }
    }

    fn send_item(&mut self, sock: &TcpStream, outbox: &mut Outbox, policy: Policy, item: Item) -> Result<()> {
        self.totals.entries += 1;
        self.reporter.current(&item.entry.path.to_string());
        self.walked += item.entry.payload.size().unwrap_or(0);
        if self.reporter.has_bar() && item.entry.payload.size().is_some() {
            let counted = self.census.as_ref().map_or(0, |c| c.bytes.load(Ordering::Relaxed));
            self.reporter.set_total(counted.max(self.walked));
        }
        let path = item.entry.path.to_string();
        self.current = Some(path.clone());
        let kind = item.entry.kind.clone();
        let raw = item.raw.clone();
        let started = Instant::now();
        let mut link = Link {
            sock,
            outbox,
            algorithm: self.algorithm,
            policy,
            reporter: &self.reporter,
            ping_every: self.ping_every,
        };
        let sent = link
            .send(item)
            .with_context(|| format!("sending {path} to {}", self.peer))?;
        if let Some(why) = &sent.aborted {
            self.report_abort(&path, why);
        }
        self.pending.push_back(Pending {
            path,
            kind,
            raw,
            sent,
            started,
        });
        Ok(())
    }

    /// The one error line for an entry we aborted.
    fn report_abort(&self, path: &str, why: &Abort) {
        let advice = match why {
            Abort::Changed(_) => "; not committed, send it again",
            Abort::Failed(_) => "",
        };
        self.reporter
            .error(format!("sending {path} to {}: {why}{advice}", self.peer));
    }

    /// Announces a file the walk gave up on (it could not be read, or
    /// changed while read) and aborts it at once, so the receiver fails it
    /// too (its verdict is then expected, and quiet).
    fn send_aborted(&mut self, outbox: &mut Outbox, path: RelPath, why: Abort) {
        self.report_abort(&path.to_string(), &why);
        self.totals.entries += 1;
        outbox.push_aborted(path.clone(), &why);
        self.pending.push_back(Pending {
            path: path.to_string(),
            kind: EntryKind::File,
            raw: Vec::new(),
            sent: Sent::aborted(why),
            started: Instant::now(),
        });
    }

    /// Waits for the verdicts still owed and the receiver's DONE.
    fn collect(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            match self.replies.next(None) {
                Some(reply) => self.reply(reply)?,
                None => return Err(error::interrupted_io().into()),
            }
        }
        // An empty path is beneath nothing: reports a failed subtree last.
        self.leave_failed_dir("");
        // The session ends with the receiver's DONE. Its absence is harmless
        // now, but a verdict where DONE belongs means the pairing was off,
        // and a DONE that fails authentication means someone on the path
        // is writing to us.
        match self.replies.next(Some(REASON_GRACE)) {
            Some(reply @ (Reply::Verdict(_) | Reply::Error(_))) => self.reply(reply),
            Some(Reply::Broken(e)) if replies::forged(&e) => self.reply(Reply::Broken(e)),
            _ => Ok(()),
        }
    }

    /// Handles one thing the receiver said.
    fn reply(&mut self, reply: Reply) -> Result<()> {
        let what = match self.pending.front() {
            Some(p) => format!("sending {} to {}", p.path, self.peer),
            None => format!("sending to {}", self.peer),
        };
        match reply {
            Reply::Verdict(v) => {
                let Some(p) = self.pending.pop_front() else {
                    bail!("{what}: the receiver sent a verdict for an entry we did not send");
                };
                self.leave_failed_dir(&p.path);
                let outcome = self.judge(&p, &v);
                self.totals.count(outcome);
                Ok(())
            }
            Reply::Error(e) => {
                Err(error::coded(Code::from_peer_error(e.code), receiver_said(&e.message))).context(what)
            }
            Reply::Closed => bail!("{what}: the receiver closed the connection without a verdict"),
            Reply::Broken(why) => Err(why.context(what)),
            Reply::Done if self.pending.is_empty() => Ok(()),
            Reply::Done => bail!("{what}: the receiver ended the session without a verdict"),
        }
    }
}

/// "1 entry", "5 entries".
fn counted_entries(n: u64) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
}

/// The receiver's ERROR or VERDICT text, escaped once (see
/// [`display::peer_text`]: names in it are already escaped).
fn receiver_said(message: &str) -> String {
    format!("receiver: {}", display::peer_text(message))
}
