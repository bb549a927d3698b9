//! `zcp send --retries N`: after a connection that broke, connect again
//! (from the same `--bind` address), redo the handshake and go on where
//! the transfer stopped. Between tries the sender waits 1 s, 2 s, 4 s, ...
//! up to 30 s; Ctrl-C ends the wait (exit 130).
//!
//! What the tries share is a [`Ledger`]: the wire paths the receiver
//! settled for good (committed, or skipped under `--no-clobber`), which
//! the next walk passes over, and the totals they add up to, so that the
//! closing summary counts the whole transfer.
//!
//! Only a broken connection is tried again ([`error::connection_lost`]):
//! never a wrong key, a digest mismatch, a usage error, the receiver's
//! deliberate ERROR (a full disk) or an interruption. A stream (stdin, a
//! fifo) cannot be read twice, and a listening sender cannot be the one
//! to connect again: both are refused before anything is sent.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::SendArgs;
use crate::display;
use crate::error;
use crate::progress::Reporter;
use crate::protocol::Blocks;
use crate::report::{Facts, Record, Role};
use crate::sys::signals;
use crate::tally::Totals;

/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the tries of one transfer share.
#[derive(Default)]
pub struct Ledger {
    /// Wire paths (escaped, as messages show them) with a final verdict;
    /// kept only when there may be another try.
    pub done: HashSet<String>,
    /// Whether `done` is kept (`--retries` above 0).
    pub remember: bool,
    /// The whole transfer's totals: what earlier tries settled, and at the
    /// end the last try's as well.
    pub carried: Totals,
    /// Connections made again so far.
    pub reconnects: u32,
    /// When the first session started.
    pub started: Option<Instant>,
    /// The receiver of the last session, once met.
    pub peer: Option<String>,
    /// Connections the last session used (-P), once met.
    pub streams: u8,
    /// A receiver answered without RETRY: it will not wait for this
    /// sender to come back, so a broken connection is final.
    declined: bool,
    /// The records of the last try's entries that did not settle, when it
    /// failed: its failed entries, and those sent that got no verdict.
    /// The report lists them when no later try settles them.
    pub unsettled: Vec<Record>,
}

impl Ledger {
    /// The ledger of a transfer; `records`: keep each entry's record for
    /// the JSON report.
    pub fn new(args: &SendArgs, records: bool) -> Ledger {
        Ledger {
            remember: args.retries > 0,
            carried: Totals::keeping(records),
            ..Ledger::default()
        }
    }

    /// The JSON report's facts of the transfer as it ended.
    pub fn facts(&mut self, args: &SendArgs) -> Facts {
        let streams = match self.streams {
            0 if args.listen.is_some() => 1,
            0 => args.parallel,
            n => n,
        };
        let mut facts = Facts::new(Role::Send, args.common.checksum, streams);
        facts.peer = self
            .peer
            .clone()
            .or_else(|| args.target.as_ref().map(|t| t.to_string()));
        facts.started = self.started;
        facts.seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        facts.retries = self.reconnects;
        facts.totals = std::mem::take(&mut self.carried);
        for record in std::mem::take(&mut self.unsettled) {
            facts.totals.count(record.outcome);
            facts.totals.record(|| record);
        }
        facts
    }

    /// Notes how the receiver answered our RETRY flag (`blocks`, as
    /// agreed in the handshake).
    pub fn agreed(&mut self, args: &SendArgs, blocks: Option<Blocks>, reporter: &Reporter) {
        if args.retries > 0 && !blocks.is_some_and(|b| b.retry) {
            self.declined = true;
            reporter.detail(
                "the receiver does not wait for a sender to reconnect (one writing to stdout cannot): --retries does not apply",
            );
        }
    }

    /// After a try that failed with `err`: when the connection broke and a
    /// retry is left, warns, waits and returns Ok for the next try;
    /// otherwise hands `err` back.
    pub fn again(&mut self, args: &SendArgs, peer: &str, err: anyhow::Error) -> Result<()> {
        if self.reconnects >= args.retries || self.declined || !error::connection_lost(&err) {
            return Err(err);
        }
        self.reconnects += 1;
        let wait = backoff(self.reconnects);
        let reason = display::one_line(&err.root_cause().to_string());
        Reporter::without_bar(args.common.verbosity()).warn(format_args!(
            "connection to {peer} lost ({reason}); trying again in {} s (retry {} of {})",
            wait.as_secs(),
            self.reconnects,
            args.retries
        ));
        pause(wait)
    }

    /// The end of the closing summary: how many reconnects it took.
    pub fn reconnects_note(&self) -> String {
        match self.reconnects {
            0 => String::new(),
            1 => "; after 1 reconnect".into(),
            n => format!("; after {n} reconnects"),
        }
    }
}

/// Refuses `--retries` where a second try cannot work: with `--listen`,
/// and for a stream (`-`, a fifo, a device), which cannot be read twice.
pub fn check(args: &SendArgs) -> Result<()> {
    if args.retries == 0 {
        return Ok(());
    }
    if args.listen.is_some() {
        return Err(error::usage(
            "--retries needs the sender to connect: a sender that listens (--listen) cannot connect again (not supported yet)",
        ));
    }
    if let Some(stream) = args.sources.iter().find(|p| is_stream(p)) {
        let shown = if stream.as_os_str() == "-" {
            "- (stdin)".to_string()
        } else {
            display::path(stream)
        };
        return Err(error::usage(format!(
            "--retries cannot send {shown}: a stream cannot be read twice, so a broken transfer could not be sent again"
        )));
    }
    Ok(())
}

/// Whether the SOURCE `path` is read as one stream: stdin, or anything
/// that is not a regular file or a directory (a missing file is left for
/// the operands to report).
fn is_stream(path: &Path) -> bool {
    path.as_os_str() == "-" || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The wait before retry `n` (from 1): 1 s, 2 s, 4 s, ... up to 30 s.
fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(5);
    Duration::from_secs(1 << doublings).min(MAX_WAIT)
}

/// Sleeps for `wait`, unless SIGINT/SIGTERM ends it first.
fn pause(wait: Duration) -> Result<()> {
    let until = Instant::now() + wait;
    loop {
        if signals::interrupted() {
            return Err(error::interrupted_io().into());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // The signal does not cut a sleep short: look at it often.
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn the_summary_says_how_many_reconnects_it_took() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.reconnects_note(), "");
        ledger.reconnects = 1;
        assert_eq!(ledger.reconnects_note(), "; after 1 reconnect");
        ledger.reconnects = 3;
        assert_eq!(ledger.reconnects_note(), "; after 3 reconnects");
    }

    #[test]
    fn stdin_and_special_files_are_streams() {
        assert!(is_stream(Path::new("-")));
        assert!(is_stream(Path::new("/dev/null")));
        assert!(!is_stream(Path::new("/")));
        assert!(!is_stream(Path::new("/no/such/file")));
    }
}
