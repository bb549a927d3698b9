//! `zcp send`: classify the operands, meet the receiver (connect to it,
//! or with --listen let it connect), agree on version and checksum and
//! authenticate, stream every entry the walk produces without waiting for the
//! receiver, match the verdicts that flow back to the entries in order,
//! and exit with the outcome: 0 only once the receiver holds every entry,
//! verified, under its final name. With `--retries`, a connection that
//! breaks is made again and the transfer goes on (retry.rs). `--raw`
//! sends plain bytes instead, with none of this (raw.rs).

mod blocks;
mod census;
mod entry;
mod handshake;
mod meet;
mod operands;
mod pace;
mod raw;
mod replies;
mod retry;
mod source;
mod streams;
mod verdicts;
mod walk;

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::checksum::Algorithm;
use crate::cli::SendArgs;
use crate::display;
use crate::engine::Policy;
use crate::error::{self, Code};
use crate::key::Key;
use crate::net::{HostPort, ListenSpec};
use crate::progress::Reporter;
use crate::protocol::{EntryKind, Message, RelPath, WireError};
use crate::report::{self, Closing, Kind, Record};
use crate::tally::{Outcome, Totals};
use census::Census;
use entry::{Abort, Link, Outbox, Sent};
use meet::Met;
use replies::{Replies, Reply};
use retry::Ledger;
use verdicts::Gone;
use walk::{Batch, Item, Operand, Walked};

/// How long to wait for the receiver's reason after our side failed.
const REASON_GRACE: Duration = Duration::from_secs(3);

/// An entry sent and waiting for its verdict.
struct Pending {
    /// The path on the wire, escaped.
    path: String,
    /// The same, raw, for the JSON report.
    name: Vec<u8>,
    kind: EntryKind,
    /// The entry is stdin (`-`).
    stdin: bool,
    /// The local path, raw, for the sha256sum-style line.
    raw: Vec<u8>,
    sent: Sent,
    started: Instant,
    /// Settled in an earlier attempt, and sent again all the same (a
    /// directory, a file with several names): counted there already.
    again: bool,
}

/// The sending side of one session.
struct Session<'l> {
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
    /// The JSON report's record of the entry being sent, as failed, until
    /// its payload is out (when records are kept).
    in_flight: Option<Record>,
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
    /// What the attempts of this transfer share (`--retries`).
    ledger: &'l mut Ledger,
    /// Block mode, as the receiver agreed to it.
    blocks: Option<crate::protocol::Blocks>,
    /// BLOCKED entries sent so far.
    blocked: u32,
    /// Further connections of the session (-P).
    streams: Vec<streams::Stream>,
    /// Entries passed over as settled in an earlier attempt.
    passed_over: u64,
}

/// How the sender meets its receiver, each time it does.
enum Way<'a> {
    Listen(&'a ListenSpec),
    Connect(&'a HostPort, Option<Key>),
}

/// Sends, and leaves in `closing` the facts of the JSON report, however
/// the transfer ended.
pub fn run(args: SendArgs, closing: &mut Closing) -> Result<Code> {
    if args.raw {
        return raw::run(&args);
    }
    let sink = report::Sink::open(&args.common, &args.sources)?;
    let mut ledger = Ledger::new(&args, sink.is_some());
    closing.sink(sink);
    let result = send(&args, &mut ledger);
    closing.facts(ledger.facts(&args));
    result
}

/// Every attempt of the transfer, until one ends it.
fn send(args: &SendArgs, ledger: &mut Ledger) -> Result<Code> {
    retry::check(args)?;
    let mut operands = Some(operands::classify(args)?);
    let way = match (&args.listen, &args.target) {
        (Some(spec), _) => Way::Listen(spec),
        (None, Some(target)) => {
            let key = meet::key(args, &Reporter::without_bar(args.common.verbosity()))?;
            Way::Connect(target, key)
        }
        (None, None) => return Err(error::usage("no HOST:PORT to send to, and no --listen")),
    };
    loop {
        // Each attempt walks the sources afresh.
        let operands = match operands.take() {
            Some(ops) => ops,
            None => operands::classify(args)?,
        };
        match attempt(args, &way, operands, ledger) {
            Ok(code) => return Ok(code),
            Err(err) => match &way {
                Way::Connect(target, _) => ledger.again(args, &target.to_string(), err)?,
                Way::Listen(_) => return Err(err),
            },
        }
    }
}

/// One connection's share of the transfer: meets the receiver and sends
/// every entry `ledger` does not hold as settled yet. A failure leaves in
/// `ledger` what this attempt settled.
fn attempt(args: &SendArgs, way: &Way, operands: Vec<Operand>, ledger: &mut Ledger) -> Result<Code> {
    let mut reporter = Reporter::new(args.common.verbosity()).for_json(args.common.json);
    let policy = Policy::new(!args.common.no_zerocopy);
    let algorithm = args.common.checksum;
    let Met {
        sock,
        peer,
        agreed,
        streams,
    } = match way {
        Way::Listen(spec) => meet::listen(args, spec, &reporter)?,
        Way::Connect(target, key) => meet::connect(args, target, key.as_ref(), &reporter)?,
    };
    ledger.agreed(args, agreed.blocks, &reporter);
    ledger.peer = Some(peer.clone());
    ledger.streams = u8::try_from(streams.len() + 1).unwrap_or(u8::MAX);
    // The transfer is timed from its first session on.
    let started = *ledger.started.get_or_insert_with(Instant::now);
    let limit = args.limit.and_then(|rate| {
        let socks: Vec<&TcpStream> = std::iter::once(&sock).chain(streams.iter().map(|s| &s.sock)).collect();
        pace::pace(&socks, rate, &mut reporter)
    });
    let roots = operands
        .iter()
        .filter_map(|op| op.path().map(|p| p.to_path_buf()))
        .collect();
    let confirmed = Arc::new(ledger.done.clone());
    let walk = walk::spawn(operands, args.dereference, algorithm, confirmed)?;
    reporter.start("send", None);
    // After a reconnect, the bar counts what the walk finds to send.
    let census = (reporter.has_bar() && ledger.reconnects == 0).then(|| census::spawn(roots, args.dereference));

    let mut session = Session {
        peer,
        algorithm,
        reporter,
        replies: agreed.replies,
        pending: VecDeque::new(),
        totals: Totals::keeping(ledger.carried.records.is_some()),
        last_summary: None,
        no_clobber: agreed.no_clobber,
        current: None,
        in_flight: None,
        census,
        walked: 0,
        ping_every: agreed.idle_timeout.map(|t| (t / 3).max(Duration::from_millis(500))),
        failed_dir: None,
        limit,
        ledger,
        passed_over: 0,
        blocks: agreed.blocks,
        blocked: 0,
        streams,
    };
    let mut outbox = Outbox::new(agreed.encoder);
    match session.transfer(&sock, &walk, &mut outbox, policy, started) {
        Ok(code) => Ok(code),
        Err(err) => {
            session.reporter.finish();
            // Ends the reading worker too, and the connection with it.
            let _ = sock.shutdown(Shutdown::Both);
            let settled = session.totals.settled();
            session.ledger.carried.add(&settled);
            session.ledger.unsettled = session.unsettled(&error::message(&err));
            Err(err)
        }
    }
}

impl Session<'_> {
    /// Streams the entries, collects the verdicts and sums up; the exit
    /// status counts every attempt.
    fn transfer(
        &mut self,
        sock: &TcpStream,
        walk: &Receiver<Batch>,
        outbox: &mut Outbox,
        policy: Policy,
        started: Instant,
    ) -> Result<Code> {
        if let Err(local) = self.stream(sock, walk, outbox, policy) {
            return Err(self.reason(local));
        }
        self.collect()?;
        self.reporter.finish();
        self.ledger.carried.add(&self.totals);
        self.ledger.unsettled.clear();
        self.summarize(started);
        Ok(self.ledger.carried.code())
    }

    /// Why streaming failed, once our side did (`local`). The receiver's
    /// reason (disk full, ...) beats our broken pipe; it comes after the
    /// verdicts on the entries before, so the first entry still without
    /// one is the entry it is about.
    fn reason(&mut self, local: anyhow::Error) -> anyhow::Error {
        self.reporter.finish();
        let what = self.sending();
        let deadline = Instant::now() + REASON_GRACE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.next(Some(left)) {
                Some(Reply::Verdict(v)) if !left.is_zero() => {
                    if let Some(p) = self.pending.pop_front() {
                        let (outcome, why) = self.judge(&p, &v);
                        self.tally(&p, outcome, why);
                    }
                }
                Some(Reply::Error(e)) => {
                    let about = match self.pending.front() {
                        Some(p) => format!("sending {} to {}", p.path, self.peer),
                        None => what,
                    };
                    return receiver_error(&e).context(about);
                }
                // A forged frame (5), or one that breaks the protocol (8),
                // is why the connection was shut down.
                Some(Reply::Broken(e)) if error::deliberate(&e) => return e.context(what),
                // The receiver's side is gone too: the connection broke.
                Some(Reply::Closed) => return lost(local),
                Some(Reply::Broken(e)) if error::connection_lost(&e) => return lost(local),
                _ => return local,
            }
        }
    }

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
                    Walked::Confirmed => self.passed_over += 1,
                }
            }
            while let Some(reply) = self.replies.try_next() {
                self.reply(reply)?;
            }
        }
        if self.passed_over > 0 {
            self.reporter.detail(format_args!(
                "not sent again: {} the receiver confirmed before the reconnect",
                counted_entries(self.passed_over)
            ));
        }
        for stream in &mut self.streams {
            stream
                .finish()
                .with_context(|| format!("ending a further stream to {}", self.peer))?;
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
        let path = item.entry.path.to_string();
        let again = self.ledger.done.contains(&path);
        if !again {
            self.totals.entries += 1;
        }
        self.reporter.current(&path);
        self.walked += item.entry.payload.size().unwrap_or(0);
        if self.reporter.has_bar() && item.entry.payload.size().is_some() {
            let counted = self.census.as_ref().map_or(0, |c| c.bytes.load(Ordering::Relaxed));
            self.reporter.set_total(counted.max(self.walked));
        }
        self.current = Some(path.clone());
        let kind = item.entry.kind.clone();
        let raw = item.raw.clone();
        let name = item.entry.path.as_bytes().to_vec();
        let stdin = is_stdin(&item);
        if self.totals.records.is_some() && !again {
            let kind = if stdin { Kind::Stdin } else { Kind::of(&kind) };
            self.in_flight = Some(Record::new(&name, kind, Outcome::Failed));
        }
        let Some(item) = self.send_in_blocks(sock, outbox, policy, item, again)? else {
            self.in_flight = None;
            return Ok(());
        };
        let started = Instant::now();
        let mut link = self.link(sock, outbox, policy);
        let sent = link
            .send(item)
            .with_context(|| format!("sending {path} to {}", self.peer))?;
        if let Some(why) = &sent.aborted {
            self.report_abort(&path, why);
        }
        self.in_flight = None;
        self.pending.push_back(Pending {
            path,
            name,
            kind,
            stdin,
            raw,
            sent,
            started,
            again,
        });
        Ok(())
    }

    /// How this session moves an entry's payload.
    fn link<'a>(&'a mut self, sock: &'a TcpStream, outbox: &'a mut Outbox, policy: Policy) -> Link<'a> {
        Link {
            sock,
            outbox,
            algorithm: self.algorithm,
            policy,
            reporter: &self.reporter,
            ping_every: self.ping_every,
            streams: &mut self.streams,
        }
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
        let shown = path.to_string();
        self.report_abort(&shown, &why);
        let again = self.ledger.done.contains(&shown);
        if !again {
            self.totals.entries += 1;
        }
        let name = path.as_bytes().to_vec();
        outbox.push_aborted(path, &why);
        self.pending.push_back(Pending {
            path: shown,
            name,
            kind: EntryKind::File,
            stdin: false,
            raw: Vec::new(),
            sent: Sent::aborted(why),
            started: Instant::now(),
            again,
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
                    return Err(
                        error::protocol("the receiver sent a verdict for an entry we did not send").context(what),
                    );
                };
                self.leave_failed_dir(&p.path);
                let (outcome, why) = self.judge(&p, &v);
                self.tally(&p, outcome, why);
                Ok(())
            }
            Reply::Error(e) => Err(receiver_error(&e).context(what)),
            Reply::Closed => Err(anyhow::Error::new(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the receiver closed the connection without a verdict",
            ))
            .context(what)),
            Reply::Broken(why) => Err(why.context(what)),
            Reply::Plan(_) => Err(error::protocol("the receiver sent a PLAN for no file sent in blocks").context(what)),
            Reply::Done if self.pending.is_empty() => Ok(()),
            Reply::Done => Err(error::protocol("the receiver ended the session without a verdict").context(what)),
        }
    }
}

/// Whether `item` is stdin (`-`), which the JSON report names so.
fn is_stdin(item: &Item) -> bool {
    matches!(&item.body, walk::Body::Stream(source) if source.path == b"-")
}

/// "1 entry", "5 entries".
fn counted_entries(n: u64) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
}

/// The receiver's ERROR as our error. Its idle cut (it heard nothing from
/// us for its `--idle-timeout`) means the connection stalled: a timed-out
/// connection, which `--retries` may make again, not a verdict.
fn receiver_error(e: &WireError) -> anyhow::Error {
    let said = receiver_said(&e.message);
    if error::is_idle_cut(&e.message) {
        io::Error::new(io::ErrorKind::TimedOut, said).into()
    } else {
        error::coded(Code::from_peer_error(e.code), said)
    }
}

/// `err`, a failure to send over a connection the receiver's side shows
/// broken, as the lost connection it is: sending reports a broken pipe or
/// a reset in words, without the I/O error. The words stay, layer by
/// layer.
fn lost(err: anyhow::Error) -> anyhow::Error {
    if error::connection_lost(&err) || error::deliberate(&err) {
        return err;
    }
    let mut layers: Vec<String> = err.chain().map(|cause| cause.to_string()).collect();
    let root = layers.pop().unwrap_or_default();
    let mut rebuilt = anyhow::Error::new(io::Error::new(io::ErrorKind::BrokenPipe, root));
    for layer in layers.into_iter().rev() {
        rebuilt = rebuilt.context(layer);
    }
    rebuilt
}

/// The receiver's ERROR or VERDICT text, escaped once (see
/// [`display::peer_text`]: names in it are already escaped).
fn receiver_said(message: &str) -> String {
    format!("receiver: {}", display::peer_text(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_broken_in_words_is_a_lost_connection_with_the_same_words() {
        let said = anyhow::anyhow!("the receiver closed the connection: Broken pipe (os error 32)")
            .context("sending t/a.bin to host:1");
        let text = format!("{said:#}");
        assert!(!error::connection_lost(&said));
        let rebuilt = lost(said);
        assert!(error::connection_lost(&rebuilt));
        assert_eq!(format!("{rebuilt:#}"), text);
        assert_eq!(
            rebuilt.root_cause().to_string(),
            "the receiver closed the connection: Broken pipe (os error 32)"
        );
        // A decision stays one.
        let refused = error::coded(Code::Failure, "receiver: No space left on device");
        assert!(error::deliberate(&lost(refused)));
    }
}
